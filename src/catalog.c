/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  The per-backend cache of app and action definitions, read as the
 *	  extension's owner (ElevateBegin) and checked as they are loaded; the
 *	  rules of an action definition (ductape._check_action), which both
 *	  the definitions and the loader apply, and the generic rules they are
 *	  made of (a tag, a JSON type, known keys, an integer, a request type),
 *	  which the plpgsql checkers of the other definitions call as
 *	  ductape._check_tag, _check_type, _check_keys, _check_int and
 *	  _check_request_type.
 *
 * ductape.run must cost microseconds, so definitions are read from
 * ductape.apps/actions/variables once and kept in backend memory.  The
 * tables carry a statement trigger (dt_catalog_changed) that queues a
 * relcache invalidation of the changed table; PostgreSQL delivers it to
 * every backend when the writing transaction commits (and to the writer
 * itself at the end of the statement), and our relcache callback marks the
 * cache stale.  The cache is rebuilt lazily at the start of the next call,
 * never in the middle of one, so pointers handed out stay valid for the
 * whole call.  An action is checked and parsed the first time it is used.
 *
 * Layer 2 (core logic): calls the utilities (jsonb_util.c, settings.c) and
 * the template and schema checks (template.c, schema.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "regex/regex.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"
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

/* An action as the cache holds it (DtApp.actions): parsed on first use. */
typedef struct StoredAction
{
	char	   *tag;
	Jsonb	   *spec;			/* ductape.actions.spec: all but the tag */
	DtAction   *action;			/* NULL until first used */
} StoredAction;

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

/* ---- the rules of an action definition ---- */

/*
 * What an action definition may say has one implementation, this one:
 * action_define, app_define and the importers ask it through
 * ductape._check_action, and the loader checks every stored action with it
 * before use (CatalogParseAction).  Each problem is a "/json/pointer:
 * reason" string, in the words and order of the plpgsql checks before 0.3.0
 * (the tests compare the two): keys go into the pointers unescaped, unknown
 * keys are listed in the database's collation order (their ORDER BY), and
 * where those checks followed the database's locale, so do these: a method
 * is upper-cased as upper() does it, white space in a resource is what the
 * regular expression \s matches.
 */

#define MAX_SHOWN_PROBLEMS 5

static const char *const action_keys[] = {"tag", "name", "description", "method",
	"resource", "request_type", "headers", "query", "body", "input", "success",
"timeout_ms", "retries"};
static const char *const retries_keys[] = {"max", "on", "initial_delay_ms",
"max_delay_ms", "multiplier", "jitter", "respect_retry_after", "unsafe"};
static const char *const limits_keys[] = {"rate", "per", "burst", "concurrency",
"max_wait_ms"};
static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
static const char *const request_types[] = {"application/json",
"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"};
static const char *const input_places[] = {"body", "query", "params", "headers"};

static void Problem(List **problems, const char *fmt,...) pg_attribute_printf(2, 3);

static void
Problem(List **problems, const char *fmt,...)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	*problems = lappend(*problems, buf.data);
}

/* v's JSON type as jsonb_typeof names it; v is a value of a jsonb. */
static const char *
JsonTypeName(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;
}

/* Is v (perhaps NULL: absent) of JSON type type? */
static bool
IsType(JsonbValue *v, const char *type)
{
	return v != NULL && strcmp(JsonTypeName(v), type) == 0;
}

/* Is v the string s? */
static bool
IsString(JsonbValue *v, const char *s)
{
	return v != NULL && v->type == jbvString && v->val.string.len == strlen(s) &&
		memcmp(v->val.string.val, s, v->val.string.len) == 0;
}

/* The field key of object v (v->'key'), NULL when v is no object or lacks it. */
static JsonbValue *
Field(JsonbValue *v, const char *key)
{
	JsonbValue	k;

	if (!IsType(v, "object"))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(v->val.binary.data, JB_FOBJECT, &k);
}

/* v as a jsonb of its own, for template.c and schema.c (and output). */
static Jsonb *
AsJsonb(JsonbValue *v)
{
	return JsonbValueToJsonb(v);
}

/* v as JSON text, as jsonb prints it ("%s" of a jsonb). */
static char *
AsJson(JsonbValue *v)
{
	Jsonb	   *j = AsJsonb(v);

	return JsonbToCString(NULL, &j->root, VARSIZE(j));
}

/* The sign of n - x. */
static int
NumberCompare(Numeric n, int64 x)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
											 NumericGetDatum(int64_to_numeric(x))));
}

/* Is number n within [lo, hi]? */
static bool
NumberBetween(Numeric n, int64 lo, int64 hi)
{
	return NumberCompare(n, lo) >= 0 && NumberCompare(n, hi) <= 0;
}

