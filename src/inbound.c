/*-------------------------------------------------------------------------
 *
 * inbound.c
 *	  Inbound webhooks, the handlers: what the database's worker does with
 *	  the events the listener (webhook.c) stored.
 *
 * The events are a queue of the worker's queue engine (queue.c), claimed
 * when the listener stored new ones, when the last claim was full, and each
 * second (retries).  Handlers (webhook_subscribe) run in the database's
 * ductape worker, each in its own transaction as the role that subscribed,
 * through the user-code gate (RunAsRole); an event is handled once every matching handler has
 * succeeded, and is retried with backoff until then (handlers that already
 * succeeded are not run again), failing after RETRY_HANDLER_MAX_ROUNDS rounds
 * with the error kept.  Events no subscription wants are parked, so that
 * the worker does not look at them again after every batch.
 *
 * The worker's session is pinned (gate.c) and every statement here names
 * its functions and operators with their schema.
 *
 * Layer 5 (features): calls the runtime and the layers below.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "ductape.h"
#include "counters.h"

#define HANDLER_BATCH 100
#define PARK_BATCH 1000			/* events without a subscription parked per pass */

typedef struct DueEvent
{
	QueueItem	item;			/* first */
	int64		id;
	Jsonb	   *event;
	int			attempts;
	int			nsubs;
	int64	   *subs;
	Oid		   *fns;
	Oid		   *roles;
	/* result */
	List	   *ok;				/* the subscriptions whose handler succeeded */
	char	   *error;			/* the first failure */
	int			failed_fn;		/* of that handler */
} DueEvent;

