/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  The per-backend cache of app and action definitions, read as the
 *	  extension's owner (ElevateBegin) and checked as they are loaded.
 *
 * ductape.run must cost microseconds, so definitions are read from
 * ductape.apps/actions/variables once and kept in backend memory.  The
 * tables carry a statement trigger (dt_catalog_changed) that queues a
 * relcache invalidation of the changed table; PostgreSQL delivers it to
 * every backend when the writing transaction commits (and to the writer
 * itself at the end of the statement), and our relcache callback marks the
 * cache stale.  The cache is rebuilt lazily at the start of the next call,
 * never in the middle of one, so pointers handed out stay valid for the
 * whole call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"

#include "ductape.h"

PG_FUNCTION_INFO_V1(dt_catalog_changed);

static MemoryContext CatalogContext = NULL;
static List *CachedApps = NIL;	/* DtApp * */
static bool CacheStale = false;
static bool CallbackRegistered = false;
static const char *const CatalogTables[] = {"apps", "actions", "variables",
"products", "product_apps", "configs"};
static Oid	CatalogRelids[lengthof(CatalogTables)];

/* ---- reading the catalog as its owner ---- */

/*
 * Calls are made by roles that may not read the catalog tables (a usage
 * role has no rights on ductape.apps or ductape._secrets).  Internal reads
 * therefore run as the owner of the ductape schema (who created the
 * extension), in a restricted security context, with search_path pinned to
 * pg_catalog so that nothing the caller put on its search_path (an
 * operator named "=", say) runs with the owner's rights.  An error inside
 * unwinds both: transaction abort restores the user and the GUC level.
 */
/* The owner of schema ductape: who created the extension. */
Oid
CatalogOwner(void)
{
	HeapTuple	tup;
	Oid			nsp = get_namespace_oid("ductape", false);
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema ductape");
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

void
ElevateBegin(DtElevated *e)
{
	Oid			owner = CatalogOwner();

	GetUserIdAndSecContext(&e->save_userid, &e->save_sec_context);
	SetUserIdAndSecContext(owner, e->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	e->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);

	/*
	 * Read the latest committed definitions, as PostgreSQL reads its own
	 * catalogs: with the caller's (perhaps older) snapshot, a cache rebuilt
	 * after an invalidation could reload the definition it replaced.
	 */
	PushActiveSnapshot(GetLatestSnapshot());
}

void
ElevateEnd(DtElevated *e)
{
	PopActiveSnapshot();
	AtEOXact_GUC(false, e->save_nestlevel);
	SetUserIdAndSecContext(e->save_userid, e->save_sec_context);
}

/* ---- invalidation ---- */

static void
CatalogRelcacheCallback(Datum arg, Oid relid)
{
	int			i;

	/* InvalidOid means "everything" (for example after a cache reset). */
	if (relid == InvalidOid)
	{
		CacheStale = true;
		return;
	}
	for (i = 0; i < lengthof(CatalogRelids); i++)
		if (CatalogRelids[i] == relid)
			CacheStale = true;
}

/*
 * Statement trigger on the catalog tables: queue an invalidation that
 * reaches every backend at commit.
 */
Datum
dt_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "dt_catalog_changed: not called by trigger manager");
	CacheInvalidateRelcache(trigdata->tg_relation);
	PG_RETURN_POINTER(NULL);
}

/* Called at the start of every top-level call: drop a stale cache. */
void
CatalogBeginCall(void)
{
	if (!CallbackRegistered)
	{
		CacheRegisterRelcacheCallback(CatalogRelcacheCallback, (Datum) 0);
		CallbackRegistered = true;
	}
	if (CatalogContext == NULL)
		CatalogContext = AllocSetContextCreate(TopMemoryContext,
											   "ductape catalog cache",
											   ALLOCSET_DEFAULT_SIZES);
	if (CacheStale || !OidIsValid(CatalogRelids[0]))
	{
		Oid			nsp = get_namespace_oid("ductape", true);
		int			i;

		MemoryContextReset(CatalogContext);
		CachedApps = NIL;
		CacheStale = false;

		/* relids change when the extension is dropped and created again */
		for (i = 0; i < lengthof(CatalogTables); i++)
			CatalogRelids[i] = get_relname_relid(CatalogTables[i], nsp);
	}
}

/* ---- loading ---- */

/*
 * What the loader reads back from the catalog tables is checked before use:
 * administrators may edit ductape.apps and ductape.actions directly, and a
 * field of the wrong type must give a clear error, never a crash or a
 * misreading (a "resource" that is not a string, a "success" entry that is a
 * string).  Only the shape the request builder relies on is checked here;
 * app_define checks the whole definition.
 */