/* Is v a number equal to its trunc? */
static bool
IsInteger(JsonbValue *v)
{
	Datum		d;

	if (v->type != jbvNumeric)
		return false;
	d = NumericGetDatum(v->val.numeric);
	return DatumGetBool(DirectFunctionCall2(numeric_eq, d,
											DirectFunctionCall2(numeric_trunc, d, Int32GetDatum(0))));
}

/*
 * The generic rules below (a tag, a JSON type, the known keys, an integer,
 * a request type) are also the SQL helpers the plpgsql checkers of apps,
 * webhooks and workflows call (_check_tag and the others, at the end of
 * this file).  Those are not strict, and so a path may be NULL here when
 * SQL passes one: a problem the SQL versions built as path || ': reason'
 * is then NULL, one they built with format() says "" for the path.  The C
 * checks never pass a NULL path.
 */
#define PathText(path) ((path) != NULL ? (path) : "")

/* "path: reason", or NULL when path is NULL. */
static void
PathProblem(List **problems, const char *path, const char *reason)
{
	*problems = lappend(*problems,
						path != NULL ? psprintf("%s: %s", path, reason) : NULL);
}

static int
CompareKeys(const ListCell *a, const ListCell *b)
{
	const char *x = lfirst(a);
	const char *y = lfirst(b);

	return varstr_cmp(x, strlen(x), y, strlen(y), DEFAULT_COLLATION_OID);
}

/* Keys of object obj not in allowed: "path/key: unknown key", by name. */
static void
CheckKeys(JsonbValue *obj, const char *path, const char *const *allowed, int nallowed,
		  List **problems)
{
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	v;
	List	   *unknown = NIL;
	ListCell   *lc;

	if (!IsType(obj, "object"))
		return;
	it = JsonbIteratorInit(obj->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		int			i;

		if (r != WJB_KEY)
			continue;
		for (i = 0; i < nallowed; i++)
			if (IsString(&v, allowed[i]))
				break;
		if (i == nallowed)
			unknown = lappend(unknown, pnstrdup(v.val.string.val, v.val.string.len));
	}
	list_sort(unknown, CompareKeys);
	foreach(lc, unknown)
		Problem(problems, "%s/%s: unknown key", PathText(path), (char *) lfirst(lc));
}

/* A tag; when absent (or JSON null) a problem only if required. */
static void
CheckTag(JsonbValue *v, const char *path, bool required, List **problems)
{
	char	   *tag;

	if (v == NULL || v->type == jbvNull)
	{
		if (required)
			PathProblem(problems, path, "is required");
	}
	else if (v->type != jbvString)
		PathProblem(problems, path, "must be a string");
	else if (!DtIsValidTag(tag = pnstrdup(v->val.string.val, v->val.string.len)))
		Problem(problems, "%s: \"%s\" is not a valid tag (1 to 63 of a-z 0-9 _ . -, "
				"starting with a letter or digit)", PathText(path), tag);
}

/*
 * A value of one of the JSON types types, when present: "must be a or b".
 * A NULL entry matches nothing and is not named.
 */
static void
CheckTypes(JsonbValue *v, const char *path, const char *const *types, int ntypes,
		   List **problems)
{
	StringInfoData names;
	bool		first = true;
	int			i;

	if (v == NULL)
		return;
	for (i = 0; i < ntypes; i++)
		if (types[i] != NULL && IsType(v, types[i]))
			return;
	initStringInfo(&names);
	for (i = 0; i < ntypes; i++)
	{
		if (types[i] == NULL)
			continue;
		appendStringInfo(&names, "%s%s", first ? "" : " or ", types[i]);
		first = false;
	}
	Problem(problems, "%s: must be %s", PathText(path), names.data);
}

/* A value of JSON type type, when present. */
static void
CheckType(JsonbValue *v, const char *path, const char *type, List **problems)
{
	CheckTypes(v, path, &type, 1, problems);
}

/*
 * An integer within [*lo, *hi], when present.  A NULL bound (SQL's, from
 * _check_int) bounds nothing and shows as "", as NOT BETWEEN and format()
 * had it.
 */
static void
CheckIntBetween(JsonbValue *v, const char *path, const int64 *lo, const int64 *hi,
				List **problems)
{
	if (v == NULL)
		return;
	if (!IsInteger(v))
		PathProblem(problems, path, "must be an integer");
	else if ((lo != NULL && NumberCompare(v->val.numeric, *lo) < 0) ||
			 (hi != NULL && NumberCompare(v->val.numeric, *hi) > 0))
		Problem(problems, "%s: must be between %s and %s", PathText(path),
				lo != NULL ? psprintf(INT64_FORMAT, *lo) : "",
				hi != NULL ? psprintf(INT64_FORMAT, *hi) : "");
}

