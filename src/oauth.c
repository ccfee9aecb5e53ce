/*-------------------------------------------------------------------------
 *
 * oauth.c
 *	  OAuth2 tokens (docs/reference.md): the encrypted token cache, refresh by
 *	  the database's worker, single-flight across backends.
 *
 * Tokens live in ductape._oauth_tokens per (product, app, env), encrypted
 * like secrets (secrets.c) with associated data naming the row and the
 * token kind.  A backend that finds no usable token does not call the
 * token endpoint itself: it posts a request in a shared-memory slot (the
 * token slots below, under their own LWLock) and waits on its latch.  The
 * database's worker serves requests one at a time:
 *
 *	1. in a short transaction, it reads the app's auth spec and the token
 *	   row, and resolves client_secret / refresh_token templates;
 *	2. with no transaction open, it calls the token endpoint (http.c, so the
 *	   egress policy, retries and call records apply);
 *	3. in a second transaction, it stores the new tokens, encrypted, and
 *	   commits before answering.
 *
 * Because the worker re-reads the row before calling out, two backends
 * that need a refresh at the same moment cause exactly one token request,
 * and a rotated refresh token is never lost to a caller's rollback: the
 * worker's transaction is its own.
 *
 * A request with force (after a 401) refreshes only if nobody refreshed
 * since the token the caller used (its updated_at).
 *
 * The token slots are oauth.c's own shared memory (the segment "ductape
 * oauth tokens", shmem.c); other files reach them only through the
 * functions here: the worker serves them (OAuthServeRequests) and puts
 * back what a dead worker left (OAuthRecoverRequests), the launcher asks
 * which databases wait for a worker (OAuthPendingDatabases).  The locking
 * protocol is in shmem.c.
 *
 * Layer 5 (features): calls the layers below (secrets, catalog, request,
 * http, runtime; registry.c to wake the worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "counters.h"
#include "registry.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(dt_oauth_set_tokens);

/*
 * A backend's request for an OAuth2 token, served by its database's worker.
 * The worker writes the new token, encrypted, into blob.
 */
#define DT_TOKEN_SLOTS 32
#define DT_TOKEN_BLOB 8192

typedef enum
{
	TOKEN_FREE = 0,
	TOKEN_PENDING,				/* waiting for the worker */
	TOKEN_WORKING,				/* the worker has it */
	TOKEN_DONE					/* result below; the requester frees it */
} DtTokenState;

typedef struct DtTokenSlot
{
	DtTokenState state;
	bool		abandoned;		/* the requester gave up (error, cancel) */
	Oid			dbid;
	pid_t		requester;		/* 0: nobody waits (the worker's own) */
	Latch	   *latch;
	char		product[64];
	char		app[64];
	char		env[64];
	TimestampTz seen_updated_at;	/* force a refresh unless newer than this */
	bool		force;
	/* result */
	bool		ok;
	char		error[1024];
	char		detail[1024];
	int			key_version;
	TimestampTz updated_at;
	int			blob_len;
	char		blob[DT_TOKEN_BLOB];	/* encrypted access token */
} DtTokenSlot;

typedef struct TokenSlots
{
	LWLock	   *lock;
	DtTokenSlot slots[DT_TOKEN_SLOTS];
} TokenSlots;

static TokenSlots *Tokens = NULL;

static Size
TokenSlotsShmemSize(void)
{
	return sizeof(TokenSlots);
}

static void
TokenSlotsShmemInit(void *mem, LWLockPadded *locks)
{
	((TokenSlots *) mem)->lock = &locks[0].lock;
}

static const DtShmemSegment TokenSlotsSegment = {
	.name = "ductape oauth tokens",
	.nlocks = 1,
	.size = TokenSlotsShmemSize,
	.init = TokenSlotsShmemInit,
	.mem = (void **) &Tokens,
};

void
OAuthShmemRegister(void)
{
	DtShmemRegister(&TokenSlotsSegment);
}

/*
 * What came of the token requests the worker served lately, per (product,
 * app, env), in the worker's own memory.  A job that needs a token the
 * worker has not got posts a request and goes back to the queue
 * (DT_TOKEN_PENDING, the attempt not counted); claimed again, it learns
 * here what came of it: a refusal fails the job with the token endpoint's
 * answer, and a token just fetched is used even when it expires within the
 * refresh buffer (as a session waiting for its request uses it).  Without
 * this a job whose token request kept failing, or whose provider gave
 * tokens shorter-lived than the buffer, went back to the queue every 50 ms
 * for good, with a new token request each time.
 */
#define DT_TOKEN_OUTCOMES 16
#define DT_TOKEN_OUTCOME_MS 2000

typedef struct TokenOutcome
{
	TimestampTz at;				/* when served; 0: unused */
	char		product[64];
	char		app[64];
	char		env[64];
	bool		ok;
	char		error[1024];
	char		detail[1024];
} TokenOutcome;

static TokenOutcome Outcomes[DT_TOKEN_OUTCOMES];

static bool
OutcomeIs(TokenOutcome *o, const char *product, const char *app, const char *env)
{
	return o->at != 0 && strcmp(o->product, product) == 0 && strcmp(o->app, app) == 0 &&
		strcmp(o->env, env) == 0;
}

