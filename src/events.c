/*-------------------------------------------------------------------------
 *
 * events.c
 *	  Outbound events (docs/reference.md): publish, endpoint secrets, and the
 *	  worker side that delivers messages to endpoints the Standard Webhooks
 *	  way.
 *
 * publish() stores the message and one ductape.outbox row per enabled
 * endpoint whose event_types match, in the caller's transaction, and wakes
 * the database's worker at commit (rolled back: nothing to send).  The
 * deliveries are a queue of the worker's queue engine (queue.c), sharing
 * ductape.max_concurrency and the libcurl driver with jobs:
 *	1. claims due outbox rows (state delivering), at most a quarter of
 *	   ductape.max_concurrency in flight per endpoint, so that a slow or dead
 *	   endpoint cannot take the slots healthy ones need; signs each with the
 *	   endpoint's secret (and the previous one for 24 hours after a
 *	   rotation), decrypted once per endpoint per claim;
 *	2. POSTs the payload with webhook-id (the message id, the same on every
 *	   attempt), webhook-timestamp (per attempt) and webhook-signature, with
 *	   a 15 s limit and no redirects followed: only a 2xx is success;
 *	3. writes each attempt to ductape.deliveries and the outbox row's new
 *	   state in one transaction per batch: succeeded; pending again after
 *	   the retry schedule below (±20% jitter, Retry-After honoured when it
 *	   asks for longer); failed after the last attempt.  410 Gone disables
 *	   the endpoint; so does failing continuously for five days.
 * Rows left delivering by a worker that died are pending again when the
 * next worker starts (EventsRecover): delivery is at-least-once, and
 * receivers de-duplicate by webhook-id.
 *
 * Layer 5 (features): calls the queue engine, the runtime and the layers
 * below.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/rand.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "counters.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(dt_endpoint_seal);
PG_FUNCTION_INFO_V1(dt_endpoint_secret);
PG_FUNCTION_INFO_V1(dt_endpoint_check_url);
PG_FUNCTION_INFO_V1(dt_wake_worker);
PG_FUNCTION_INFO_V1(dt_publish);

#define DELIVERY_TIMEOUT_MS 15000
#define RESPONSE_EXCERPT 1024
#define SECRET_BYTES 24			/* what we generate: whsec_ + 32 base64 chars */
#define SECRET_MIN_BYTES 16
#define SECRET_MAX_BYTES 64


/* ---- secrets of endpoints ---- */

static char *
EndpointAad(int64 id)
{
	return psprintf("ductape:endpoint:" INT64_FORMAT, id);
}

static char *
OpenSecret(bytea *value, int version, int64 id)
{
	return SecretDecrypt(value, version, EndpointAad(id),
						 psprintf("the secret of endpoint " INT64_FORMAT, id));
}

/* _endpoint_seal(id, secret): check or make a secret, and encrypt it. */
Datum
dt_endpoint_seal(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	char	   *secret;
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	bytea	   *sealed;
	int			version;
	int			keylen;

	if (PG_ARGISNULL(1))
	{
		unsigned char raw[SECRET_BYTES];
		char		b64[64];
		int			n;

		if (RAND_bytes(raw, sizeof(raw)) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_DT_SECRET),
					 errmsg("could not generate an endpoint secret")));
		n = pg_b64_encode((char *) raw, sizeof(raw), b64, sizeof(b64));
		explicit_bzero(raw, sizeof(raw));
		secret = psprintf("whsec_%.*s", n, b64);
	}
	else
	{
		secret = text_to_cstring(PG_GETARG_TEXT_PP(1));
		keylen = strncmp(secret, "whsec_", 6) == 0 ? SignatureStandardKeyLength(secret) : -1;
		if (keylen < SECRET_MIN_BYTES || keylen > SECRET_MAX_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid endpoint secret"),
					 errdetail("An endpoint secret is whsec_ followed by the base64 of %d to %d random bytes.",
							   SECRET_MIN_BYTES, SECRET_MAX_BYTES),
					 errhint("Pass NULL to have one generated.")));
	}
	sealed = SecretEncrypt(secret, strlen(secret), EndpointAad(id), &version);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_endpoint_seal must return a record");
	values[0] = CStringGetTextDatum(secret);
	values[1] = PointerGetDatum(sealed);
	values[2] = Int32GetDatum(version);
	explicit_bzero(secret, strlen(secret));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* endpoint_secret(id): the whsec_ secret, for the customer (administrators). */