/* An integer within [lo, hi], when present. */
static void
CheckInt(JsonbValue *v, const char *path, int64 lo, int64 hi, List **problems)
{
	CheckIntBetween(v, path, &lo, &hi, problems);
}

/* One of the request types, when present. */
static void
CheckRequestType(JsonbValue *v, const char *path, List **problems)
{
	int			i;

	if (v == NULL)
		return;
	for (i = 0; i < lengthof(request_types); i++)
		if (IsString(v, request_types[i]))
			return;
	Problem(problems, "%s: must be one of application/json, application/x-www-form-urlencoded, "
			"multipart/form-data, text/plain", PathText(path));
}

/* A retry status: a number written with 1 to 3 digits, from 100 to 599. */
static bool
IsRetryStatus(JsonbValue *v)
{
	char	   *s;
	int			n;

	if (v->type != jbvNumeric)
		return false;
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	n = strlen(s);
	if (n < 1 || n > 3 || strspn(s, "0123456789") != n)
		return false;
	n = atoi(s);
	return n >= 100 && n <= 599;
}

/*
 * A duration of limits: a positive integer and a unit, "500ms", "1s", "2m",
 * "1h", as milliseconds, at most a day; -1 when v is no such string.
 */
static int64
LimitsDuration(JsonbValue *v)
{
	char	   *s,
			   *end;
	long		n;
	int64		unit;

	if (v->type != jbvString || v->val.string.len == 0 || v->val.string.len > 16)
		return -1;
	s = pnstrdup(v->val.string.val, v->val.string.len);
	if (!isdigit((unsigned char) s[0]))
		return -1;
	errno = 0;
	n = strtol(s, &end, 10);
	if (errno != 0 || n <= 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		unit = 1;
	else if (strcmp(end, "s") == 0)
		unit = 1000;
	else if (strcmp(end, "m") == 0)
		unit = 60000;
	else if (strcmp(end, "h") == 0)
		unit = 3600000;
	else
		return -1;
	if (n > 86400000 / unit)
		return -1;
	return n * unit;
}

/*
 * The "limits" of an app or of one of its envs, when present; when it has
 * no problem and out is given, its keys are laid over *out (an env's over
 * its app's, key by key).  LimitsFinish gives what is still unset its
 * default.
 */
static void
CheckLimits(JsonbValue *p, const char *path, List **problems, DtLimitSpec *out)
{
	JsonbValue *v;
	int			before = list_length(*problems);

	if (p == NULL)
		return;
	if (!IsType(p, "object"))
	{
		Problem(problems, "%s: must be an object", path);
		return;
	}
	CheckKeys(p, path, limits_keys, lengthof(limits_keys), problems);
	v = Field(p, "rate");
	if (v != NULL && (v->type != jbvNumeric || NumberCompare(v->val.numeric, 0) <= 0 ||
					  NumberCompare(v->val.numeric, 1000000) > 0))
		Problem(problems, "%s/rate: must be a number greater than 0 and at most 1000000", path);
	v = Field(p, "per");
	if (v != NULL && LimitsDuration(v) < 0)
		Problem(problems, "%s/per: must be a duration such as \"1s\", \"500ms\", \"1m\" or \"1h\", at most a day",
				path);
	CheckInt(Field(p, "burst"), psprintf("%s/burst", path), 1, 1000000, problems);
	CheckInt(Field(p, "concurrency"), psprintf("%s/concurrency", path), 1, 100000, problems);
	CheckInt(Field(p, "max_wait_ms"), psprintf("%s/max_wait_ms", path), 0, 600000, problems);
	if (out == NULL || list_length(*problems) > before)
		return;
	if ((v = Field(p, "rate")) != NULL)
		out->rate = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	if ((v = Field(p, "per")) != NULL)
		out->per_ms = LimitsDuration(v);
	if ((v = Field(p, "burst")) != NULL)
		out->burst = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
	if ((v = Field(p, "concurrency")) != NULL)
		out->concurrency = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
	if ((v = Field(p, "max_wait_ms")) != NULL)
		out->max_wait_ms = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
}

/* Defaults of what limits left unset: per 1s, burst the rate, wait 1 s. */
static void
LimitsFinish(DtLimitSpec *s)
{
	if (s->per_ms <= 0)
		s->per_ms = 1000;
	if (s->rate > 0 && s->burst <= 0)
		s->burst = Max(1, (int) Min(ceil(s->rate), 1000000.0));
	if (s->rate <= 0)
		s->burst = 0;
	if (s->max_wait_ms < 0)
		s->max_wait_ms = DT_LIMIT_DEFAULT_MAX_WAIT_MS;
}

/* A retry policy (an action's, an app's, a workflow step's), when present. */
static void
CheckRetries(JsonbValue *p, const char *path, List **problems)
{
	JsonbValue *v;

	if (p == NULL)
		return;
	if (!IsType(p, "object"))
	{
		Problem(problems, "%s: must be an object", path);
		return;
	}
	CheckKeys(p, path, retries_keys, lengthof(retries_keys), problems);
	CheckInt(Field(p, "max"), psprintf("%s/max", path), 0, 100, problems);
	CheckInt(Field(p, "initial_delay_ms"), psprintf("%s/initial_delay_ms", path), 0, 86400000, problems);
	CheckInt(Field(p, "max_delay_ms"), psprintf("%s/max_delay_ms", path), 0, 86400000, problems);
	CheckType(Field(p, "multiplier"), psprintf("%s/multiplier", path), "number", problems);
	CheckType(Field(p, "respect_retry_after"), psprintf("%s/respect_retry_after", path), "boolean", problems);
	CheckType(Field(p, "unsafe"), psprintf("%s/unsafe", path), "boolean", problems);
	v = Field(p, "multiplier");
	if (v != NULL && v->type == jbvNumeric && !NumberBetween(v->val.numeric, 1, 10))
		Problem(problems, "%s/multiplier: must be between 1 and 10", path);
	v = Field(p, "jitter");
	if (v != NULL && (v->type != jbvNumeric || !NumberBetween(v->val.numeric, 0, 1)))
		Problem(problems, "%s/jitter: must be a number between 0 and 1", path);
	v = Field(p, "on");
	if (v != NULL && !IsType(v, "array"))
		Problem(problems, "%s/on: must be an array of statuses, \"timeout\" and \"network\"", path);
	else if (v != NULL)
	{
		int			n = JsonContainerSize(v->val.binary.data);
		int			i;

		for (i = 0; i < n; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(v->val.binary.data, i);

			if (!IsRetryStatus(e) && !IsString(e, "timeout") && !IsString(e, "network"))
				Problem(problems, "%s/on/%d: must be a status (100-599), \"timeout\" or \"network\"",
						path, i);
		}
	}
}

/* The method upper-cased as upper() does it (palloc'd). */
static char *
MethodUpper(JsonbValue *v)
{
	return str_toupper(v->val.string.val, v->val.string.len, DEFAULT_COLLATION_OID);
}

/* A header name: an HTTP token (RFC 9110), one or more of these bytes. */
static bool
IsHeaderName(const char *s, int len)
{
	int			i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (c != '\0' && strchr("!#$%&'*+.^_`|~-", c) != NULL)))
			return false;
	}
	return true;
}