/* The worker served req with result res: remember it for its jobs. */
static void
RememberOutcome(DtTokenSlot *req, DtTokenSlot *res)
{
	TokenOutcome *o = &Outcomes[0];
	int			i;

	for (i = 0; i < DT_TOKEN_OUTCOMES; i++)
	{
		if (OutcomeIs(&Outcomes[i], req->product, req->app, req->env))
		{
			o = &Outcomes[i];
			break;
		}
		if (Outcomes[i].at < o->at)
			o = &Outcomes[i];	/* else the oldest */
	}
	o->at = GetCurrentTimestamp();
	strlcpy(o->product, req->product, sizeof(o->product));
	strlcpy(o->app, req->app, sizeof(o->app));
	strlcpy(o->env, req->env, sizeof(o->env));
	o->ok = res->ok;
	strlcpy(o->error, res->error, sizeof(o->error));
	strlcpy(o->detail, res->detail, sizeof(o->detail));
}

/* A request for this (product, app, env) served in the last moments, or NULL. */
static TokenOutcome *
RecentOutcome(const char *product, const char *app, const char *env)
{
	char		p[64],
				a[64],
				e[64];
	int			i;

	/* (cut to size as the slots cut them) */
	strlcpy(p, product, sizeof(p));
	strlcpy(a, app, sizeof(a));
	strlcpy(e, env, sizeof(e));
	for (i = 0; i < DT_TOKEN_OUTCOMES; i++)
		if (OutcomeIs(&Outcomes[i], p, a, e) &&
			!TimestampDifferenceExceeds(Outcomes[i].at, GetCurrentTimestamp(), DT_TOKEN_OUTCOME_MS))
			return &Outcomes[i];
	return NULL;
}

typedef struct TokenRow
{
	bool		found;
	bytea	   *access;
	bytea	   *refresh;		/* may be NULL */
	int			version;
	bool		has_expiry;
	TimestampTz expires_at;
	TimestampTz updated_at;
} TokenRow;

static char *
TokenAad(const char *product, const char *app, const char *env, const char *kind)
{
	return psprintf("ductape:oauth:%s/%s/%s:%s", product, app, env, kind);
}

/* Read the token row (as the catalog's owner). */
static void
FetchToken(const char *product, const char *app, const char *env, TokenRow *row)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3] = {CStringGetTextDatum(product), CStringGetTextDatum(app),
	CStringGetTextDatum(env)};
	DtElevated	elevated;
	bool		isnull;

	memset(row, 0, sizeof(*row));
	ElevateBegin(&elevated);
	SPI_connect();
	if (SPI_execute_with_args("SELECT access_token, refresh_token, key_version, expires_at, updated_at "
							  "FROM ductape._oauth_tokens WHERE product OPERATOR(pg_catalog.=) $1 "
							  "AND app OPERATOR(pg_catalog.=) $2 AND env OPERATOR(pg_catalog.=) $3",
							  3, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ductape._oauth_tokens");
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		d;

		row->found = true;
		row->access = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		row->refresh = isnull ? NULL : DatumGetByteaPCopy(d);
		row->version = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		row->has_expiry = !isnull;
		row->expires_at = isnull ? 0 : DatumGetTimestampTz(d);
		row->updated_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	}
	SPI_finish();
	ElevateEnd(&elevated);
}

/* Encrypt and store tokens; returns the row's new updated_at. */
static TimestampTz
StoreToken(const char *product, const char *app, const char *env,
		   const char *access, const char *refresh, bool keep_refresh,
		   bool has_expiry, TimestampTz expires_at, bytea **access_blob, int *version)
{
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, INT4OID,
	TIMESTAMPTZOID, BOOLOID};
	Datum		args[8];
	char		nulls[8] = "        ";
	int			v2;
	TimestampTz now = GetCurrentTimestamp();
	bool		isnull;
	DtElevated	elevated;

	*access_blob = SecretEncrypt(access, strlen(access), TokenAad(product, app, env, "access"), version);
	args[0] = CStringGetTextDatum(product);
	args[1] = CStringGetTextDatum(app);
	args[2] = CStringGetTextDatum(env);
	args[3] = PointerGetDatum(*access_blob);
	if (refresh)
		args[4] = PointerGetDatum(SecretEncrypt(refresh, strlen(refresh),
												TokenAad(product, app, env, "refresh"), &v2));
	else
		nulls[4] = 'n';
	args[5] = Int32GetDatum(*version);
	args[6] = TimestampTzGetDatum(expires_at);
	if (!has_expiry)
		nulls[6] = 'n';
	args[7] = BoolGetDatum(keep_refresh && refresh == NULL);

	ElevateBegin(&elevated);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO ductape._oauth_tokens AS t "
							  "(product, app, env, access_token, refresh_token, key_version, expires_at, updated_at) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.clock_timestamp()) "
							  "ON CONFLICT ON CONSTRAINT _oauth_tokens_pkey DO UPDATE SET "
							  "access_token = EXCLUDED.access_token, "
							  "refresh_token = CASE WHEN $8 THEN t.refresh_token ELSE EXCLUDED.refresh_token END, "
							  "key_version = EXCLUDED.key_version, expires_at = EXCLUDED.expires_at, "
							  "updated_at = EXCLUDED.updated_at "
							  "RETURNING updated_at",
							  8, argtypes, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store OAuth2 tokens");
	now = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	ElevateEnd(&elevated);
	return now;
}