static void
StoredInvalid(const char *app, const char *pointer, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the stored definition of app \"%s\" is invalid", app),
			 errdetail("%s: %s.", pointer, problem),
			 errhint("Define the app again with ductape.app_define (or ductape.action_define); "
					 "edit the catalog tables only through ductape's functions.")));
}

/* A string field (NULL when absent and not required). */
static char *
StoredString(Jsonb *spec, const char *key, const char *app, const char *at, bool required)
{
	JsonbValue *v = JsonbGetField(spec, key);

	if (v == NULL || v->type == jbvNull)
	{
		if (required)
			StoredInvalid(app, psprintf("%s/%s", at, key), "is required");
		return NULL;
	}
	if (v->type != jbvString || memchr(v->val.string.val, '\0', v->val.string.len) != NULL)
		StoredInvalid(app, psprintf("%s/%s", at, key), "must be a string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* An object (or, with array, an array) field as its own Jsonb, or NULL. */
static Jsonb *
StoredContainer(Jsonb *spec, const char *key, bool array, const char *app, const char *at)
{
	JsonbValue *v = JsonbGetField(spec, key);
	Jsonb	   *j;

	if (v == NULL || v->type == jbvNull)
		return NULL;
	j = v->type == jbvBinary ? JsonbValueToJsonb(v) : NULL;
	if (j == NULL || (array ? !JB_ROOT_IS_ARRAY(j) : !JB_ROOT_IS_OBJECT(j)) || JB_ROOT_IS_SCALAR(j))
		StoredInvalid(app, psprintf("%s/%s", at, key), array ? "must be an array" : "must be an object");
	return j;
}

/* A number within [lo, hi] as an int, or false. */
static bool
NumberIn(JsonbValue *v, int lo, int hi, int *out)
{
	if (v->type != jbvNumeric ||
		DatumGetBool(DirectFunctionCall2(numeric_lt, NumericGetDatum(v->val.numeric),
										 NumericGetDatum(int64_to_numeric(lo)))) ||
		DatumGetBool(DirectFunctionCall2(numeric_gt, NumericGetDatum(v->val.numeric),
										 NumericGetDatum(int64_to_numeric(hi)))))
		return false;
	*out = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
	return true;
}

/* An integer field within [lo, hi], or dflt when absent. */
static int
StoredInt(Jsonb *spec, const char *key, int dflt, int lo, int hi, const char *app, const char *at)
{
	JsonbValue *v = JsonbGetField(spec, key);
	int			n;

	if (v == NULL || v->type == jbvNull)
		return dflt;
	if (!NumberIn(v, lo, hi, &n))
		StoredInvalid(app, psprintf("%s/%s", at, key), psprintf("must be a number from %d to %d", lo, hi));
	return n;
}

DtAction *
CatalogParseAction(const char *app, const char *tag, Jsonb *spec)
{
	DtAction   *a = palloc0(sizeof(DtAction));
	Jsonb	   *success;
	const char *p;
	char	   *at = psprintf("/actions/%s", tag);

	if (!JB_ROOT_IS_OBJECT(spec) || JB_ROOT_IS_SCALAR(spec))
		StoredInvalid(app, at, "an action must be an object");
	a->tag = pstrdup(tag);
	a->method = StoredString(spec, "method", app, at, true);
	if (pg_strcasecmp(a->method, "GET") != 0 && pg_strcasecmp(a->method, "POST") != 0 &&
		pg_strcasecmp(a->method, "PUT") != 0 && pg_strcasecmp(a->method, "PATCH") != 0 &&
		pg_strcasecmp(a->method, "DELETE") != 0 && pg_strcasecmp(a->method, "HEAD") != 0)
		StoredInvalid(app, psprintf("%s/method", at), "must be GET, POST, PUT, PATCH, DELETE or HEAD");
	a->resource = StoredString(spec, "resource", app, at, true);
	if (a->resource[0] != '/')
		StoredInvalid(app, psprintf("%s/resource", at), "must be a path starting with \"/\"");
	a->request_type = StoredString(spec, "request_type", app, at, false);
	a->headers = StoredContainer(spec, "headers", false, app, at);
	a->query = StoredContainer(spec, "query", false, app, at);
	a->body = StoredContainer(spec, "body", false, app, at);
	a->input = StoredContainer(spec, "input", false, app, at);
	a->retries = StoredContainer(spec, "retries", false, app, at);
	a->timeout_ms = StoredInt(spec, "timeout_ms", -1, 1, INT_MAX, app, at);

	success = StoredContainer(spec, "success", true, app, at);
	if (success)
	{
		int			n = JB_ROOT_COUNT(success);
		int			i;

		a->success = palloc(sizeof(int) * Max(n, 1));
		for (i = 0; i < n; i++)
		{
			JsonbValue *v = getIthJsonbValueFromContainer(&success->root, i);
			char	   *pointer = psprintf("%s/success/%d", at, i);
			int			status;

			if (!NumberIn(v, 100, 599, &status))
				StoredInvalid(app, pointer, "must be an HTTP status (a number from 100 to 599)");
			a->success[a->nsuccess++] = status;
		}
	}

	/* :params of the resource, in order */
	for (p = a->resource; *p; p++)
	{
		if (*p == ':')
		{
			const char *s = p + 1;

			while (*s && (isalnum((unsigned char) *s) || *s == '_'))
				s++;
			if (s > p + 1)
				a->path_params = lappend(a->path_params, pnstrdup(p + 1, s - p - 1));
			p = s - 1;
		}
	}
	return a;
}

static DtApp *
LoadApp(const char *tag)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	DtApp	   *app = NULL;
	MemoryContext oldcxt;
	Jsonb	   *spec;
	Jsonb	   *envs;
	bool		isnull;
	uint64		i;
	DtElevated	elevated;

	args[0] = CStringGetTextDatum(tag);
	ElevateBegin(&elevated);
	SPI_connect();
	if (SPI_execute_with_args("SELECT spec FROM ductape.apps WHERE tag OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ductape.apps");
	if (SPI_processed == 0)
	{
		SPI_finish();
		ElevateEnd(&elevated);
		return NULL;
	}

	oldcxt = MemoryContextSwitchTo(CatalogContext);
	spec = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
	app = palloc0(sizeof(DtApp));
	app->tag = pstrdup(tag);
	if (!JB_ROOT_IS_OBJECT(spec) || JB_ROOT_IS_SCALAR(spec))
		StoredInvalid(tag, "/", "an app must be an object");
	app->constants = StoredContainer(spec, "constants", false, tag, "");
	app->auth = StoredContainer(spec, "auth", false, tag, "");
	if (app->auth)
	{
		static const char *const strings[] = {"token", "in", "name", "value", "username", "password",
			"grant", "token_url", "client_id", "client_secret", "scope", "refresh_token", "client_auth"};
		char	   *type = StoredString(app->auth, "type", tag, "/auth", true);
		int			k;

		if (strcmp(type, "bearer") != 0 && strcmp(type, "api_key") != 0 &&
			strcmp(type, "basic") != 0 && strcmp(type, "oauth2") != 0)
			StoredInvalid(tag, "/auth/type", "must be bearer, api_key, basic or oauth2");
		for (k = 0; k < lengthof(strings); k++)
			(void) StoredString(app->auth, strings[k], tag, "/auth", false);
		(void) StoredInt(app->auth, "refresh_buffer_s", 0, 0, INT_MAX, tag, "/auth");
	}
	app->retries = StoredContainer(spec, "retries", false, tag, "");
	app->timeout_ms = StoredInt(spec, "timeout_ms", -1, 1, INT_MAX, tag, "");
	app->idempotency_header = StoredString(spec, "idempotency_header", tag, "", false);
	if (app->idempotency_header == NULL)
		app->idempotency_header = pstrdup("Idempotency-Key");
	app->declared_variables = StoredContainer(spec, "variables", false, tag, "");
	app->webhooks = StoredContainer(spec, "webhooks", true, tag, "");

	envs = StoredContainer(spec, "envs", true, tag, "");
	if (envs)
	{
		int			n = JB_ROOT_COUNT(envs);

		for (i = 0; i < n; i++)
		{
			JsonbValue *v = getIthJsonbValueFromContainer(&envs->root, i);
			Jsonb	   *e = JsonbValueToJsonb(v);
			DtEnv	   *env = palloc0(sizeof(DtEnv));
			char	   *at = psprintf("/envs/%d", (int) i);

			if (!JB_ROOT_IS_OBJECT(e) || JB_ROOT_IS_SCALAR(e))
				StoredInvalid(tag, at, "an environment must be an object");
			env->slug = StoredString(e, "slug", tag, at, true);
			env->base_url = StoredString(e, "base_url", tag, at, true);
			env->request_type = StoredString(e, "request_type", tag, at, false);
			app->envs = lappend(app->envs, env);
		}
	}
	MemoryContextSwitchTo(oldcxt);

	if (SPI_execute_with_args("SELECT tag, spec FROM ductape.actions WHERE app OPERATOR(pg_catalog.=) $1 ORDER BY position",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read ductape.actions");
	oldcxt = MemoryContextSwitchTo(CatalogContext);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *atag = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		Jsonb	   *aspec = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 2, &isnull));

		app->actions = lappend(app->actions, CatalogParseAction(tag, atag, aspec));
	}
	CachedApps = lappend(CachedApps, app);
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	ElevateEnd(&elevated);
	return app;
}

/* The app named tag; raises 42704 when there is none. */
DtApp *
CatalogGetApp(const char *tag)
{
	ListCell   *lc;
	DtApp	   *app;

	foreach(lc, CachedApps)
	{
		app = lfirst(lc);
		if (strcmp(app->tag, tag) == 0)
			return app;
	}
	app = LoadApp(tag);
	if (app == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("app \"%s\" does not exist", tag),
				 errhint("Define it with ductape.app_define.")));
	return app;
}

