/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  The text of /metrics: ductape's counters and gauges in the Prometheus
 *	  text exposition format, version 0.0.4 (docs/reference.md, "Metrics").
 *	  The listener (webhook.c) serves it on ductape.metrics_listen.
 *
 * Layer 2 (core logic): calls layer 1 (counters.c, stats.c, registry.c,
 * calls.c, flow.c) and secrets.c (whether the master key file is
 * readable), and PostgreSQL.
 *
 * Everything comes from shared memory: the per-database counters and the
 * gauges each database's worker published (counters.c), the calls and
 * their latency histogram per app, action and env (stats.c, summed over
 * roles: roles are not labels), whether each
 * database has a worker (registry.c), the call records dropped (calls.c),
 * and the flow-control state per app and env (flow.c).
 * No SQL, no catalog access, no transaction: a scrape costs a copy of a
 * few fixed tables and the formatting, however large the tables behind
 * the gauges are.  The listener is connected to one database and must not
 * read others; database names come from the counters' slots, where each
 * database's own processes noted them.
 *
 * Each family is written once, with its HELP and TYPE lines, then its
 * series, database by database.  Label values are escaped as the format
 * says (backslash, double quote, line feed) and any byte that is not valid
 * UTF-8 becomes "?": a database name can hold anything.  Apps, actions and
 * environments are tags; URLs, inputs and secrets never become labels.
 * The text is bounded (METRICS_MAX_BYTES): past it, the remaining series
 * are left out and ductape_metrics_truncated says so.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "calls.h"
#include "counters.h"
#include "registry.h"
#include "stats.h"

#define METRICS_MAX_BYTES (16 * 1024 * 1024)

/* A label value, escaped; invalid UTF-8 bytes become '?'. */
static void
AppendLabelValue(StringInfo out, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p)
	{
		int			len;

		if (*p < 0x80)
		{
			if (*p == '\\')
				appendStringInfoString(out, "\\\\");
			else if (*p == '"')
				appendStringInfoString(out, "\\\"");
			else if (*p == '\n')
				appendStringInfoString(out, "\\n");
			else
				appendStringInfoChar(out, (char) *p);
			p++;
			continue;
		}
		len = pg_utf_mblen(p);
		if (len > 1 && strnlen((const char *) p, len) == (size_t) len &&
			pg_utf8_islegal(p, len))
		{
			appendBinaryStringInfo(out, (const char *) p, len);
			p += len;
		}
		else
		{
			appendStringInfoChar(out, '?');
			p++;
		}
	}
}

static void
Family(StringInfo out, const char *name, const char *type, const char *help)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{database="..."[,key="value"]} */
static void
SeriesStart(StringInfo out, const char *name, const char *database,
			const char *key, const char *value)
{
	appendStringInfoString(out, name);
	appendStringInfoChar(out, '{');
	if (database != NULL)
	{
		appendStringInfoString(out, "database=\"");
		AppendLabelValue(out, database);
		appendStringInfoChar(out, '"');
	}
	if (key != NULL)
	{
		if (database != NULL)
			appendStringInfoChar(out, ',');
		appendStringInfo(out, "%s=\"", key);
		AppendLabelValue(out, value);
		appendStringInfoChar(out, '"');
	}
	appendStringInfoChar(out, '}');
}

static void
SeriesInt(StringInfo out, const char *name, const char *database,
		  const char *key, const char *value, int64 v)
{
	SeriesStart(out, name, database, key, value);
	appendStringInfo(out, " " INT64_FORMAT "\n", v);
}

static void
SeriesDouble(StringInfo out, const char *name, const char *database, double v)
{
	SeriesStart(out, name, database, NULL, NULL);
	appendStringInfo(out, " %.3f\n", v);
}

/* The counter families: a row per outcome. */
typedef struct CounterRow
{
	const char *family;
	const char *help;			/* on the family's first row only */
	const char *outcome;		/* NULL: the family has no outcome label */
	DtCounter	counter;
} CounterRow;