/* ---- backend side ---- */

static int
RefreshBufferSeconds(DtApp *app)
{
	return JsonbGetInt(app->auth, "refresh_buffer_s", 60);
}

static bool
TokenUsable(TokenRow *row, int buffer_s)
{
	return row->found &&
		(!row->has_expiry ||
		 row->expires_at - (TimestampTz) buffer_s * USECS_PER_SEC > GetCurrentTimestamp());
}

/*
 * Give up a request this backend waits for: the slot is freed now, or by
 * the worker once it has served it.  The slots' lock is held exclusive.
 */
static void
AbandonLocked(DtTokenSlot *slot)
{
	if (slot->requester == MyProcPid && slot->state != TOKEN_FREE)
	{
		if (slot->state == TOKEN_WORKING)
			slot->abandoned = true;
		else
			slot->state = TOKEN_FREE;
	}
}

static void
AbandonTokenRequest(DtTokenSlot *slot)
{
	LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);
	AbandonLocked(slot);
	LWLockRelease(Tokens->lock);
}

/*
 * At exit (a FATAL error, pg_terminate_backend while waiting): give up the
 * requests this process was waiting for, or their slots would stay taken
 * for good.  This runs before the exit's transaction abort, so any LWLock
 * still held is released before the slots' lock is taken.
 */
static void
AbandonTokenRequestsAtExit(int code, Datum arg)
{
	int			i;

	LWLockReleaseAll();
	LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_TOKEN_SLOTS; i++)
		AbandonLocked(&Tokens->slots[i]);
	LWLockRelease(Tokens->lock);
}

/*
 * Claim a free request slot and fill it in; NULL when all are taken.
 * With wait, this backend waits on its latch for the answer; without, the
 * worker frees the slot once it has served it.
 */
static DtTokenSlot *
PostTokenRequest(DtApp *app, DtBinding *b, bool force, TimestampTz seen, bool wait)
{
	static bool exit_callback = false;
	DtTokenSlot *slot = NULL;
	char		product[sizeof(slot->product)];
	char		tag[sizeof(slot->app)];
	char		env[sizeof(slot->env)];
	int			i;

	if (wait && !exit_callback)
	{
		before_shmem_exit(AbandonTokenRequestsAtExit, (Datum) 0);
		exit_callback = true;
	}
	strlcpy(product, b->product, sizeof(product));
	strlcpy(tag, app->tag, sizeof(tag));
	strlcpy(env, b->env, sizeof(env));
	LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);

	/*
	 * The worker's own request (for its jobs) is posted once: the slots are
	 * shared by every database, and a batch of queued jobs asking one each
	 * took them all, so that every session needing a token was refused
	 * while the worker served the copies one after the other.
	 */
	for (i = 0; i < DT_TOKEN_SLOTS && !wait; i++)
	{
		DtTokenSlot *t = &Tokens->slots[i];

		if (t->dbid == MyDatabaseId &&
			(t->state == TOKEN_PENDING || t->state == TOKEN_WORKING) &&
			strcmp(t->product, product) == 0 && strcmp(t->app, tag) == 0 &&
			strcmp(t->env, env) == 0)
		{
			LWLockRelease(Tokens->lock);
			return NULL;
		}
	}
	for (i = 0; i < DT_TOKEN_SLOTS && slot == NULL; i++)
		if (Tokens->slots[i].state == TOKEN_FREE)
			slot = &Tokens->slots[i];
	if (slot)
	{
		memset(slot, 0, offsetof(DtTokenSlot, blob));
		slot->state = TOKEN_PENDING;
		slot->abandoned = !wait;
		slot->dbid = MyDatabaseId;
		if (wait)
		{
			slot->requester = MyProcPid;
			slot->latch = MyLatch;
		}
		memcpy(slot->product, product, sizeof(slot->product));
		memcpy(slot->app, tag, sizeof(slot->app));
		memcpy(slot->env, env, sizeof(slot->env));
		slot->force = force;
		slot->seen_updated_at = seen;
	}
	LWLockRelease(Tokens->lock);
	return slot;
}

/*
 * The access token for app under binding b.  force: the caller got a 401
 * with the token stored at seen; refresh unless someone already has.
 * *updated_at receives the version of the token returned.
 */