DtAction *
CatalogGetAction(DtApp *app, const char *tag)
{
	ListCell   *lc;

	foreach(lc, app->actions)
	{
		DtAction   *a = lfirst(lc);

		if (strcmp(a->tag, tag) == 0)
			return a;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("action \"%s\" of app \"%s\" does not exist", tag, app->tag),
			 errhint("Call ductape.describe('%s') to list its actions.", app->tag)));
	return NULL;
}

DtEnv *
CatalogGetEnv(DtApp *app, const char *slug)
{
	ListCell   *lc;
	StringInfoData names;

	initStringInfo(&names);
	foreach(lc, app->envs)
	{
		DtEnv	   *e = lfirst(lc);

		if (strcmp(e->slug, slug) == 0)
			return e;
		appendStringInfo(&names, "%s%s", names.len ? ", " : "", e->slug);
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("environment \"%s\" of app \"%s\" does not exist", slug, app->tag),
			 names.len ? errdetail("The app has the environments: %s.", names.data)
			 : errdetail("The app has no environments."),
			 errhint("Pass env => '...' or SET ductape.env, or add the environment to the app's \"envs\".")));
	return NULL;
}

/*
 * How app is used under (product, env): the app env it maps to, variable
 * values and config credentials.  Raises 42704 for an unknown product, an
 * app the product is not connected to (every app works under "default"),
 * or an env the product does not have.
 */