static const CounterRow CounterRows[] = {
	{"ductape_jobs_finished_total", "Background jobs that finished, by outcome.", "succeeded", DT_C_JOBS_SUCCEEDED},
	{"ductape_jobs_finished_total", NULL, "failed", DT_C_JOBS_FAILED},
	{"ductape_jobs_finished_total", NULL, "cancelled", DT_C_JOBS_CANCELLED},
	{"ductape_job_retries_total", "Job attempts that failed and were scheduled again.", NULL, DT_C_JOBS_RETRIED},
	{"ductape_deliveries_total", "Outbound webhook delivery attempts, by outcome.", "succeeded", DT_C_DELIVERIES_SUCCEEDED},
	{"ductape_deliveries_total", NULL, "retried", DT_C_DELIVERIES_RETRIED},
	{"ductape_deliveries_total", NULL, "failed", DT_C_DELIVERIES_FAILED},
	{"ductape_webhook_events_total", "Inbound webhook requests and handler rounds, by outcome.", "received", DT_C_EVENTS_RECEIVED},
	{"ductape_webhook_events_total", NULL, "duplicate", DT_C_EVENTS_DUPLICATE},
	{"ductape_webhook_events_total", NULL, "rejected", DT_C_EVENTS_REJECTED},
	{"ductape_webhook_events_total", NULL, "handled", DT_C_EVENTS_HANDLED},
	{"ductape_webhook_events_total", NULL, "retried", DT_C_EVENTS_RETRIED},
	{"ductape_webhook_events_total", NULL, "failed", DT_C_EVENTS_FAILED},
	{"ductape_oauth_refresh_total", "OAuth2 token requests served by the worker, by outcome.", "succeeded", DT_C_OAUTH_SUCCEEDED},
	{"ductape_oauth_refresh_total", NULL, "failed", DT_C_OAUTH_FAILED},
};

static const struct
{
	const char *state;
	DtGauge		gauge;
}			JobStates[] = {
	{"scheduled", DT_G_JOBS_SCHEDULED},
	{"queued", DT_G_JOBS_QUEUED},
	{"running", DT_G_JOBS_RUNNING},
};

/* A plain gauge per database: name, help, which. */
static const struct
{
	const char *family;
	const char *help;
	DtGauge		gauge;
}			DbGauges[] = {
	{"ductape_deliveries_waiting", "Outbound deliveries pending (not yet delivered, retries included).", DT_G_DELIVERIES_WAITING},
	{"ductape_endpoints_disabled", "Outbound endpoints disabled (410 Gone, or failing for 5 days, or by hand).", DT_G_ENDPOINTS_DISABLED},
	{"ductape_webhook_events_waiting", "Inbound webhook events received and not yet handled (parked events excluded).", DT_G_EVENTS_WAITING},
};

/* The label value of an outcome: a success, or each error class of stats.h. */
static const char *const CallOutcome[DT_STATS_NCLASSES] = {
	[DT_STATS_4XX] = "http_4xx",
	[DT_STATS_5XX] = "http_5xx",
	[DT_STATS_NETWORK] = "network",
	[DT_STATS_EGRESS] = "egress",
	[DT_STATS_OTHER] = "other",
};

/*
 * {database="...",app="...",action="...",env="..." (no closing brace) into
 * labels, made once per row and copied into each of its series.
 */
static void
CallLabels(StringInfo labels, const char *database, const DtStatsRow *row)
{
	resetStringInfo(labels);
	appendStringInfoString(labels, "{database=\"");
	AppendLabelValue(labels, database);
	appendStringInfoString(labels, "\",app=\"");
	/* a database's overflow row: the calls of keys that found no entry */
	AppendLabelValue(labels, row->overflow ? "(other)" : row->app);
	appendStringInfoString(labels, "\",action=\"");
	AppendLabelValue(labels, row->action);
	appendStringInfoString(labels, "\",env=\"");
	AppendLabelValue(labels, row->env);
	appendStringInfoChar(labels, '"');
}