char *
OAuthAccessToken(DtApp *app, DtBinding *b, bool force, TimestampTz seen,
				 TimestampTz *updated_at)
{
	MemoryContext cxt = CurrentMemoryContext;
	TokenRow	row;
	DtTokenSlot *slot = NULL;
	DtTokenSlot result;
	ErrorData  *volatile edata = NULL;
	int64		waited_ms = 0;
	int64		limit_ms = (int64) ductape_default_timeout_ms * 4 + 10000;

	FetchToken(b->product, app->tag, b->env, &row);
	if (!force && TokenUsable(&row, RefreshBufferSeconds(app)))
	{
		*updated_at = row.updated_at;
		return SecretDecrypt(row.access, row.version,
							 TokenAad(b->product, app->tag, b->env, "access"),
							 psprintf("the OAuth2 access token of app \"%s\"", app->tag));
	}

	/*
	 * The worker itself (building a job's request) cannot wait for itself:
	 * it posts the request, which it serves on its next loop, and the job
	 * goes back to the queue meanwhile (jobs.c).
	 */
	if (IsBackgroundWorker && RegistryWorkerPid(MyDatabaseId) == MyProcPid)
	{
		TokenOutcome *o = force ? NULL : RecentOutcome(b->product, app->tag, b->env);

		/* what came of the request posted for this job (see Outcomes) */
		if (o != NULL && !o->ok)
			ereport(ERROR,
					(errcode(ERRCODE_DT_SECRET),
					 errmsg("%s", o->error),
					 o->detail[0] ? errdetail("%s", o->detail) : 0,
					 errhint("Check the app's oauth2 auth spec (token_url, client_id, client_secret) or set tokens with ductape.oauth_set_tokens.")));
		if (o != NULL && row.found)
		{
			*updated_at = row.updated_at;
			return SecretDecrypt(row.access, row.version,
								 TokenAad(b->product, app->tag, b->env, "access"),
								 psprintf("the OAuth2 access token of app \"%s\"", app->tag));
		}
		(void) PostTokenRequest(app, b, force, seen, false);
		ereport(ERROR,
				(errcode(ERRCODE_DT_TOKEN_PENDING),
				 errmsg(DT_TOKEN_PENDING_MSG)));
	}

	/* ask the worker */
	slot = PostTokenRequest(app, b, force, seen, true);
	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many OAuth2 token requests in flight"),
				 errdetail("All %d token request slots are in use.", DT_TOKEN_SLOTS)));
	RegistryWakeWorker(MyDatabaseId);

	PG_TRY();
	{
		for (;;)
		{
			DtTokenState st;

			LWLockAcquire(Tokens->lock, LW_SHARED);
			st = slot->state;
			LWLockRelease(Tokens->lock);
			if (st == TOKEN_DONE)
				break;
			if (waited_ms > limit_ms)
				ereport(ERROR,
						(errcode(ERRCODE_DT_SECRET),
						 errmsg("OAuth2 token for app \"%s\" was not refreshed in time", app->tag),
						 errdetail("No answer from the ductape worker after %d s.", (int) (waited_ms / 1000))));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100L, DT_WAIT_EVENT);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			waited_ms += 100;
			if (waited_ms % 1000 == 0)
				RegistryWakeWorker(MyDatabaseId);
		}
	}
	PG_CATCH();
	{
		/* the error out first; the slot is given up below */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
	}
	PG_END_TRY();
	if (edata != NULL)
	{
		AbandonTokenRequest(slot);
		ReThrowError(edata);
	}

	LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);
	memcpy(&result, slot, sizeof(DtTokenSlot));
	slot->state = TOKEN_FREE;
	LWLockRelease(Tokens->lock);

	if (!result.ok)
		ereport(ERROR,
				(errcode(ERRCODE_DT_SECRET),
				 errmsg("%s", result.error),
				 result.detail[0] ? errdetail("%s", result.detail) : 0,
				 errhint("Check the app's oauth2 auth spec (token_url, client_id, client_secret) or set tokens with ductape.oauth_set_tokens.")));
	{
		bytea	   *blob = palloc(VARHDRSZ + result.blob_len);
		char	   *token;

		SET_VARSIZE(blob, VARHDRSZ + result.blob_len);
		memcpy(VARDATA(blob), result.blob, result.blob_len);
		token = SecretDecrypt(blob, result.key_version,
							  TokenAad(b->product, app->tag, b->env, "access"),
							  psprintf("the OAuth2 access token of app \"%s\"", app->tag));
		*updated_at = result.updated_at;
		explicit_bzero(&result, sizeof(result));
		return token;
	}
}

/* A token given to oauth_set_tokens: not empty, no line break. */
static void
CheckGivenToken(const char *token, const char *what)
{
	if (token[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be empty", what)));
	if (strpbrk(token, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot contain CR or LF", what),
				 errdetail("Tokens are sent in HTTP headers and form bodies, where a line break would inject other fields.")));
}

/*
 * oauth_set_tokens(app, access_token, refresh_token, expires_in, env,
 * product): the arguments are checked, then the tokens are encrypted and
 * stored.
 */
static Datum
OAuthSetTokens(PG_FUNCTION_ARGS)
{
	char	   *app_tag;
	char	   *access;
	char	   *refresh;
	const char *env;
	const char *product;
	DtApp	   *app;
	DtBinding  *b;
	bytea	   *blob;
	int			version;
	char	   *type;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("app and access_token cannot be NULL")));
	app_tag = text_to_cstring(PG_GETARG_TEXT_PP(0));
	access = text_to_cstring(PG_GETARG_TEXT_PP(1));
	refresh = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	env = PG_ARGISNULL(4) ? ductape_env : text_to_cstring(PG_GETARG_TEXT_PP(4));
	product = PG_ARGISNULL(5) ? ductape_product : text_to_cstring(PG_GETARG_TEXT_PP(5));
	CheckGivenToken(access, "access_token");
	if (refresh)
		CheckGivenToken(refresh, "refresh_token");
	if (!PG_ARGISNULL(3) && PG_GETARG_INT32(3) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("expires_in cannot be negative")));

	CatalogBeginCall();
	app = CatalogGetApp(app_tag);
	type = JsonbGetString(app->auth, "type");
	if (type == NULL || strcmp(type, "oauth2") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("app \"%s\" does not use oauth2 auth", app_tag),
				 errhint("Give the app an \"auth\": {\"type\": \"oauth2\", ...} spec first.")));
	b = CatalogGetBinding(app, product, env);
	StoreToken(b->product, app->tag, b->env, access, refresh, false,
			   !PG_ARGISNULL(3),
			   PG_ARGISNULL(3) ? 0 : GetCurrentTimestamp() + (TimestampTz) PG_GETARG_INT32(3) * USECS_PER_SEC,
			   &blob, &version);
	explicit_bzero(access, strlen(access));
	if (refresh)
		explicit_bzero(refresh, strlen(refresh));
	PG_RETURN_VOID();
}

