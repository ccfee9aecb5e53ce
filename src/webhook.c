/*-------------------------------------------------------------------------
 *
 * webhook.c
 *	  Inbound webhooks, the listener: the background worker that receives,
 *	  verifies and stores events (docs/reference.md).  inbound.c runs the
 *	  handlers on them in the database's worker.
 *
 * The listener serves HTTP on ductape.webhook_listen with libmicrohttpd in
 * external epoll mode: MHD's epoll descriptor sits in the worker's own
 * WaitEventSet next to its latch, and every MHD callback runs in this
 * process's one thread, from MHD_run() in our loop; no libmicrohttpd thread
 * exists.  A request is refused at once when it can be from its head (405,
 * 404, 413 by Content-Length); otherwise its body is read (413 as soon as it
 * grows past ductape.webhook_max_body), and the connection is suspended.
 * All requests that finished arriving during one MHD_run() form a batch:
 * one transaction resolves their tokens and secrets, verifies signatures,
 * inserts the accepted events with ON CONFLICT DO NOTHING (a repeated event
 * id is stored once), queues NOTIFY ductape_webhook with each new row id, and
 * commits; only then are the connections resumed and answered 200.  While
 * one batch commits, the next accumulates: group commit.  If the batch
 * cannot commit, its requests are answered 503 and the sender retries.
 *
 * Limits, so that clients without credentials cannot starve the listener
 * (slowloris): a request must arrive in full, head and body, within
 * ductape.webhook_request_timeout of the connection opening (or of the
 * previous answer on a kept-alive connection); libmicrohttpd only knows an
 * idle timeout, so every connection is tracked from MHD's connection
 * notifications, and the wait loop closes those past the deadline (a 408
 * written to the socket, then shutdown(2)); a chunk that arrives late gets
 * its 408 from the access handler.  One address may hold at most
 * ductape.webhook_max_connections_per_address connections; the total is
 * sized from RLIMIT_NOFILE (see ListenerConnectionLimit), and when it is
 * nearly reached the connection that has been receiving longest is closed
 * to make room, so a flood of slow clients from many addresses cannot keep
 * a prompt sender out either.  A request that has arrived is never closed
 * by these limits while its batch commits.
 *
 * The listener runs as the bootstrap superuser with search_path pinned to
 * pg_catalog, pg_temp, and its SQL names every function and operator with
 * its schema: a database owner can create objects in schema public (an
 * operator "=" that matches more exactly than pg_catalog's, say) that
 * would otherwise run with the listener's rights.  The same holds for the
 * SQL the database's worker runs in inbound.c to dispatch handlers.
 *
 * Events are received in one database, ductape.webhook_database: a
 * background worker can connect to one database only.
 *
 * Metrics: when ductape.metrics_listen is set, the same process serves
 * GET /metrics on that address with a second libmicrohttpd daemon, its
 * epoll descriptor in the same wait set: its own socket, its own small
 * connection limits and a short idle timeout, so a slow or hostile scraper
 * holds neither the webhook connections nor the loop (MHD writes without
 * blocking).  The text is made by metrics.c from shared memory only; a
 * scrape runs no SQL and opens no transaction.  The listener runs when
 * either setting is set; with metrics alone it connects to no database.
 *
 * Shared state (the segment "ductape webhook listener", see shmem.c): the
 * port the listener bound, for webhook_url when the configured port is 0,
 * and the webhooks-pending flag, set after a batch with new events commits
 * and taken by the database's worker (WebhooksTakePending) to run the
 * handlers at once.  Two atomics, no lock; other files reach them only
 * through those functions.
 *
 * Layer 5 (processes): calls the layers below (catalog, template,
 * signature, secrets, runtime, gate; registry.c to wake the worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <microhttpd.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "counters.h"
#include "registry.h"
#include "shmem.h"

PGDLLEXPORT void ductape_listener_main(Datum arg);
PG_FUNCTION_INFO_V1(dt_webhook_listen_address);

char	   *ductape_webhook_listen = "";
char	   *ductape_metrics_listen = "";
char	   *ductape_webhook_database = "postgres";
int			ductape_webhook_max_body = 1024 * 1024;
int			ductape_webhook_request_timeout_ms = 5000;
int			ductape_webhook_max_connections_per_address = 512;

#define TOKEN_LEN 64

/* ---- shared state ---- */

typedef struct ListenerShared
{
	pg_atomic_uint32 port;		/* the listener's bound port; 0: none */
	pg_atomic_uint32 metrics_port;	/* the metrics daemon's; 0: none */
	pg_atomic_uint32 pending;	/* events stored since the worker looked */
} ListenerShared;

static ListenerShared *Listener = NULL;

static Size
ListenerShmemSize(void)
{
	return sizeof(ListenerShared);
}

static void
ListenerShmemInit(void *mem, LWLockPadded *locks)
{
	ListenerShared *l = mem;

	pg_atomic_init_u32(&l->port, 0);
	pg_atomic_init_u32(&l->metrics_port, 0);
	pg_atomic_init_u32(&l->pending, 0);
}

static const DtShmemSegment ListenerSegment = {
	.name = "ductape webhook listener",
	.nlocks = 0,
	.size = ListenerShmemSize,
	.init = ListenerShmemInit,
	.mem = (void **) &Listener,
};

void
WebhookShmemRegister(void)
{
	DtShmemRegister(&ListenerSegment);
}

/* The port the listener bound; 0 while it is not serving. */
static uint32
ListenerPort(void)
{
	return pg_atomic_read_u32(&Listener->port);
}

static void
ListenerSetPort(uint32 port)
{
	pg_atomic_write_u32(&Listener->port, port);
}

/* Whether the listener serves webhooks (metrics false) or /metrics now. */
bool
WebhookListenerServing(bool metrics)
{
	return pg_atomic_read_u32(metrics ? &Listener->metrics_port : &Listener->port) != 0;
}

/* New events are stored (committed) for the worker's handlers. */
static void
WebhooksSetPending(void)
{
	pg_atomic_write_u32(&Listener->pending, 1);
}

/* Worker side: were events stored since the last call?  Clears the flag. */
bool
WebhooksTakePending(void)
{
	return pg_atomic_exchange_u32(&Listener->pending, 0) != 0;
}

/* ---- the listener ---- */

typedef struct Header
{
	char	   *name;
	char	   *value;
} Header;

typedef struct Inbound
{
	MemoryContext cxt;			/* everything of this request */
	struct MHD_Connection *conn;
	char		token[TOKEN_LEN + 1];
	StringInfoData body;
	List	   *headers;		/* Header * */
	int			status;			/* the answer, once decided */
	const char *message;
	bool		stored;			/* 200 once the batch commits */
	struct Inbound *next;
} Inbound;

static MemoryContext ListenerContext = NULL;

/* the metrics daemon's closure, telling OnRequest which daemon it serves */
static const char MetricsDaemon[] = "metrics";
static enum MHD_Result HandleMetrics(struct MHD_Connection *conn, const char *url,
									 const char *method);
static MemoryContext BatchContext = NULL;
static Inbound *Ready = NULL;	/* received in full, suspended, unbatched */
static bool BatchStoredNew = false; /* the batch inserted events */

