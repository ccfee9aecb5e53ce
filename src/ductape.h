/*-------------------------------------------------------------------------
 *
 * ductape.h
 *	  Declarations shared between ductape's subsystems.
 *
 * Subsystems, one file each, by layer (src/LAYERS; docs/architecture.md):
 *	1 utilities
 *	  jsonb_util.c small jsonb accessors and arrays
 *	  settings.c  the values of the settings, the tag rule
 *	  shmem.c     shared-memory set-up; the locking protocol (shmem.h)
 *	  registry.c  the registry of database workers (registry.h)
 *	  calls.c     the shared-memory ring of call records (calls.h)
 *	  stats.c     request counters in shared memory (stats.h)
 *	  counters.c  per-database outcome counters and gauges (counters.h)
 *	  flow.c      flow control: rate, concurrency, pauses (flow.h)
 *	2 core logic
 *	  template.c  $Placeholder{...} parsing, checking and resolution
 *	  catalog.c   the per-backend cache of apps and actions; the action rules
 *	  schema.c    JSON Schema validation of inputs, schema checks
 *	  import.c    reading OpenAPI documents (JSON, YAML) into jsonb
 *	  egress.c    the egress policy (which hosts and addresses we may reach)
 *	  signature.c webhook signatures (verify inbound, sign outbound)
 *	  secrets.c   the encrypted secret store and the master key
 *	  request.c   turning (app, action, env, input) into an HTTP request
 *	  retry.c     retry policies and schedules
 *	  metrics.c   the /metrics text (Prometheus)
 *	3 transport
 *	  http.c      libcurl driver, redirects, call records (+ http.h)
 *	4 worker runtime
 *	  gate.c      the one gate for user code; the caller proxy
 *	  runtime.c   units of SQL work, subtransactions, run as a role; the
 *	              registry of the worker's tasks
 *	  queue.c     the queue engine (jobs, deliveries, inbound events)
 *	5 features and processes
 *	  run.c       run, run_response, http: call and wait
 *	  jobs.c      background jobs
 *	  events.c    outbound events: publish, endpoints, deliveries
 *	  inbound.c   inbound webhook handlers, run by the database's worker
 *	  oauth.c     OAuth2 tokens
 *	  workflow.c  workflow conditions and step templates; the tick
 *	  retention.c deleting finished work past ductape.job_retention
 *	  health.c    ductape.health() and the gauges the worker publishes
 *	  webhook.c   the inbound webhook listener (a process of its own)
 *	  worker.c    background workers (launcher, per-database worker)
 *	  ductape.c   module load, settings
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_H
#define DUCTAPE_H

#include "postgres.h"

#include "compat.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "flow.h"
#include "registry.h"

#define DUCTAPE_VERSION "0.3.0"

/* Project SQLSTATEs (docs/reference.md). */
#define ERRCODE_DT_HTTP_STATUS	MAKE_SQLSTATE('D','T','0','0','0')
#define ERRCODE_DT_NETWORK		MAKE_SQLSTATE('D','T','0','0','1')
#define ERRCODE_DT_EGRESS		MAKE_SQLSTATE('D','T','0','0','2')
#define ERRCODE_DT_SECRET		MAKE_SQLSTATE('D','T','0','0','3')
#define ERRCODE_DT_RATE_LIMITED	MAKE_SQLSTATE('D','T','0','0','4')
/* internal: the worker's own OAuth2 refresh is pending; the job waits (never shown) */
#define ERRCODE_DT_TOKEN_PENDING MAKE_SQLSTATE('D','T','P','0','0')

#define DT_TAG_MAXLEN 63

/* ---- jsonb_util.c ---- */
extern JsonbValue *JsonbGetField(Jsonb *j, const char *key);
extern char *JsonbGetString(Jsonb *j, const char *key);
extern Jsonb *JsonbGetJsonb(Jsonb *j, const char *key);
extern int	JsonbGetInt(Jsonb *j, const char *key, int dflt);
extern Datum CStringListToTextArray(List *list);
extern char *JsonPointerShort(StringInfo path);
extern void JsonbRootValue(Jsonb *j, JsonbValue *v);