static void
ArrayToInt64s(Datum d, int64 **out, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			i;

	deconstruct_array(DatumGetArrayTypeP(d), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	*out = palloc(sizeof(int64) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		(*out)[i] = DatumGetInt64(elems[i]);
}

static void
ArrayToOids(Datum d, Oid **out, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			i;

	deconstruct_array(DatumGetArrayTypeP(d), OIDOID, 4, true, TYPALIGN_INT, &elems, &nulls, n);
	*out = palloc(sizeof(Oid) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		(*out)[i] = DatumGetObjectId(elems[i]);
}

/*
 * Events that no subscription wants are parked (next_attempt_at = infinity),
 * so the scan for due events does not walk them again on every pass: the
 * listener stores them parked, and this parks those whose subscription went
 * away.  A new subscription wakes the parked events it matches.  Both happen
 * under a SHARE lock on the subscriptions, so that none can commit in
 * between and no listener batch is half-way, taken only if it is free: a
 * session that subscribed and has not yet committed must not hold up
 * handlers (waking waits for the next pass).
 */
static void
ParkUnwantedEvents(void)
{
	static int64 woken_up_to = 0;	/* highest subscription id already matched
									 * against parked events */
	Oid			subs = get_relname_relid("webhook_subscriptions",
										 get_namespace_oid("ductape", false));
	int64		newest;
	bool		isnull;
	Oid			types[1] = {INT8OID};
	Datum		args[1];

	if (!OidIsValid(subs) || !ConditionalLockRelationOid(subs, ShareLock))
		return;
	if (SPI_execute("SELECT coalesce(pg_catalog.max(id), 0) FROM ductape.webhook_subscriptions",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhook subscriptions");
	newest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (newest > woken_up_to)
	{
		args[0] = Int64GetDatum(woken_up_to);
		if (SPI_execute_with_args("UPDATE ductape.webhook_events e SET next_attempt_at = pg_catalog.now()"
								  " WHERE e.state OPERATOR(pg_catalog.=) 'received'"
								  "   AND e.next_attempt_at OPERATOR(pg_catalog.=) 'infinity'"
								  "   AND EXISTS (SELECT FROM ductape.webhook_subscriptions s"
								  "                WHERE s.id OPERATOR(pg_catalog.>) $1"
								  "                  AND s.app OPERATOR(pg_catalog.=) e.app"
								  "                  AND s.webhook OPERATOR(pg_catalog.=) e.webhook"
								  "                  AND ductape._type_matches(e.event_type, s.event_type))",
								  1, types, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not wake parked webhook events");
		woken_up_to = newest;
	}
	if (SPI_execute("UPDATE ductape.webhook_events SET next_attempt_at = 'infinity'"
					" WHERE id OPERATOR(pg_catalog.=) ANY ("
					"         SELECT e.id FROM ductape.webhook_events e"
					"          WHERE e.state OPERATOR(pg_catalog.=) 'received'"
					"            AND e.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
					"            AND NOT EXISTS (SELECT FROM ductape.webhook_subscriptions s"
					"                             WHERE s.app OPERATOR(pg_catalog.=) e.app"
					"                               AND s.webhook OPERATOR(pg_catalog.=) e.webhook"
					"                               AND ductape._type_matches(e.event_type, s.event_type)"
					"                               AND s.id OPERATOR(pg_catalog.<>) ALL (e.handled_by))"
					"          ORDER BY e.next_attempt_at, e.id LIMIT " CppAsString2(PARK_BATCH)
					"          FOR UPDATE SKIP LOCKED)", false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not park webhook events");
	/* the listener may go on: what needed excluding is done */
	UnlockRelationOid(subs, ShareLock);
}

/* The listener stored events since the worker last looked. */
static bool
InboundSignalled(void)
{
	return WebhooksTakePending();
}

/*
 * Claim due events with the handlers still to run for each (parking first
 * those no subscription wants).  The rows stay locked until the claim
 * commits; the worker is the only one to handle events of its database.
 */
static void
InboundClaim(int n)
{
	Oid			types[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(n)};

	ParkUnwantedEvents();
	if (SPI_execute_with_args("WITH due AS ("
							  "  SELECT e.* FROM ductape.webhook_events e"
							  "   WHERE e.state OPERATOR(pg_catalog.=) 'received'"
							  "     AND e.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
							  "     AND EXISTS (SELECT FROM ductape.webhook_subscriptions s"
							  "                  WHERE s.app OPERATOR(pg_catalog.=) e.app"
							  "                    AND s.webhook OPERATOR(pg_catalog.=) e.webhook"
							  "                    AND ductape._type_matches(e.event_type, s.event_type)"
							  "                    AND s.id OPERATOR(pg_catalog.<>) ALL (e.handled_by))"
							  "   ORDER BY e.next_attempt_at, e.id LIMIT $1"
							  "   FOR UPDATE SKIP LOCKED) "
							  "SELECT d.id, pg_catalog.to_jsonb(d) OPERATOR(pg_catalog.-) '{handled_by,next_attempt_at}'::pg_catalog.text[],"
							  "       d.attempts, m.ids, m.fns, m.roles"
							  "  FROM due d, LATERAL ("
							  "    SELECT pg_catalog.array_agg(s.id ORDER BY s.id) AS ids,"
							  "           pg_catalog.array_agg(s.handler::pg_catalog.oid ORDER BY s.id) AS fns,"
							  "           pg_catalog.array_agg(coalesce(r.oid, 0::pg_catalog.oid) ORDER BY s.id) AS roles"
							  "      FROM ductape.webhook_subscriptions s"
							  "      LEFT JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) s.role"
							  "     WHERE s.app OPERATOR(pg_catalog.=) d.app AND s.webhook OPERATOR(pg_catalog.=) d.webhook"
							  "       AND ductape._type_matches(d.event_type, s.event_type)"
							  "       AND s.id OPERATOR(pg_catalog.<>) ALL (d.handled_by)) m"
							  " ORDER BY d.id", 1, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read due webhook events");
}

static void
InboundPrepare(QueueItem *item, HeapTuple tup, TupleDesc desc)
{
	DueEvent   *ev = (DueEvent *) item;
	bool		isnull;
	int			n;

	ev->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	ev->event = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 2, &isnull));
	ev->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	ArrayToInt64s(SPI_getbinval(tup, desc, 4, &isnull), &ev->subs, &ev->nsubs);
	ArrayToOids(SPI_getbinval(tup, desc, 5, &isnull), &ev->fns, &n);
	ArrayToOids(SPI_getbinval(tup, desc, 6, &isnull), &ev->roles, &n);
}

/*
 * Run an event's handlers, each in its own transaction as the role that
 * subscribed, through the user-code gate; the first failure is kept.
 */
static void
InboundRun(QueueItem *item)
{
	DueEvent   *ev = (DueEvent *) item;

	for (int k = 0; k < ev->nsubs; k++)
	{
		char	   *err = NULL;

		if (OidIsValid(ev->roles[k]) &&
			RunAsRole(ev->fns[k], "webhook handler", ev->roles[k], ev->event, "ductape: webhook handler", &err))
			ev->ok = lappend(ev->ok, &ev->subs[k]);
		else if (ev->error == NULL)
		{
			ev->error = err ? err : pstrdup("the subscribing role no longer exists");
			ev->failed_fn = k;
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* Record the round: handled, or retried later, or failed for good. */
static List *
InboundWriteBack(List *batch, MemoryContext after_cxt)
{
	ListCell   *lc;

	foreach(lc, batch)
	{
		DueEvent   *ev = lfirst(lc);
		Oid			types[5] = {INT8OID, INT8ARRAYOID, TEXTOID, INT4OID, INT8OID};
		Datum		a[5];
		char		nulls[5] = "     ";
		ListCell   *c;
		int			attempts = ev->attempts + 1;
		int64		delay_ms = RetryHandlerDelayMs(attempts);
		Datum	   *d = palloc(sizeof(Datum) * Max(list_length(ev->ok), 1));
		int			m = 0;

		a[0] = Int64GetDatum(ev->id);
		foreach(c, ev->ok)
			d[m++] = Int64GetDatum(*(int64 *) lfirst(c));
		a[1] = PointerGetDatum(construct_array(d, m, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (ev->item.error != NULL)
			a[2] = CStringGetTextDatum(ev->item.error);
		else if (ev->error != NULL)
			a[2] = CStringGetTextDatum(psprintf("%s: %s", format_procedure(ev->fns[ev->failed_fn]), ev->error));
		else
			nulls[2] = 'n';
		a[3] = Int32GetDatum(RETRY_HANDLER_MAX_ROUNDS);
		a[4] = Int64GetDatum(delay_ms);
		if (SPI_execute_with_args("UPDATE ductape.webhook_events SET "
								  "  handled_by = handled_by OPERATOR(pg_catalog.||) $2, "
								  "  attempts = attempts OPERATOR(pg_catalog.+) 1, error = $3, "
								  "  state = CASE WHEN $3 IS NULL THEN 'handled' "
								  "               WHEN (attempts OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>=) $4 THEN 'failed' "
								  "               ELSE 'received' END::ductape.webhook_state, "
								  "  handled_at = CASE WHEN $3 IS NULL THEN pg_catalog.now() END, "
								  "  next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
								  "                    ($5 OPERATOR(pg_catalog.*) '1 millisecond'::pg_catalog.interval) "
								  "WHERE id OPERATOR(pg_catalog.=) $1", 5, types, a, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not record webhook handlers");
		CountersAddAtCommit(nulls[2] == 'n' ? DT_C_EVENTS_HANDLED :
							attempts >= RETRY_HANDLER_MAX_ROUNDS ? DT_C_EVENTS_FAILED : DT_C_EVENTS_RETRIED, 1);
	}
	return NIL;
}

static const QueueKind InboundQueue = {
	.name = "webhook events",
	.item_size = sizeof(DueEvent),
	.batch = HANDLER_BATCH,
	.transfers = false,
	.claim = InboundClaim,
	.prepare = InboundPrepare,
	.run = InboundRun,
	.write_back = InboundWriteBack,
	.signalled = InboundSignalled,
};

/* At load: inbound webhook events join the worker's queue engine. */
void
InboundInit(void)
{
	QueueRegister(&InboundQueue);
}
