/*-------------------------------------------------------------------------
 *
 * http.c
 *	  Sending requests with libcurl: the transport under ductape.run,
 *	  run_response and http (run.c), background jobs and deliveries.
 *
 * Design:
 *	- One libcurl multi handle and one easy handle per process, kept for the
 *	  life of the backend, so connections stay alive across calls.
 *	- The multi handle is driven by curl_multi_socket_action from a
 *	  PostgreSQL WaitEventSet that holds the process latch and one epoll fd
 *	  into which curl's sockets are registered (CURLMOPT_SOCKETFUNCTION).
 *	  A query cancel or statement_timeout sets the latch, so it interrupts a
 *	  request or a retry delay at once, not at curl's next progress tick.
 *	  The database worker drives many transfers at once through the same
 *	  code (XferSubmit, DriverPump).
 *	- Whether an attempt is worth another, and after how long, is the
 *	  request's retry policy's (retry.c); this file counts and waits.
 *	- Redirects are followed here, not by curl, so every hop's URL goes
 *	  through the egress policy; every new connection's resolved address is
 *	  checked in CURLOPT_OPENSOCKETFUNCTION (egress.c), so DNS tricks and
 *	  redirects cannot reach a refused address.
 *	- Nothing here writes a table: the call record goes to shared memory
 *	  (calls.c) and a background worker stores it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <sys/epoll.h>
#include <time.h>
#include <curl/curl.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "ductape.h"
#include "calls.h"
#include "egress.h"
#include "http.h"
#include "stats.h"

#define DT_MAX_REDIRECTS 5

/* State of one transfer (one hop of one attempt). */
typedef struct Transfer
{
	const char *host;			/* URL host, for the address check */
	bool		egress_refused;
	char		egress_reason[256];
	StringInfoData body;
	bool		too_large;
	char		errbuf[CURL_ERROR_SIZE];
} Transfer;

/* ---- per-process libcurl state ---- */

static bool curl_ready = false;
static CURLM *dt_multi = NULL;
static CURL *dt_easy = NULL;
static int	dt_epfd = -1;
static WaitEventSet *dt_wes = NULL;
static int	dt_wes_epfd_pos = -1;
static int64 dt_deadline_ms = -1;	/* curl's timer, CLOCK_MONOTONIC ms */
static int	dt_generation = -1;
static List *EasyPool = NIL;	/* idle easy handles for workers */
static int	EasyPoolGeneration = -1;
static int	XfersOnMulti = 0;	/* transfers submitted and not yet freed */
static int64 PolicyChangedAt = 0;	/* when the policy last changed with a
										 * rebuild pending; 0: none pending */
static int	PolicySeen = -1;	/* the generation PolicyChangedAt is of */

static void HandleDone(CURL *easy, CURLcode result, List **done);