Datum
dt_oauth_set_tokens(PG_FUNCTION_ARGS)
{
	return RunHidingStatement(OAuthSetTokens, fcinfo);
}

/* Re-encrypt every stored token under the current key (rotate_master_key). */
int
OAuthReencryptAll(void)
{
	uint64		r,
				n;
	SPITupleTable *tt;
	int			count = 0;

	if (SPI_execute("SELECT product, app, env, access_token, refresh_token, key_version "
					"FROM ductape._oauth_tokens FOR UPDATE", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read OAuth2 tokens");
	tt = SPI_tuptable;
	n = SPI_processed;
	for (r = 0; r < n; r++)
	{
		bool		isnull;
		char	   *product = SPI_getvalue(tt->vals[r], tt->tupdesc, 1);
		char	   *app = SPI_getvalue(tt->vals[r], tt->tupdesc, 2);
		char	   *env = SPI_getvalue(tt->vals[r], tt->tupdesc, 3);
		int			v = DatumGetInt32(SPI_getbinval(tt->vals[r], tt->tupdesc, 6, &isnull));
		Datum		d;
		char	   *plain;
		bytea	   *access;
		bytea	   *refresh = NULL;
		int			newv;
		Oid			argtypes[6] = {TEXTOID, TEXTOID, TEXTOID, BYTEAOID, BYTEAOID, INT4OID};
		Datum		args[6];
		char		nulls[6] = "      ";

		plain = SecretDecrypt(DatumGetByteaPP(SPI_getbinval(tt->vals[r], tt->tupdesc, 4, &isnull)), v,
							  TokenAad(product, app, env, "access"), "an OAuth2 access token");
		access = SecretEncrypt(plain, strlen(plain), TokenAad(product, app, env, "access"), &newv);
		explicit_bzero(plain, strlen(plain));
		d = SPI_getbinval(tt->vals[r], tt->tupdesc, 5, &isnull);
		if (!isnull)
		{
			plain = SecretDecrypt(DatumGetByteaPP(d), v, TokenAad(product, app, env, "refresh"),
								  "an OAuth2 refresh token");
			refresh = SecretEncrypt(plain, strlen(plain), TokenAad(product, app, env, "refresh"), &newv);
			explicit_bzero(plain, strlen(plain));
		}
		args[0] = CStringGetTextDatum(product);
		args[1] = CStringGetTextDatum(app);
		args[2] = CStringGetTextDatum(env);
		args[3] = PointerGetDatum(access);
		args[4] = PointerGetDatum(refresh);
		if (refresh == NULL)
			nulls[4] = 'n';
		args[5] = Int32GetDatum(newv);
		if (SPI_execute_with_args("UPDATE ductape._oauth_tokens SET access_token = $4, refresh_token = $5, "
								  "key_version = $6 WHERE product OPERATOR(pg_catalog.=) $1 "
								  "AND app OPERATOR(pg_catalog.=) $2 AND env OPERATOR(pg_catalog.=) $3",
								  6, argtypes, args, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not re-encrypt an OAuth2 token");
		count++;
	}
	return count;
}

/* ---- worker side ---- */

/* What the worker needs, outside any transaction, to call the token endpoint. */
typedef struct TokenCall
{
	DtRequest	req;
	bool		use_existing;	/* the stored token is good: no call needed */
	bool		had_refresh;	/* a refresh token was stored */
} TokenCall;

static void
SlotError(DtTokenSlot *res, const char *msg, const char *detail)
{
	res->ok = false;
	strlcpy(res->error, msg, sizeof(res->error));
	strlcpy(res->detail, detail ? detail : "", sizeof(res->detail));
}

static void
SlotToken(DtTokenSlot *res, bytea *blob, int version, TimestampTz updated_at)
{
	int			len = VARSIZE_ANY_EXHDR(blob);

	if (len > DT_TOKEN_BLOB)
	{
		SlotError(res, "the OAuth2 access token is too long",
				  psprintf("It is %d bytes encrypted; at most %d fit.", len, DT_TOKEN_BLOB));
		return;
	}
	res->ok = true;
	res->blob_len = len;
	memcpy(res->blob, VARDATA_ANY(blob), len);
	res->key_version = version;
	res->updated_at = updated_at;
}

/* Phase 1, in a transaction: decide, and build the token request. */
static void
PrepareTokenCall(DtTokenSlot *req, TokenCall *tc, DtTokenSlot *res)
{
	DtApp	   *app;
	DtBinding  *b;
	TokenRow	row;
	char	   *grant;
	char	   *token_url;
	char	   *client_id;
	char	   *client_secret;
	char	   *scope;
	char	   *client_auth;
	char	   *refresh = NULL;
	StringInfoData form;
	char	   *type;

	CatalogBeginCall();
	app = CatalogGetApp(req->app);
	type = JsonbGetString(app->auth, "type");
	if (type == NULL || strcmp(type, "oauth2") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DT_SECRET),
				 errmsg("app \"%s\" does not use oauth2 auth", req->app)));
	b = CatalogGetBinding(app, req->product, req->env);
	FetchToken(b->product, app->tag, b->env, &row);

	/* single flight: someone may have refreshed while this request waited */
	if ((!req->force && TokenUsable(&row, RefreshBufferSeconds(app))) ||
		(req->force && row.found && row.updated_at > req->seen_updated_at))
	{
		SlotToken(res, row.access, row.version, row.updated_at);
		tc->use_existing = true;
		return;
	}

	memset(&tc->req, 0, sizeof(tc->req));
	grant = JsonbGetString(app->auth, "grant");
	if (grant == NULL)
		grant = "client_credentials";
	token_url = RequestResolveAuthField(app, b, "token_url", NULL);
	client_id = RequestResolveAuthField(app, b, "client_id", &tc->req.sensitive);
	client_secret = RequestResolveAuthField(app, b, "client_secret", &tc->req.sensitive);
	scope = RequestResolveAuthField(app, b, "scope", NULL);
	client_auth = JsonbGetString(app->auth, "client_auth");
	if (token_url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DT_SECRET),
				 errmsg("the oauth2 auth of app \"%s\" has no token_url", app->tag)));

	initStringInfo(&form);
	if (strcmp(grant, "refresh_token") == 0)
	{
		if (row.found && row.refresh)
		{
			refresh = SecretDecrypt(row.refresh, row.version,
									TokenAad(b->product, app->tag, b->env, "refresh"),
									psprintf("the OAuth2 refresh token of app \"%s\"", app->tag));
			tc->had_refresh = true;
		}
		else
			refresh = RequestResolveAuthField(app, b, "refresh_token", NULL);
		if (refresh == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DT_SECRET),
					 errmsg("no OAuth2 refresh token for app \"%s\"", app->tag),
					 errdetail("The auth spec has no refresh_token and none was stored for product \"%s\", env \"%s\".",
							   b->product, b->env)));
		tc->req.sensitive = lappend(tc->req.sensitive, refresh);
		RequestFormAppend(&form, "grant_type", "refresh_token");
		RequestFormAppend(&form, "refresh_token", refresh);
	}
	else
		RequestFormAppend(&form, "grant_type", "client_credentials");
	if (scope)
		RequestFormAppend(&form, "scope", scope);

	if (client_auth && strcmp(client_auth, "body") == 0)
	{
		if (client_id)
			RequestFormAppend(&form, "client_id", client_id);
		if (client_secret)
			RequestFormAppend(&form, "client_secret", client_secret);
	}
	else if (client_id)
	{
		/* client_secret_basic: each part form-encoded first (RFC 6749 2.3.1) */
		StringInfoData id;
		StringInfoData secret;
		char	   *plain;
		char	   *enc;
		int			len;

		initStringInfo(&id);
		initStringInfo(&secret);
		RequestPercentEncode(&id, client_id);
		RequestPercentEncode(&secret, client_secret ? client_secret : "");
		plain = psprintf("%s:%s", id.data, secret.data);
		len = pg_b64_enc_len(strlen(plain));
		enc = palloc(len + 1);
		len = pg_b64_encode(plain, strlen(plain), enc, len);
		enc[len] = '\0';
		tc->req.sensitive = lappend(tc->req.sensitive, enc);
		RequestAddHeader(&tc->req, "Authorization", psprintf("Basic %s", enc));
	}
	RequestAddHeader(&tc->req, "Content-Type", "application/x-www-form-urlencoded");
	RequestAddHeader(&tc->req, "Accept", "application/json");

	tc->req.method = "POST";
	tc->req.url = token_url;
	tc->req.body = form.data;
	tc->req.body_len = form.len;
	tc->req.timeout_ms = ductape_default_timeout_ms;
	RetryPolicyDefaults(&tc->req.policy, RETRY_SYNC_MAX);
	tc->req.app = pstrdup(app->tag);
	tc->req.action = "oauth2-token";
	tc->req.env = pstrdup(b->env);
	tc->req.product = pstrdup(b->product);
}