/*
 * The :params of a resource, in order (a name repeated is listed again): a
 * ":" and the letters, digits and "_" after it.
 */
static List *
ResourceParams(const char *resource)
{
	List	   *params = NIL;
	const char *p;

	for (p = resource; *p; p++)
	{
		const char *s = p + 1;

		if (*p != ':')
			continue;
		while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
			   (*s >= '0' && *s <= '9') || *s == '_')
			s++;
		if (s > p + 1)
		{
			params = lappend(params, pnstrdup(p + 1, s - p - 1));
			p = s - 1;
		}
	}
	return params;
}

/* The resource and where its :params come from. */
static void
CheckResource(JsonbValue *a, const char *path, List **problems)
{
	JsonbValue *v = Field(a, "resource");
	JsonbValue *props;
	char	   *resource;
	const char *p;
	ListCell   *lc;
	List	   *params;

	if (v == NULL)
	{
		Problem(problems, "%s/resource: is required", path);
		return;
	}
	if (v->type != jbvString || v->val.string.len == 0 || v->val.string.val[0] != '/')
	{
		Problem(problems, "%s/resource: must be a path starting with \"/\"", path);
		return;
	}
	resource = pnstrdup(v->val.string.val, v->val.string.len);
	/* \s is the database's white space (its locale's, beyond ASCII) */
	if (RE_compile_and_execute(cstring_to_text("[\\s?#]"), resource, strlen(resource),
							   REG_ADVANCED, DEFAULT_COLLATION_OID, 0, NULL))
	{
		Problem(problems, "%s/resource: must not contain spaces, \"?\" or \"#\" "
				"(put query parameters in \"query\")", path);
		return;
	}
	for (p = resource; (p = strchr(p, ':')) != NULL; p++)
		if (p[1] == '/' || p[1] == '\0')
		{
			Problem(problems, "%s/resource: \":\" must be followed by a parameter name", path);
			break;
		}

	/* with a declared input schema, each :param must be one of its properties */
	params = ResourceParams(resource);
	props = Field(Field(a, "input"), "properties");
	if (!IsType(props, "object"))
		return;
	foreach(lc, params)
	{
		char	   *k = lfirst(lc);
		JsonbValue *prop = Field(props, k);
		JsonbValue *in = Field(prop, "in");

		if (prop == NULL)
			Problem(problems, "%s/resource: path parameter :%s has no source (add it to input.properties)",
					path, k);
		else if (in != NULL && in->type != jbvNull && !IsString(in, "params"))
			Problem(problems, "%s/input/properties/%s/in: path parameter :%s must be \"in\": \"params\"",
					path, k, k);
	}
}