/* name, labels, rest (",le=\"1\"}" or "}"), " ", v: without printf */
static void
CallSeries(StringInfo out, const char *name, int namelen, const StringInfo labels,
		   const char *rest, int64 v)
{
	char		num[MAXINT8LEN + 1];
	int			len = pg_lltoa(v, num);

	appendBinaryStringInfo(out, name, namelen);
	appendBinaryStringInfo(out, labels->data, labels->len);
	appendStringInfoString(out, rest);
	appendStringInfoChar(out, ' ');
	appendBinaryStringInfo(out, num, len);
	appendStringInfoChar(out, '\n');
}

/* The name of a database in the snapshot, NULL when unknown. */
static const char *
DatabaseName(const DtCountersDb *dbs, int ndbs, Oid dbid)
{
	int			i;

	for (i = 0; i < ndbs; i++)
		if (dbs[i].dbid == dbid)
			return dbs[i].name[0] ? dbs[i].name : NULL;
	return NULL;
}

/*
 * ductape_calls_total and ductape_call_duration_seconds, per database, app,
 * action and env; false when the text reached its bound and the rest was
 * left out.
 */
static bool
RenderCalls(StringInfo out, const DtCountersDb *dbs, int ndbs)
{
#define CALLS "ductape_calls_total"
#define BUCKET "ductape_call_duration_seconds_bucket"
#define COUNT "ductape_call_duration_seconds_count"
#define SUM "ductape_call_duration_seconds_sum"
	DtStatsRow *rows = NULL;
	int			nrows = StatsCollect(InvalidOid, InvalidOid, true, &rows);
	const char **names = palloc0(sizeof(char *) * Max(nrows, 1));
	char	   *outcome_rest[DT_STATS_NCLASSES];
	char	   *le_rest[DT_STATS_NBUCKETS];
	StringInfoData labels;
	int			i,
				b,
				k;
	int			shown = nrows;

	initStringInfo(&labels);
	for (i = 0; i < nrows; i++)
		names[i] = DatabaseName(dbs, ndbs, rows[i].dbid);
	for (k = 0; k < DT_STATS_NCLASSES; k++)
		outcome_rest[k] = psprintf(",outcome=\"%s\"}", CallOutcome[k]);
	for (b = 0; b < DT_STATS_NBUCKETS - 1; b++)
		le_rest[b] = psprintf(",le=\"%g\"}", DtStatsBucketUpperMs[b] / 1000.0);
	le_rest[DT_STATS_NBUCKETS - 1] = ",le=\"+Inf\"}";

	Family(out, CALLS, "counter",
		   "Requests ductape made (run, run_response, http, jobs, workflow steps), by outcome: ok or the error class.");
	for (i = 0; i < nrows; i++)
	{
		const DtStatsCounters *c = &rows[i].c;
		int64		errors = 0;

		if (names[i] == NULL)
			continue;
		if (out->len > METRICS_MAX_BYTES)
		{
			shown = i;
			break;
		}
		for (k = 0; k < DT_STATS_NCLASSES; k++)
			errors += c->errors[k];
		CallLabels(&labels, names[i], &rows[i]);
		CallSeries(out, CALLS, strlen(CALLS), &labels, ",outcome=\"ok\"}", Max(c->calls - errors, 0));
		for (k = 0; k < DT_STATS_NCLASSES; k++)
			CallSeries(out, CALLS, strlen(CALLS), &labels, outcome_rest[k], c->errors[k]);
	}

	Family(out, "ductape_call_duration_seconds", "histogram",
		   "Duration of the requests ductape made, retries included.");
	for (i = 0; i < shown; i++)
	{
		const DtStatsCounters *c = &rows[i].c;
		int64		cumulative = 0;

		if (names[i] == NULL)
			continue;
		CallLabels(&labels, names[i], &rows[i]);
		for (b = 0; b < DT_STATS_NBUCKETS; b++)
		{
			cumulative += c->buckets[b];
			CallSeries(out, BUCKET, strlen(BUCKET), &labels, le_rest[b], cumulative);
		}
		appendStringInfoString(out, SUM);
		appendBinaryStringInfo(out, labels.data, labels.len);
		appendStringInfo(out, "} %.6f\n", c->sum_ms / 1000.0);
		CallSeries(out, COUNT, strlen(COUNT), &labels, "}", cumulative);
	}
	pfree(names);
	if (rows)
		pfree(rows);
	return shown == nrows;
#undef CALLS
#undef BUCKET
#undef COUNT
#undef SUM
}