static int64
NowMs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
SocketCallback(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(dt_epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
		((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (epoll_ctl(dt_epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		epoll_ctl(dt_epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int
TimerCallback(CURLM *multi, long timeout_ms, void *userp)
{
	dt_deadline_ms = timeout_ms < 0 ? -1 : NowMs() + timeout_ms;
	return 0;
}

/* Set up (or, after an egress setting changed, rebuild) the curl state. */
static void
DriverEnsure(void)
{
	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR, (errmsg("could not initialize libcurl")));
		curl_ready = true;
	}
	if (dt_epfd < 0)
	{
		dt_epfd = epoll_create1(EPOLL_CLOEXEC);
		if (dt_epfd < 0)
			ereport(ERROR, (errmsg("could not create epoll descriptor: %m")));
		dt_wes = CreateWaitEventSet(TopMemoryContext, 3);
		AddWaitEventToSet(dt_wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(dt_wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		dt_wes_epfd_pos = AddWaitEventToSet(dt_wes, WL_SOCKET_READABLE, dt_epfd, NULL, NULL);
	}
	/*
	 * A setting of the egress policy changed (a reload): drop the pooled
	 * connections (and handles) made under the old one.  Not while
	 * transfers are on the multi handle -- they would never finish, and
	 * their limits' slots would stay taken -- until they are done;
	 * meanwhile no connection is reused (PolicyPending, XferStartHop).
	 */
	if (dt_multi != NULL && dt_generation != ductape_egress_generation &&
		PolicySeen != ductape_egress_generation)
	{
		PolicyChangedAt = NowMs();	/* (again, if it changed again) */
		PolicySeen = ductape_egress_generation;
	}
	if (dt_multi != NULL && dt_generation != ductape_egress_generation && XfersOnMulti == 0)
	{
		ListCell   *lc;

		/* drop pooled connections (and handles) from another policy */
		foreach(lc, EasyPool)
			curl_easy_cleanup(lfirst(lc));
		list_free(EasyPool);
		EasyPool = NIL;
		curl_easy_cleanup(dt_easy);
		curl_multi_cleanup(dt_multi);
		dt_easy = NULL;
		dt_multi = NULL;
	}
	if (dt_multi == NULL)
	{
		dt_multi = curl_multi_init();
		dt_easy = curl_easy_init();
		if (dt_multi == NULL || dt_easy == NULL)
			ereport(ERROR, (errmsg("could not create a libcurl handle")));
		curl_multi_setopt(dt_multi, CURLMOPT_SOCKETFUNCTION, SocketCallback);
		curl_multi_setopt(dt_multi, CURLMOPT_TIMERFUNCTION, TimerCallback);
		dt_generation = ductape_egress_generation;
		EasyPoolGeneration = dt_generation;
		PolicyChangedAt = 0;
	}
}

/* Hand every ready socket to libcurl. */
static void
SocketActions(int *running)
{
	struct epoll_event evs[64];
	int			k,
				j;

	k = epoll_wait(dt_epfd, evs, lengthof(evs), 0);
	for (j = 0; j < k; j++)
	{
		int			mask = 0;

		if (evs[j].events & EPOLLIN)
			mask |= CURL_CSELECT_IN;
		if (evs[j].events & EPOLLOUT)
			mask |= CURL_CSELECT_OUT;
		if (evs[j].events & (EPOLLERR | EPOLLHUP))
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(dt_multi, evs[j].data.fd, mask, running);
	}
}

/*
 * Transfers of the worker (XferSubmit) that finished while a synchronous
 * one ran on the same multi handle (DriverPerform: the worker's OAuth2
 * token requests): libcurl hands out each "done" message once, so they are
 * kept here for DriverPump, which takes them first.  Dropping them left
 * those jobs running and their limits' slots taken for good.
 */
typedef struct StashedDone
{
	CURL	   *easy;
	CURLcode	result;
} StashedDone;

static List *Stashed = NIL;

static void
StashDone(CURL *easy, CURLcode result)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	StashedDone *d = palloc(sizeof(StashedDone));

	d->easy = easy;
	d->result = result;
	Stashed = lappend(Stashed, d);
	MemoryContextSwitchTo(old);
	SetLatch(MyLatch);			/* the worker's loop pumps them */
}

/*
 * Run one transfer on the multi handle until it finishes, waking on the
 * latch for interrupts.  An interrupt (cancel, statement_timeout,
 * termination) ereports out of here after the transfer is detached.
 * Other transfers that finish meanwhile are stashed (StashDone).
 */
static CURLcode
DriverPerform(CURL *easy)
{
	volatile CURLcode result = CURLE_OK;
	volatile bool done = false;
	int			running;
	WaitEvent	events[3];

	curl_multi_add_handle(dt_multi, easy);
	PG_TRY();
	{
		curl_multi_socket_action(dt_multi, CURL_SOCKET_TIMEOUT, 0, &running);
		for (;;)
		{
			CURLMsg    *msg;
			int			left;
			long		timeout;
			int			n,
						i;

			while ((msg = curl_multi_info_read(dt_multi, &left)) != NULL)
			{
				if (msg->msg != CURLMSG_DONE)
					continue;
				if (msg->easy_handle == easy)
				{
					result = msg->data.result;
					done = true;
				}
				else
					StashDone(msg->easy_handle, msg->data.result);
			}
			if (done)
				break;

			if (dt_deadline_ms < 0)
				timeout = 1000;
			else
				timeout = Max(0, Min(1000, dt_deadline_ms - NowMs()));
			n = WaitEventSetWait(dt_wes, timeout, events, lengthof(events), DT_WAIT_EVENT);
			for (i = 0; i < n; i++)
			{
				if (events[i].events & WL_LATCH_SET)
				{
					ResetLatch(MyLatch);
					CHECK_FOR_INTERRUPTS();
				}
				if (events[i].pos == dt_wes_epfd_pos)
					SocketActions(&running);
			}
			if (dt_deadline_ms >= 0 && NowMs() >= dt_deadline_ms)
			{
				dt_deadline_ms = -1;
				curl_multi_socket_action(dt_multi, CURL_SOCKET_TIMEOUT, 0, &running);
			}
		}
	}
	PG_FINALLY();
	{
		curl_multi_remove_handle(dt_multi, easy);
	}
	PG_END_TRY();
	return result;
}

/* Sleep ms milliseconds, honouring cancel and statement_timeout. */
static void
SleepInterruptible(int64 ms)
{
	int64		end = NowMs() + ms;
	int64		left;

	while ((left = end - NowMs()) > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, DT_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* ---- libcurl callbacks (no ereport, no palloc failures escaping) ---- */

static size_t
WriteCallback(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Transfer   *t = userdata;
	size_t		n = size * nmemb;

	if ((size_t) t->body.len + n > (size_t) ductape_max_response_size)
	{
		t->too_large = true;
		return 0;				/* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (t->body.len + n + 1 > (size_t) t->body.maxlen)
	{
		/* grow without risking an ereport inside libcurl */
		size_t		newlen = Max((size_t) t->body.maxlen * 2, t->body.len + n + 1);
		char	   *nb = MemoryContextAllocExtended(CurrentMemoryContext, newlen,
													MCXT_ALLOC_NO_OOM);

		if (nb == NULL)
		{
			t->too_large = true;
			return 0;
		}
		memcpy(nb, t->body.data, t->body.len);
		pfree(t->body.data);
		t->body.data = nb;
		t->body.maxlen = newlen;
	}
	memcpy(t->body.data + t->body.len, ptr, n);
	t->body.len += n;
	t->body.data[t->body.len] = '\0';
	return n;
}

static curl_socket_t
OpenSocketCallback(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	Transfer   *t = clientp;

	/* A configured proxy is the superuser's choice: not checked. */
	if (ductape_proxy == NULL || ductape_proxy[0] == '\0')
	{
		char		reason[sizeof(t->egress_reason)];

		if (!EgressCheckAddress(t->host, &address->addr, reason, sizeof(reason)))
		{
			/* keep the first refusal: libcurl may try several addresses */
			if (!t->egress_refused)
				memcpy(t->egress_reason, reason, sizeof(reason));
			t->egress_refused = true;
			return CURL_SOCKET_BAD;
		}
	}
	/* close-on-exec: never leak a connection into COPY ... PROGRAM children */
	return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* ---- one attempt ---- */

static double
InfoMs(CURL *easy, CURLINFO what)
{
	curl_off_t	us = 0;

	curl_easy_getinfo(easy, what, &us);
	return us / 1000.0;
}

/* scheme and host of url, or false when libcurl cannot parse it */
bool
UrlParts(const char *url, char **scheme, char **host)
{
	CURLU	   *u = curl_url();
	char	   *s = NULL,
			   *h = NULL;
	bool		ok;

	ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK;
	if (ok)
	{
		*scheme = pstrdup(s);
		*host = pstrdup(h);
	}
	curl_free(s);
	curl_free(h);
	curl_url_cleanup(u);
	return ok;
}

/*
 * A URL as errors and call records show it: Redact replaces the user-info
 * of "scheme://user:password@host" and the sensitive values.  A URL libcurl
 * cannot parse may hide a password where that rule does not look
 * ("http://user:pa/ss@host", or no scheme): then everything before its last
 * "@" in front of any query or fragment is redacted too.
 */
char *
UrlForMessage(const char *url, List *sensitive)
{
	char	   *scheme,
			   *host;

	if (url == NULL)
		return NULL;
	if (strchr(url, '@') != NULL && !UrlParts(url, &scheme, &host))
	{
		size_t		head = strcspn(url, "?#");
		const char *at = NULL;
		const char *q;

		for (q = url; q < url + head; q++)
			if (*q == '@')
				at = q;
		if (at != NULL)
		{
			const char *sep = strstr(url, "://");
			const char *start = (sep != NULL && sep < at) ? sep + 3 : url;

			url = psprintf("%.*s[redacted]%s", (int) (start - url), url, at);
		}
	}
	return Redact(url, sensitive);
}

/*
 * The credentials in req->url's user-info are sensitive: the password as
 * written and decoded (the user name instead when there is no password: a
 * token, as in https://TOKEN@host), and the Basic credential libcurl sends
 * for them, which an API echoing the request's headers would print.
 */
void
AddUrlCredentials(DtRequest *req)
{
	CURLU	   *u;
	char	   *user = NULL,
			   *password = NULL,
			   *written = NULL;

	if (req->url == NULL || strchr(req->url, '@') == NULL)
		return;
	u = curl_url();
	if (curl_url_set(u, CURLUPART_URL, req->url, 0) == CURLUE_OK)
	{
		curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
		curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE);
		curl_url_get(u, CURLUPART_PASSWORD, &written, 0);
	}
	if (written && written[0])
		req->sensitive = lappend(req->sensitive, pstrdup(written));
	if (password && password[0])
		req->sensitive = lappend(req->sensitive, pstrdup(password));
	else if (user && user[0])
		req->sensitive = lappend(req->sensitive, pstrdup(user));
	if (user || password)
	{
		char	   *plain = psprintf("%s:%s", user ? user : "", password ? password : "");
		int			len = pg_b64_enc_len(strlen(plain));
		char	   *enc = palloc(len + 1);

		len = pg_b64_encode(plain, strlen(plain), enc, len);
		enc[len] = '\0';
		req->sensitive = lappend(req->sensitive, enc);
		explicit_bzero(plain, strlen(plain));
	}
	curl_free(user);
	curl_free(password);
	curl_free(written);
	curl_url_cleanup(u);
}

/*
 * Check a URL that will be called later (endpoint_create): an absolute http
 * or https URL whose scheme and host the egress policy allows.  The address
 * is checked again on every connection.
 */
void
HttpCheckUrl(const char *url)
{
	char	   *scheme,
			   *host;
	const char *reason;

	if (!UrlParts(url, &scheme, &host) ||
		(strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid endpoint URL \"%s\"", UrlForMessage(url, NIL)),
				 errdetail("An endpoint URL is an absolute http or https URL.")));
	reason = EgressCheckUrl(scheme, host);
	if (reason != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DT_EGRESS),
				 errmsg("request to %s blocked by the egress policy", UrlForMessage(url, NIL)),
				 errdetail("%s.", reason),
				 errhint("A superuser can allow it with ductape.allowed_hosts or ductape.allow_private_networks.")));
}

/* Do two URLs share scheme, host and port? */
static bool
SameOrigin(const char *a, const char *b)
{
	const CURLUPart parts[3] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
	CURLU	   *ua = curl_url();
	CURLU	   *ub = curl_url();
	bool		same = true;
	int			i;

	if (curl_url_set(ua, CURLUPART_URL, a, 0) != CURLUE_OK ||
		curl_url_set(ub, CURLUPART_URL, b, 0) != CURLUE_OK)
		same = false;
	for (i = 0; same && i < 3; i++)
	{
		char	   *va = NULL,
				   *vb = NULL;

		/* CURLU_DEFAULT_PORT: an implicit :443 equals an explicit one */
		curl_url_get(ua, parts[i], &va, CURLU_DEFAULT_PORT);
		curl_url_get(ub, parts[i], &vb, CURLU_DEFAULT_PORT);
		same = va && vb && pg_strcasecmp(va, vb) == 0;
		curl_free(va);
		curl_free(vb);
	}
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}

static const char *
HeaderValue(CURL *easy, const char *name)
{
	struct curl_header *h;

	if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
		return h->value;
	return NULL;
}

static double
ParseRetryAfter(const char *v)
{
	char	   *end;
	double		secs;
	time_t		when;

	if (v == NULL)
		return -1;
	secs = strtod(v, &end);
	if (end != v && *end == '\0' && secs >= 0)
		return secs * 1000.0;
	when = curl_getdate(v, NULL);
	if (when < 0)
		return -1;
	return Max(0, (double) (when - time(NULL)) * 1000.0);
}

static bool
IsRedirect(long status)
{
	return status == 301 || status == 302 || status == 303 ||
		status == 307 || status == 308;
}

/*
 * One attempt of a request, as a small state machine over redirect hops,
 * so that the same code serves a synchronous call (one transfer at a time,
 * DriverPerform) and a worker with many transfers in flight (DriverPump).
 */
struct Xfer
{
	DtRequest  *req;
	CURL	   *easy;
	int64		deadline;		/* of the attempt, CLOCK_MONOTONIC ms */
	/* the hop being made */
	const char *method;
	const char *body;
	size_t		body_len;
	char	   *url;
	List	   *headers;
	int			hop;
	char	   *scheme;
	char	   *host;
	Transfer	t;
	struct curl_slist *slist;
	/* result */
	Outcome		o;
	bool		done;
	void	   *owner;			/* the caller's data (a job) */
};

static void
XferInit(Xfer *x, DtRequest *req, CURL *easy, int64 deadline)
{
	memset(x, 0, sizeof(*x));
	x->req = req;
	x->easy = easy;
	x->deadline = deadline;
	x->method = req->method;
	x->body = req->body;
	x->body_len = req->body_len;
	x->url = req->url;
	x->headers = req->headers;
	x->o.retry_after_ms = -1;
}

/*
 * Check and set up the next hop on x->easy.  Returns false when the attempt
 * ended before any transfer (bad URL, egress refusal, out of time): x->o
 * says how.
 */
static bool
XferStartHop(Xfer *x)
{
	DtRequest  *req = x->req;
	Outcome    *o = &x->o;
	const char *reason;
	ListCell   *lc;
	int64		left = x->deadline - NowMs();
	CURL	   *easy = x->easy;

	o->final_url = x->url;
	if (!UrlParts(x->url, &x->scheme, &x->host))
	{
		o->kind = OUT_NETWORK;
		o->final = true;
		o->error = psprintf("invalid URL \"%s\"", UrlForMessage(x->url, req->sensitive));
		return false;
	}
	reason = EgressCheckUrl(x->scheme, x->host);
	if (reason != NULL)
	{
		o->kind = OUT_EGRESS;
		o->error = Redact(reason, req->sensitive);
		return false;
	}
	if (left <= 0)
	{
		o->kind = OUT_TIMEOUT;
		o->error = psprintf("timed out after %d ms", req->timeout_ms);
		return false;
	}

	memset(&x->t, 0, sizeof(x->t));
	x->t.host = x->host;
	initStringInfo(&x->t.body);

	curl_easy_reset(easy);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(easy, CURLOPT_URL, x->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "ductape/" DUCTAPE_VERSION);
	curl_easy_setopt(easy, CURLOPT_PROXY, ductape_proxy ? ductape_proxy : "");
	if (dt_generation != ductape_egress_generation)
	{
		/*
		 * The policy changed under transfers in flight (the handle is
		 * rebuilt once they are done): no connection made before the
		 * change is reused; those made since are.
		 */
		int64		age_s = (NowMs() - PolicyChangedAt) / 1000;

		if (PolicyChangedAt == 0 || age_s < 1)
			curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
		else
			curl_easy_setopt(easy, CURLOPT_MAXLIFETIME_CONN, (long) age_s);
	}
	if (ductape_ca_file && ductape_ca_file[0])
		curl_easy_setopt(easy, CURLOPT_CAINFO, ductape_ca_file);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) left);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(left, 10000));
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, x->t.errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, WriteCallback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &x->t);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, OpenSocketCallback);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, &x->t);
	if (ductape_max_response_size > 0)
		curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
						 (curl_off_t) ductape_max_response_size);

	x->slist = NULL;
	foreach(lc, x->headers)
		x->slist = curl_slist_append(x->slist, lfirst(lc));
	x->slist = curl_slist_append(x->slist, "Expect:");

	if (strcmp(x->method, "GET") == 0)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	else if (strcmp(x->method, "HEAD") == 0)
		curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
	else
	{
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, x->method);
		if (x->body != NULL || strcmp(x->method, "POST") == 0)
		{
			curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) x->body_len);
			curl_easy_setopt(easy, CURLOPT_POSTFIELDS, x->body ? x->body : "");
			if (x->body == NULL)
				x->slist = curl_slist_append(x->slist, "Content-Type:");
		}
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, x->slist);
	return true;
}