/* Header names, and header values without line breaks. */
static void
CheckHeaders(JsonbValue *headers, const char *path, List **problems)
{
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	v;
	char	   *key = NULL;

	it = JsonbIteratorInit(headers->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (r == WJB_KEY && !IsHeaderName(v.val.string.val, v.val.string.len))
			Problem(problems, "%s/headers/%s: not a valid header name", path,
					pnstrdup(v.val.string.val, v.val.string.len));
	it = JsonbIteratorInit(headers->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (r == WJB_VALUE && v.type == jbvString &&
				 (memchr(v.val.string.val, '\r', v.val.string.len) != NULL ||
				  memchr(v.val.string.val, '\n', v.val.string.len) != NULL))
			Problem(problems, "%s/headers/%s: header values cannot contain CR or LF", path, key);
	}
}

/* The input schema, and where its properties go. */
static void
CheckInput(JsonbValue *input, const char *path, List **problems)
{
	JsonbValue *props = Field(input, "properties");
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	v;
	char	   *key = NULL;

	if (!IsType(input, "object"))
		Problem(problems, "%s/input: must be a JSON Schema object", path);
	else
		*problems = list_concat(*problems, SchemaCheck(AsJsonb(input), psprintf("%s/input", path)));
	if (!IsType(props, "object"))
		return;
	it = JsonbIteratorInit(props->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *in;
		int			i;

		if (r == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		if (r != WJB_VALUE || (in = Field(&v, "in")) == NULL || in->type == jbvNull)
			continue;
		for (i = 0; i < lengthof(input_places); i++)
			if (IsString(in, input_places[i]))
				break;
		if (i == lengthof(input_places))
			Problem(problems, "%s/input/properties/%s/in: must be body, query, params or headers",
					path, key);
	}
}

/*
 * Every problem of action a (NULL: none given), path its JSON pointer.
 * constants and variables (NULL: none) are the app's, which placeholders
 * may name.  alone: an action seen without its app (_placement): its tag
 * and its placeholders, which need the catalog row and the app, are not
 * checked.
 */
static void
CheckAction(JsonbValue *a, const char *path, Jsonb *constants, Jsonb *variables,
			bool alone, List **problems)
{
	static const char *const templates[] = {"headers", "query", "body"};
	JsonbValue *v;
	int			i;

	if (!IsType(a, "object"))
	{
		Problem(problems, "%s: an action must be an object", path);
		return;
	}
	CheckKeys(a, path, action_keys, lengthof(action_keys), problems);
	if (!alone)
		CheckTag(Field(a, "tag"), psprintf("%s/tag", path), true, problems);
	CheckType(Field(a, "name"), psprintf("%s/name", path), "string", problems);
	CheckType(Field(a, "description"), psprintf("%s/description", path), "string", problems);

	v = Field(a, "method");
	if (v == NULL)
		Problem(problems, "%s/method: is required", path);
	else
	{
		char	   *method = v->type == jbvString ? MethodUpper(v) : "";

		for (i = 0; i < lengthof(methods); i++)
			if (strcmp(method, methods[i]) == 0)
				break;
		if (i == lengthof(methods))
			Problem(problems, "%s/method: unknown method %s (use GET, POST, PUT, PATCH, DELETE or HEAD)",
					path, AsJson(v));
	}
	CheckResource(a, path, problems);
	CheckRequestType(Field(a, "request_type"), psprintf("%s/request_type", path), problems);

	for (i = 0; i < lengthof(templates); i++)
	{
		v = Field(a, templates[i]);
		if (v == NULL)
			continue;
		if (!IsType(v, "object"))
			Problem(problems, "%s/%s: must be an object", path, templates[i]);
		else if (!alone)
			TemplateCheck(AsJsonb(v), psprintf("%s/%s", path, templates[i]), PH_APP_KINDS,
						  constants, variables, problems);
	}
	v = Field(a, "headers");
	if (IsType(v, "object"))
		CheckHeaders(v, path, problems);

	v = Field(a, "input");
	if (v != NULL)
		CheckInput(v, path, problems);

	v = Field(a, "success");
	if (v != NULL && (!IsType(v, "array") || JsonContainerSize(v->val.binary.data) == 0))
		Problem(problems, "%s/success: must be a non-empty array of statuses", path);
	else if (v != NULL)
	{
		int			n = JsonContainerSize(v->val.binary.data);

		for (i = 0; i < n; i++)
			CheckInt(getIthJsonbValueFromContainer(v->val.binary.data, i),
					 psprintf("%s/success/%d", path, i), 100, 599, problems);
	}
	CheckInt(Field(a, "timeout_ms"), psprintf("%s/timeout_ms", path), 1, 86400000, problems);
	CheckRetries(Field(a, "retries"), psprintf("%s/retries", path), problems);
}

/* ---- loading an action ---- */

/*
 * What the loader reads back from the catalog tables is checked before use:
 * administrators may edit ductape.apps and ductape.actions directly, and a
 * field of the wrong type must give a clear error, never a crash or a
 * misreading (a "resource" that is not a string, a "success" entry that is a
 * string).  A stored action is checked whole, by the rules above; of an app
 * the loader checks the shape the request builder relies on (app_define
 * checks the rest).
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

/* The problems of an action, the first few of them in the detail. */
static void
ActionInvalid(const char *app, const char *tag, List *problems)
{
	StringInfoData detail;
	ListCell   *lc;
	int			shown = 0;
	int			more;

	initStringInfo(&detail);
	foreach(lc, problems)
	{
		if (shown == MAX_SHOWN_PROBLEMS)
			break;
		appendStringInfo(&detail, "%s%s.", shown++ > 0 ? "\n" : "", (char *) lfirst(lc));
	}
	more = list_length(problems) - shown;
	if (more == 1)
		appendStringInfoString(&detail, "\nOne more problem is not shown.");
	else if (more > 1)
		appendStringInfo(&detail, "\n%d more problems are not shown.", more);
	if (app == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid action definition"),
				 errdetail("%s", detail.data)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the stored definition of action \"%s\" of app \"%s\" is invalid", tag, app),
			 errdetail("%s", detail.data),
			 errhint("Define the action again with ductape.action_define (or the app with ductape.app_define); "
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

/* An integer field within [lo, hi], or dflt when absent. */
static int
StoredInt(Jsonb *spec, const char *key, int dflt, int lo, int hi, const char *app, const char *at)
{
	JsonbValue *v = JsonbGetField(spec, key);

	if (v == NULL || v->type == jbvNull)
		return dflt;
	if (v->type != jbvNumeric || !NumberBetween(v->val.numeric, lo, hi))
		StoredInvalid(app, psprintf("%s/%s", at, key), psprintf("must be a number from %d to %d", lo, hi));
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
}

/* The "limits" of a stored app or env, laid over *out. */
static void
StoredLimits(Jsonb *spec, const char *app, const char *at, DtLimitSpec *out)
{
	JsonbValue *v = JsonbGetField(spec, "limits");
	List	   *problems = NIL;
	char	   *path = psprintf("%s/limits", at);

	if (v == NULL || v->type == jbvNull)
		return;
	CheckLimits(v, path, &problems, out);
	if (problems != NIL)
	{
		char	   *first = linitial(problems);
		size_t		skip = strlen(path) + 2;

		StoredInvalid(app, path, strlen(first) > skip ? first + skip : first);
	}
}

/* spec || {"tag": tag}: a stored action with the tag its row keeps apart. */
static Jsonb *
WithTag(Jsonb *spec, const char *tag)
{
	JsonbParseState *ps = NULL;
	JsonbValue	k,
				v;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "tag";
	k.val.string.len = 3;
	v.type = jbvString;
	v.val.string.val = (char *) tag;
	v.val.string.len = strlen(tag);
	pushJsonbValue(&ps, WJB_KEY, &k);
	pushJsonbValue(&ps, WJB_VALUE, &v);
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(spec),
											  JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL)))));
}