/*
 * The longest token lifetime kept, in seconds (about 68 years, as long as
 * oauth_set_tokens' integer expires_in can say).
 */
#define DT_TOKEN_MAX_LIFETIME_S ((int64) PG_INT32_MAX)

/*
 * A token response's expires_in as seconds in [0, DT_TOKEN_MAX_LIFETIME_S]:
 * a provider's number out of that range (1e30, -5) is clamped instead of
 * failing the token request (numeric_int8 raised 22003), fractions are
 * rounded, and a string of digits ("3600", as some providers send it) is
 * read as a number.  False when there is no usable expires_in (absent,
 * null, anything else): the token is then kept until an API refuses it.
 */
static bool
TokenLifetime(JsonbValue *v, int64 *seconds)
{
	if (v == NULL)
		return false;
	if (v->type == jbvNumeric)
	{
		Datum		n = NumericGetDatum(v->val.numeric);

		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, n,
											  NumericGetDatum(int64_to_numeric(0)))) <= 0)
			*seconds = 0;
		else if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, n,
												   NumericGetDatum(int64_to_numeric(DT_TOKEN_MAX_LIFETIME_S)))) >= 0)
			*seconds = DT_TOKEN_MAX_LIFETIME_S;
		else
			*seconds = DatumGetInt64(DirectFunctionCall1(numeric_int8, n));
		return true;
	}
	if (v->type == jbvString && v->val.string.len > 0)
	{
		int64		n = 0;
		int			i;

		for (i = 0; i < v->val.string.len; i++)
		{
			char		c = v->val.string.val[i];

			if (c < '0' || c > '9')
				return false;
			n = Min(n * 10 + (c - '0'), DT_TOKEN_MAX_LIFETIME_S);
		}
		*seconds = n;
		return true;
	}
	return false;
}