/* ---- settings.c (their values; ductape.c defines them) ---- */
typedef enum
{
	DT_LOG_NONE,
	DT_LOG_ERRORS,
	DT_LOG_ALL
} DtLogRequests;

extern char *ductape_env;
extern char *ductape_product;
extern int	ductape_default_timeout_ms;
extern int	ductape_max_response_size;
extern int	ductape_log_requests;
extern char *ductape_proxy;
extern char *ductape_ca_file;
extern int	ductape_workers;
extern int	ductape_egress_generation;
extern int	ductape_max_concurrency;
extern int	ductape_job_retention_s;
extern int	ductape_call_retention_s;

extern bool DtIsValidTag(const char *tag);
extern bool DtCallerIsAdmin(void);

/* ---- template.c ---- */
typedef enum
{
	PH_SECRET,
	PH_CONSTANT,
	PH_VARIABLE,
	PH_INPUT,
	PH_AUTH,
	PH_ROW,
	PH_OLD,
	PH_STEP,
	PH_EVENT,
	PH_HEADER,
	PH_NOW,
	PH_UUID,
	PH__COUNT
} PlaceholderKind;

#define PH_BIT(k) (1u << (k))
/* What workflow step inputs, conditions and outputs may use. */
#define PH_WORKFLOW_KINDS (PH_BIT(PH_INPUT) | PH_BIT(PH_STEP) | PH_BIT(PH_NOW) | PH_BIT(PH_UUID))
/* What app and action templates may use. */
#define PH_APP_KINDS (PH_BIT(PH_SECRET) | PH_BIT(PH_CONSTANT) | \
					  PH_BIT(PH_VARIABLE) | PH_BIT(PH_INPUT) | \
					  PH_BIT(PH_AUTH) | PH_BIT(PH_NOW) | PH_BIT(PH_UUID))

/*
 * A resolver gives the value of one placeholder.  It returns false when the
 * value is missing (the engine then raises 22023 naming the placeholder), and
 * may ereport itself for other problems.  args are the {...} parts.
 */
typedef bool (*TemplateResolver) (void *arg, PlaceholderKind kind,
								  int nargs, char **args, JsonbValue *out);

extern Jsonb *TemplateApply(Jsonb *tpl, TemplateResolver resolver, void *arg);
extern bool TemplateHasPlaceholders(Jsonb *tpl);
extern char *TemplateParsePlaceholder(const char *s, int len, PlaceholderKind *kind,
									  int *nargs, char ***args);
extern List *TemplateStepRefs(Jsonb *tpl);
extern void TemplateCheck(Jsonb *tpl, const char *path, uint32 allowed,
						  Jsonb *constants, Jsonb *variables, List **errors);
extern char *JsonbValueAsText(JsonbValue *v);

/* ---- catalog.c ---- */
typedef struct DtEnv
{
	char	   *slug;
	char	   *base_url;
	char	   *request_type;	/* may be NULL */
	DtLimitSpec limits;			/* the app's, overridden by the env's */
} DtEnv;

typedef struct DtAction
{
	char	   *tag;
	char	   *method;
	char	   *resource;
	char	   *request_type;	/* may be NULL */
	Jsonb	   *headers;		/* templates, may be NULL */
	Jsonb	   *query;
	Jsonb	   *body;
	Jsonb	   *input;			/* JSON Schema, may be NULL */
	Jsonb	   *retries;		/* policy, may be NULL */
	int			timeout_ms;		/* -1 when unset */
	int			nsuccess;
	int		   *success;		/* statuses that count as success */
	List	   *path_params;	/* names of :params in resource */
} DtAction;

typedef struct DtApp
{
	char	   *tag;
	List	   *envs;			/* DtEnv * */
	Jsonb	   *constants;		/* may be NULL */
	Jsonb	   *auth;			/* may be NULL */
	Jsonb	   *retries;		/* may be NULL */
	int			timeout_ms;		/* -1 when unset */
	char	   *idempotency_header;
	List	   *actions;		/* catalog.c's, parsed on first use: see
								 * CatalogGetAction */
	Jsonb	   *declared_variables;	/* the spec's "variables", may be NULL */
	Jsonb	   *webhooks;		/* the spec's "webhooks" array, may be NULL */
	List	   *bindings;		/* DtBinding *, loaded on demand */
	DtLimitSpec limits;			/* the app's own "limits" (envs': DtEnv) */
} DtApp;