/*
 * Every open connection, from MHD's connection notifications.  "since" is
 * when the request now arriving began (the connection opened, or the
 * previous request on it was answered); while it is set, the connection is
 * in Receiving, which is therefore ordered by it, oldest first.  It is
 * cleared once the request's answer is decided (queued, or waiting for its
 * batch), so the deadline covers receiving only.
 */
typedef struct Conn
{
	dlist_node	node;			/* in Receiving while since != 0 */
	MHD_socket	fd;
	int64		since;			/* ms on the monotonic clock; 0: not receiving */
} Conn;

static dlist_head Receiving = DLIST_STATIC_INIT(Receiving);
static int	OpenConns = 0;		/* connections MHD has open */
static int	EvictAt = INT_MAX;	/* open connections that make room by closing
								 * the oldest receiving one */

/*
 * What a connection that did not send its request in time gets, written
 * straight to its socket by the sweep: MHD can queue a response only from
 * the access handler, which a client still sending its head never reached.
 * Made once by StartDaemon.
 */
#define TIMEOUT_MESSAGE "the request did not arrive within ductape.webhook_request_timeout"
#define TIMEOUT_BODY "{\"error\": \"" TIMEOUT_MESSAGE "\"}\n"
static char TimeoutAnswer[256];
static size_t TimeoutAnswerLen = 0;

static int64
NowMs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
ArmDeadline(Conn *c)
{
	if (c->since != 0)
		dlist_delete(&c->node);
	c->since = NowMs();
	dlist_push_tail(&Receiving, &c->node);
}

static void
DisarmDeadline(Conn *c)
{
	if (c == NULL || c->since == 0)
		return;
	dlist_delete(&c->node);
	c->since = 0;
}

static Conn *
ConnOf(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? (Conn *) ci->socket_context : NULL;
}

static bool
PastDeadline(Conn *c, int64 now)
{
	return c != NULL && c->since != 0 &&
		now - c->since >= ductape_webhook_request_timeout_ms;
}

/*
 * Close a connection whose request did not arrive in time (or that makes
 * room): the 408 if the socket takes it at once, then shutdown(2), which MHD
 * sees as the client's end of file at its next run and closes the
 * connection (calling OnCompleted and OnConnection).  Nothing else is
 * written to a receiving connection, so the 408 cannot interleave with an
 * answer of MHD's.
 */
static void
CloseLate(Conn *c)
{
	DisarmDeadline(c);
	if (TimeoutAnswerLen > 0)
		(void) send(c->fd, TimeoutAnswer, TimeoutAnswerLen, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void) shutdown(c->fd, SHUT_RDWR);
}

/* Close every connection past the deadline; returns how many. */
static int
SweepLate(void)
{
	int64		now = NowMs();
	int			n = 0;

	while (!dlist_is_empty(&Receiving))
	{
		Conn	   *c = dlist_head_element(Conn, node, &Receiving);

		if (!PastDeadline(c, now))
			break;
		CloseLate(c);
		n++;
	}
	if (n > 0)
		ereport(DEBUG1,
				(errmsg_plural("ductape webhook listener closed %d connection past ductape.webhook_request_timeout",
							   "ductape webhook listener closed %d connections past ductape.webhook_request_timeout",
							   n, n)));
	return n;
}

/* ms until the oldest receiving connection is due (-1: none) */
static long
NextDeadline(void)
{
	Conn	   *c;
	int64		left;

	if (dlist_is_empty(&Receiving))
		return -1;
	c = dlist_head_element(Conn, node, &Receiving);
	left = c->since + ductape_webhook_request_timeout_ms - NowMs();
	return (long) Max(left, 0);
}

/*
 * MHD's connection notifications: track each connection.  No PostgreSQL
 * error may unwind through MHD, so the allocation cannot fail with one; a
 * connection that cannot be tracked is closed at once.
 */
static void
OnConnection(void *cls, struct MHD_Connection *conn, void **socket_context,
			 enum MHD_ConnectionNotificationCode toe)
{
	Conn	   *c;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		OpenConns++;
		c = MemoryContextAllocExtended(ListenerContext, sizeof(Conn),
									   MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
		if (c == NULL || ci == NULL)
		{
			if (ci != NULL)
				(void) shutdown(ci->connect_fd, SHUT_RDWR);
			if (c != NULL)
				pfree(c);
			*socket_context = NULL;
			return;
		}
		c->fd = ci->connect_fd;
		ArmDeadline(c);
		*socket_context = c;

		/*
		 * Nearly full: make room by closing the connection that has been
		 * receiving longest.  A sender that sends its request at once is
		 * never the oldest for long, however many slow clients there are.
		 */
		if (OpenConns >= EvictAt)
			CloseLate(dlist_head_element(Conn, node, &Receiving));
		return;
	}
	/* MHD_CONNECTION_NOTIFY_CLOSED */
	OpenConns--;
	c = *socket_context;
	if (c != NULL)
	{
		DisarmDeadline(c);
		pfree(c);
	}
	*socket_context = NULL;
}

static enum MHD_Result
Answer(struct MHD_Connection *conn, unsigned int status, const char *message)
{
	struct MHD_Response *resp;
	char	   *body;
	enum MHD_Result r;

	if (status == MHD_HTTP_OK)
		body = pstrdup("{\"ok\": true}\n");
	else
	{
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"error\": ");
		escape_json(&buf, message);
		appendStringInfoString(&buf, "}\n");
		body = buf.data;
	}
	resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	pfree(body);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static bool