/* Phase 3, in a transaction: read the token response and store it. */
static void
FinishTokenCall(DtTokenSlot *req, TokenCall *tc, int status, Jsonb *body,
				DtTokenSlot *res)
{
	char	   *access = JsonbGetString(body, "access_token");
	char	   *refresh = JsonbGetString(body, "refresh_token");
	int64		lifetime = 0;
	bool		has_expiry = TokenLifetime(JsonbGetField(body, "expires_in"), &lifetime);
	bytea	   *blob;
	int			version;
	TimestampTz updated_at;

	if (status < 200 || status >= 300 || access == NULL)
	{
		/* the provider's words, which might quote what it was sent */
		char	   *code = Redact(JsonbGetString(body, "error"), tc->req.sensitive);
		char	   *desc = Redact(JsonbGetString(body, "error_description"), tc->req.sensitive);

		SlotError(res, psprintf("OAuth2 token request for app \"%s\" failed", req->app),
				  code ? psprintf("The token endpoint answered HTTP %d: %s%s%s.", status, code,
								  desc ? " - " : "", desc ? desc : "")
				  : psprintf("The token endpoint answered HTTP %d without an access_token.", status));
		return;
	}
	updated_at = StoreToken(req->product, req->app, req->env, access, refresh,
							true, has_expiry,
							GetCurrentTimestamp() + (TimestampTz) lifetime * USECS_PER_SEC,
							&blob, &version);
	explicit_bzero(access, strlen(access));
	if (refresh)
		explicit_bzero(refresh, strlen(refresh));
	SlotToken(res, blob, version, updated_at);
}

static void
CaptureError(DtTokenSlot *res, MemoryContext cxt)
{
	ErrorData  *ed;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	FlushErrorState();
	SlotError(res, ed->message, ed->detail);
	FreeErrorData(ed);
}

static void
ServeOne(DtTokenSlot *req, DtTokenSlot *res)
{
	MemoryContext cxt = CurrentMemoryContext;
	TokenCall	tc;
	CallResult *cr = NULL;

	memset(&tc, 0, sizeof(tc));

	/* 1. decide and prepare, in a transaction */
	PG_TRY();
	{
		WorkerBeginWork("ductape: OAuth2 token");
		MemoryContextSwitchTo(cxt);
		PrepareTokenCall(req, &tc, res);
		WorkerEndWork();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		CaptureError(res, cxt);
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		pgstat_report_activity(STATE_IDLE, NULL);
		return;
	}
	PG_END_TRY();
	if (tc.use_existing)
	{
		pgstat_report_activity(STATE_IDLE, NULL);
		return;
	}

	/* 2. call the token endpoint, with no transaction open */
	PG_TRY();
	{
		cr = ExecuteRequest(&tc.req);
	}
	PG_CATCH();
	{
		CaptureError(res, cxt);

		/*
		 * No transaction abort releases LWLocks here; the worker holds none
		 * of its own while it serves a request (OAuthServeRequests lets the
		 * slots' lock go first).
		 */
		LWLockReleaseAll();
		MemoryContextSwitchTo(cxt);
		pgstat_report_activity(STATE_IDLE, NULL);
		return;
	}
	PG_END_TRY();

	/* 3. store what came back, in a transaction */
	PG_TRY();
	{
		WorkerBeginWork("ductape: storing an OAuth2 token");
		MemoryContextSwitchTo(cxt);
		if (!CallResultIsResponse(cr))
			SlotError(res, psprintf("OAuth2 token request for app \"%s\" failed", req->app),
					  psprintf("%s.", CallResultError(cr)));
		else
			FinishTokenCall(req, &tc, CallResultStatus(cr), CallResultBody(cr), res);
		WorkerEndWork();
		MemoryContextSwitchTo(cxt);
	}
	PG_CATCH();
	{
		CaptureError(res, cxt);
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Serve every pending token request of dbid; returns how many. */
int
OAuthServeRequests(Oid dbid)
{
	int			served = 0;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "ductape token request",
											  ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		DtTokenSlot *slot = NULL;
		DtTokenSlot req;
		DtTokenSlot *res;
		Latch	   *latch = NULL;
		int			i;
		MemoryContext old;

		LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);
		for (i = 0; i < DT_TOKEN_SLOTS && slot == NULL; i++)
		{
			DtTokenSlot *t = &Tokens->slots[i];

			if (t->dbid == dbid && t->state == TOKEN_PENDING)
				slot = t;
		}
		if (slot)
		{
			slot->state = TOKEN_WORKING;
			memcpy(&req, slot, offsetof(DtTokenSlot, ok));
		}
		LWLockRelease(Tokens->lock);
		if (slot == NULL)
			break;

		old = MemoryContextSwitchTo(cxt);
		res = palloc0(sizeof(DtTokenSlot));
		ServeOne(&req, res);
		MemoryContextSwitchTo(old);
		RememberOutcome(&req, res);
		CountersAdd(res->ok ? DT_C_OAUTH_SUCCEEDED : DT_C_OAUTH_FAILED, 1);

		LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);
		slot->ok = res->ok;
		memcpy(slot->error, res->error, sizeof(slot->error));
		memcpy(slot->detail, res->detail, sizeof(slot->detail));
		slot->key_version = res->key_version;
		slot->updated_at = res->updated_at;
		slot->blob_len = res->blob_len;
		memcpy(slot->blob, res->blob, res->blob_len);
		if (slot->abandoned)
			slot->state = TOKEN_FREE;
		else
		{
			slot->state = TOKEN_DONE;
			latch = slot->latch;
		}
		LWLockRelease(Tokens->lock);
		explicit_bzero(res, sizeof(DtTokenSlot));
		MemoryContextReset(cxt);
		if (latch)
			SetLatch(latch);
		served++;
	}
	MemoryContextDelete(cxt);
	return served;
}

