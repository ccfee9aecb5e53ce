/*-------------------------------------------------------------------------
 *
 * health.c
 *	  The gauges each database's worker publishes for /metrics, and
 *	  ductape.health() (docs/reference.md, "Metrics and health").
 *
 * Gauges that need SQL -- jobs per state, when the oldest due job became
 * due, deliveries pending, endpoints disabled, inbound events waiting --
 * are read by the database's worker every GAUGES_EVERY_MS in one short
 * read-only transaction (a task of the worker, registered at load) and
 * published to shared memory (counters.c), where the listener reads them
 * at each scrape.  Each query reads only the rows still in the queue,
 * through the partial indexes on them (jobs_due_idx, jobs_running_idx,
 * outbox_due_idx, webhook_events_due_idx); finished rows are never
 * scanned, however many retention keeps.  endpoints is a small table read
 * whole.
 *
 * When the extension is dropped from the database, its worker leaves
 * (WorkerLeaveUninstalled, exit code 0), and the database's counters go
 * with it (GaugesExit); a worker that ends otherwise (an error, a signal)
 * leaves them, and /metrics shows the database without a worker.
 *
 * ductape.health() runs the same queries in the caller's session (fresh
 * values, as the caller sees the rows: administrators see all) and adds
 * what the worker registry, the listener, the key file and the call-record
 * ring say.
 *
 * Layer 5 (features): calls the runtime, counters.c, registry.c, calls.c,
 * secrets.c and webhook.c (whether the listener serves).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "calls.h"
#include "counters.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(dt_health);

#define GAUGES_EVERY_MS 5000

/*
 * One statement, one row.  Each count is bounded by the rows waiting in its
 * queue (EXPLAIN: index scans on the partial indexes named above); the
 * oldest due job is the first entry of jobs_due_idx.
 */
#define GAUGES_SQL \
	"SELECT " \
	" (SELECT pg_catalog.count(*) FROM ductape.jobs" \
	"   WHERE state OPERATOR(pg_catalog.=) 'scheduled'::ductape.job_state)," \
	" (SELECT pg_catalog.count(*) FROM ductape.jobs" \
	"   WHERE state OPERATOR(pg_catalog.=) 'queued'::ductape.job_state)," \
	" (SELECT pg_catalog.count(*) FROM ductape.jobs" \
	"   WHERE state OPERATOR(pg_catalog.=) 'running'::ductape.job_state)," \
	" (SELECT pg_catalog.min(next_attempt_at) FROM ductape.jobs" \
	"   WHERE state OPERATOR(pg_catalog.=) ANY ('{queued,scheduled}'::ductape.job_state[])" \
	"     AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now())," \
	" (SELECT pg_catalog.count(*) FROM ductape.outbox" \
	"   WHERE state OPERATOR(pg_catalog.=) 'pending'::ductape.outbox_state)," \
	" (SELECT pg_catalog.count(*) FROM ductape.endpoints WHERE NOT enabled)," \
	" (SELECT pg_catalog.count(*) FROM ductape.webhook_events" \
	"   WHERE state OPERATOR(pg_catalog.=) 'received'::ductape.webhook_state" \
	"     AND next_attempt_at OPERATOR(pg_catalog.<) 'infinity'::pg_catalog.timestamptz)"

