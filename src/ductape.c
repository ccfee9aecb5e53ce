/*-------------------------------------------------------------------------
 *
 * ductape.c
 *	  Module load: refuses to load unless preloaded, defines every setting
 *	  (docs/reference.md), makes sure a master key exists, registers each
 *	  subsystem's shared memory (shmem.c) and the background workers.
 *
 * Layer 5: the wiring, it calls every layer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "ductape.h"
#include "calls.h"
#include "counters.h"
#include "egress.h"
#include "registry.h"
#include "shmem.h"
#include "stats.h"

PG_MODULE_MAGIC;

void		_PG_init(void);
PG_FUNCTION_INFO_V1(dt_version);

static const struct config_enum_entry log_requests_options[] = {
	{"all", DT_LOG_ALL, false},
	{"errors", DT_LOG_ERRORS, false},
	{"none", DT_LOG_NONE, false},
	{NULL, 0, false}
};

static bool
check_tag_guc(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || !DtIsValidTag(*newval))
	{
		GUC_check_errdetail("A tag is 1 to 63 characters: lower-case letters, digits, \"_\", \".\" and \"-\", starting with a letter or digit.");
		return false;
	}
	return true;
}

static bool
check_proxy(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0 &&
		strncmp(v, "socks5://", 9) != 0 && strncmp(v, "socks5h://", 10) != 0)
	{
		GUC_check_errdetail("A proxy is a URL starting with http://, https://, socks5:// or socks5h://.");
		return false;
	}
	if (strpbrk(v, "\r\n ") != NULL)
	{
		GUC_check_errdetail("A proxy URL cannot contain spaces or line breaks.");
		return false;
	}
	return true;
}

static bool
check_ca_file(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (!is_absolute_path(v))
	{
		GUC_check_errdetail("ductape.ca_file must be an absolute path.");
		return false;
	}
	if (access(v, R_OK) != 0)
	{
		GUC_check_errdetail("The file \"%s\" cannot be read: %m.", v);
		return false;
	}
	return true;
}

static bool
check_master_key_file(char **newval, void **extra, GucSource source)
{
	if (*newval && (*newval)[0] && !is_absolute_path(*newval))
	{
		GUC_check_errdetail("ductape.master_key_file must be an absolute path.");
		return false;
	}
	return true;
}

static void
assign_egress_bool(bool newval, void *extra)
{
	ductape_egress_generation++;
}

static void
assign_egress_string(const char *newval, void *extra)
{
	ductape_egress_generation++;
}

static void
assign_allowed_hosts(const char *newval, void *extra)
{
	egress_assign_allowed_hosts(newval, extra);
	ductape_egress_generation++;
}

static void
DefineSettings(void)
{
	DefineCustomStringVariable("ductape.env",
							   "Environment used when a call passes no env.",
							   "A tag such as dev or prd.  run, run_response, dispatch, workflow_start, config, "
							   "variable_set, webhook_url and oauth_set_tokens use it when their env argument is NULL.  "
							   "Any role may SET it; it applies from the next call.  Jobs and workflow runs keep the env "
							   "they were started with.",
							   &ductape_env, "dev",
							   PGC_USERSET, 0,
							   check_tag_guc, NULL, NULL);
	DefineCustomStringVariable("ductape.product",
							   "Product used when a call passes no product.",
							   "A product tag; the product \"default\" always exists and reaches every app.  The functions "
							   "that take a product argument use this one when it is NULL.  Any role may SET it; it "
							   "applies from the next call.  Jobs and workflow runs keep the product they were started "
							   "with.",
							   &ductape_product, "default",
							   PGC_USERSET, 0,
							   check_tag_guc, NULL, NULL);
	DefineCustomIntVariable("ductape.default_timeout",
							"Timeout of one HTTP attempt when neither the call, the action nor the app sets timeout_ms.",
							"In milliseconds, for each attempt separately, 1 ms to 24 h.  The call's timeout_ms "
							"option, then the action's, then the app's come first.  Any role may SET it for its own "
							"calls; jobs, workflow steps and OAuth2 token requests, made by the worker, use the value "
							"of the worker's session.  Applies from the next request.",
							&ductape_default_timeout_ms, 30000, 1, 24 * 3600 * 1000,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ductape.max_response_size",
							"Largest response body accepted; a larger one fails the call.",
							"In bytes, 1 kB to 512 MB.  A response body larger than this fails the call with SQLSTATE "
							"54000 (run_response and jobs too).  Only a superuser may set it (per session, per role "
							"or server-wide); applies from the next request.",
							&ductape_max_response_size, 10 * 1024 * 1024,
							1024, MaxAllocSize / 2,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("ductape.log_requests",
							 "Which calls are recorded in ductape.calls: all, errors or none.",
							 "all records every request; errors only the calls that failed (those recorded with an "
							 "error); none records nothing (the envelope's call_id is then 0).  Set in postgresql.conf "
							 "or with ALTER SYSTEM; takes effect at the next reload.",
							 &ductape_log_requests, DT_LOG_ALL,
							 log_requests_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("ductape.allowed_hosts",
							   "Hosts, *.domain patterns, addresses and CIDRs that outbound calls may reach; empty means any public address.",
							   "Private addresses are reachable only when listed here (as an address, CIDR or exact host "
							   "name) or when ductape.allow_private_networks is on.  Only a superuser may set it; "
							   "applies from the next request.",
							   &ductape_allowed_hosts, "",
							   PGC_SUSET, GUC_LIST_INPUT,
							   egress_check_allowed_hosts, assign_allowed_hosts, NULL);
	DefineCustomBoolVariable("ductape.allow_private_networks",
							 "Allows outbound calls to loopback, private, link-local and other non-public addresses.",
							 "Covers loopback, RFC 1918, link-local (cloud metadata included), CGNAT, unique-local, "
							 "multicast and reserved ranges, and their IPv4-mapped forms; checked on the resolved "
							 "address of every connection and redirect.  Off by default: such addresses are reachable "
							 "only when ductape.allowed_hosts lists them.  Only a superuser may set it; applies from "
							 "the next request.",
							 &ductape_allow_private_networks, false,
							 PGC_SUSET, 0,
							 NULL, assign_egress_bool, NULL);
	DefineCustomBoolVariable("ductape.https_only",
							 "Refuses outbound calls over plain http.",
							 "When on, a call or a redirect to an http:// URL is refused with SQLSTATE DT002; https to "
							 "http redirects are refused either way.  Only a superuser may set it; applies from the "
							 "next request.",
							 &ductape_https_only, false,
							 PGC_SUSET, 0,
							 NULL, assign_egress_bool, NULL);
	DefineCustomStringVariable("ductape.proxy",
							   "Proxy URL for outbound calls; proxy environment variables are always ignored.",
							   "An http://, https://, socks5:// or socks5h:// URL through which every outbound request "
							   "goes; empty means direct connections.  The egress policy still checks each target.  Only "
							   "a superuser may set it; applies from the next request.",
							   &ductape_proxy, "",
							   PGC_SUSET, 0,
							   check_proxy, assign_egress_string, NULL);

	DefineCustomIntVariable("ductape.max_concurrency",
							"Requests a worker keeps in flight at once.",
							"Shared by jobs and outbound event deliveries, 1 to 10,000; one endpoint gets at most a "
							"quarter of it.  Set in postgresql.conf or with ALTER SYSTEM; takes effect at the next "
							"reload.",
							&ductape_max_concurrency, 256, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ductape.job_retention",
							"How long finished jobs are kept before the worker purges them.",
							"In seconds (60 s and up, default 7 days).  Once a minute the worker deletes finished "
							"jobs older than this, and with them finished outbox rows, deliveries, messages with "
							"nothing left to deliver and handled or failed webhook events.  Set in postgresql.conf or "
							"with ALTER SYSTEM; takes effect at the next reload.",
							&ductape_job_retention_s, 7 * 24 * 3600, 60, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ductape.call_retention",
							"How long records in ductape.calls are kept before the worker drops them.",
							"Calls are stored in one partition per day; a day is dropped whole once all of it is "
							"older than this.  In seconds, 1 h and up, default 7 days.  Set in postgresql.conf or "
							"with ALTER SYSTEM; takes effect at the next reload.",
							&ductape_call_retention_s, 7 * 24 * 3600, 3600, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ductape.workers",
							"Workers per database.",
							"One worker per database for now; other values are refused.  Set in postgresql.conf; "
							"takes effect at server start.",
							&ductape_workers, 1, 1, 1,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ductape.master_key_file",
							   "File of master keys that encrypt secrets and tokens; empty means $PGDATA/ductape_master.key.",
							   "An absolute path; the file must not be readable by other users.  One 32-byte key per "
							   "line as 64 hex digits or base64, optionally prefixed by \"version:\"; the highest version "
							   "encrypts, every listed version decrypts.  Set in postgresql.conf; takes effect at server "
							   "start.  Only superusers may read it.",
							   &ductape_master_key_file, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY,
							   check_master_key_file, NULL, NULL);
	DefineCustomStringVariable("ductape.ca_file",
							   "PEM file of certificate authorities trusted for https calls; empty means the system's bundle.",
							   "For APIs behind a private or internal CA.  An absolute path to a readable file.  Only a "
							   "superuser may set it; applies from the next request.",
							   &ductape_ca_file, "",
							   PGC_SUSET, 0,
							   check_ca_file, assign_egress_string, NULL);

	DefineCustomStringVariable("ductape.webhook_listen",
							   "host:port where the webhook listener serves HTTP; empty means no listener.",
							   "Port 0 picks a free port (webhook_url shows it).  Put a TLS-terminating proxy in front "
							   "for the internet.  Set in postgresql.conf; takes effect at server start.",
							   &ductape_webhook_listen, "",
							   PGC_POSTMASTER, 0,
							   webhook_check_listen, NULL, NULL);
	DefineCustomStringVariable("ductape.metrics_listen",
							   "host:port where the listener serves Prometheus metrics at /metrics; empty means none.",
							   "Served by the same process as webhooks, on its own socket.  Keep it on a private "
							   "address: it names apps, actions and databases.  Set in postgresql.conf; takes effect at "
							   "server start.",
							   &ductape_metrics_listen, "",
							   PGC_POSTMASTER, 0,
							   webhook_check_listen, NULL, NULL);
	DefineCustomStringVariable("ductape.webhook_database",
							   "Database whose ductape receives webhook events.",
							   "A background worker connects to one database: webhook events are stored there, and "
							   "webhook_url works there only.  Set in postgresql.conf; takes effect at server start.",
							   &ductape_webhook_database, "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("ductape.webhook_max_body",
							"Largest webhook request body accepted; a larger one is answered 413.",
							"In bytes, 1 kB to 64 MB.  Set in postgresql.conf or with ALTER SYSTEM; takes effect at "
							"the next reload.",
							&ductape_webhook_max_body, 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ductape.webhook_request_timeout",
							"Time a webhook request may take to arrive in full, head and body; a slower one is answered 408 and closed.",
							"Counted from the connection opening, or from the previous answer on a kept-alive "
							"connection.  Bounds how long slow clients can hold the listener's connections.  In "
							"milliseconds, 100 ms to 600 s.  Set in postgresql.conf or with ALTER SYSTEM; takes "
							"effect at the next reload.",
							&ductape_webhook_request_timeout_ms, 5000, 100, 600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ductape.webhook_max_connections_per_address",
							"Connections the webhook listener accepts at once from one client address; 0 means no cap.",
							"Further connections from that address are closed at once.  Behind a proxy every "
							"connection comes from the proxy's address: raise this or set 0, and limit clients in the "
							"proxy.  Set in postgresql.conf; takes effect at server start.",
							&ductape_webhook_max_connections_per_address, 512, 0, 100000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("ductape.user_code_timeout",
							"Time a job callback, webhook handler or workflow sql step may run in a worker before it is cancelled.",
							"The worker runs user code one piece at a time; this keeps one slow or hostile function "
							"from holding it.  Code that keeps catching the cancel is ended with the worker 10 s "
							"later (the worker restarts).  0: no limit.  In milliseconds.  Set in postgresql.conf or "
							"with ALTER SYSTEM; takes effect at the next reload.",
							&ductape_user_code_timeout_ms, 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("ductape");
}

/* Each subsystem's shared memory (shmem.c), from _PG_init. */
static void
RegisterShmem(void)
{
	CallsShmemRegister();
	RegistryShmemRegister();
	OAuthShmemRegister();
	WebhookShmemRegister();
	StatsShmemRegister();
	CountersShmemRegister();
	LimitsShmemRegister();
}