static void
XferCleanupHop(Xfer *x)
{
	curl_slist_free_all(x->slist);
	x->slist = NULL;
}

/*
 * A hop's transfer ended with rc.  Returns true when the attempt is over
 * (x->o filled), false when a redirect was accepted and the next hop must
 * be started.
 */
static bool
XferFinishHop(Xfer *x, CURLcode rc)
{
	DtRequest  *req = x->req;
	Outcome    *o = &x->o;
	CURL	   *easy = x->easy;
	char	   *location = NULL;
	ListCell   *lc;

	XferCleanupHop(x);
	o->t_dns = InfoMs(easy, CURLINFO_NAMELOOKUP_TIME_T);
	o->t_connect = InfoMs(easy, CURLINFO_CONNECT_TIME_T);
	o->t_tls = InfoMs(easy, CURLINFO_APPCONNECT_TIME_T);
	o->t_first = InfoMs(easy, CURLINFO_STARTTRANSFER_TIME_T);
	o->t_total = InfoMs(easy, CURLINFO_TOTAL_TIME_T);
	o->sent = o->sent || InfoMs(easy, CURLINFO_PRETRANSFER_TIME_T) > 0;

	if (rc != CURLE_OK)
	{
		if (x->t.egress_refused)
		{
			o->kind = OUT_EGRESS;
			o->error = pstrdup(x->t.egress_reason);
		}
		else if (x->t.too_large || rc == CURLE_FILESIZE_EXCEEDED)
		{
			o->kind = OUT_TOO_LARGE;
			o->error = psprintf("response is larger than ductape.max_response_size (%d bytes)",
								ductape_max_response_size);
		}
		else
		{
			o->kind = rc == CURLE_OPERATION_TIMEDOUT ? OUT_TIMEOUT : OUT_NETWORK;
			o->error = psprintf("%s", x->t.errbuf[0] ? x->t.errbuf : curl_easy_strerror(rc));
		}
		/* (a later hop's failure does not unsend the first hop) */
		if (x->hop == 0 && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
							rc == CURLE_COULDNT_RESOLVE_PROXY))
			o->sent = false;
		o->error = Redact(o->error, req->sensitive);
		return true;
	}

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &o->status);
	if (IsRedirect(o->status) && !req->no_redirects)
	{
		char	   *loc = NULL;

		curl_easy_getinfo(easy, CURLINFO_REDIRECT_URL, &loc);
		if (loc)
			location = pstrdup(loc);
	}
	if (location == NULL)
	{
		const char *ct = HeaderValue(easy, "Content-Type");

		o->kind = OUT_RESPONSE;
		o->body = x->t.body.data;
		o->body_len = x->t.body.len;
		o->content_type = ct ? pstrdup(ct) : NULL;
		o->retry_after_ms = ParseRetryAfter(HeaderValue(easy, "Retry-After"));
		return true;
	}

	/* a redirect: check and follow it ourselves */
	if (x->hop >= DT_MAX_REDIRECTS)
	{
		o->kind = OUT_NETWORK;
		o->final = true;
		o->error = psprintf("more than %d redirects", DT_MAX_REDIRECTS);
		return true;
	}
	{
		char	   *nscheme,
				   *nhost;

		if (!UrlParts(location, &nscheme, &nhost))
		{
			o->kind = OUT_NETWORK;
			o->final = true;
			o->error = pstrdup("redirect to an invalid URL");
			return true;
		}
		if (strcmp(x->scheme, "https") == 0 && strcmp(nscheme, "http") == 0)
		{
			o->kind = OUT_EGRESS;
			o->error = psprintf("redirect from https to http refused (to %s)",
								UrlForMessage(location, req->sensitive));
			return true;
		}
		if (!SameOrigin(x->url, location))
		{
			/*
			 * Credentials never follow a redirect to another scheme, host or
			 * port (as libcurl's own rule): drop the credential headers and
			 * any header carrying a sensitive value.
			 */
			List	   *kept = NIL;

			foreach(lc, x->headers)
			{
				const char *h = lfirst(lc);
				const char *colon = strchr(h, ':');
				char	   *name = pnstrdup(h, colon ? colon - h : strlen(h));

				if (!IsSensitiveHeader(name) &&
					strcmp(Redact(h, req->sensitive), h) == 0)
					kept = lappend(kept, (void *) h);
			}
			x->headers = kept;
		}
	}
	if (o->status == 303 ||
		((o->status == 301 || o->status == 302) && strcmp(x->method, "POST") == 0))
	{
		if (strcmp(x->method, "HEAD") != 0)
			x->method = "GET";
		x->body = NULL;
		x->body_len = 0;
	}
	x->url = location;
	x->hop++;
	return false;
}