/* How an app is used under one (product, env): docs/reference.md */
typedef struct DtBinding
{
	char	   *product;
	char	   *env;			/* the product env the caller named */
	DtEnv	   *app_env;		/* the app env it maps to */
	Jsonb	   *variables;		/* variable values, an object */
	Jsonb	   *credentials;	/* config credentials template, or NULL */
} DtBinding;

typedef struct DtElevated
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} DtElevated;

extern Oid	CatalogOwner(void);
extern void ElevateBegin(DtElevated *e);
extern void ElevateEnd(DtElevated *e);
extern void CatalogBeginCall(void);
extern DtApp *CatalogGetApp(const char *tag);
extern DtAction *CatalogGetAction(DtApp *app, const char *tag);
extern DtAction *CatalogParseAction(const char *app, const char *tag, Jsonb *spec,
									Jsonb *constants, Jsonb *variables);
extern DtEnv *CatalogGetEnv(DtApp *app, const char *slug);
extern DtBinding *CatalogGetBinding(DtApp *app, const char *product,
									const char *env);

/* ---- request.c: the request the transport sends ---- */
typedef struct DtRetryPolicy
{
	int			max;
	uint64		on_status[10];	/* bitmap of statuses 0..639 */
	bool		on_timeout;
	bool		on_network;
	int			initial_delay_ms;
	int			max_delay_ms;
	double		multiplier;
	double		jitter;
	bool		respect_retry_after;
	bool		unsafe;
} DtRetryPolicy;

typedef struct DtRequest
{
	/* what is sent */
	const char *method;
	char	   *url;
	List	   *headers;		/* "Name: value" strings */
	char	   *body;			/* NULL for none */
	size_t		body_len;
	bool		has_idempotency_key;
	bool		no_redirects;	/* a 3xx is the answer (deliveries) */
	int			timeout_ms;
	DtRetryPolicy policy;
	int		   *success;		/* NULL: any 2xx */
	int			nsuccess;
	List	   *sensitive;		/* strings to redact from anything recorded */
	/* OAuth2: the token used, and whether to force a refresh */
	bool		oauth;
	TimestampTz oauth_token_at;	/* updated_at of the token sent */
	bool		oauth_force;
	TimestampTz oauth_force_seen;
	/* what the call record names */
	const char *app;
	const char *action;
	const char *env;
	const char *product;
	int64		job_id;
	Oid			roleid;			/* whose call: InvalidOid = the current user */
	/* flow control (flow.h): whose limit the request counts against */
	DtLimit		limit;
} DtRequest;

/* ---- retry.c: retry policies and schedules ---- */
typedef enum
{
	OUT_RESPONSE,				/* a response arrived */
	OUT_TIMEOUT,				/* the attempt timed out */
	OUT_NETWORK,				/* any other transport failure */
	OUT_EGRESS,					/* refused by the egress policy */
	OUT_TOO_LARGE				/* response over ductape.max_response_size */
} OutcomeKind;

#define RETRY_SYNC_MAX 2		/* retries of a synchronous call by default */
#define RETRY_BACKGROUND_MAX 8	/* of a job */
#define RETRY_DELIVERY_MAX_ATTEMPTS 8	/* of an outbound delivery */
#define RETRY_HANDLER_MAX_ROUNDS 8	/* of an inbound event's handlers */

extern void RetryPolicyDefaults(DtRetryPolicy *p, int max);
extern void RetryPolicyOverlay(DtRetryPolicy *p, Jsonb *spec, const char *what);
extern bool ResponseIsSuccess(DtRequest *req, long status);
extern bool RetryWorthIt(DtRequest *req, OutcomeKind kind, bool sent, bool final,
						 long status, double retry_after_ms);
extern int64 RetryDelayMs(DtRetryPolicy *p, int retry, double retry_after_ms);
extern int64 RetryDeliveryDelayMs(int attempt, int status, double retry_after_ms);
extern int64 RetryHandlerDelayMs(int rounds);