/*
 * At a worker's start: the requests of dbid a previous worker died serving
 * are served again (or freed, when nobody waits for them any more).
 */
void
OAuthRecoverRequests(Oid dbid)
{
	int			i;

	LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_TOKEN_SLOTS; i++)
	{
		DtTokenSlot *t = &Tokens->slots[i];

		if (t->dbid == dbid && t->state == TOKEN_WORKING)
			t->state = t->abandoned ? TOKEN_FREE : TOKEN_PENDING;
	}
	LWLockRelease(Tokens->lock);
}

/*
 * dbid will have no worker to serve its token requests (the database is
 * dropped, or cannot be connected to, or ductape is not installed there):
 * its slots are given back.  A request nobody waits for (a worker's own,
 * for its jobs) is freed; a session still waiting gets an error.  Without
 * this, the requests a worker was serving when DROP DATABASE stopped it
 * kept their slots for good -- the slots every database shares: 32 such
 * drops, and every session needing a token was refused until a restart
 * -- and a pending one had the launcher start a worker for that database
 * again and again.
 */
void
OAuthDiscardRequests(Oid dbid)
{
	List	   *latches = NIL;
	ListCell   *lc;
	int			i;

	LWLockAcquire(Tokens->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_TOKEN_SLOTS; i++)
	{
		DtTokenSlot *t = &Tokens->slots[i];

		if (t->dbid != dbid || (t->state != TOKEN_PENDING && t->state != TOKEN_WORKING))
			continue;
		if (t->abandoned || t->requester == 0)
		{
			t->state = TOKEN_FREE;
			continue;
		}
		t->ok = false;
		strlcpy(t->error, "the ductape worker of this database went away", sizeof(t->error));
		t->detail[0] = '\0';
		t->state = TOKEN_DONE;
		if (t->latch)
			latches = lappend(latches, t->latch);
	}
	LWLockRelease(Tokens->lock);
	foreach(lc, latches)
		SetLatch((Latch *) lfirst(lc));
	list_free(latches);
}

/*
 * Launcher side: the databases with token requests waiting for a worker
 * (at most max); returns how many.
 */
int
OAuthPendingDatabases(Oid *dbs, int max)
{
	int			n = 0;
	int			i;

	LWLockAcquire(Tokens->lock, LW_SHARED);
	for (i = 0; i < DT_TOKEN_SLOTS && n < max; i++)
	{
		DtTokenSlot *t = &Tokens->slots[i];
		int			k;

		if (t->state != TOKEN_PENDING)
			continue;
		for (k = 0; k < n && dbs[k] != t->dbid; k++)
			;
		if (k == n)
			dbs[n++] = t->dbid;
	}
	LWLockRelease(Tokens->lock);
	return n;
}

/* ---- the worker's task: token requests first, a caller is waiting for each ---- */

static bool
TokenRequestsReady(long *in_ms)
{
	bool		pending = false;

	/* a look without the lock: the requester sets the latch after its slot */
	pg_read_barrier();
	for (int i = 0; i < DT_TOKEN_SLOTS && !pending; i++)
		pending = Tokens->slots[i].dbid == MyDatabaseId &&
			Tokens->slots[i].state == TOKEN_PENDING;
	return pending;
}

static long
TokenRequestsRun(bool *did_work)
{
	(void) OAuthServeRequests(MyDatabaseId);
	return -1;
}

static const WorkerTask TokenRequestsTask = {
	.name = "token requests",
	.on_wake = false,
	.ready = TokenRequestsReady,
	.run = TokenRequestsRun,
};

void
OAuthInit(void)
{
	WorkerRegisterTask(&TokenRequestsTask);
}