/* Make one attempt of req synchronously, following redirects; fills *o. */
static void
Attempt(DtRequest *req, Outcome *o, int64 attempt_deadline)
{
	Xfer		x;

	XferInit(&x, req, dt_easy, attempt_deadline);
	for (;;)
	{
		volatile CURLcode rc = CURLE_OK;

		if (!XferStartHop(&x))
			break;
		PG_TRY();
		{
			rc = DriverPerform(dt_easy);
		}
		PG_CATCH();
		{
			XferCleanupHop(&x);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (XferFinishHop(&x, rc))
			break;
	}
	*o = x.o;
}

/* ---- many transfers at once (background workers) ---- */

/*
 * Start an attempt of req on its own easy handle, in flight on the shared
 * multi handle.  Returns the Xfer (allocated in CurrentMemoryContext); if
 * the attempt ended before any transfer, it is already done (XferDone).
 */
Xfer *
XferSubmit(DtRequest *req, void *owner)
{
	Xfer	   *x = palloc(sizeof(Xfer));
	CURL	   *easy;

	DriverEnsure();
	if (EasyPool != NIL && EasyPoolGeneration == dt_generation)
	{
		easy = linitial(EasyPool);
		EasyPool = list_delete_first(EasyPool);
	}
	else
		easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR, (errmsg("could not create a libcurl handle")));
	XferInit(x, req, easy, NowMs() + req->timeout_ms);
	x->owner = owner;
	XfersOnMulti++;				/* until XferFree */
	if (XferStartHop(x))
	{
		curl_multi_add_handle(dt_multi, easy);
		x->done = false;
	}
	else
		x->done = true;
	return x;
}