/*
 * The flow-control state per database, app and env (flow.c; endpoints are
 * left out: there may be thousands): requests in flight, whether the API
 * asked for a pause, calls and items that waited, calls refused (DT004).
 * The counters start again when an idle entry is reused for another key.
 * false when the text reached its bound.
 */
static bool
RenderLimits(StringInfo out, const DtCountersDb *dbs, int ndbs)
{
	static const struct
	{
		const char *family;
		const char *type;
		const char *help;
	}			fams[] = {
		{"ductape_limit_in_flight", "gauge",
		"Requests of the app and env under way now, from every session and worker."},
		{"ductape_limit_paused", "gauge",
		"1 while the API's 429 or 503 with Retry-After pauses the app and env for every caller."},
		{"ductape_limit_waited_total", "counter",
		"Calls that waited for their limit, and queue items put back until it allowed them."},
		{"ductape_limit_rejected_total", "counter",
		"Calls refused with DT004: their limit would not let them go within max_wait_ms."},
	};
	DtLimitRow *rows;
	int			n = LimitsCollect(InvalidOid, false, &rows);
	const char **names = palloc0(sizeof(char *) * Max(n, 1));
	StringInfoData labels;
	bool		complete = true;

	initStringInfo(&labels);
	for (int i = 0; i < n; i++)
		names[i] = DatabaseName(dbs, ndbs, rows[i].key.dbid);
	for (int f = 0; f < lengthof(fams) && complete; f++)
	{
		Family(out, fams[f].family, fams[f].type, fams[f].help);
		for (int i = 0; i < n; i++)
		{
			DtLimitRow *r = &rows[i];
			int64		v;

			if (names[i] == NULL)
				continue;		/* its database's name is not known yet */
			if (out->len > METRICS_MAX_BYTES)
			{
				complete = false;
				break;
			}
			resetStringInfo(&labels);
			appendStringInfoString(&labels, "{database=\"");
			AppendLabelValue(&labels, names[i]);
			appendStringInfoString(&labels, "\",app=\"");
			AppendLabelValue(&labels, r->key.app);
			appendStringInfoString(&labels, "\",env=\"");
			AppendLabelValue(&labels, r->key.env);
			appendStringInfoChar(&labels, '"');
			v = f == 0 ? r->in_flight : f == 1 ? (r->paused_until != 0) :
				f == 2 ? r->waited : r->rejected;
			CallSeries(out, fams[f].family, strlen(fams[f].family), &labels, "}", v);
		}
	}
	pfree(names);
	pfree(rows);
	return complete;
}

/*
 * The whole text into out.  webhooks_served: the listener is serving
 * webhooks (ductape.webhook_listen is set and it listens).
 */