TokenShaped(const char *s)
{
	int			n = 0;

	for (; *s; s++, n++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')) || n >= TOKEN_LEN)
			return false;
	return n == TOKEN_LEN;
}

static enum MHD_Result
CollectHeader(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	Inbound    *in = cls;
	Header	   *h = palloc(sizeof(Header));

	h->name = pstrdup(key);
	h->value = pstrdup(value ? value : "");
	in->headers = lappend(in->headers, h);
	return MHD_YES;
}

/* Queue an answer decided before the request was stored: it stops receiving. */
static enum MHD_Result
Refuse(struct MHD_Connection *conn, unsigned int status, const char *message)
{
	DisarmDeadline(ConnOf(conn));
	CountersAdd(DT_C_EVENTS_REJECTED, 1);
	return Answer(conn, status, message);
}

static enum MHD_Result
HandleRequest(struct MHD_Connection *conn, const char *url, const char *method,
			  const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	Inbound    *in = *req_cls;
	Conn	   *c = ConnOf(conn);

	if (in == NULL)
	{
		const char *cl;
		MemoryContext cxt;

		/* the head: refuse what can be refused without reading the body */
		if (PastDeadline(c, NowMs()))
			return Refuse(conn, MHD_HTTP_REQUEST_TIMEOUT, TIMEOUT_MESSAGE);
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			return Refuse(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "webhooks are delivered with POST");
		if (strncmp(url, "/webhooks/", 10) != 0 || !TokenShaped(url + 10))
			return Refuse(conn, MHD_HTTP_NOT_FOUND, "unknown webhook URL");
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long) ductape_webhook_max_body)
			return Refuse(conn, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than ductape.webhook_max_body");
		cxt = AllocSetContextCreate(ListenerContext, "ductape inbound request",
									ALLOCSET_SMALL_SIZES);
		in = MemoryContextAllocZero(cxt, sizeof(Inbound));
		in->cxt = cxt;
		in->conn = conn;
		strlcpy(in->token, url + 10, sizeof(in->token));
		MemoryContextSwitchTo(cxt);
		initStringInfo(&in->body);
		*req_cls = in;
		return MHD_YES;
	}
	MemoryContextSwitchTo(in->cxt);
	if (in->status != 0)
		return Answer(conn, in->status, in->message);	/* resumed after its batch */
	if (*upload_data_size > 0)
	{
		if (PastDeadline(c, NowMs()))
		{
			/* a chunk after the deadline: stop reading, answer, close */
			in->status = MHD_HTTP_REQUEST_TIMEOUT;
			in->message = TIMEOUT_MESSAGE;
		}
		else if ((size_t) in->body.len + *upload_data_size > (size_t) ductape_webhook_max_body)
		{
			/* streamed past the limit: stop reading, answer, close */
			in->status = MHD_HTTP_CONTENT_TOO_LARGE;
			in->message = "body larger than ductape.webhook_max_body";
		}
		if (in->status != 0)
		{
			*upload_data_size = 0;
			return Refuse(conn, in->status, in->message);
		}
		appendBinaryStringInfo(&in->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* all of it is in: wait for the batch's commit, however long it takes */
	DisarmDeadline(c);
	MHD_get_connection_values(conn, MHD_HEADER_KIND, CollectHeader, in);
	MHD_suspend_connection(conn);
	in->next = Ready;
	Ready = in;
	return MHD_YES;
}

/*
 * MHD's access handler of both daemons (cls: MetricsDaemon for the
 * metrics one): no PostgreSQL error may unwind through MHD.
 */
static enum MHD_Result
OnRequest(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
		  const char *version, const char *upload_data, size_t *upload_data_size,
		  void **req_cls)
{
	MemoryContext here = CurrentMemoryContext;
	volatile enum MHD_Result r = MHD_NO;

	PG_TRY();
	{
		if (cls == MetricsDaemon)
			r = HandleMetrics(conn, url, method);
		else
			r = HandleRequest(conn, url, method, upload_data, upload_data_size, req_cls);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(here);
		EmitErrorReport();
#ifdef DT_FUZZ
		abort();				/* test/fuzz: no request may raise an error */
#endif
		FlushErrorState();

		/*
		 * No transaction is aborted here to release LWLocks; the listener
		 * holds none while MHD runs (MHD_run is called from the loop only).
		 */
		LWLockReleaseAll();
		r = MHD_NO;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(here);
	return r;
}

static void
OnCompleted(void *cls, struct MHD_Connection *conn, void **req_cls,
			enum MHD_RequestTerminationCode toe)
{
	Inbound    *in = *req_cls;
	Conn	   *c;

	if (in != NULL)
		MemoryContextDelete(in->cxt);
	*req_cls = NULL;

	/* answered: the next request on a kept-alive connection has its own deadline */
	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && (c = ConnOf(conn)) != NULL)
		ArmDeadline(c);
}

static void
OnLog(void *cls, const char *fmt, va_list ap)
{
	char		buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	ereport(DEBUG1, (errmsg_internal("ductape webhook listener: %s", buf)));
}

/* ---- one batch: resolve, verify, store, commit ---- */

typedef struct TokenInfo
{
	char	   *token;
	char	   *product;
	char	   *app;
	char	   *webhook;
	char	   *env;
	char	   *role;
	bool		usable;			/* false: could not resolve (503) */
	Jsonb	   *verify;
	Jsonb	   *selectors;		/* {"id": ..., "type": ...} */
	char	   *secret;
	List	   *sensitive;
} TokenInfo;

static const char *
InboundHeader(void *arg, const char *name)
{
	Inbound    *in = arg;
	ListCell   *lc;

	foreach(lc, in->headers)
	{
		Header	   *h = lfirst(lc);

		if (pg_strcasecmp(h->name, name) == 0)
			return h->value;
	}
	return NULL;
}

/* Find a webhook's spec by tag in its app. */
static Jsonb *
WebhookSpec(DtApp *app, const char *tag)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken t;

	if (app->webhooks == NULL || !JB_ROOT_IS_ARRAY(app->webhooks))
		return NULL;
	it = JsonbIteratorInit(&app->webhooks->root);
	while ((t = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (t == WJB_ELEM && v.type == jbvBinary)
		{
			Jsonb	   *w = JsonbValueToJsonb(&v);
			char	   *wtag = JsonbGetString(w, "tag");

			if (wtag && strcmp(wtag, tag) == 0)
				return w;
		}
	}
	return NULL;
}

/* {"id": ..., "type": ...}: the selectors of a webhook spec, to resolve per event */
static Jsonb *
Selectors(Jsonb *spec)
{
	JsonbParseState *st = NULL;
	const char *keys[2] = {"id", "type"};
	int			i;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < 2; i++)
	{
		JsonbValue *v = JsonbGetField(spec, keys[i]);
		JsonbValue	k;

		if (v == NULL || v->type != jbvString)
			continue;
		k.type = jbvString;
		k.val.string.val = (char *) keys[i];
		k.val.string.len = strlen(keys[i]);
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_VALUE, v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* Resolve a token's webhook spec and secret (errors: see ResolveToken). */
static void
ResolveTokenCall(void *arg)
{
	TokenInfo  *ti = arg;
	DtApp	   *app = CatalogGetApp(ti->app);
	Jsonb	   *spec = WebhookSpec(app, ti->webhook);
	DtBinding  *b;
	char	   *scheme;

	if (spec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("webhook \"%s\" of app \"%s\" does not exist", ti->webhook, ti->app)));
	ti->verify = JsonbGetJsonb(spec, "verify");
	ti->selectors = Selectors(spec);
	b = CatalogGetBinding(app, ti->product, ti->env);
	scheme = JsonbGetString(ti->verify, "scheme");
	if (scheme != NULL && strcmp(scheme, "none") != 0)
		ti->secret = RequestResolveField(app, b, ti->verify, "secret", &ti->sensitive);
}

/* A token that cannot be resolved (secret missing, ...) answers 503, alone. */
static void
ResolveToken(TokenInfo *ti)
{
	char	   *error = RunInSubtransaction(ResolveTokenCall, ti, NULL);

	ti->usable = (error == NULL);
	if (error != NULL)
		ereport(WARNING,
				(errmsg("ductape webhook listener cannot verify events of %s.%s: %s",
						ti->app, ti->webhook, error)));
}

typedef struct SelectorCtx
{
	Inbound    *in;
	Jsonb	   *payload;
} SelectorCtx;

/* $Event{a.b} walks the JSON payload; $Header{Name} is a request header. */
static bool
ResolveSelector(void *arg, PlaceholderKind kind, int nargs, char **args, JsonbValue *out)
{
	SelectorCtx *sc = arg;

	out->type = jbvNull;
	if (kind == PH_HEADER)
	{
		const char *h = InboundHeader(sc->in, args[0]);

		if (h != NULL)
		{
			out->type = jbvString;
			out->val.string.val = pstrdup(h);
			out->val.string.len = strlen(h);
		}
		return true;
	}
	if (kind == PH_EVENT && sc->payload != NULL)
	{
		JsonbValue	cur;
		int			i;

		cur.type = jbvBinary;
		cur.val.binary.data = &sc->payload->root;
		cur.val.binary.len = VARSIZE(sc->payload) - VARHDRSZ;
		for (i = 0; i < nargs; i++)
		{
			char	   *seg;
			char	   *save = NULL;
			char	   *path = pstrdup(args[i]);

			for (seg = strtok_r(path, ".", &save); seg; seg = strtok_r(NULL, ".", &save))
			{
				JsonbValue *next = NULL;

				if (cur.type != jbvBinary)
					return true;
				if (JsonContainerIsObject(cur.val.binary.data))
				{
					JsonbValue	k;

					k.type = jbvString;
					k.val.string.val = seg;
					k.val.string.len = strlen(seg);
					next = findJsonbValueFromContainer(cur.val.binary.data, JB_FOBJECT, &k);
				}
				else if (JsonContainerIsArray(cur.val.binary.data) && strspn(seg, "0123456789") == strlen(seg))
					next = getIthJsonbValueFromContainer(cur.val.binary.data, atoi(seg));
				if (next == NULL)
					return true;
				cur = *next;
			}
		}
		if (cur.type == jbvString || cur.type == jbvNumeric || cur.type == jbvBool)
		{
			char	   *s = JsonbValueAsText(&cur);

			out->type = jbvString;
			out->val.string.val = s;
			out->val.string.len = strlen(s);
		}
		return true;
	}
	return kind == PH_EVENT;
}

/* Is the body JSON?  Decides 400 for a JSON content type that does not parse. */
static bool
ParseBody(Inbound *in, Jsonb **payload)
{
	const char *ct = InboundHeader(in, "Content-Type");
	bool		json_type = ct != NULL && strstr(ct, "json") != NULL;
	const char *p = in->body.data;
	JsonLexContext *lex;

	*payload = NULL;
	if (memchr(in->body.data, '\0', in->body.len) != NULL ||
		!pg_verifymbstr(in->body.data, in->body.len, true))
	{
		in->status = MHD_HTTP_BAD_REQUEST;
		in->message = "the body is not valid text in the database encoding";
		return false;
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (!json_type && *p != '{' && *p != '[')
		return true;			/* kept as text */
	lex = makeJsonLexContextCstringLen(in->body.data, in->body.len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
	{
		if (!json_type)
			return true;
		in->status = MHD_HTTP_BAD_REQUEST;
		in->message = "the body is not valid JSON";
		return false;
	}
	*payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(in->body.data)));
	return true;
}

/* The request's headers as a JSON object, sensitive values redacted. */
static Jsonb *
HeadersJson(Inbound *in, List *sensitive)
{
	JsonbParseState *st = NULL;
	JsonbValue	k,
				v;
	ListCell   *lc;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	foreach(lc, in->headers)
	{
		Header	   *h = lfirst(lc);
		char	   *value = IsSensitiveHeader(h->name) ? "[redacted]" : Redact(h->value, sensitive);

		k.type = jbvString;
		k.val.string.val = h->name;
		k.val.string.len = strlen(h->name);
		v.type = jbvString;
		v.val.string.val = value;
		v.val.string.len = strlen(value);
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

static Datum
TextArray(List *l, Oid type)
{
	int			n = list_length(l);
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i = 0;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	ListCell   *lc;

	foreach(lc, l)
	{
		nulls[i] = lfirst(lc) == NULL;
		d[i] = nulls[i] ? (Datum) 0 : PointerGetDatum(lfirst(lc));
		i++;
	}
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, type, typlen, typbyval, typalign));
}

static void
StoreBatch(Inbound *batch)
{
	List	   *tokens = NIL;
	TokenInfo **infos;
	int			ninfos;
	Inbound    *in;
	int64		now_s = (int64) time(NULL);
	List	   *cols[10] = {NIL};
	Oid			argtypes[10] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[10];
	uint64		i;
	int			j;

	/* the tokens of this batch, with their webhook, secret and role */
	for (in = batch; in; in = in->next)
		tokens = lappend(tokens, cstring_to_text(in->token));
	args[0] = TextArray(tokens, TEXTOID);
	if (SPI_execute_with_args("SELECT token, product, app, webhook, env, role FROM ductape._webhook_tokens "
							  "WHERE token OPERATOR(pg_catalog.=) ANY ($1)",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read webhook tokens");
	ninfos = SPI_processed;
	infos = palloc0(sizeof(TokenInfo *) * Max(ninfos, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		TokenInfo  *ti = palloc0(sizeof(TokenInfo));
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		ti->token = SPI_getvalue(tup, desc, 1);
		ti->product = SPI_getvalue(tup, desc, 2);
		ti->app = SPI_getvalue(tup, desc, 3);
		ti->webhook = SPI_getvalue(tup, desc, 4);
		ti->env = SPI_getvalue(tup, desc, 5);
		ti->role = SPI_getvalue(tup, desc, 6);
		infos[i] = ti;
	}
	CatalogBeginCall();
	for (j = 0; j < ninfos; j++)
		ResolveToken(infos[j]);

	/* verify and parse each request */
	for (in = batch; in; in = in->next)
	{
		TokenInfo  *ti = NULL;
		SignatureResult sig;
		Jsonb	   *payload;
		Jsonb	   *sel;
		SelectorCtx sc;

		for (j = 0; j < ninfos && ti == NULL; j++)
			if (strcmp(infos[j]->token, in->token) == 0)
				ti = infos[j];
		if (ti == NULL)
		{
			in->status = MHD_HTTP_NOT_FOUND;
			in->message = "unknown webhook URL";
			continue;
		}
		if (!ti->usable)
		{
			in->status = MHD_HTTP_SERVICE_UNAVAILABLE;
			in->message = "this webhook cannot verify events now; see the server log";
			continue;
		}
		sig = SignatureVerify(ti->verify, ti->secret, InboundHeader, in,
							  in->body.data, in->body.len, now_s);
		if (sig != SIG_OK)
		{
			in->status = MHD_HTTP_UNAUTHORIZED;
			in->message = SignatureResultText(sig);
			continue;
		}
		if (!ParseBody(in, &payload))
			continue;
		sc.in = in;
		sc.payload = payload;
		sel = TemplateApply(ti->selectors, ResolveSelector, &sc);
		cols[0] = lappend(cols[0], cstring_to_text(ti->app));
		cols[1] = lappend(cols[1], cstring_to_text(ti->webhook));
		cols[2] = lappend(cols[2], cstring_to_text(ti->env));
		cols[3] = lappend(cols[3], cstring_to_text(ti->product));
		{
			char	   *id = JsonbGetString(sel, "id");
			char	   *type = JsonbGetString(sel, "type");

			cols[4] = lappend(cols[4], id ? cstring_to_text(id) : NULL);
			cols[5] = lappend(cols[5], type ? cstring_to_text(type) : NULL);
		}
		cols[6] = lappend(cols[6], HeadersJson(in, ti->sensitive));
		cols[7] = lappend(cols[7], payload);
		cols[8] = lappend(cols[8], payload ? NULL : cstring_to_text_with_len(in->body.data, in->body.len));
		cols[9] = lappend(cols[9], cstring_to_text(ti->role));
		in->stored = true;
	}
	if (cols[0] == NIL)
		return;

	/*
	 * One statement for the batch; a repeated event id is not stored again.
	 * An event no subscription wants is stored parked (see
	 * ParkUnwantedEvents); the ROW EXCLUSIVE lock on the subscriptions keeps
	 * the worker from matching new subscriptions against parked events until
	 * this batch is committed, so a subscription that commits after this
	 * statement's snapshot still wakes the events stored here.  (ROWS FROM
	 * with one unnest per column: the multi-argument unnest is expanded so
	 * only when it is written without its schema.)
	 */
	LockRelationOid(get_relname_relid("webhook_subscriptions", get_namespace_oid("ductape", false)),
					RowExclusiveLock);
	for (j = 0; j < 10; j++)
		args[j] = TextArray(cols[j], (j == 6 || j == 7) ? JSONBOID : TEXTOID);
	if (SPI_execute_with_args("INSERT INTO ductape.webhook_events "
							  "  (app, webhook, env, product, event_id, event_type, headers, payload, body, role, next_attempt_at) "
							  "SELECT a, w, e, p, i, t, h, pl, b, r::pg_catalog.name, "
							  "       CASE WHEN EXISTS (SELECT FROM ductape.webhook_subscriptions s "
							  "                          WHERE s.app OPERATOR(pg_catalog.=) a "
							  "                            AND s.webhook OPERATOR(pg_catalog.=) w "
							  "                            AND ductape._type_matches(t, s.event_type)) "
							  "            THEN pg_catalog.now() ELSE 'infinity' END "
							  "  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
							  "                  pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
							  "                  pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), "
							  "                  pg_catalog.unnest($10)) AS u(a, w, e, p, i, t, h, pl, b, r) "
							  "ON CONFLICT (product, app, webhook, env, event_id) WHERE event_id IS NOT NULL DO NOTHING "
							  "RETURNING id",
							  10, argtypes, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not store webhook events");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));

		Async_Notify("ductape_webhook", psprintf(INT64_FORMAT, id));
	}
	if (SPI_processed > 0)
		BatchStoredNew = true;
	CountersAddAtCommit(DT_C_EVENTS_RECEIVED, SPI_processed);
	CountersAddAtCommit(DT_C_EVENTS_DUPLICATE, list_length(cols[0]) - SPI_processed);
}

/*
 * Once the batch's transaction has ended: the answer to each request, and
 * its connection resumed so that MHD sends it.
 */
static void
AnswerBatch(Inbound *batch, bool committed)
{
	Inbound    *in;

	for (in = batch; in; in = in->next)
	{
		if (!committed)
		{
			in->status = MHD_HTTP_SERVICE_UNAVAILABLE;
			in->message = "the event could not be stored; try again";
		}
		else if (in->stored)
		{
			in->status = MHD_HTTP_OK;
			in->message = "stored";
		}
		else if (in->status == 0)
		{
			in->status = MHD_HTTP_SERVICE_UNAVAILABLE;
			in->message = "the event could not be stored; try again";
		}
		if (committed && !in->stored)
			CountersAdd(DT_C_EVENTS_REJECTED, 1);
		MHD_resume_connection(in->conn);
	}
}

/* Store what is ready, or refuse it all when ductape is not installed here. */
static void
StoreOrRefuse(Inbound *batch)
{
	Inbound    *in;

	if (OidIsValid(get_namespace_oid("ductape", true)))
	{
		StoreBatch(batch);
		return;
	}
	for (in = batch; in; in = in->next)
	{
		in->status = MHD_HTTP_SERVICE_UNAVAILABLE;
		in->message = "ductape is not installed in the listener's database";
	}
}

static void
ProcessBatch(void)
{
	Inbound    *batch = Ready;
	MemoryContext here = CurrentMemoryContext;
	volatile bool committed = false;

	Ready = NULL;
	MemoryContextReset(BatchContext);
	BatchStoredNew = false;
	PG_TRY();
	{
		WorkerBeginWork("ductape: storing webhook events");
		SPI_connect();
		MemoryContextSwitchTo(BatchContext);
		StoreOrRefuse(batch);
		SPI_finish();
		WorkerEndWork();
		committed = true;
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		/* (into the batch's context: here is the listener's long-lived one) */
		MemoryContextSwitchTo(BatchContext);
		ed = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(WARNING,
				(errmsg("ductape webhook listener could not store a batch of events: %s", ed->message)));
		FreeErrorData(ed);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(here);

	/* flag and wake once the events are visible, not before */
	if (committed && BatchStoredNew)
	{
		WebhooksSetPending();
		RegistryWakeWorker(MyDatabaseId);
	}
	AnswerBatch(batch, committed);
}

/* host:port or [v6]:port; the port may be 0 (any free port) */
static bool
ParseListen(const char *listen, char **host, char **port)
{
	const char *colon = strrchr(listen, ':');
	const char *h = listen;
	int			hlen;

	if (colon == NULL || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return false;
	hlen = colon - listen;
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
	{
		h++;
		hlen -= 2;
	}
	*host = pnstrdup(h, hlen);
	*port = pstrdup(colon + 1);
	return hlen > 0;
}

/*
 * ductape.webhook_listen's check: empty (no listener), or host:port where
 * host is an IPv4 address, an IPv6 address in brackets or a host name, and
 * port is 0 to 65535 (0: any free port, which webhook_url reports).  Host
 * names are not resolved here: a name may resolve only later, and the
 * listener resolves it when it starts.
 */
bool
webhook_check_listen(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	const char *colon;
	const char *p;
	char		host[256];	/* a name or [IPv6] */
	size_t		hlen;
	long		port = 0;
	struct in_addr a4;
	struct in6_addr a6;

	if (v == NULL || v[0] == '\0')
		return true;
	colon = strrchr(v, ':');
	if (colon == NULL)
	{
		GUC_check_errdetail("The address has no port.");
		goto bad;
	}
	if (colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
		strlen(colon + 1) > 5 || (port = strtol(colon + 1, NULL, 10)) > 65535)
	{
		GUC_check_errdetail("The port \"%s\" is not a number from 0 to 65535.", colon + 1);
		goto bad;
	}
	hlen = colon - v;
	if (hlen == 0)
	{
		GUC_check_errdetail("The host is empty.");
		goto bad;
	}
	if (hlen > 255)
	{
		GUC_check_errdetail("The host is longer than 255 characters.");
		goto bad;
	}
	memcpy(host, v, hlen);
	host[hlen] = '\0';
	if (host[0] == '[')
	{
		if (hlen < 3 || host[hlen - 1] != ']')
		{
			GUC_check_errdetail("An IPv6 address in brackets must end with \"]\" before the port.");
			goto bad;
		}
		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &a6) != 1)
		{
			GUC_check_errdetail("\"%s\" is not an IPv6 address.", host + 1);
			goto bad;
		}
		return true;
	}
	if (strchr(host, ':') != NULL)
	{
		GUC_check_errdetail("An IPv6 address must be written in brackets, such as [::1]:8080.");
		goto bad;
	}
	if (inet_pton(AF_INET, host, &a4) == 1)
		return true;
	if (strspn(host, "0123456789.") == hlen)
	{
		GUC_check_errdetail("\"%s\" is not an IPv4 address.", host);
		goto bad;
	}
	/* a host name: at most 253 characters, labels of letters, digits and "-" */
	for (p = host; *p;)
	{
		size_t		len = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");

		if (len == 0 || len > 63 || p[0] == '-' || p[len - 1] == '-' ||
			(p[len] != '.' && p[len] != '\0') || hlen > 253)
		{
			GUC_check_errdetail("\"%s\" is not a valid host name.", host);
			goto bad;
		}
		p += len;
		if (*p == '.')
			p++;
	}
	return true;

bad:
	GUC_check_errhint("Use host:port, such as 0.0.0.0:8080, [::1]:8080 or hooks.example.com:8080, or an empty value for no listener.");
	return false;
}

/*
 * How many connections the listener holds at once.  libmicrohttpd runs on
 * epoll here, so FD_SETSIZE is no bound; the process's RLIMIT_NOFILE is.
 * The soft limit is raised towards the hard one, as far as needed (su and
 * systemd start PostgreSQL with 1024 soft and far more hard; the listener
 * has no children and never select(2)s, so descriptors past 1023 are
 * safe), and LISTENER_RESERVED_FDS stay for what the listener opens as a
 * backend: relation and WAL files (a batch touches a few dozen), the latch,
 * the wait set and MHD's own descriptors.
 *
 * LISTENER_MAX_CONNECTIONS bounds memory: a connection that has sent its
 * head and part of a body costs the listener about 8 kB (3,000 of them
 * added 25 MB to its RssAnon), so 10,000 cost about 80 MB besides the
 * kernel's socket buffers; senders need far fewer.  The table's size is not
 * what keeps a prompt sender from being starved: that is the deadline, the
 * per-address cap, and closing the longest-receiving connection when the
 * table is nearly full (EvictAt), which holds however many addresses a
 * flood comes from.  Under a hard limit of 1024 the listener takes 768.
 */
#define LISTENER_MAX_CONNECTIONS 10000
#define LISTENER_RESERVED_FDS 256
#define LISTENER_MIN_CONNECTIONS 32

static int
ListenerConnectionLimit(void)
{
	struct rlimit rl;
	rlim_t		want = LISTENER_MAX_CONNECTIONS + LISTENER_RESERVED_FDS;
	int			limit;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return LISTENER_MIN_CONNECTIONS;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
	{
		struct rlimit raised = rl;

		raised.rlim_cur = (rl.rlim_max == RLIM_INFINITY) ? want : Min(want, rl.rlim_max);
		if (raised.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		limit = LISTENER_MAX_CONNECTIONS;
	else
		limit = (int) rl.rlim_cur - LISTENER_RESERVED_FDS;
	return Max(limit, LISTENER_MIN_CONNECTIONS);
}

/* The address of a listen setting (name: the setting's name), resolved. */
static struct addrinfo *
ResolveListen(const char *setting, const char *name)
{
	char	   *host;
	char	   *port;
	struct addrinfo hints;
	struct addrinfo *ai;
	int			rc;

	if (!ParseListen(setting, &host, &port))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", name, setting),
				 errhint("Use host:port, such as 0.0.0.0:8080 or [::1]:8080.")));
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not resolve %s host \"%s\": %s", name, host, gai_strerror(rc))));
	return ai;
}

static struct MHD_Daemon *
StartDaemon(int *limit)
{
	struct addrinfo *ai = ResolveListen(ductape_webhook_listen, "ductape.webhook_listen");
	struct MHD_Daemon *d;
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	*limit = ListenerConnectionLimit();
	EvictAt = *limit - Min(64, *limit / 4);
	snprintf(TimeoutAnswer, sizeof(TimeoutAnswer),
			 "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
			 "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(TIMEOUT_BODY), TIMEOUT_BODY);
	TimeoutAnswerLen = strlen(TimeoutAnswer);

	/*
	 * The idle timeout (10 s) now matters only for a client that does not
	 * read its answer: receiving is bounded by the deadline, which is
	 * shorter.  The backlog is as long as the kernel allows by default
	 * (somaxconn): a full one drops SYNs, and a sender's retry waits a
	 * second.
	 */
	d = MHD_start_daemon(flags, 0, NULL, NULL, OnRequest, NULL,
						 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 10,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) *limit,
						 MHD_OPTION_PER_IP_CONNECTION_LIMIT,
						 (unsigned int) ductape_webhook_max_connections_per_address,
						 MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 4096,
						 MHD_OPTION_NOTIFY_COMPLETED, OnCompleted, NULL,
						 MHD_OPTION_NOTIFY_CONNECTION, OnConnection, NULL,
						 MHD_OPTION_EXTERNAL_LOGGER, OnLog, NULL,
						 MHD_OPTION_END);
	freeaddrinfo(ai);
	if (d == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("ductape webhook listener could not listen on %s", ductape_webhook_listen),
				 errhint("Check that the address is local and the port is free.")));
	return d;
}

/* ---- /metrics ---- */

/*
 * The metrics daemon's limits: scrapers are few (Prometheus keeps one
 * connection per target), so a handful of connections, fewer from one
 * address, each closed after METRICS_IDLE_TIMEOUT_S without traffic.  A
 * client that opens them all and says nothing keeps scrapes out for that
 * long, not webhooks: those have their own daemon and limits.
 *
 * The text is made at most once per METRICS_REFRESH_MS and kept: every
 * scrape in that interval is answered with the same MHD response, which
 * MHD counts references to (one per connection sending it, one ours); its
 * buffer is freed (MetricsTextFree) when the last connection is done with
 * it and a newer text has replaced it.  A new text is not made while an
 * older one than the current is still being sent (LiveTexts == 2): the
 * current one is served a little longer.  So however many clients scrape,
 * the listener formats at most one text per second and holds at most two.
 * An answer must be sent in full within METRICS_SEND_TIMEOUT_S (Prometheus
 * gives up on a scrape after 10 s by default); a connection still sending
 * past that is closed, so a slow reader holds an old text, and the next
 * refresh, that long at most.
 */
#define METRICS_MAX_CONNECTIONS 32
#define METRICS_CONNECTIONS_PER_ADDRESS 8
#define METRICS_IDLE_TIMEOUT_S 5
#define METRICS_REFRESH_MS 1000
#define METRICS_SEND_TIMEOUT_S 10

static MemoryContext MetricsContext = NULL;
static bool ServingWebhooks = false;

static struct MHD_Response *MetricsResponse = NULL;	/* the current text */
static int64 MetricsMadeAt = 0;	/* NowMs() it was made */
static int	LiveTexts = 0;		/* texts not freed yet: the current, an older */

/* a metrics connection: its socket and when its answer was queued (0: none) */
typedef struct MetricsConn
{
	int			fd;				/* -1: slot free */
	int64		answering_since;
} MetricsConn;

static MetricsConn MetricsConns[METRICS_MAX_CONNECTIONS];

static enum MHD_Result
AnswerText(struct MHD_Connection *conn, unsigned int status, const char *content_type,
		   const char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result r;

	/* bodies are static strings */
	resp = MHD_create_response_from_buffer(len, (void *) body, MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

/* MHD: the last reference to a text is gone (called from MHD_run or our destroy) */
static void
MetricsTextFree(void *buf)
{
	free(buf);
	LiveTexts--;
}

/*
 * The response to serve now: the kept one while it is younger than
 * METRICS_REFRESH_MS (or while an older text is still being sent), else a
 * new text; NULL when it cannot be made (out of memory).
 */
static struct MHD_Response *
MetricsCurrent(void)
{
	int64		now = NowMs();
	MemoryContext old;
	StringInfoData out;
	char	   *buf;
	struct MHD_Response *resp;

	if (MetricsResponse != NULL &&
		(now - MetricsMadeAt < METRICS_REFRESH_MS || LiveTexts >= 2))
		return MetricsResponse;

	/* (a build cut short by an error left its pieces here) */
	MemoryContextReset(MetricsContext);
	old = MemoryContextSwitchTo(MetricsContext);
	initStringInfo(&out);
	MetricsRender(&out, ServingWebhooks);
	MemoryContextSwitchTo(old);
	/* kept outside PostgreSQL's contexts, exactly its size; MHD frees it */
	buf = malloc(Max(out.len, 1));
	if (buf != NULL)
		memcpy(buf, out.data, out.len);
	MemoryContextReset(MetricsContext);
	if (buf == NULL)
		return MetricsResponse;
	resp = MHD_create_response_from_buffer_with_free_callback_cls(out.len, buf,
																  MetricsTextFree, buf);
	if (resp == NULL)
	{
		free(buf);
		return MetricsResponse;
	}
	LiveTexts++;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
							"text/plain; version=0.0.4; charset=utf-8");
	/* ours goes; connections still sending the old text keep theirs */
	if (MetricsResponse != NULL)
		MHD_destroy_response(MetricsResponse);
	MetricsResponse = resp;
	MetricsMadeAt = now;
	return resp;
}

/*
 * Answered from the head: GET or HEAD /metrics (a query string is
 * ignored; MHD strips it), 405 for another method, 404 for another path.
 * A body sent with it is not read; MHD closes such a connection after the
 * answer.
 */
static enum MHD_Result
HandleMetrics(struct MHD_Connection *conn, const char *url, const char *method)
{
	struct MHD_Response *resp;
	const union MHD_ConnectionInfo *ci;
	enum MHD_Result r;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
	{
		static const char msg[] = "metrics are read with GET\n";

		return AnswerText(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
						  msg, sizeof(msg) - 1);
	}
	if (strcmp(url, "/metrics") != 0)
	{
		static const char msg[] = "not found: metrics are at /metrics\n";

		return AnswerText(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
						  msg, sizeof(msg) - 1);
	}
	resp = MetricsCurrent();
	if (resp == NULL)
		return MHD_NO;
	r = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (r == MHD_YES && ci != NULL && ci->socket_context != NULL)
		((MetricsConn *) ci->socket_context)->answering_since = NowMs();
	return r;
}

/* MHD: a metrics request is done (answer sent, or the connection failed) */
static void
OnMetricsCompleted(void *cls, struct MHD_Connection *conn, void **req_cls,
				   enum MHD_RequestTerminationCode toe)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	if (ci != NULL && ci->socket_context != NULL)
		((MetricsConn *) ci->socket_context)->answering_since = 0;
}

/* MHD: a metrics connection opens or closes; one slot each (fixed table) */
static void
OnMetricsConnection(void *cls, struct MHD_Connection *conn, void **socket_context,
					enum MHD_ConnectionNotificationCode toe)
{
	int			i;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (ci == NULL)
			return;
		for (i = 0; i < METRICS_MAX_CONNECTIONS; i++)
			if (MetricsConns[i].fd < 0)
			{
				MetricsConns[i].fd = ci->connect_fd;
				MetricsConns[i].answering_since = 0;
				*socket_context = &MetricsConns[i];
				return;
			}
		/* more than MHD's own limit: cannot be tracked, so not served */
		(void) shutdown(ci->connect_fd, SHUT_RDWR);
	}
	else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context != NULL)
	{
		((MetricsConn *) *socket_context)->fd = -1;
		*socket_context = NULL;
	}
}