extern void RequestBuild(DtRequest *req, DtApp *app, DtAction *action,
						 DtBinding *binding, Jsonb *input, Jsonb *options);
extern void RequestApplyOptions(DtRequest *req, Jsonb *options,
								const char *idempotency_header);
extern void RequestAddHeader(DtRequest *req, const char *name,
							 const char *value);
extern char *Redact(const char *s, List *sensitive);
extern bool IsSensitiveHeader(const char *name);
extern char *RequestResolveAuthField(DtApp *app, DtBinding *b, const char *key,
									 List **sensitive);
extern char *RequestResolveField(DtApp *app, DtBinding *b, Jsonb *obj,
								 const char *key, List **sensitive);
extern void RequestFormAppend(StringInfo buf, const char *key, const char *value);
extern void RequestPercentEncode(StringInfo buf, const char *s);

/* ---- schema.c ---- */
extern bool SchemaValidate(Jsonb *schema, JsonbValue *instance, StringInfo errors);
extern bool JsonbValueEqual(JsonbValue *a, JsonbValue *b);
extern void SchemaValidateInput(const char *app, const char *action, Jsonb *schema, Jsonb *input);
extern List *SchemaCheck(Jsonb *schema, const char *path);

/* ---- http.c: the transport (run.c sees more of it through http.h) ---- */
/* the outcome of sending a request; opaque outside http.c and run.c */
typedef struct CallResult CallResult;
extern CallResult *ExecuteRequest(DtRequest *req);
extern bool CallResultIsResponse(CallResult *cr);
extern int	CallResultStatus(CallResult *cr);
extern Jsonb *CallResultBody(CallResult *cr);
extern const char *CallResultError(CallResult *cr);

/* many attempts in flight (workers) */
typedef struct Xfer Xfer;

/*
 * What a worker's transfer belongs to (a job run, a delivery): the first
 * member of the owner passed to XferSubmit, so that the worker hands each
 * finished transfer back to its subsystem.
 */
typedef struct XferClient
{
	void		(*done) (Xfer *x);
} XferClient;

extern Xfer *XferSubmit(DtRequest *req, void *owner);
extern bool XferDone(Xfer *x);
extern bool XferSent(Xfer *x);
extern void *XferOwner(Xfer *x);
extern void XferFree(Xfer *x);
extern bool DriverPump(long timeout_ms, List **done);
extern void DriverKick(void);
typedef enum
{
	XFER_SUCCEEDED,
	XFER_RETRY,
	XFER_FAILED
} XferVerdict;
extern void XferResult(Xfer *x, int *status, const char **error,
					   const char **body, size_t *body_len, double *retry_after_ms);
extern void HttpCheckUrl(const char *url);
extern XferVerdict XferJudge(Xfer *x, int attempt, double duration_ms,
							 Jsonb **envelope, char **error, int64 *delay_ms);

/* ---- runtime.c ---- */

/*
 * A task of the database worker: something it does in its loop (serve token
 * requests, run queues, move workflows on, store call records, purge).
 * Features register theirs at load (WorkerRegisterTask, from _PG_init); the
 * worker runs them in the order registered, each round, when due:
 *	- on_wake: whenever the worker was woken (its latch: a dispatch, a
 *	  publish, a run started) or an earlier task of the round did work;
 *	- ready (may be NULL): a cheap look without a transaction; true when
 *	  there is work now, else *in_ms may say when there will be (or stay -1);
 *	- and when the time run last returned has passed.
 * run does one round and returns the ms until it is due again (0: there is
 * more now; -1: only when woken or ready), setting *did_work when it did
 * something other tasks may follow up.  The worker restores its memory
 * context and reports idle around each run.
 */
typedef struct WorkerTask
{
	const char *name;
	bool		on_wake;
	bool		(*ready) (long *in_ms);
	long		(*run) (bool *did_work);
} WorkerTask;

#define WORKER_TICK_MS 1000		/* tasks with retries look at least this often */