/* A field of a checked action as its own Jsonb, or NULL when absent. */
static Jsonb *
ContainerField(JsonbValue *a, const char *key)
{
	JsonbValue *v = Field(a, key);

	return v ? AsJsonb(v) : NULL;
}

/*
 * The action tag of app, from its stored spec (ductape.actions.spec, which
 * holds everything but the tag), checked whole by the rules above with the
 * app's constants and variables (NULL: none); raises 22023 naming the app,
 * the action and its first problems.  The result is allocated in the
 * current memory context, the check's garbage in one of its own.
 *
 * app NULL: an action seen without its app (_placement, for describe()):
 * everything but its tag and its placeholders is checked.
 */
DtAction *
CatalogParseAction(const char *app, const char *tag, Jsonb *spec,
				   Jsonb *constants, Jsonb *variables)
{
	MemoryContext checkcxt;
	MemoryContext oldcxt;
	JsonbValue	root;
	List	   *problems = NIL;
	DtAction   *a;
	JsonbValue *v;

	checkcxt = AllocSetContextCreate(CurrentMemoryContext, "ductape action check",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(checkcxt);
	if (app != NULL)
	{
		JsonbRootValue(WithTag(spec, tag), &root);
		CheckAction(&root, psprintf("/actions/%s", tag), constants, variables, false, &problems);
	}
	else
	{
		JsonbRootValue(spec, &root);
		CheckAction(&root, "", NULL, NULL, true, &problems);
	}
	if (problems != NIL)
		ActionInvalid(app, tag, problems);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(checkcxt);

	/* what the checks let through: the request builder's reading of it */
	JsonbRootValue(spec, &root);
	a = palloc0(sizeof(DtAction));
	a->tag = pstrdup(tag ? tag : "");
	a->method = MethodUpper(Field(&root, "method"));
	v = Field(&root, "resource");
	a->resource = pnstrdup(v->val.string.val, v->val.string.len);
	v = Field(&root, "request_type");
	a->request_type = v ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;
	a->headers = ContainerField(&root, "headers");
	a->query = ContainerField(&root, "query");
	a->body = ContainerField(&root, "body");
	a->input = ContainerField(&root, "input");
	a->retries = ContainerField(&root, "retries");
	v = Field(&root, "timeout_ms");
	a->timeout_ms = v ? DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric))) : -1;
	v = Field(&root, "success");
	if (v != NULL)
	{
		int			n = JsonContainerSize(v->val.binary.data);

		a->success = palloc(sizeof(int) * n);
		for (a->nsuccess = 0; a->nsuccess < n; a->nsuccess++)
		{
			JsonbValue *s = getIthJsonbValueFromContainer(v->val.binary.data, a->nsuccess);

			a->success[a->nsuccess] = DatumGetInt32(DirectFunctionCall1(numeric_int4,
																		NumericGetDatum(s->val.numeric)));
		}
	}
	a->path_params = ResourceParams(a->resource);
	return a;
}