void
MetricsRender(StringInfo out, bool webhooks_served)
{
	DtCountersDb *dbs = palloc(sizeof(DtCountersDb) * DT_COUNTER_DBS);
	int			ndbs = CountersSnapshot(dbs, DT_COUNTER_DBS);
	bool	   *up = palloc0(sizeof(bool) * Max(ndbs, 1));
	TimestampTz now = GetCurrentTimestamp();
	char	   *key_problem = SecretsKeyFileProblem();
	bool		truncated = false;
	int			i,
				r;

	for (i = 0; i < ndbs; i++)
		up[i] = RegistryWorkerPid(dbs[i].dbid) != 0;

	Family(out, "ductape_listener_up", "gauge",
		   "1 while the listener serves webhooks on ductape.webhook_listen, 0 when it serves metrics only.");
	appendStringInfo(out, "ductape_listener_up %d\n", webhooks_served ? 1 : 0);
	Family(out, "ductape_master_key_readable", "gauge",
		   "1 when the master key file can be read, 0 when secrets cannot be decrypted.");
	appendStringInfo(out, "ductape_master_key_readable %d\n", key_problem == NULL ? 1 : 0);
	Family(out, "ductape_call_records_dropped_total", "counter",
		   "Call records lost since server start (the ring was full, or the database had no worker).");
	appendStringInfo(out, "ductape_call_records_dropped_total " INT64_FORMAT "\n", CallsDropped());

	/* databases whose name is not known yet are left out until it is */
	Family(out, "ductape_worker_up", "gauge",
		   "1 while the database has its ductape worker, 0 when it has none.");
	for (i = 0; i < ndbs; i++)
		if (dbs[i].name[0])
			SeriesInt(out, "ductape_worker_up", dbs[i].name, NULL, NULL, up[i] ? 1 : 0);

	Family(out, "ductape_jobs", "gauge", "Background jobs by state, as the worker last read them.");
	for (i = 0; i < ndbs; i++)
		if (dbs[i].name[0] && dbs[i].published_at != 0)
			for (r = 0; r < lengthof(JobStates); r++)
				SeriesInt(out, "ductape_jobs", dbs[i].name, "state", JobStates[r].state,
						  dbs[i].gauges[JobStates[r].gauge]);

	Family(out, "ductape_oldest_queued_job_age_seconds", "gauge",
		   "How long the job that has waited longest since it became due has waited; 0 when none waits.");
	for (i = 0; i < ndbs; i++)
		if (dbs[i].name[0] && dbs[i].published_at != 0)
		{
			TimestampTz due = (TimestampTz) dbs[i].gauges[DT_G_OLDEST_DUE_AT];

			SeriesDouble(out, "ductape_oldest_queued_job_age_seconds", dbs[i].name,
						 due != 0 && due < now ? (double) (now - due) / USECS_PER_SEC : 0.0);
		}

	for (r = 0; r < lengthof(DbGauges); r++)
	{
		Family(out, DbGauges[r].family, "gauge", DbGauges[r].help);
		for (i = 0; i < ndbs; i++)
			if (dbs[i].name[0] && dbs[i].published_at != 0)
				SeriesInt(out, DbGauges[r].family, dbs[i].name, NULL, NULL,
						  dbs[i].gauges[DbGauges[r].gauge]);
	}

	Family(out, "ductape_gauges_published_timestamp_seconds", "gauge",
		   "When the database's worker last read the gauges (Unix time).");
	for (i = 0; i < ndbs; i++)
		if (dbs[i].name[0] && dbs[i].published_at != 0)
			SeriesDouble(out, "ductape_gauges_published_timestamp_seconds", dbs[i].name,
						 (double) dbs[i].published_at / USECS_PER_SEC +
						 (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * (double) SECS_PER_DAY);

	for (r = 0; r < lengthof(CounterRows); r++)
	{
		const CounterRow *row = &CounterRows[r];

		if (row->help != NULL)
			Family(out, row->family, "counter", row->help);
		for (i = 0; i < ndbs; i++)
			if (dbs[i].name[0])
				SeriesInt(out, row->family, dbs[i].name, row->outcome ? "outcome" : NULL,
						  row->outcome, (int64) dbs[i].counters[row->counter]);
	}

	if (!RenderCalls(out, dbs, ndbs))
		truncated = true;
	else if (!RenderLimits(out, dbs, ndbs))
		truncated = true;

	Family(out, "ductape_metrics_truncated", "gauge",
		   "1 when this response left series out to stay within its size bound.");
	appendStringInfo(out, "ductape_metrics_truncated %d\n", truncated ? 1 : 0);
	pfree(dbs);
	pfree(up);
}