extern void WorkerRegisterTask(const WorkerTask *task);
extern int	WorkerTasks(const WorkerTask *const **tasks);
extern void WorkerLeaveUninstalled(void) pg_attribute_noreturn();
extern void WorkerBeginWork(const char *activity);
extern void WorkerBeginInstalledWork(const char *activity);
extern void WorkerEnsureInstalled(void);
extern void WorkerEndWork(void);
extern bool WorkerTry(void (*work) (void *arg), void *arg, const char *activity, char **error);
extern char *RunInSubtransaction(void (*fn) (void *), void *arg, int *sqlerrcode);
extern bool RunAsRole(Oid fn, const char *what, Oid role, Jsonb *arg, const char *activity,
					  char **error);

/* ---- queue.c: the queue engine ---- */

/*
 * One item a queue claimed (a job, a delivery, a webhook event): the first
 * member of each kind's own struct.  Everything of an item lives in cxt,
 * deleted once its result is stored.
 */
typedef struct QueueKind QueueKind;

typedef struct QueueItem
{
	XferClient	client;			/* first: the transport hands transfers back */
	const QueueKind *kind;
	MemoryContext cxt;
	DtRequest  *req;			/* prepare's request to send; NULL: none */
	char	   *error;			/* prepare (or judging) failed: its message, */
	int			sqlerrcode;		/* and its SQLSTATE */
	TimestampTz started;		/* when sent (or run) */
	double		duration_ms;	/* of the transfer */
	TimestampTz defer_until;	/* not sent: due again then, the attempt
								 * not counted (0: it was sent or run) */
} QueueItem;

/*
 * What a queue supplies; the engine does the rest (see queue.c).  The SPI
 * hooks run with SPI connected in the engine's transaction.
 */
struct QueueKind
{
	const char *name;			/* "jobs", "deliveries", "webhook events" */
	Size		item_size;		/* of the kind's struct (QueueItem first) */
	int			batch;			/* claim at most this many at once */
	bool		transfers;		/* items send requests (sharing
								 * ductape.max_concurrency); else run */
	bool		followed;		/* later tasks follow up on its work
								 * (workflows wait for jobs) */
	/* SPI: claim up to n due rows, leaving them in SPI_tuptable */
	void		(*claim) (int n);
	/* per claimed row, in a subtransaction, in the item's context */
	void		(*prepare) (QueueItem *item, HeapTuple tup, TupleDesc desc);
	/*
	 * (transfers) a finished transfer, in the item's context, with no
	 * transaction open; an error fails the item (item->error), so what must
	 * happen for every finished transfer is done first
	 */
	void		(*judge) (QueueItem *item, Xfer *x);
	/* (no transfers) the item's work, with no transaction open */
	void		(*run) (QueueItem *item);
	/* SPI, one transaction: store finished items; returns what to do after commit */
	List	   *(*write_back) (List *items, MemoryContext after_cxt);
	void		(*after_commit) (List *work);	/* may be NULL */
	/* SPI, at worker start: rows a dead worker left in progress are due again */
	void		(*recover) (void);	/* may be NULL */
	/* SPI: select when the next row is due (one timestamptz, NULL: none); NULL: look each tick */
	void		(*next_due) (void);
	/* no SPI: whether new rows were signalled; NULL: the worker's latch says */
	bool		(*signalled) (void);
};

extern void QueueRegister(const QueueKind *kind);
extern bool QueueRecover(void);

/* ---- jobs.c ---- */
extern void JobsInit(void);
extern void JobsCloseInsertState(void);
extern int64 JobsDispatch(const char *app_tag, const char *action_tag, Jsonb *input,
						  const char *env, const char *product, bool has_run_at,
						  TimestampTz run_at, const char *key, Oid on_success,
						  Oid on_failure, Jsonb *options);
extern void IdempotencyKeyTaken(const char *what);

/* ---- events.c ---- */
extern void EventsInit(void);
extern int	EventsReencryptAll(void);

/* ---- request.c: where OAuth2 tokens come from (oauth.c, set at load) ---- */
typedef char *(*RequestTokenProvider) (DtApp *app, DtBinding *b, bool force,
									   TimestampTz seen, TimestampTz *updated_at);
extern void RequestSetTokenProvider(RequestTokenProvider provider);

/* ---- oauth.c ---- */
#define DT_TOKEN_PENDING_MSG "OAuth2 token refresh pending"

extern char *OAuthAccessToken(DtApp *app, DtBinding *b, bool force,
							  TimestampTz seen, TimestampTz *updated_at);