/*
 * version() -> {"extension": "0.3.0", "library": "0.3.0"}: the installed
 * SQL objects' version and the loaded library's.  New binaries run the old
 * SQL until ALTER EXTENSION ductape UPDATE; the library supports every
 * version it ships an upgrade script for.
 */
Datum
dt_version(PG_FUNCTION_ARGS)
{
	char	   *ext = NULL;
	StringInfoData buf;

	SPI_connect();
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'ductape'",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		ext = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"extension\": ");
	if (ext)
		escape_json(&buf, ext);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"library\": ");
	escape_json(&buf, DUCTAPE_VERSION);
	appendStringInfoChar(&buf, '}');
	SPI_finish();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

void
_PG_init(void)
{
	/* subsystems above the core plug into it */
	RequestSetTokenProvider(OAuthAccessToken);
	SecretsRegisterSealed(OAuthReencryptAll);
	SecretsRegisterSealed(EventsReencryptAll);
#ifdef DT_FUZZ
	/*
	 * test/fuzz loads a second, instrumented copy next to the preloaded one:
	 * it defines nothing and attaches to the shared state the first made.
	 */
	RegisterShmem();
	DtShmemAttach();
	return;
#endif
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ductape must be loaded via shared_preload_libraries"),
				 errdetail("ductape keeps call records in shared memory and runs background workers, which can only be set up at server start."),
				 errhint("Add ductape to shared_preload_libraries in postgresql.conf and restart the server.")));

	DefineSettings();
	SecretsEnsureDefaultKey();
	RegisterShmem();
	DtShmemInstallHooks();

	/*
	 * The database worker's tasks, in the order each round runs them: token
	 * requests first (a caller waits for each), then the queues (jobs,
	 * deliveries, inbound events), workflows, call records, retention.
	 */
	OAuthInit();
	JobsInit();
	EventsInit();
	InboundInit();
	WorkflowInit();
	WorkerRegisterLauncher();
	RetentionInit();
	HealthInit();
	WebhookRegisterListener();
	WorkerInstallHooks();
}