bool
XferDone(Xfer *x)
{
	return x->done;
}

/* Did any byte of a finished transfer's request leave (or an answer come)? */
bool
XferSent(Xfer *x)
{
	return x->o.sent || x->o.kind == OUT_RESPONSE;
}

void *
XferOwner(Xfer *x)
{
	return x->owner;
}

/*
 * What a finished transfer got, for callers that judge it themselves
 * (deliveries): the status (0 without a response) or the error, the body and
 * Retry-After (-1 when absent).
 */
void
XferResult(Xfer *x, int *status, const char **error, const char **body,
		   size_t *body_len, double *retry_after_ms)
{
	Outcome    *o = &x->o;

	*status = o->kind == OUT_RESPONSE ? (int) o->status : 0;
	*error = o->kind == OUT_RESPONSE ? NULL : (o->error ? o->error : "no response");
	*body = o->body;
	*body_len = o->kind == OUT_RESPONSE ? o->body_len : 0;
	*retry_after_ms = o->retry_after_ms;
}

/*
 * Release an Xfer's libcurl handle (after it is done) into a small pool:
 * creating a handle per job costs more than resetting one.  The pool is
 * dropped with the multi handle when an egress setting changes.
 */
void
XferFree(Xfer *x)
{
	if (x->easy)
	{
		XfersOnMulti--;
		curl_multi_remove_handle(dt_multi, x->easy);
		XferCleanupHop(x);
		if (list_length(EasyPool) < 1024 && EasyPoolGeneration == dt_generation)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			EasyPool = lappend(EasyPool, x->easy);
			MemoryContextSwitchTo(old);
		}
		else
			curl_easy_cleanup(x->easy);
		x->easy = NULL;
	}
}

/*
 * Wait up to timeout_ms for the latch or any transfer, drive libcurl, and
 * append every attempt that finished to *done.  Returns true if the latch
 * was set (the caller has other work: new jobs, a signal).
 */