/* ---- the checks as SQL functions ---- */

/*
 * _check_action(a jsonb, path text, constants jsonb, variables jsonb) ->
 * text[] of problems.  Not strict: the importers pass no constants or
 * variables (NULL: none); a NULL path is "", a NULL action not an object.
 */
PG_FUNCTION_INFO_V1(dt_check_action);
Datum
dt_check_action(PG_FUNCTION_ARGS)
{
	JsonbValue	root;
	List	   *problems = NIL;

	if (!PG_ARGISNULL(0))
		JsonbRootValue(PG_GETARG_JSONB_P(0), &root);
	CheckAction(PG_ARGISNULL(0) ? NULL : &root,
				PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1)),
				PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2),
				PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3),
				false, &problems);
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/*
 * _check_retries(p jsonb, path text) -> text[] of problems of a retry
 * policy (app_define and workflow_define ask it too).  NULL p: none.
 */
PG_FUNCTION_INFO_V1(dt_check_retries);
Datum
dt_check_retries(PG_FUNCTION_ARGS)
{
	JsonbValue	root;
	List	   *problems = NIL;

	if (!PG_ARGISNULL(0))
	{
		JsonbRootValue(PG_GETARG_JSONB_P(0), &root);
		CheckRetries(&root, PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1)), &problems);
	}
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/*
 * _check_limits(l jsonb, path text) -> text[] of problems of the "limits"
 * of an app or env (app_define asks it).  NULL l: none.
 */
PG_FUNCTION_INFO_V1(dt_check_limits);
Datum
dt_check_limits(PG_FUNCTION_ARGS)
{
	JsonbValue	root;
	List	   *problems = NIL;

	if (!PG_ARGISNULL(0))
	{
		JsonbRootValue(PG_GETARG_JSONB_P(0), &root);
		CheckLimits(&root, PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1)), &problems, NULL);
	}
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/*
 * The generic rules as the SQL helpers of the plpgsql checkers (app_define,
 * webhooks, workflows, the importers), by the code the action rules use.
 * Each returns a text[] of problems.  Not strict, with the NULL handling of
 * the SQL functions they replace: a NULL value is absent (no problem, but
 * for a required tag), a NULL path is described above CheckKeys.
 */

/* The value argument i, or NULL when it is SQL NULL. */
static JsonbValue *
ValueArg(FunctionCallInfo fcinfo, int i, JsonbValue *v)
{
	if (PG_ARGISNULL(i))
		return NULL;
	JsonbRootValue(PG_GETARG_JSONB_P(i), v);
	return v;
}

/* The path argument i, or NULL when it is SQL NULL. */
static char *
PathArg(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
}

/*
 * The text[] argument i as C strings (*n of them, NULL elements as NULL);
 * false when it is SQL NULL.
 */
static bool
TextArrayArg(FunctionCallInfo fcinfo, int i, char ***strings, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			k;

	if (PG_ARGISNULL(i))
		return false;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(i), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	*strings = palloc(sizeof(char *) * (*n + 1));
	for (k = 0; k < *n; k++)
		(*strings)[k] = nulls[k] ? NULL : TextDatumGetCString(elems[k]);
	return true;
}