/*
 * Close the metrics connections still sending an answer queued more than
 * METRICS_SEND_TIMEOUT_S ago (MHD sees the shutdown at its next run and
 * lets go of their text).
 */
static void
SweepSlowScrapers(void)
{
	int64		now = NowMs();
	int			i;

	for (i = 0; i < METRICS_MAX_CONNECTIONS; i++)
		if (MetricsConns[i].fd >= 0 && MetricsConns[i].answering_since != 0 &&
			now - MetricsConns[i].answering_since > METRICS_SEND_TIMEOUT_S * 1000)
		{
			(void) shutdown(MetricsConns[i].fd, SHUT_RDWR);
			MetricsConns[i].answering_since = 0;
			ereport(DEBUG1,
					(errmsg("ductape listener closed a metrics connection still reading its answer after %d s",
							METRICS_SEND_TIMEOUT_S)));
		}
}

static struct MHD_Daemon *
StartMetricsDaemon(void)
{
	struct addrinfo *ai = ResolveListen(ductape_metrics_listen, "ductape.metrics_listen");
	struct MHD_Daemon *d;
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	MetricsContext = AllocSetContextCreate(TopMemoryContext, "ductape metrics scrape",
										   ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < METRICS_MAX_CONNECTIONS; i++)
		MetricsConns[i].fd = -1;
	d = MHD_start_daemon(flags, 0, NULL, NULL, OnRequest, (void *) MetricsDaemon,
						 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
						 MHD_OPTION_NOTIFY_COMPLETED, OnMetricsCompleted, NULL,
						 MHD_OPTION_NOTIFY_CONNECTION, OnMetricsConnection, NULL,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) METRICS_IDLE_TIMEOUT_S,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) METRICS_MAX_CONNECTIONS,
						 MHD_OPTION_PER_IP_CONNECTION_LIMIT,
						 (unsigned int) METRICS_CONNECTIONS_PER_ADDRESS,
						 MHD_OPTION_EXTERNAL_LOGGER, OnLog, NULL,
						 MHD_OPTION_END);
	freeaddrinfo(ai);
	if (d == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("ductape listener could not serve metrics on %s", ductape_metrics_listen),
				 errhint("Check that the address is local and the port is free.")));
	return d;
}