bool
DriverPump(long timeout_ms, List **done)
{
	WaitEvent	events[3];
	int			n,
				i,
				running;
	bool		latch = false;
	CURLMsg    *msg;
	int			left;

	DriverEnsure();
	if (dt_deadline_ms >= 0)
		timeout_ms = Max(0, Min(timeout_ms, dt_deadline_ms - NowMs()));
	n = WaitEventSetWait(dt_wes, timeout_ms, events, lengthof(events), DT_WAIT_EVENT);
	for (i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch = true;
		}
		if (events[i].pos == dt_wes_epfd_pos)
			SocketActions(&running);
	}
	if (dt_deadline_ms >= 0 && NowMs() >= dt_deadline_ms)
	{
		dt_deadline_ms = -1;
		curl_multi_socket_action(dt_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	while (Stashed != NIL)
	{
		StashedDone *d = linitial(Stashed);

		Stashed = list_delete_first(Stashed);
		HandleDone(d->easy, d->result, done);
		pfree(d);
	}
	while ((msg = curl_multi_info_read(dt_multi, &left)) != NULL)
	{
		if (msg->msg != CURLMSG_DONE)
			continue;
		HandleDone(msg->easy_handle, msg->data.result, done);
	}
	return latch;
}

/* A transfer of a worker's hop ended: the attempt is done, or its next hop starts. */
static void
HandleDone(CURL *easy, CURLcode result, List **done)
{
	Xfer	   *x = NULL;
	int			running;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &x);
	curl_multi_remove_handle(dt_multi, easy);
	if (XferFinishHop(x, result))
	{
		x->done = true;
		*done = lappend(*done, x);
	}
	else if (XferStartHop(x))
	{
		curl_multi_add_handle(dt_multi, x->easy);
		curl_multi_socket_action(dt_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	else
	{
		x->done = true;
		*done = lappend(*done, x);
	}
}

/* Kick transfers just added (libcurl starts them from its timer). */
void
DriverKick(void)
{
	int			running;

	curl_multi_socket_action(dt_multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* Is this attempt worth another under the request's policy (retry.c)? */
static bool
ShouldRetry(DtRequest *req, Outcome *o)
{
	return RetryWorthIt(req, o->kind, o->sent, o->final, o->status, o->retry_after_ms);
}

/* The class ductape.stats counts a failed call in (stats.h). */
static DtStatsErrorClass
ErrorClass(CallResult *cr, const char *error)
{
	if (error == NULL)
		return DT_STATS_OK;
	switch (cr->o.kind)
	{
		case OUT_RESPONSE:
			if (cr->o.status >= 400 && cr->o.status <= 499)
				return DT_STATS_4XX;
			if (cr->o.status >= 500 && cr->o.status <= 599)
				return DT_STATS_5XX;
			return DT_STATS_OTHER;
		case OUT_NETWORK:
		case OUT_TIMEOUT:
			return DT_STATS_NETWORK;
		case OUT_EGRESS:
			return DT_STATS_EGRESS;
		case OUT_TOO_LARGE:
			break;
	}
	return DT_STATS_OTHER;
}

/*
 * Count the call in ductape.stats (always) and queue its record (as
 * ductape.log_requests says).  cls: the error class, or DT_STATS_OK to
 * have it worked out from the outcome and error.
 */
static void
RecordCall(DtRequest *req, CallResult *cr, const char *error, DtStatsErrorClass cls)
{
	DtCallInfo	info;
	bool		failed = error != NULL;

	if (cls == DT_STATS_OK)
		cls = ErrorClass(cr, error);
	StatsCount(req->app, req->action, req->env, req->roleid, cr->duration_ms, cls,
			   GetCurrentTimestamp() - (TimestampTz) (cr->duration_ms * 1000.0));

	cr->call_id = 0;
	if (ductape_log_requests == DT_LOG_NONE ||
		(ductape_log_requests == DT_LOG_ERRORS && !failed))
		return;
	memset(&info, 0, sizeof(info));
	info.app = req->app;
	info.action = req->action;
	info.env = req->env;
	info.product = req->product;
	info.method = req->method;
	info.url = UrlForMessage(req->url, req->sensitive);
	info.status = cr->o.kind == OUT_RESPONSE ? (int) cr->o.status : 0;
	info.attempts = cr->attempts;
	info.duration_ms = cr->duration_ms;
	info.error = error;
	info.job_id = req->job_id;
	info.roleid = req->roleid;
	cr->call_id = CallsRecord(&info);
}

/* The error text a call record keeps, or NULL for a success. */
static char *
CallError(DtRequest *req, Outcome *o)
{
	if (o->kind == OUT_RESPONSE)
		return ResponseIsSuccess(req, o->status) ? NULL : psprintf("HTTP %ld", o->status);
	return o->error;
}

/*
 * Wait until the request's limit lets it go (flow.c), up to the limit's
 * max_wait_ms, interruptibly (a cancel or statement_timeout raises out of
 * the wait).  Returns false when it may not go within that, having counted
 * the rejection: *why, *until and *waited_ms say why and how long it
 * waited.  A wait known to end too late is not waited at all.
 */
static bool
LimitEnter(DtRequest *req, DtLimitReason *why, TimestampTz *until, int64 *waited_ms)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = start + (TimestampTz) req->limit.spec.max_wait_ms * 1000;

	for (;;)
	{
		*why = LimitTryAcquire(&req->limit, until);
		if (*why == DT_LIMIT_GO)
			return true;
		if ((*why != DT_LIMIT_SLOTS && *until > deadline) ||
			!LimitWait(&req->limit, *why, *until, deadline))
			break;
	}
	*waited_ms = (GetCurrentTimestamp() - start) / 1000;
	LimitRejected(&req->limit);
	return false;
}

/* DT004: a synchronous call its limit kept from going within max_wait_ms. */
static void
RaiseLimited(DtRequest *req, DtLimitReason why, TimestampTz until, int64 waited_ms)
{
	const DtLimitSpec *spec = &req->limit.spec;
	int64		in_ms = Max(0, (until - GetCurrentTimestamp()) / 1000);
	char	   *detail;

	if (why == DT_LIMIT_FULL)
		detail = psprintf("The limit is %s, and ductape's table of limits has no room to keep it (every entry is busy); the call waited %lld ms.",
						  LimitDescribe(spec), (long long) waited_ms);
	else if (why == DT_LIMIT_PAUSED)
		detail = psprintf("The API asked for a pause (HTTP 429 or 503 with Retry-After) until %s, %lld ms from now, later than max_wait_ms (%d ms) allows; the call waited %lld ms.",
						  timestamptz_to_str(until), (long long) in_ms, spec->max_wait_ms,
						  (long long) waited_ms);
	else if (why == DT_LIMIT_RATE)
		detail = psprintf("The limit is %s; the next request may go in %lld ms, later than max_wait_ms (%d ms) allows; the call waited %lld ms.",
						  LimitDescribe(spec), (long long) in_ms, spec->max_wait_ms,
						  (long long) waited_ms);
	else
		detail = psprintf("The limit is %s; none finished within max_wait_ms (%d ms): the call waited %lld ms.",
						  LimitDescribe(spec), spec->max_wait_ms, (long long) waited_ms);
	ereport(ERROR,
			(errcode(ERRCODE_DT_RATE_LIMITED),
			 errmsg("rate limit of app \"%s\" env \"%s\" reached", req->app, req->limit.key.env),
			 errdetail("%s", detail),
			 errhint("Background jobs (ductape.dispatch) wait in the queue instead of failing; \"max_wait_ms\" in the app's \"limits\" sets how long a call may wait.")));
}

/*
 * Send req with its retry policy.  Egress refusals and oversized responses
 * raise here (they are configuration, not API outcomes); everything else is
 * returned in *cr for the caller to raise or wrap.  Each attempt waits for
 * the request's limit first: the first, past max_wait_ms, raises DT004
 * without a call record (nothing was sent); a retry that cannot go in time
 * is not made, and the last attempt's outcome stands.
 */
void
Execute(DtRequest *req, CallResult *cr)
{
	int64		start = NowMs();
	struct timespec t0,
				t1;
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;
	volatile bool limited = false;
	DtLimitReason why = DT_LIMIT_GO;
	TimestampTz until = 0;
	int64		waited_ms = 0;

	DriverEnsure();
	memset(cr, 0, sizeof(*cr));
	clock_gettime(CLOCK_MONOTONIC, &t0);

	PG_TRY();
	{
		for (;;)
		{
			if (!LimitEnter(req, &why, &until, &waited_ms))
			{
				limited = cr->attempts == 0;
				break;
			}
			cr->attempts++;
			Attempt(req, &cr->o, NowMs() + req->timeout_ms);
			LimitRelease(&req->limit, cr->o.kind == OUT_RESPONSE ? (int) cr->o.status : 0,
						 cr->o.retry_after_ms, cr->o.sent || cr->o.kind == OUT_RESPONSE);
			if (cr->attempts > req->policy.max || !ShouldRetry(req, &cr->o))
				break;
			SleepInterruptible(RetryDelayMs(&req->policy, cr->attempts, cr->o.retry_after_ms));
		}
	}
	PG_CATCH();
	{
		/* the error out first: recording the call allocates and takes locks */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		LimitRelease(&req->limit, 0, -1, true);
	}
	PG_END_TRY();
	if (limited)
		RaiseLimited(req, why, until, waited_ms);
	if (edata != NULL)
	{
		/* cancelled or timed out by the statement: still leave a record */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		cr->duration_ms = (t1.tv_sec - t0.tv_sec) * 1000.0 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
		cr->o.kind = OUT_NETWORK;
		RecordCall(req, cr, "interrupted", DT_STATS_OTHER);
		ReThrowError(edata);
	}

	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr->duration_ms = (t1.tv_sec - t0.tv_sec) * 1000.0 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	(void) start;
	RecordCall(req, cr, CallError(req, &cr->o), DT_STATS_OK);

	if (cr->o.kind == OUT_EGRESS)
		ereport(ERROR,
				(errcode(ERRCODE_DT_EGRESS),
				 errmsg("request to %s blocked by the egress policy",
						UrlForMessage(cr->o.final_url, req->sensitive)),
				 errdetail("%s.", cr->o.error),
				 errhint("A superuser can allow it with ductape.allowed_hosts or ductape.allow_private_networks.")));
	if (cr->o.kind == OUT_TOO_LARGE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("response to %s %s exceeds ductape.max_response_size",
						req->method, UrlForMessage(req->url, req->sensitive)),
				 errdetail("The limit is %d bytes.", ductape_max_response_size),
				 errhint("A superuser can raise ductape.max_response_size.")));
}

/* Send a request built elsewhere (oauth.c's token requests). */
CallResult *
ExecuteRequest(DtRequest *req)
{
	CallResult *cr = palloc0(sizeof(CallResult));

	Execute(req, cr);
	return cr;
}

/* ---- response conversion ---- */

/* The body as jsonb: JSON bodies as JSON, other text as a string, empty as null. */
Jsonb *
BodyToJsonb(Outcome *o)
{
	JsonbValue	v;
	bool		textual;

	if (o->body == NULL || o->body_len == 0)
	{
		v.type = jbvNull;
		return JsonbValueToJsonb(&v);
	}
	textual = memchr(o->body, '\0', o->body_len) == NULL &&
		pg_verifymbstr(o->body, o->body_len, true);
	if (textual)
	{
		const char *ct = o->content_type;
		bool		json_type = ct == NULL ||
			pg_strncasecmp(ct, "application/json", 16) == 0 ||
			pg_strncasecmp(ct, "text/json", 9) == 0 ||
			(strstr(ct, "+json") != NULL);

		if (json_type)
		{
			JsonLexContext *lex = makeJsonLexContextCstringLen(o->body, o->body_len,
															   GetDatabaseEncoding(), true);

			if (pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS)
				return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(o->body)));
		}
		v.type = jbvString;
		v.val.string.val = o->body;
		v.val.string.len = o->body_len;
		return JsonbValueToJsonb(&v);
	}
	else
	{
		/* not text: hex, as bytea prints it */
		StringInfoData hex;
		size_t		i;

		initStringInfo(&hex);
		appendStringInfoString(&hex, "\\x");
		for (i = 0; i < o->body_len; i++)
			appendStringInfo(&hex, "%02x", (unsigned char) o->body[i]);
		v.type = jbvString;
		v.val.string.val = hex.data;
		v.val.string.len = hex.len;
		return JsonbValueToJsonb(&v);
	}
}