DtBinding *
CatalogGetBinding(DtApp *app, const char *product, const char *env)
{
	ListCell   *lc;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	bool		isnull;
	DtBinding  *b;
	MemoryContext oldcxt;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		d;
	bool		is_default = strcmp(product, "default") == 0;
	const char *app_env = env;
	DtElevated	elevated;

	foreach(lc, app->bindings)
	{
		b = lfirst(lc);
		if (strcmp(b->product, product) == 0 && strcmp(b->env, env) == 0)
			return b;
	}
	args[0] = CStringGetTextDatum(product);
	args[1] = CStringGetTextDatum(app->tag);
	args[2] = CStringGetTextDatum(env);
	ElevateBegin(&elevated);
	SPI_connect();
	if (SPI_execute_with_args("SELECT $3 OPERATOR(pg_catalog.=) ANY (p.envs), pa.env_map IS NOT NULL, "
							  "  pa.env_map OPERATOR(pg_catalog.->>) $3, "
							  "  (SELECT coalesce(pg_catalog.jsonb_object_agg(v.key, v.value), '{}') FROM ductape.variables v "
							  "    WHERE v.product OPERATOR(pg_catalog.=) $1 AND v.app OPERATOR(pg_catalog.=) $2 "
							  "      AND v.env OPERATOR(pg_catalog.=) $3), "
							  "  (SELECT c.credentials FROM ductape.configs c "
							  "    WHERE c.product OPERATOR(pg_catalog.=) $1 AND c.app OPERATOR(pg_catalog.=) $2 "
							  "      AND c.env OPERATOR(pg_catalog.=) $3), "
							  "  pg_catalog.array_to_string(p.envs, ', ') "
							  "FROM ductape.products p "
							  "LEFT JOIN ductape.product_apps pa ON pa.product OPERATOR(pg_catalog.=) p.tag "
							  "  AND pa.app OPERATOR(pg_catalog.=) $2 "
							  "WHERE p.tag OPERATOR(pg_catalog.=) $1",
							  3, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the product binding");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("product \"%s\" does not exist", product),
				 errhint("Create it with ductape.product_create, or use the default product.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (!is_default)
	{
		if (!DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("app \"%s\" is not connected to product \"%s\"", app->tag, product),
					 errhint("Connect it with ductape.product_connect('%s', '%s').", product, app->tag)));
		if (!DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("environment \"%s\" of product \"%s\" does not exist", env, product),
					 errdetail("The product has the environments: %s.", SPI_getvalue(tup, desc, 6))));
		if (SPI_getvalue(tup, desc, 3) != NULL)
			app_env = SPI_getvalue(tup, desc, 3);
	}
	oldcxt = MemoryContextSwitchTo(CatalogContext);
	b = palloc0(sizeof(DtBinding));
	b->product = pstrdup(product);
	b->env = pstrdup(env);
	b->app_env = CatalogGetEnv(app, app_env);
	b->variables = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
	d = SPI_getbinval(tup, desc, 5, &isnull);
	b->credentials = isnull ? NULL : DatumGetJsonbPCopy(d);
	app->bindings = lappend(app->bindings, b);
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	ElevateEnd(&elevated);
	return b;
}