/* Run GAUGES_SQL (SPI connected) into g[DT_G_COUNT]. */
static void
ReadGauges(int64 *g)
{
	static const DtGauge order[] = {
		DT_G_JOBS_SCHEDULED, DT_G_JOBS_QUEUED, DT_G_JOBS_RUNNING, DT_G_OLDEST_DUE_AT,
		DT_G_DELIVERIES_WAITING, DT_G_ENDPOINTS_DISABLED, DT_G_EVENTS_WAITING
	};
	HeapTuple	tup;
	TupleDesc	desc;
	int			i;

	if (SPI_execute(GAUGES_SQL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read ductape's gauges");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	for (i = 0; i < lengthof(order); i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, i + 1, &isnull);

		g[order[i]] = isnull ? 0 : DatumGetInt64(d);	/* timestamptz is int64 */
	}
}

/* ---- the worker's task ---- */

static bool ExitHookSet = false;

/* The extension was dropped here (a clean exit): its counters go too. */
static void
GaugesExit(int code, Datum arg)
{
	if (code != 0)
		return;
	LWLockReleaseAll();
	CountersForget(MyDatabaseId);
}

static void
PublishGauges(void *arg)
{
	int64		g[DT_G_COUNT];

	if (!OidIsValid(get_extension_oid("ductape", true)))
		return;					/* the next unit of work leaves */
	SPI_connect();
	ReadGauges(g);
	SPI_finish();
	CountersPublish(g, GetCurrentTimestamp());
}

static long
GaugesRun(bool *did_work)
{
	char	   *error = NULL;
	static bool warned = false;

	if (!ExitHookSet)
	{
		before_shmem_exit(GaugesExit, (Datum) 0);
		ExitHookSet = true;
	}
	if (!WorkerTry(PublishGauges, NULL, "ductape: reading the gauges for /metrics", &error))
	{
		/* once per worker: the next rounds would say the same */
		if (!warned)
			ereport(WARNING,
					(errmsg("ductape worker could not read the gauges for /metrics: %s", error)));
		warned = true;
	}
	return GAUGES_EVERY_MS;
}

static const WorkerTask GaugesTask = {
	.name = "gauges",
	.on_wake = false,
	.ready = NULL,
	.run = GaugesRun,
};

void
HealthInit(void)
{
	WorkerRegisterTask(&GaugesTask);
}

/* ---- ductape.health() ---- */

static void
JsonKey(StringInfo buf, bool *first, const char *key)
{
	if (!*first)
		appendStringInfoString(buf, ", ");
	*first = false;
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
}

static void
JsonString(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/* "off" (not configured), "up" or "down" */
static const char *
ListenerState(const char *setting, bool metrics)
{
	if (setting == NULL || setting[0] == '\0')
		return "off";
	return WebhookListenerServing(metrics) ? "up" : "down";
}

/*
 * health() -> jsonb; the shape is in docs/reference.md.  ok is false, and
 * problems says why, when this database has no worker, a listener that is
 * configured does not serve, or the master key file cannot be read.
 */
Datum
dt_health(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	StringInfoData problems;
	DtCountersDb *dbs = palloc(sizeof(DtCountersDb) * DT_COUNTER_DBS);
	int			ndbs = CountersSnapshot(dbs, DT_COUNTER_DBS);
	pid_t		my_pid = RegistryWorkerPid(MyDatabaseId);
	char	   *my_name = get_database_name(MyDatabaseId);
	const char *webhooks = ListenerState(ductape_webhook_listen, false);
	const char *metrics = ListenerState(ductape_metrics_listen, true);
	char	   *key_problem = SecretsKeyFileProblem();
	TimestampTz now = GetCurrentTimestamp();
	int64		g[DT_G_COUNT];
	TimestampTz due;
	bool		first = true;
	bool		wfirst = true;
	bool		ok = true;
	bool		listed_me = false;
	int			i;

	SPI_connect();
	ReadGauges(g);
	SPI_finish();
	due = (TimestampTz) g[DT_G_OLDEST_DUE_AT];

	initStringInfo(&problems);
#define PROBLEM(msg) \
	do { \
		if (problems.len > 0) \
			appendStringInfoString(&problems, ", "); \
		escape_json(&problems, (msg)); \
		ok = false; \
	} while (0)
	if (my_pid == 0)
		PROBLEM("this database has no ductape worker");
	if (strcmp(webhooks, "down") == 0)
		PROBLEM("the webhook listener is not serving");
	if (strcmp(metrics, "down") == 0)
		PROBLEM("the metrics listener is not serving");
	if (key_problem != NULL)
		PROBLEM(psprintf("the master key file cannot be read: %s", key_problem));
#undef PROBLEM

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	JsonKey(&buf, &first, "ok");
	appendStringInfoString(&buf, ok ? "true" : "false");
	JsonKey(&buf, &first, "problems");
	appendStringInfo(&buf, "[%s]", problems.data);
	JsonKey(&buf, &first, "database");
	JsonString(&buf, my_name);
	JsonKey(&buf, &first, "worker");
	if (my_pid != 0)
		appendStringInfo(&buf, "{\"up\": true, \"pid\": %d}", (int) my_pid);
	else
		appendStringInfoString(&buf, "{\"up\": false, \"pid\": null}");

	/* every database that has had a worker since the server started */
	JsonKey(&buf, &first, "workers");
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < ndbs; i++)
	{
		bool		up;

		if (dbs[i].name[0] == '\0')
			continue;
		up = (dbs[i].dbid == MyDatabaseId) ? my_pid != 0 : RegistryWorkerPid(dbs[i].dbid) != 0;
		JsonKey(&buf, &wfirst, dbs[i].name);
		appendStringInfoString(&buf, up ? "true" : "false");
		if (dbs[i].dbid == MyDatabaseId)
			listed_me = true;
	}
	if (!listed_me && my_name != NULL)
	{
		JsonKey(&buf, &wfirst, my_name);
		appendStringInfoString(&buf, my_pid != 0 ? "true" : "false");
	}
	appendStringInfoChar(&buf, '}');

	JsonKey(&buf, &first, "listener");
	appendStringInfo(&buf, "{\"webhooks\": \"%s\", \"metrics\": \"%s\"}", webhooks, metrics);
	JsonKey(&buf, &first, "jobs");
	appendStringInfo(&buf, "{\"scheduled\": " INT64_FORMAT ", \"queued\": " INT64_FORMAT
					 ", \"running\": " INT64_FORMAT ", \"oldest_queued_age_seconds\": %.3f}",
					 g[DT_G_JOBS_SCHEDULED], g[DT_G_JOBS_QUEUED], g[DT_G_JOBS_RUNNING],
					 due != 0 && due < now ? (double) (now - due) / USECS_PER_SEC : 0.0);
	JsonKey(&buf, &first, "deliveries_waiting");
	appendStringInfo(&buf, INT64_FORMAT, g[DT_G_DELIVERIES_WAITING]);
	JsonKey(&buf, &first, "endpoints_disabled");
	appendStringInfo(&buf, INT64_FORMAT, g[DT_G_ENDPOINTS_DISABLED]);
	JsonKey(&buf, &first, "webhook_events_waiting");
	appendStringInfo(&buf, INT64_FORMAT, g[DT_G_EVENTS_WAITING]);
	JsonKey(&buf, &first, "master_key");
	appendStringInfo(&buf, "{\"readable\": %s, \"problem\": ", key_problem == NULL ? "true" : "false");
	JsonString(&buf, key_problem);
	appendStringInfoChar(&buf, '}');
	JsonKey(&buf, &first, "call_records_dropped");
	appendStringInfo(&buf, INT64_FORMAT, CallsDropped());
	appendStringInfoChar(&buf, '}');

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