#ifdef DT_FUZZ
/*
 * test/fuzz only: one raw HTTP request through libmicrohttpd and the
 * listener's own callbacks, over a socket pair instead of a listening socket,
 * its batch stored by StoreBatch inside the caller's transaction (the fuzz
 * harness wraps each call in a subtransaction that it rolls back).  Returns
 * the bytes MHD answered, NULL when the request never completed.
 */
char *
WebhookFuzzRequest(const char *raw, size_t len)
{
	static struct MHD_Daemon *d = NULL;
	struct sockaddr_in sa;
	int			sv[2];
	StringInfoData out;
	int			idle;
	size_t		sent = 0;

	if (d == NULL)
	{
		ListenerContext = AllocSetContextCreate(TopMemoryContext, "ductape listener",
												ALLOCSET_DEFAULT_SIZES);
		BatchContext = AllocSetContextCreate(TopMemoryContext, "ductape listener batch",
											 ALLOCSET_DEFAULT_SIZES);
		d = MHD_start_daemon(MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME, 0,
							 NULL, NULL, OnRequest, NULL,
							 MHD_OPTION_NOTIFY_COMPLETED, OnCompleted, NULL,
							 MHD_OPTION_NOTIFY_CONNECTION, OnConnection, NULL,
							 MHD_OPTION_EXTERNAL_LOGGER, OnLog, NULL,
							 MHD_OPTION_END);
		if (d == NULL)
			elog(ERROR, "could not start libmicrohttpd");
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		elog(ERROR, "socketpair: %m");
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (MHD_add_connection(d, sv[0], (struct sockaddr *) &sa, sizeof(sa)) != MHD_YES)
		elog(ERROR, "MHD_add_connection failed");
	initStringInfo(&out);
	for (idle = 0; idle < 4; idle++)
	{
		char		buf[8192];
		ssize_t		n;

		if (sent < len)
		{
			n = write(sv[1], raw + sent, len - sent);
			if (n > 0)
			{
				sent += n;
				idle = 0;
			}
		}
		MHD_run(d);
		if (Ready != NULL)
		{
			Inbound    *batch = Ready;

			Ready = NULL;
			MemoryContextReset(BatchContext);
			StoreOrRefuse(batch);
			AnswerBatch(batch, true);
			MHD_run(d);
			idle = 0;
		}
		while ((n = read(sv[1], buf, sizeof(buf))) > 0)
		{
			appendBinaryStringInfo(&out, buf, n);
			idle = 0;
		}
	}
	close(sv[1]);
	MHD_run(d);					/* sees the close, completes the request */
	return out.len > 0 ? out.data : NULL;
}
#endif

static void
ListenerExit(int code, Datum arg)
{
	ListenerSetPort(0);
	pg_atomic_write_u32(&Listener->metrics_port, 0);
}

void
ductape_listener_main(Datum arg)
{
	struct MHD_Daemon *d = NULL;
	struct MHD_Daemon *md = NULL;
	const union MHD_DaemonInfo *info;
	WaitEventSet *wes;
	int			limit = 0;
	bool		webhooks = ductape_webhook_listen[0] != '\0';
	bool		metrics = ductape_metrics_listen[0] != '\0';

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	before_shmem_exit(ListenerExit, (Datum) 0);
	wes = CreateWaitEventSet(TopMemoryContext, 4);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	pgstat_report_appname("ductape webhook listener");

	if (webhooks)
	{
		BackgroundWorkerInitializeConnection(ductape_webhook_database, NULL, 0);

		/*
		 * This session is the bootstrap superuser's: nothing a database
		 * owner can create (in schema public, say) or set for the database
		 * (search_path, role, timeouts) may reach its SQL (gate.c).
		 */
		GatePinSession();

		/* the database's counters are named before anything is counted */
		StartTransactionCommand();
		if (OidIsValid(get_namespace_oid("ductape", true)))
			CountersAttach();
		CommitTransactionCommand();

		ListenerContext = AllocSetContextCreate(TopMemoryContext, "ductape listener",
												ALLOCSET_DEFAULT_SIZES);
		BatchContext = AllocSetContextCreate(TopMemoryContext, "ductape listener batch",
											 ALLOCSET_DEFAULT_SIZES);
		d = StartDaemon(&limit);
		info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
		if (info == NULL)
			elog(ERROR, "libmicrohttpd has no epoll descriptor");
		AddWaitEventToSet(wes, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
		info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
		ListenerSetPort(info ? info->port : 0);
		ServingWebhooks = true;
		ereport(LOG,
				(errmsg("ductape webhook listener serving http://%s in database \"%s\"",
						ductape_webhook_listen, ductape_webhook_database),
				 errdetail("At most %d connections at once, %d from one address (0: no cap); a request must arrive within %d ms.",
						   limit, ductape_webhook_max_connections_per_address,
						   ductape_webhook_request_timeout_ms)));
	}
	else
	{
		/* metrics only: no database (shown in pg_stat_activity all the same) */
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	}
	if (metrics)
	{
		md = StartMetricsDaemon();
		info = MHD_get_daemon_info(md, MHD_DAEMON_INFO_EPOLL_FD);
		if (info == NULL)
			elog(ERROR, "libmicrohttpd has no epoll descriptor");
		AddWaitEventToSet(wes, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
		info = MHD_get_daemon_info(md, MHD_DAEMON_INFO_BIND_PORT);
		pg_atomic_write_u32(&Listener->metrics_port, info ? info->port : 1);
		ereport(LOG,
				(errmsg("ductape listener serving metrics at http://%s/metrics", ductape_metrics_listen)));
	}

	for (;;)
	{
		WaitEvent	ev[4];
		MHD_UNSIGNED_LONG_LONG mhd_timeout;
		long		timeout = 1000;
		long		deadline = d ? NextDeadline() : -1;

		if (d && MHD_get_timeout(d, &mhd_timeout) == MHD_YES)
			timeout = Min((long) mhd_timeout, timeout);
		if (md && MHD_get_timeout(md, &mhd_timeout) == MHD_YES)
			timeout = Min((long) mhd_timeout, timeout);
		if (deadline >= 0)
			timeout = Min(deadline, timeout);
		(void) WaitEventSetWait(wes, timeout, ev, lengthof(ev), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* scrapes first: they are answered at once, from shared memory */
		if (md)
		{
			SweepSlowScrapers();
			MHD_run(md);
		}
		if (d == NULL)
			continue;

		/*
		 * Close what is past the deadline (MHD sees it at once), serve;
		 * every request that arrived in full meanwhile goes into one batch,
		 * and while it commits the next one gathers.
		 */
		SweepLate();
		MHD_run(d);
		while (Ready != NULL)
		{
			ProcessBatch();
			SweepLate();
			MHD_run(d);
		}
	}
}

void
WebhookRegisterListener(void)
{
	BackgroundWorker bgw;

	if ((ductape_webhook_listen == NULL || ductape_webhook_listen[0] == '\0') &&
		(ductape_metrics_listen == NULL || ductape_metrics_listen[0] == '\0'))
		return;
	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 1;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "ductape");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "ductape_listener_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "ductape webhook listener");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "ductape webhook listener");
	RegisterBackgroundWorker(&bgw);
}

/* host:port of the listener as senders should use it (webhook_url). */
Datum
dt_webhook_listen_address(PG_FUNCTION_ARGS)
{
	char	   *host;
	char	   *port;
	const char *db = get_database_name(MyDatabaseId);
	uint32		bound = ListenerPort();
	bool		v6;

	if (ductape_webhook_listen[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the webhook listener is off"),
				 errdetail("ductape.webhook_listen is empty."),
				 errhint("Set ductape.webhook_listen (for example '0.0.0.0:8080') in postgresql.conf and restart the server.")));
	if (db == NULL || strcmp(db, ductape_webhook_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("webhooks are received in database \"%s\", not in \"%s\"",
						ductape_webhook_database, db ? db : "?"),
				 errhint("Call webhook_url in that database, or set ductape.webhook_database and restart the server.")));
	if (!ParseListen(ductape_webhook_listen, &host, &port))
		elog(ERROR, "invalid ductape.webhook_listen");
	v6 = strchr(host, ':') != NULL;
	if (strcmp(port, "0") == 0)
	{
		if (bound == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the webhook listener has not started yet"),
					 errhint("Try again in a moment; the server log says why if it does not start.")));
		port = psprintf("%u", bound);
	}
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(v6 ? "[%s]:%s" : "%s:%s", host, port)));
}