static void
PushString(JsonbParseState **ps, JsonbIteratorToken tok, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(ps, tok, &v);
}

static void
PushNumber(JsonbParseState **ps, const char *key, Datum numeric)
{
	JsonbValue	v;

	if (key != NULL)
		PushString(ps, WJB_KEY, key);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(numeric);
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* Response headers (of the final hop) as an object; names lower-cased. */
static void
PushHeaders(JsonbParseState **ps, CURL *easy, List *sensitive)
{
	struct curl_header *h,
			   *prev = NULL;
	List	   *names = NIL;
	List	   *values = NIL;
	ListCell   *ln,
			   *lv;

	while ((h = curl_easy_nextheader(easy, CURLH_HEADER, -1, prev)) != NULL)
	{
		char	   *name = asc_tolower(h->name, strlen(h->name));
		char	   *value = IsSensitiveHeader(name) ? "[redacted]" : Redact(h->value, sensitive);
		bool		merged = false;

		prev = h;
		forboth(ln, names, lv, values)
		{
			if (strcmp(lfirst(ln), name) == 0)
			{
				if (strcmp(lfirst(lv), "[redacted]") != 0)
					lfirst(lv) = psprintf("%s, %s", (char *) lfirst(lv), value);
				merged = true;
			}
		}
		if (!merged)
		{
			names = lappend(names, name);
			values = lappend(values, value);
		}
	}
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	forboth(ln, names, lv, values)
	{
		PushString(ps, WJB_KEY, lfirst(ln));
		PushString(ps, WJB_VALUE, lfirst(lv));
	}
	pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/* The §6 envelope. */
static Jsonb *
EnvelopeOf(DtRequest *req, Outcome *o, CURL *easy, int attempts,
		   double duration_ms, int64 call_id)
{
	JsonbParseState *ps = NULL;
	JsonbValue	v;
	JsonbValue *res;
	Jsonb	   *body;
	char	   *error = CallError(req, o);
	struct
	{
		Outcome		o;
		int			attempts;
		double		duration_ms;
		int64		call_id;
	}			crs = {*o, attempts, duration_ms, call_id},
			   *cr = &crs;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	PushNumber(&ps, "status", DirectFunctionCall1(int4_numeric,
												  Int32GetDatum(cr->o.kind == OUT_RESPONSE ? (int) cr->o.status : 0)));
	PushString(&ps, WJB_KEY, "headers");
	if (cr->o.kind == OUT_RESPONSE)
		PushHeaders(&ps, easy, req->sensitive);
	else
	{
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}
	PushString(&ps, WJB_KEY, "body");
	if (cr->o.kind == OUT_RESPONSE)
	{
		body = BodyToJsonb(&cr->o);
		v.type = jbvBinary;
		v.val.binary.data = &body->root;
		v.val.binary.len = VARSIZE(body) - VARHDRSZ;
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	else
	{
		v.type = jbvNull;
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	PushNumber(&ps, "attempts", DirectFunctionCall1(int4_numeric, Int32GetDatum(cr->attempts)));
	PushNumber(&ps, "duration_ms", DirectFunctionCall1(float8_numeric,
													   Float8GetDatum(round(cr->duration_ms * 1000.0) / 1000.0)));
	PushString(&ps, WJB_KEY, "call_id");
	if (cr->call_id > 0)
		PushNumber(&ps, NULL, DirectFunctionCall1(int8_numeric, Int64GetDatum(cr->call_id)));
	else
	{
		v.type = jbvNull;
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	PushString(&ps, WJB_KEY, "error");
	if (error && cr->o.kind != OUT_RESPONSE)
		PushString(&ps, WJB_VALUE, error);
	else
	{
		v.type = jbvNull;
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

Jsonb *
Envelope(DtRequest *req, CallResult *cr)
{
	return EnvelopeOf(req, &cr->o, dt_easy, cr->attempts, cr->duration_ms, cr->call_id);
}

/*
 * Judge a finished attempt of a background job (attempt is its number, from
 * 1): record the call, build the envelope, and say whether the job
 * succeeded, should be retried (after *delay_ms), or failed.
 */
XferVerdict
XferJudge(Xfer *x, int attempt, double duration_ms, Jsonb **envelope,
		  char **error, int64 *delay_ms)
{
	DtRequest  *req = x->req;
	Outcome    *o = &x->o;
	CallResult	cr;

	memset(&cr, 0, sizeof(cr));
	cr.o = *o;
	cr.attempts = attempt;
	cr.duration_ms = duration_ms;
	RecordCall(req, &cr, CallError(req, o), DT_STATS_OK);
	*envelope = EnvelopeOf(req, o, x->easy, attempt, duration_ms, cr.call_id);
	*error = NULL;
	*delay_ms = 0;
	if (o->kind == OUT_RESPONSE && ResponseIsSuccess(req, o->status))
		return XFER_SUCCEEDED;
	*error = o->kind == OUT_RESPONSE ? psprintf("HTTP %ld", o->status) : pstrdup(o->error);
	if (attempt <= req->policy.max && ShouldRetry(req, o))
	{
		*delay_ms = RetryDelayMs(&req->policy, attempt, o->retry_after_ms);
		return XFER_RETRY;
	}
	return XFER_FAILED;
}

bool
CallResultIsResponse(CallResult *cr)
{
	return cr->o.kind == OUT_RESPONSE;
}

int
CallResultStatus(CallResult *cr)
{
	return (int) cr->o.status;
}

Jsonb *
CallResultBody(CallResult *cr)
{
	return BodyToJsonb(&cr->o);
}

const char *
CallResultError(CallResult *cr)
{
	return cr->o.error ? cr->o.error : "no response";
}