extern int	OAuthReencryptAll(void);
extern void OAuthInit(void);
extern void OAuthShmemRegister(void);
extern int	OAuthServeRequests(Oid dbid);
extern void OAuthRecoverRequests(Oid dbid);
extern void OAuthDiscardRequests(Oid dbid);
extern int	OAuthPendingDatabases(Oid *dbs, int max);

/* ---- secrets.c ---- */
typedef int (*SecretsReencrypt) (void);	/* re-encrypts one kind; returns how many */
extern void SecretsRegisterSealed(SecretsReencrypt reencrypt);
extern char *ductape_master_key_file;
extern void SecretsEnsureDefaultKey(void);
extern bytea *SecretEncrypt(const char *plain, int len, const char *aad, int *version);
extern char *SecretDecrypt(bytea *blob, int version, const char *aad, const char *what);
extern char *SecretResolve(const char *name, const char *app, const char *env);
/* call a SQL function whose arguments carry a secret: see secrets.c */
extern Datum RunHidingStatement(PGFunction fn, FunctionCallInfo fcinfo);
extern char *SecretsKeyFileProblem(void);

/* ---- calls.c: see calls.h ---- */

/* ---- webhook.c ---- */
extern char *ductape_webhook_listen;
extern char *ductape_metrics_listen;
extern char *ductape_webhook_database;
extern int	ductape_webhook_max_body;
extern int	ductape_webhook_request_timeout_ms;
extern int	ductape_webhook_max_connections_per_address;
extern bool webhook_check_listen(char **newval, void **extra, GucSource source);
extern void WebhookRegisterListener(void);
extern void WebhookShmemRegister(void);
extern bool WebhooksTakePending(void);
extern bool WebhookListenerServing(bool metrics);
#ifdef DT_FUZZ
extern char *WebhookFuzzRequest(const char *raw, size_t len);
#endif


/* ---- inbound.c ---- */
extern void InboundInit(void);

/* ---- retention.c ---- */
extern void RetentionInit(void);
extern int32 CallsDayOf(TimestampTz t);
extern void CallsDaysEnsure(const int32 *days, int n);
extern void CallsDaysForget(void);

/* ---- metrics.c: the /metrics text ---- */
extern void MetricsRender(StringInfo out, bool webhooks_served);

/* ---- health.c ---- */
extern void HealthInit(void);

/* ---- signature.c ---- */
typedef enum
{
	SIG_OK,
	SIG_MISSING,				/* no signature header, or no secret */
	SIG_MALFORMED,				/* a header that does not parse */
	SIG_STALE,					/* timestamp outside the tolerance */
	SIG_MISMATCH				/* no signature matches */
} SignatureResult;

typedef const char *(*HeaderLookup) (void *arg, const char *name);

extern SignatureResult SignatureVerify(Jsonb *verify, const char *secret,
									   HeaderLookup header, void *header_arg,
									   const char *body, size_t body_len,
									   int64 now_s);
extern const char *SignatureResultText(SignatureResult r);
extern int	SignatureStandardKeyLength(const char *secret);
extern char *SignatureStandard(const char *secret, const char *msg_id,
							   int64 timestamp, const char *body, size_t len);

/* ---- gate.c ---- */
typedef struct DtGate
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} DtGate;

extern int	ductape_user_code_timeout_ms;
extern void GatePinSession(void);
extern bool GateEndedProcess(void);
extern void GateEnter(DtGate *g, Oid role);
extern void GateLeave(DtGate *g);
extern Oid	GateCheckFunction(Oid fn, const char *what);
extern void GateCallFunction(Oid fn, const char *what, Oid role, Jsonb *arg);
extern Jsonb *GateSelect(Oid role, const char *sql);
extern bool GateRunningCode(DtUserCode *code);
extern void GateRefuseOnce(const DtUserCode *code);
extern void GateForgetRefused(void);

/* ---- workflow.c ---- */
extern void WorkflowMarkEngineProcess(void);
extern void WorkflowInit(void);

/* ---- worker.c ---- */
extern void WorkerRegisterLauncher(void);
extern void WorkerInstallHooks(void);

#endif							/* DUCTAPE_H */