/* _check_tag(val jsonb, path text, required boolean DEFAULT true) */
PG_FUNCTION_INFO_V1(dt_check_tag);
Datum
dt_check_tag(PG_FUNCTION_ARGS)
{
	JsonbValue	v;
	List	   *problems = NIL;

	/* a NULL required is not true */
	CheckTag(ValueArg(fcinfo, 0, &v), PathArg(fcinfo, 1),
			 !PG_ARGISNULL(2) && PG_GETARG_BOOL(2), &problems);
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/*
 * _check_type(val jsonb, path text, types text[]): val of one of types;
 * NULL types match nothing.
 */
PG_FUNCTION_INFO_V1(dt_check_type);
Datum
dt_check_type(PG_FUNCTION_ARGS)
{
	JsonbValue	v;
	List	   *problems = NIL;
	char	  **types = NULL;
	int			ntypes = 0;

	(void) TextArrayArg(fcinfo, 2, &types, &ntypes);
	CheckTypes(ValueArg(fcinfo, 0, &v), PathArg(fcinfo, 1),
			   (const char *const *) types, ntypes, &problems);
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/*
 * _check_keys(obj jsonb, path text, allowed text[]): the keys of obj not
 * allowed.  When allowed is NULL or has a NULL element, no key is unknown
 * (the SQL version's k <> ALL (allowed) was never true then).
 */
PG_FUNCTION_INFO_V1(dt_check_keys);
Datum
dt_check_keys(PG_FUNCTION_ARGS)
{
	JsonbValue	v;
	List	   *problems = NIL;
	char	  **allowed;
	int			nallowed;
	int			i;

	if (!TextArrayArg(fcinfo, 2, &allowed, &nallowed))
		PG_RETURN_DATUM(CStringListToTextArray(NIL));
	for (i = 0; i < nallowed; i++)
		if (allowed[i] == NULL)
			PG_RETURN_DATUM(CStringListToTextArray(NIL));
	CheckKeys(ValueArg(fcinfo, 0, &v), PathArg(fcinfo, 1),
			  (const char *const *) allowed, nallowed, &problems);
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/*
 * _check_int(val jsonb, path text, lo bigint, hi bigint): an integer
 * within [lo, hi]; a NULL bound bounds nothing.
 */
PG_FUNCTION_INFO_V1(dt_check_int);
Datum
dt_check_int(PG_FUNCTION_ARGS)
{
	JsonbValue	v;
	List	   *problems = NIL;
	int64		lo = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	int64		hi = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3);

	CheckIntBetween(ValueArg(fcinfo, 0, &v), PathArg(fcinfo, 1),
					PG_ARGISNULL(2) ? NULL : &lo, PG_ARGISNULL(3) ? NULL : &hi,
					&problems);
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/* _check_request_type(val jsonb, path text) */
PG_FUNCTION_INFO_V1(dt_check_request_type);
Datum
dt_check_request_type(PG_FUNCTION_ARGS)
{
	JsonbValue	v;
	List	   *problems = NIL;

	CheckRequestType(ValueArg(fcinfo, 0, &v), PathArg(fcinfo, 1), &problems);
	PG_RETURN_DATUM(CStringListToTextArray(problems));
}

/* ---- loading an app ---- */

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
	app->limits.max_wait_ms = -1;
	StoredLimits(spec, tag, "", &app->limits);
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
			env->limits = app->limits;
			StoredLimits(e, tag, at, &env->limits);
			LimitsFinish(&env->limits);
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
		StoredAction *sa = palloc0(sizeof(StoredAction));

		sa->tag = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		sa->spec = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 2, &isnull));
		app->actions = lappend(app->actions, sa);
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

/*
 * The action tag of app, checked and parsed on first use: an action that is
 * never called costs no check, and one stored invalid fails alone, not its
 * app.  Raises 42704 when there is none, 22023 when it is invalid.
 */
DtAction *
CatalogGetAction(DtApp *app, const char *tag)
{
	ListCell   *lc;

	foreach(lc, app->actions)
	{
		StoredAction *sa = lfirst(lc);
		MemoryContext cxt;
		MemoryContext oldcxt;

		if (strcmp(sa->tag, tag) != 0)
			continue;
		if (sa->action != NULL)
			return sa->action;

		/*
		 * Parsed in a context of its own under the caller's, so that an
		 * error leaves nothing behind; kept with the cache once it is whole.
		 */
		cxt = AllocSetContextCreate(CurrentMemoryContext, "ductape action",
									ALLOCSET_SMALL_SIZES);
		oldcxt = MemoryContextSwitchTo(cxt);
		sa->action = CatalogParseAction(app->tag, sa->tag, sa->spec, app->constants,
										app->declared_variables);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextSetParent(cxt, CatalogContext);
		return sa->action;
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