Datum
dt_endpoint_secret(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1] = {Int64GetDatum(id)};
	char	   *secret = NULL;
	MemoryContext here = CurrentMemoryContext;

	SPI_connect();
	if (SPI_execute_with_args("SELECT secret, key_version FROM ductape.endpoints WHERE id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ductape.endpoints");
	if (SPI_processed == 1)
	{
		bool		isnull;
		bytea	   *value = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		int			version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		MemoryContext old = MemoryContextSwitchTo(here);

		secret = OpenSecret(value, version, id);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	if (secret == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("endpoint " INT64_FORMAT " does not exist", id)));
	PG_RETURN_TEXT_P(cstring_to_text(secret));
}

/* Re-encrypt every endpoint secret with the current master key. */
int
EventsReencryptAll(void)
{
	int			count = 0;
	SPITupleTable *tt;
	uint64		n,
				r;

	if (SPI_execute("SELECT id, secret, key_version, previous_secret, previous_key_version "
					"FROM ductape.endpoints FOR UPDATE", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read endpoint secrets");
	tt = SPI_tuptable;
	n = SPI_processed;
	for (r = 0; r < n; r++)
	{
		bool		isnull,
					prev_null;
		int64		id = DatumGetInt64(SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull));
		char	   *plain = OpenSecret(DatumGetByteaPP(SPI_getbinval(tt->vals[r], tt->tupdesc, 2, &isnull)),
									   DatumGetInt32(SPI_getbinval(tt->vals[r], tt->tupdesc, 3, &isnull)), id);
		Datum		prev = SPI_getbinval(tt->vals[r], tt->tupdesc, 4, &prev_null);
		Oid			argtypes[5] = {INT8OID, BYTEAOID, INT4OID, BYTEAOID, INT4OID};
		Datum		args[5];
		char		nulls[5] = "     ";
		int			v;

		args[0] = Int64GetDatum(id);
		args[1] = PointerGetDatum(SecretEncrypt(plain, strlen(plain), EndpointAad(id), &v));
		args[2] = Int32GetDatum(v);
		explicit_bzero(plain, strlen(plain));
		if (prev_null)
		{
			nulls[3] = nulls[4] = 'n';
			args[3] = args[4] = (Datum) 0;
		}
		else
		{
			plain = OpenSecret(DatumGetByteaPP(prev),
							   DatumGetInt32(SPI_getbinval(tt->vals[r], tt->tupdesc, 5, &isnull)), id);
			args[3] = PointerGetDatum(SecretEncrypt(plain, strlen(plain), EndpointAad(id), &v));
			args[4] = Int32GetDatum(v);
			explicit_bzero(plain, strlen(plain));
		}
		if (SPI_execute_with_args("UPDATE ductape.endpoints SET secret = $2, key_version = $3, "
								  "previous_secret = $4, previous_key_version = $5 WHERE id OPERATOR(pg_catalog.=) $1",
								  5, argtypes, args, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not re-encrypt the secret of endpoint " INT64_FORMAT, id);
		count++;
	}
	return count;
}

Datum
dt_endpoint_check_url(PG_FUNCTION_ARGS)
{
	HttpCheckUrl(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

Datum
dt_wake_worker(PG_FUNCTION_ARGS)
{
	RegistryWakeAtCommit();
	PG_RETURN_VOID();
}

/* ---- publish ---- */

static SPIPlanPtr InsertMessagePlan = NULL;
static SPIPlanPtr InsertKeyedMessagePlan = NULL;
static SPIPlanPtr ExistingMessagePlan = NULL;
static SPIPlanPtr FanOutPlan = NULL;

static SPIPlanPtr
KeptPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/*
 * publish(event_type, payload, idempotency_key): store the message and its
 * deliveries in the caller's transaction; returns the message id.  A key
 * already used returns that message's id and publishes nothing.  Runs as
 * the extension's owner (the caller cannot read endpoints), recording the
 * caller's role.
 */
Datum
dt_publish(PG_FUNCTION_ARGS)
{
	char	   *type;
	char	   *key = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	NameData	role;
	unsigned char raw[16];
	char	   *msg_id;
	char	   *result = NULL;
	DtElevated	elevated;
	MemoryContext here = CurrentMemoryContext;
	int			i;

	if (PG_ARGISNULL(0) || (type = text_to_cstring(PG_GETARG_TEXT_PP(0)))[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_type cannot be empty"),
				 errhint("Name the event, such as 'invoice.paid'; endpoints subscribe to types and patterns.")));
	/* ductape's own operational messages (docs/reference.md, "Alerts") */
	if (strncmp(type, "ductape.", 8) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("event type \"%s\" is reserved", type),
				 errdetail("Event types beginning with \"ductape.\" are ductape's operational messages, published by ductape alone."),
				 errhint("Name your events without the \"ductape.\" prefix.")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload cannot be NULL"),
				 errhint("Pass the JSON to deliver, such as '{}'.")));
	if (key != NULL && key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key cannot be empty"),
				 errhint("Pass NULL for none.")));
	if (!pg_strong_random(raw, sizeof(raw)))
		ereport(ERROR, (errmsg("could not generate a message id")));
	msg_id = palloc(4 + 2 * sizeof(raw) + 1);
	strcpy(msg_id, "msg_");
	for (i = 0; i < (int) sizeof(raw); i++)
		sprintf(msg_id + 4 + 2 * i, "%02x", raw[i]);
	namestrcpy(&role, GetUserNameFromId(GetUserId(), false));

	ElevateBegin(&elevated);
	SPI_connect();
	{
		Oid			types[5] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, NAMEOID};
		Datum		args[5];
		char		nulls[5] = "     ";

		args[0] = CStringGetTextDatum(msg_id);
		args[1] = CStringGetTextDatum(type);
		args[2] = PG_GETARG_DATUM(1);
		args[3] = key ? CStringGetTextDatum(key) : (Datum) 0;
		nulls[3] = key ? ' ' : 'n';
		args[4] = NameGetDatum(&role);
		/* (without a key there is nothing to conflict on: a plain insert) */
		if (SPI_execute_plan(key ? KeptPlan(&InsertKeyedMessagePlan,
											"INSERT INTO ductape.messages (id, event_type, payload, idempotency_key, role) "
											"VALUES ($1, $2, $3, $4, $5) "
											"ON CONFLICT DO NOTHING",
											5, types)
							 : KeptPlan(&InsertMessagePlan,
										"INSERT INTO ductape.messages (id, event_type, payload, idempotency_key, role) "
										"VALUES ($1, $2, $3, $4, $5)",
										5, types),
							 args, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not store the message");
		if (SPI_processed == 0)
		{
			/*
			 * this role used the key: that message's id, nothing more (keys
			 * are scoped per role: another role's never matches)
			 */
			Oid			key_types[2] = {TEXTOID, NAMEOID};
			Datum		key_args[2] = {args[3], args[4]};

			if (SPI_execute_plan(KeptPlan(&ExistingMessagePlan,
										  "SELECT id FROM ductape.messages "
										  "WHERE idempotency_key OPERATOR(pg_catalog.=) $1 AND role OPERATOR(pg_catalog.=) $2",
										  2, key_types),
								 key_args, NULL, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not read the message of idempotency key \"%s\"", key);
			if (SPI_processed != 1)
				IdempotencyKeyTaken("message");
			result = MemoryContextStrdup(here, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		}
		else
		{
			Oid			fan_types[3] = {TEXTOID, TEXTOID, NAMEOID};
			Datum		fan_args[3] = {args[0], args[1], args[4]};

			if (SPI_execute_plan(KeptPlan(&FanOutPlan,
										  "INSERT INTO ductape.outbox (message_id, endpoint_id, role) "
										  "SELECT $1, e.id, $3 FROM ductape.endpoints e "
										  " WHERE e.enabled AND EXISTS (SELECT FROM pg_catalog.unnest(e.event_types) t "
										  "                              WHERE ductape._type_matches($2, t))",
										  3, fan_types),
								 fan_args, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not store the deliveries");
			if (SPI_processed > 0)
				RegistryWakeAtCommit();
			result = msg_id;
		}
	}
	SPI_finish();
	ElevateEnd(&elevated);
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

/* ---- the worker side: a kind of the queue engine (queue.c) ---- */

typedef struct DeliveryRun
{
	QueueItem	item;			/* first */
	int64		outbox_id;
	char	   *message_id;
	int64		endpoint_id;
	int			attempt;
	/* result */
	int			status;			/* 0: no response */
	char	   *error;
	char	   *response;		/* excerpt */
	double		retry_after_ms;
} DeliveryRun;

typedef struct EndpointLoad
{
	int64		endpoint_id;	/* hash key */
	int			inflight;
} EndpointLoad;

static MemoryContext EventsContext = NULL;
static HTAB *Load = NULL;		/* endpoint id -> deliveries in flight */

/*
 * The endpoint secrets opened during one claim (once per endpoint: the
 * claim returns rows ordered by endpoint), in the claim's SPI context, so
 * that they go with it.
 */
static MemoryContext ClaimContext = NULL;
static int64 SecretOf = 0;		/* the endpoint whose secrets these are */
static char *Secret = NULL;
static char *Previous = NULL;

static void
EventsEnsure(void)
{
	HASHCTL		ctl;

	if (EventsContext != NULL)
		return;
	EventsContext = AllocSetContextCreate(TopMemoryContext, "ductape deliveries",
										  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(EndpointLoad);
	ctl.hcxt = EventsContext;
	Load = hash_create("ductape endpoint load", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* At most this many deliveries in flight to one endpoint. */
static int
PerEndpointCap(void)
{
	return Max(1, ductape_max_concurrency / 4);
}

static void
LoadAdd(int64 endpoint_id, int delta)
{
	bool		found;
	EndpointLoad *l = hash_search(Load, &endpoint_id, HASH_ENTER, &found);

	if (!found)
		l->inflight = 0;
	l->inflight += delta;
	if (l->inflight <= 0)
		hash_search(Load, &endpoint_id, HASH_REMOVE, NULL);
}

/* The endpoints with deliveries in flight, and how many, as two arrays. */
static void
LoadArrays(Datum *ids, Datum *counts)
{
	long		n = hash_get_num_entries(Load);
	Datum	   *a = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *b = palloc(sizeof(Datum) * Max(n, 1));
	HASH_SEQ_STATUS seq;
	EndpointLoad *l;
	int			i = 0;

	hash_seq_init(&seq, Load);
	while ((l = hash_seq_search(&seq)) != NULL)
	{
		a[i] = Int64GetDatum(l->endpoint_id);
		b[i] = Int32GetDatum(l->inflight);
		i++;
	}
	*ids = PointerGetDatum(construct_array(a, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	*counts = PointerGetDatum(construct_array(b, i, INT4OID, 4, true, TYPALIGN_INT));
}

/* Deliveries a dead worker left delivering are pending again. */
static void
EventsRecover(void)
{
	SPI_execute("UPDATE ductape.outbox SET state = 'pending' "
				"WHERE state OPERATOR(pg_catalog.=) 'delivering'::ductape.outbox_state", false, 0);
}

/*
 * Claim up to n due deliveries, fairly across endpoints: at most a quarter
 * of ductape.max_concurrency in flight to one endpoint.
 */
static void
EventsClaim(int n)
{
	Oid			argtypes[4] = {INT4OID, INT8ARRAYOID, INT4ARRAYOID, INT4OID};
	Datum		args[4];

	EventsEnsure();
	ClaimContext = CurrentMemoryContext;
	SecretOf = 0;
	args[0] = Int32GetDatum(n);
	LoadArrays(&args[1], &args[2]);
	args[3] = Int32GetDatum(PerEndpointCap());
	if (SPI_execute_with_args("WITH busy AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.int8[]), "
							  "  pg_catalog.unnest($3::pg_catalog.int4[])) AS b(eid, n)), "
							  "picked AS ("
							  "  SELECT x.id FROM ductape.endpoints e CROSS JOIN LATERAL ("
							  "    SELECT o.id FROM ductape.outbox o"
							  "     WHERE o.endpoint_id OPERATOR(pg_catalog.=) e.id"
							  "       AND o.state OPERATOR(pg_catalog.=) 'pending'::ductape.outbox_state"
							  "       AND o.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
							  "     ORDER BY o.next_attempt_at, o.id"
							  "     LIMIT greatest(0, $4 OPERATOR(pg_catalog.-) coalesce((SELECT b.n FROM busy b"
							  "                                     WHERE b.eid OPERATOR(pg_catalog.=) e.id), 0))"
							  "     FOR UPDATE SKIP LOCKED) x"
							  "   WHERE e.enabled LIMIT $1), "
							  "claimed AS ("
							  "  UPDATE ductape.outbox o SET state = 'delivering', attempts = o.attempts OPERATOR(pg_catalog.+) 1"
							  "    FROM picked WHERE o.id OPERATOR(pg_catalog.=) picked.id"
							  "  RETURNING o.id, o.message_id, o.endpoint_id, o.attempts) "
							  "SELECT c.id, c.message_id, c.endpoint_id, c.attempts, m.payload::pg_catalog.text, e.url, e.headers,"
							  "       e.secret, e.key_version,"
							  "       CASE WHEN e.rotated_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) "
							  "         pg_catalog.make_interval(hours => 24)) THEN e.previous_secret END,"
							  "       e.previous_key_version"
							  "  FROM claimed c JOIN ductape.messages m ON m.id OPERATOR(pg_catalog.=) c.message_id"
							  "  JOIN ductape.endpoints e ON e.id OPERATOR(pg_catalog.=) c.endpoint_id"
							  " ORDER BY c.endpoint_id, c.id",
							  4, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not claim deliveries");
}

/* The request of one claimed delivery (in the claim transaction). */
static DtRequest *
BuildDelivery(DeliveryRun *run, const char *url, Jsonb *headers, const char *body,
			  const char *secret, const char *previous)
{
	DtRequest  *req = palloc0(sizeof(DtRequest));
	int64		ts = (int64) time(NULL);
	char	   *signature;

	req->method = "POST";
	req->url = pstrdup(url);
	req->body = pstrdup(body);
	req->body_len = strlen(body);
	req->timeout_ms = DELIVERY_TIMEOUT_MS;
	req->no_redirects = true;
	RetryPolicyDefaults(&req->policy, 0);
	signature = SignatureStandard(secret, run->message_id, ts, req->body, req->body_len);
	if (previous != NULL)
		signature = psprintf("%s %s", signature,
							 SignatureStandard(previous, run->message_id, ts, req->body, req->body_len));
	RequestAddHeader(req, "Content-Type", "application/json");
	RequestAddHeader(req, "webhook-id", run->message_id);
	RequestAddHeader(req, "webhook-timestamp", psprintf(INT64_FORMAT, ts));
	RequestAddHeader(req, "webhook-signature", signature);
	if (headers != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&headers->root);
		JsonbValue	v;
		JsonbIteratorToken t;
		char	   *name = NULL;

		while ((t = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (t == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (t == WJB_VALUE && name != NULL && v.type == jbvString)
				RequestAddHeader(req, name, pnstrdup(v.val.string.val, v.val.string.len));
		}
	}
	return req;
}

/*
 * One claimed delivery: open its endpoint's secrets (once per endpoint per
 * claim) and sign and build its request.  A delivery that cannot be
 * prepared fails this attempt, alone.
 */
static void
EventsPrepare(QueueItem *item, HeapTuple tup, TupleDesc desc)
{
	DeliveryRun *run = (DeliveryRun *) item;
	bool		isnull,
				prev_null;

	run->outbox_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	run->message_id = SPI_getvalue(tup, desc, 2);
	run->endpoint_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	run->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	run->retry_after_ms = -1;
	if (SecretOf != run->endpoint_id)
	{
		MemoryContext old = MemoryContextSwitchTo(ClaimContext);
		Datum		prev = SPI_getbinval(tup, desc, 10, &prev_null);

		SecretOf = 0;
		Secret = OpenSecret(DatumGetByteaPP(SPI_getbinval(tup, desc, 8, &isnull)),
							DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull)),
							run->endpoint_id);
		Previous = prev_null ? NULL :
			OpenSecret(DatumGetByteaPP(prev),
					   DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull)), run->endpoint_id);
		SecretOf = run->endpoint_id;
		MemoryContextSwitchTo(old);
	}
	item->req = BuildDelivery(run, SPI_getvalue(tup, desc, 6),
							  DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull)),
							  SPI_getvalue(tup, desc, 5), Secret, Previous);
	LimitSetEndpoint(&item->req->limit, run->endpoint_id, 0);
	LoadAdd(run->endpoint_id, 1);	/* last: from here on it is sent */
}

/* An attempt finished: keep what the deliveries table records. */
static void
EventsJudge(QueueItem *item, Xfer *x)
{
	DeliveryRun *run = (DeliveryRun *) item;
	const char *error;
	const char *body;
	size_t		len;

	/* first: whatever happens next, this delivery is no longer in flight */
	LoadAdd(run->endpoint_id, -1);
	XferResult(x, &run->status, &error, &body, &len, &run->retry_after_ms);
	if (error != NULL)
		run->error = pstrdup(error);
	else if (run->status < 200 || run->status > 299)
		run->error = psprintf("HTTP %d", run->status);
	if (body != NULL && len > 0)
	{
		/* the valid text at the start of the body */
		int			valid = pg_encoding_verifymbstr(GetDatabaseEncoding(), body,
													Min(len, RESPONSE_EXCERPT));

		run->response = pnstrdup(body, valid);
	}
}

static Datum
Int64Array(List *ids)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(list_length(ids), 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, ids)
		d[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return PointerGetDatum(construct_array(d, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Deliveries the engine did not send (their endpoint's limit said not yet)
 * are pending again from their due time, the attempt not counted and no
 * attempt recorded.  Returns the others.
 */
static List *
StoreDeferred(List *all)
{
	List	   *rest = NIL;
	List	   *ids = NIL;
	Datum	   *dues = palloc(sizeof(Datum) * Max(list_length(all), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, all)
	{
		DeliveryRun *run = lfirst(lc);

		if (run->item.defer_until == 0)
		{
			rest = lappend(rest, run);
			continue;
		}
		LoadAdd(run->endpoint_id, -1);	/* counted in flight by prepare */
		ids = lappend(ids, &run->outbox_id);
		dues[n++] = TimestampTzGetDatum(run->item.defer_until);
	}
	if (n > 0)
	{
		Oid			argtypes[2] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		args[2] = {Int64Array(ids),
			PointerGetDatum(construct_array(dues, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE))};

		if (SPI_execute_with_args("UPDATE ductape.outbox o SET state = 'pending',"
								  "  attempts = o.attempts OPERATOR(pg_catalog.-) 1, next_attempt_at = r.due"
								  "  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
								  "                 pg_catalog.unnest($2::pg_catalog.timestamptz[])) AS r(id, due)"
								  " WHERE o.id OPERATOR(pg_catalog.=) r.id"
								  "   AND o.state OPERATOR(pg_catalog.=) 'delivering'::ductape.outbox_state",
								  2, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not put deliveries back in the outbox");
	}
	return rest;
}

/*
 * Store finished attempts: a deliveries row each, the outbox rows' new
 * state, and the endpoints' health, in the engine's transaction.
 */
static List *
EventsWriteBack(List *all, MemoryContext after_cxt)
{
	List	   *batch = NIL;
	int			n;
	ListCell   *lc;
	List	   *ok_ids = NIL,
			   *failed_ids = NIL,
			   *gone_ids = NIL;
	Datum	   *cols[11];
	bool	   *nulls[11];
	int			i = 0,
				c;
	static const Oid types[11] = {INT8OID, TEXTOID, INT8OID, INT4OID, TIMESTAMPTZOID, INT4OID,
	FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID};
	Oid			argtypes[11];
	Datum		args[11];

	batch = StoreDeferred(all);
	n = list_length(batch);
	if (n == 0)
		return NIL;
	for (c = 0; c < 11; c++)
	{
		cols[c] = palloc0(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	foreach(lc, batch)
	{
		DeliveryRun *run = lfirst(lc);
		bool		ok;
		int64		delay;

		if (run->item.error != NULL)
			run->error = psprintf("could not prepare the delivery: %s", run->item.error);
		ok = run->error == NULL;
		delay = ok ? -1 : RetryDeliveryDelayMs(run->attempt, run->status, run->retry_after_ms);
		cols[0][i] = Int64GetDatum(run->outbox_id);
		cols[1][i] = CStringGetTextDatum(run->message_id);
		cols[2][i] = Int64GetDatum(run->endpoint_id);
		cols[3][i] = Int32GetDatum(run->attempt);
		cols[4][i] = TimestampTzGetDatum(run->item.started);
		cols[5][i] = Int32GetDatum(run->status);
		nulls[5][i] = run->status == 0;
		cols[6][i] = Float8GetDatum(run->item.duration_ms);
		cols[7][i] = run->response ? CStringGetTextDatum(run->response) : (Datum) 0;
		nulls[7][i] = run->response == NULL;
		cols[8][i] = run->error ? CStringGetTextDatum(run->error) : (Datum) 0;
		nulls[8][i] = run->error == NULL;
		cols[9][i] = CStringGetTextDatum(ok ? "succeeded" : delay >= 0 ? "pending" : "failed");
		cols[10][i] = Int64GetDatum(delay);
		nulls[10][i] = delay < 0;
		CountersAddAtCommit(ok ? DT_C_DELIVERIES_SUCCEEDED : delay >= 0 ? DT_C_DELIVERIES_RETRIED : DT_C_DELIVERIES_FAILED, 1);
		if (ok)
			ok_ids = lappend(ok_ids, &run->endpoint_id);
		else if (run->status == 410)
			gone_ids = lappend(gone_ids, &run->endpoint_id);
		else
			failed_ids = lappend(failed_ids, &run->endpoint_id);
		i++;
	}
	for (c = 0; c < 11; c++)
	{
		int			dims[1] = {n};
		int			lbs[1] = {1};
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(types[c], &typlen, &typbyval, &typalign);
		argtypes[c] = get_array_type(types[c]);
		args[c] = PointerGetDatum(construct_md_array(cols[c], nulls[c], 1, dims, lbs, types[c],
													 typlen, typbyval, typalign));
	}
	if (SPI_execute_with_args("WITH r AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
							  "  pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
							  "  pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10), "
							  "  pg_catalog.unnest($11))"
							  "  AS r(oid, msg, eid, attempt, at, status, ms, resp, err, state, delay)), "
							  "o AS (UPDATE ductape.outbox o SET state = r.state::ductape.outbox_state,"
							  "        last_status = r.status, last_error = r.err,"
							  "        next_attempt_at = CASE WHEN r.delay IS NOT NULL"
							  "          THEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+)"
							  "               pg_catalog.make_interval(secs => r.delay OPERATOR(pg_catalog./) 1000.0)"
							  "          ELSE o.next_attempt_at END,"
							  "        finished_at = CASE WHEN r.state OPERATOR(pg_catalog.<>) 'pending'"
							  "          THEN pg_catalog.clock_timestamp() END"
							  "       FROM r WHERE o.id OPERATOR(pg_catalog.=) r.oid"
							  "         AND o.state OPERATOR(pg_catalog.=) 'delivering'::ductape.outbox_state"
							  "     RETURNING o.id, o.role, o.next_attempt_at) "
							  "INSERT INTO ductape.deliveries (message_id, endpoint_id, attempt, at, status, duration_ms,"
							  "  response, error, succeeded, next_attempt_at, role) "
							  "SELECT r.msg, r.eid, r.attempt, r.at, r.status, r.ms, r.resp, r.err,"
							  "       r.state OPERATOR(pg_catalog.=) 'succeeded',"
							  "       CASE WHEN r.state OPERATOR(pg_catalog.=) 'pending' THEN o.next_attempt_at END, o.role"
							  "  FROM r JOIN o ON o.id OPERATOR(pg_catalog.=) r.oid",
							  11, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store deliveries");
	{
		Oid			at[3] = {INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
		Datum		a[3] = {Int64Array(ok_ids), Int64Array(failed_ids), Int64Array(gone_ids)};

		/* a success ends a failing streak; failures start one; 410 or 5 days of it disable */
		if (SPI_execute_with_args("UPDATE ductape.endpoints SET failing_since = NULL"
								  " WHERE id OPERATOR(pg_catalog.=) ANY ($1) AND failing_since IS NOT NULL",
								  1, at, a, NULL, false, 0) != SPI_OK_UPDATE ||
			SPI_execute_with_args("UPDATE ductape.endpoints SET failing_since = pg_catalog.now()"
								  " WHERE id OPERATOR(pg_catalog.=) ANY ($2 OPERATOR(pg_catalog.||) $3)"
								  "   AND NOT id OPERATOR(pg_catalog.=) ANY ($1) AND failing_since IS NULL",
								  3, at, a, NULL, false, 0) != SPI_OK_UPDATE ||
			SPI_execute_with_args("UPDATE ductape.endpoints SET enabled = false, disabled_at = pg_catalog.now(),"
								  "  disabled_reason = CASE WHEN id OPERATOR(pg_catalog.=) ANY ($3)"
								  "    THEN 'the endpoint answered 410 Gone'"
								  "    ELSE 'failing continuously since ' OPERATOR(pg_catalog.||) failing_since::pg_catalog.text END"
								  " WHERE enabled AND (id OPERATOR(pg_catalog.=) ANY ($3)"
								  "   OR (id OPERATOR(pg_catalog.=) ANY ($2) AND NOT id OPERATOR(pg_catalog.=) ANY ($1)"
								  "       AND failing_since OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-)"
								  "           pg_catalog.make_interval(days => 5))))",
								  3, at, a, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update endpoint health");
	}
	return NIL;
}

/* When a delivery is next due to an endpoint that has room. */
static void
EventsNextDue(void)
{
	Oid			argtypes[3] = {INT8ARRAYOID, INT4ARRAYOID, INT4OID};
	Datum		args[3];

	EventsEnsure();
	LoadArrays(&args[0], &args[1]);
	args[2] = Int32GetDatum(PerEndpointCap());
	if (SPI_execute_with_args("SELECT pg_catalog.min(x.at)"
							  "  FROM ductape.endpoints e CROSS JOIN LATERAL ("
							  "    SELECT o.next_attempt_at AS at FROM ductape.outbox o"
							  "     WHERE o.endpoint_id OPERATOR(pg_catalog.=) e.id"
							  "       AND o.state OPERATOR(pg_catalog.=) 'pending'::ductape.outbox_state"
							  "     ORDER BY o.next_attempt_at LIMIT 1) x"
							  " WHERE e.enabled"
							  "   AND NOT EXISTS (SELECT FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
							  "                                      pg_catalog.unnest($2::pg_catalog.int4[])) AS b(eid, n)"
							  "                    WHERE b.eid OPERATOR(pg_catalog.=) e.id AND b.n OPERATOR(pg_catalog.>=) $3)",
							  3, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read when the next delivery is due");
}

static const QueueKind DeliveriesQueue = {
	.name = "deliveries",
	.item_size = sizeof(DeliveryRun),
	.batch = 1000,
	.transfers = true,
	.claim = EventsClaim,
	.prepare = EventsPrepare,
	.judge = EventsJudge,
	.write_back = EventsWriteBack,
	.recover = EventsRecover,
	.next_due = EventsNextDue,
};

/* At load: outbound deliveries join the worker's queue engine. */
void
EventsInit(void)
{
	QueueRegister(&DeliveriesQueue);
}
