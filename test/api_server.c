/*-------------------------------------------------------------------------
 *
 * api_server.c
 *	  A small HTTP server for ductape's tests.
 *
 * The tests start this server on loopback, point ductape at it and then
 * assert on what it actually received: every answer that carries a body
 * echoes the request back as JSON, and requests are counted so that a test
 * can ask how many attempts (retries) reached the server.
 *
 * Usage:
 *	  api_server [--port N] [--port-file PATH]
 *
 * The server binds 127.0.0.1 only.  Port 0 (the default) picks a free port.
 * Once listening it writes the port and a newline to PATH (via a temporary
 * file and rename(), so a reader never sees a partial file) and prints
 * "PORT <n>" on stdout.  It runs until SIGTERM or SIGINT, then stops and
 * exits 0.
 *
 * Every request is counted under the key "*" and, when it carries the
 * header "X-Test-Key: K", under K as well (/count, /arrivals, /open, /reset,
 * /oauth/last, /oauth/revoke-access and /oauth/reset are never counted).
 * A request with "X-Test-Key: K" that is counted also has its arrival time
 * logged and is counted as open under K (see /arrivals and /open); that is
 * how the tests measure request rates and concurrency as the server saw
 * them.  Each connection has its own thread, so slow answers (/delay, /hang)
 * run concurrently.  /oauth/token
 * is also counted under "oauth-token" and /oauth/resource under
 * "oauth-resource".  A request is counted at most once per key.
 *
 * The echo JSON is
 *	  {"method": "...", "path": "...", "query": {...}, "headers": {...},
 *	   "body": "...", "count": N or null, "peer_port": P}
 * where query holds the decoded query arguments (a repeated key keeps its
 * last value; a key without "=" has the value null), headers holds the
 * request headers with lower-cased names (repeated ones joined with ", "),
 * body is the raw request body and count is the current count of the
 * request's X-Test-Key (null without one).  Request bodies over 16 MB are
 * answered with 413.
 *
 * Routes (a route matches its exact path or its path followed by "/";
 * whatever follows the "/" is the route's argument):
 *	  /echo[/...]		200, the echo JSON (also any path not listed here)
 *	  /status/<code>	that status (100-599, else 400) and the echo JSON;
 *						?retry_after=V adds "Retry-After: V"
 *	  /delay/<ms>		sleeps ms milliseconds (at most 120000), then 200 echo
 *	  /bytes/<n>		200, text/plain, exactly n bytes of 'x' (n <= 100 MB);
 *						?type=T sets the Content-Type, ?chunked=1 sends the
 *						body with chunked transfer encoding
 *	  /text				200, text/plain; charset=utf-8, "hello, world"
 *	  /empty			204, no body
 *	  /empty200			200, Content-Length 0, no Content-Type
 *	  /badjson			200, application/json, "{not json"
 *	  /json				200, application/json, the body given as ?body=
 *						(verbatim: a JSON text a parser accepts but
 *						jsonb cannot hold, such as 1e200000)
 *	  /nested/<n>		200, application/json, n "[" then n "]" (n <=
 *						10,000,000): JSON nested deeper than the stack
 *	  /flaky/<key>/<n>	counts the request under <key> too; while that count
 *						is <= n answers ?status=S (default 503, with
 *						"Retry-After" from ?retry_after=V if given), then 200;
 *						the echo JSON either way
 *	  /chaos/<pct>		answers 503 to a random pct% of requests (0-100),
 *						200 to the rest; the echo JSON either way (bench/soak)
 *	  /count/<key>		200, {"key": "<key>", "count": N}
 *	  /arrivals/<key>	200, {"key": "<key>", "at": [T, ...]}: the arrival
 *						time of every request counted under that X-Test-Key
 *						since the last /reset, in arrival order, as epoch
 *						seconds with microseconds (CLOCK_REALTIME when the
 *						request's headers were complete); at most 200,000 a
 *						key, later ones are dropped ("at" then stops growing)
 *	  /open/<key>		200, {"key": "<key>", "open": N, "max": M}: how many
 *						requests with that X-Test-Key are being handled now
 *						(from their arrival until their answer is queued, so
 *						a /delay holds one open while it sleeps) and the
 *						most at once since the last /reset
 *	  /reset			clears all counters, arrival logs and open counts
 *						(requests still open then are not counted again when
 *						they end); 200, {"reset": true}
 *	  /redirect			?to=URL (required) [&status=S, default 302]: that
 *						status, "Location: URL", no body
 *	  /headers			200 echo JSON; each query argument k=v is added as a
 *						response header "k: v" (in order, repeats included)
 *	  /close			200 echo JSON with "Connection: close"
 *	  /hang				no answer until the client disconnects; after 120 s,
 *						200 echo JSON
 *
 * OAuth2 (RFC 6749): an authorization server and a resource it protects,
 * all state in memory.  The only client is "ductape-client" with the secret
 * "s3cret/client:1".  Tokens are "at-N" (access) and "rt-N" (refresh), N
 * from a counter that never goes back, so no token value is ever reused.
 *	  /oauth/token		POST only (else 405).  The body is read as
 *						application/x-www-form-urlencoded (whatever the
 *						Content-Type): grant_type, client_id, client_secret,
 *						refresh_token, scope; other parameters are ignored,
 *						empty ones count as absent, a repeated one or a bad
 *						%-escape or %00 is 400 invalid_request.  The client
 *						authenticates with HTTP Basic (base64 of
 *						urlencode(id) ":" urlencode(secret); a raw ':' or '/'
 *						in the id or secret is refused) or with the body
 *						parameters client_id and client_secret, not both (a
 *						body client_id next to Basic must match it).
 *						grant_type=client_credentials issues tokens;
 *						grant_type=refresh_token needs a currently valid
 *						refresh_token (else 400 invalid_grant), any other or
 *						none is 400 unsupported_grant_type.  Success is 200
 *						{"access_token": "at-N", "token_type": "Bearer",
 *						 "expires_in": E, "refresh_token": "rt-M",
 *						 "scope": "<the scope parameter, if given>"}.
 *						A bad client is 401 invalid_client with the header
 *						WWW-Authenticate: Basic realm="test".  Errors are
 *						{"error": "...", "error_description": "..."}
 *						(unsupported_grant_type has no description), with
 *						"Cache-Control: no-store" like the tokens.
 *						Query arguments (a bad one is 400 {"error": "..."}):
 *						?auth=basic|post accepts only that client
 *						authentication (default either);
 *						?expires_in=E seconds, at most 10^9 (default 3600;
 *						0 makes a token that has already expired);
 *						?expires_json=J writes J (up to 64 of
 *						0-9 + - . e E and ", e.g. 1e30, -5 or "60") as the
 *						answer's expires_in instead of E, to test how
 *						clients read odd values (the token still lives E);
 *						?rotate=0|1: 0 keeps the refresh token used by a
 *						refresh_token grant valid and answers it again
 *						(default rotate=1: it is replaced by a new one);
 *						?delay_ms=N sleeps N ms (at most 120000) first;
 *						?fail=invalid_client|invalid_grant answers that error
 *						whatever the request.
 *						The checks go: fail, the body, the client, the grant.
 *	  /oauth/last		GET or HEAD: the latest /oauth/token request (failed
 *						ones too), {"client_auth": "basic"|"post"|null,
 *						 "grant_type": ..., "refresh_token": ...,
 *						 "scope": ...}: "basic" for an Authorization: Basic
 *						header, else "post" if the body has client_id or
 *						client_secret; the parameters as sent, or null
 *	  /oauth/resource[/...]	any method; needs "Authorization: Bearer T"
 *						with T an issued, unexpired, unrevoked access token:
 *						200 echo JSON, else 401 {"error": "invalid_token"}
 *						with the header
 *						WWW-Authenticate: Bearer error="invalid_token"
 *	  /oauth/revoke-access	POST: revokes every access token issued so far
 *						(refresh tokens stay valid); 200 {"revoked": true}
 *	  /oauth/reset		POST: forgets all tokens and /oauth/last (not the
 *						token counter, nor the request counters: /reset
 *						clears those and leaves OAuth alone); 200
 *						{"reset": true}
 *
 * Bad route arguments are answered with 400 and {"error": "..."}.
 *
 * Build: make -C test (needs libmicrohttpd-dev).
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define MAX_BODY			(16 * 1024 * 1024)
#define MAX_BYTES			((uint64_t) 100 * 1024 * 1024)
#define MAX_DELAY_MS		120000
#define HANG_MS				120000
#define SLICE_MS			50
#define CONNECTION_LIMIT	1000
#define CONNECTION_TIMEOUT	60

/* Set when the server is shutting down; sleeping handlers give up. */
static atomic_int stopping;


/*
 * A growable string buffer.  On allocation failure "failed" is set and
 * further appends are ignored; callers check it once at the end.
 */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;
} Buf;

static void
buf_append(Buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		newcap = b->cap ? b->cap : 256;
		char	   *p;

		while (b->len + n + 1 > newcap)
			newcap *= 2;
		p = realloc(b->data, newcap);
		if (p == NULL)
		{
			b->failed = true;
			return;
		}
		b->data = p;
		b->cap = newcap;
	}
	if (n > 0)
		memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

static void
buf_printf(Buf *b, const char *fmt,...)
{
	char		tmp[256];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= sizeof(tmp))
	{
		b->failed = true;
		return;
	}
	buf_append(b, tmp, (size_t) n);
}

static void
buf_free(Buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/*
 * Append s (n bytes) as a JSON string literal: '"' and '\' are escaped,
 * bytes below 0x20 become \u00XX, all other bytes pass through.
 */
static void
json_string(Buf *b, const char *s, size_t n)
{
	size_t		start = 0;
	size_t		i;

	buf_puts(b, "\"");
	for (i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\' || c < 0x20)
		{
			char		esc[8];

			buf_append(b, s + start, i - start);
			if (c == '"' || c == '\\')
			{
				esc[0] = '\\';
				esc[1] = (char) c;
				esc[2] = '\0';
			}
			else
				snprintf(esc, sizeof(esc), "\\u%04x", (unsigned int) c);
			buf_puts(b, esc);
			start = i + 1;
		}
	}
	buf_append(b, s + start, n - start);
	buf_puts(b, "\"");
}

static void
json_cstring(Buf *b, const char *s)
{
	json_string(b, s, strlen(s));
}


/*
 * The counters: a mutex-protected table of (key, count).  Tests use few
 * keys, so a linear search is fine.
 */
typedef struct Counter
{
	char	   *key;
	long long	count;
} Counter;

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static Counter *counters;
static size_t ncounters;
static size_t maxcounters;

static Counter *
counter_find(const char *key)
{
	size_t		i;

	for (i = 0; i < ncounters; i++)
		if (strcmp(counters[i].key, key) == 0)
			return &counters[i];
	return NULL;
}

/* Increment key's counter and return the new value. */
static long long
counter_incr(const char *key)
{
	Counter    *c;
	long long	result = 0;

	pthread_mutex_lock(&counter_lock);
	c = counter_find(key);
	if (c == NULL)
	{
		if (ncounters == maxcounters)
		{
			size_t		newmax = maxcounters ? maxcounters * 2 : 16;
			Counter    *p = realloc(counters, newmax * sizeof(Counter));

			if (p != NULL)
			{
				counters = p;
				maxcounters = newmax;
			}
		}
		if (ncounters < maxcounters)
		{
			char	   *k = strdup(key);

			if (k != NULL)
			{
				c = &counters[ncounters++];
				c->key = k;
				c->count = 0;
			}
		}
	}
	if (c != NULL)
		result = ++c->count;
	pthread_mutex_unlock(&counter_lock);
	return result;
}

static long long
counter_get(const char *key)
{
	Counter    *c;
	long long	result;

	pthread_mutex_lock(&counter_lock);
	c = counter_find(key);
	result = c ? c->count : 0;
	pthread_mutex_unlock(&counter_lock);
	return result;
}

/*
 * The arrival logs and open counts, per X-Test-Key, under counter_lock too.
 * reset_generation tells a request that was open at a /reset not to
 * decrement the (new) open count when it ends.
 */
#define MAX_ARRIVALS		200000

typedef struct KeyLog
{
	char	   *key;
	int64_t    *at;				/* arrival times, microseconds since epoch */
	size_t		nat;
	size_t		capat;
	long		open;
	long		max_open;
} KeyLog;

static KeyLog *keylogs;
static size_t nkeylogs;
static size_t maxkeylogs;
static uint64_t reset_generation;

/* The log of key, created if create; NULL if absent or out of memory. */
static KeyLog *
keylog_find(const char *key, bool create)
{
	size_t		i;
	KeyLog	   *kl;

	for (i = 0; i < nkeylogs; i++)
		if (strcmp(keylogs[i].key, key) == 0)
			return &keylogs[i];
	if (!create)
		return NULL;
	if (nkeylogs == maxkeylogs)
	{
		size_t		newmax = maxkeylogs ? maxkeylogs * 2 : 16;
		KeyLog	   *p = realloc(keylogs, newmax * sizeof(KeyLog));

		if (p == NULL)
			return NULL;
		keylogs = p;
		maxkeylogs = newmax;
	}
	kl = &keylogs[nkeylogs];
	memset(kl, 0, sizeof(KeyLog));
	kl->key = strdup(key);
	if (kl->key == NULL)
		return NULL;
	nkeylogs++;
	return kl;
}

/*
 * A request with X-Test-Key key arrived: log its time and count it open.
 * Returns the reset generation to hand to keylog_close().
 */
static uint64_t
keylog_arrive(const char *key)
{
	struct timespec ts;
	KeyLog	   *kl;
	uint64_t	gen;

	clock_gettime(CLOCK_REALTIME, &ts);
	pthread_mutex_lock(&counter_lock);
	gen = reset_generation;
	kl = keylog_find(key, true);
	if (kl != NULL)
	{
		if (kl->nat < MAX_ARRIVALS)
		{
			if (kl->nat == kl->capat)
			{
				size_t		newcap = kl->capat ? kl->capat * 2 : 256;
				int64_t    *p = realloc(kl->at, newcap * sizeof(int64_t));

				if (p != NULL)
				{
					kl->at = p;
					kl->capat = newcap;
				}
			}
			if (kl->nat < kl->capat)
				kl->at[kl->nat++] = (int64_t) ts.tv_sec * 1000000 +
					ts.tv_nsec / 1000;
		}
		kl->open++;
		if (kl->open > kl->max_open)
			kl->max_open = kl->open;
	}
	pthread_mutex_unlock(&counter_lock);
	return gen;
}

/* That request's answer is queued (or it was dropped): no longer open. */
static void
keylog_close(const char *key, uint64_t gen)
{
	KeyLog	   *kl;

	pthread_mutex_lock(&counter_lock);
	if (gen == reset_generation)
	{
		kl = keylog_find(key, false);
		if (kl != NULL && kl->open > 0)
			kl->open--;
	}
	pthread_mutex_unlock(&counter_lock);
}

/* {"key": K, "at": [...]} for /arrivals/<key> */
static void
keylog_arrivals_json(Buf *b, const char *key)
{
	KeyLog	   *kl;
	size_t		i;

	buf_puts(b, "{\"key\": ");
	json_cstring(b, key);
	buf_puts(b, ", \"at\": [");
	pthread_mutex_lock(&counter_lock);
	kl = keylog_find(key, false);
	for (i = 0; kl != NULL && i < kl->nat; i++)
		buf_printf(b, "%s%lld.%06lld", i ? ", " : "",
				   (long long) (kl->at[i] / 1000000),
				   (long long) (kl->at[i] % 1000000));
	pthread_mutex_unlock(&counter_lock);
	buf_puts(b, "]}");
}

/* {"key": K, "open": N, "max": M} for /open/<key> */
static void
keylog_open_json(Buf *b, const char *key)
{
	KeyLog	   *kl;
	long		open = 0;
	long		max_open = 0;

	pthread_mutex_lock(&counter_lock);
	kl = keylog_find(key, false);
	if (kl != NULL)
	{
		open = kl->open;
		max_open = kl->max_open;
	}
	pthread_mutex_unlock(&counter_lock);
	buf_puts(b, "{\"key\": ");
	json_cstring(b, key);
	buf_printf(b, ", \"open\": %ld, \"max\": %ld}", open, max_open);
}

/* Clears the counters, the arrival logs and the open counts. */
static void
counter_reset(void)
{
	size_t		i;

	pthread_mutex_lock(&counter_lock);
	for (i = 0; i < ncounters; i++)
		free(counters[i].key);
	free(counters);
	counters = NULL;
	ncounters = maxcounters = 0;
	for (i = 0; i < nkeylogs; i++)
	{
		free(keylogs[i].key);
		free(keylogs[i].at);
	}
	free(keylogs);
	keylogs = NULL;
	nkeylogs = maxkeylogs = 0;
	reset_generation++;
	pthread_mutex_unlock(&counter_lock);
}


/* Routes */
typedef enum Route
{
	R_ECHO,
	R_STATUS,
	R_DELAY,
	R_BYTES,
	R_TEXT,
	R_EMPTY,
	R_EMPTY200,
	R_BADJSON,
	R_JSON,
	R_NESTED,
	R_FLAKY,
	R_COUNT,
	R_ARRIVALS,
	R_OPEN,
	R_RESET,
	R_CHAOS,
	R_REDIRECT,
	R_HEADERS,
	R_CLOSE,
	R_HANG,
	R_OAUTH_TOKEN,
	R_OAUTH_LAST,
	R_OAUTH_RESOURCE,
	R_OAUTH_REVOKE_ACCESS,
	R_OAUTH_RESET
} Route;

static const struct
{
	const char *prefix;
	Route		route;
}			routes[] =
{
	{"/echo", R_ECHO},
	{"/status", R_STATUS},
	{"/delay", R_DELAY},
	{"/bytes", R_BYTES},
	{"/text", R_TEXT},
	{"/empty", R_EMPTY},
	{"/empty200", R_EMPTY200},
	{"/badjson", R_BADJSON},
	{"/json", R_JSON},
	{"/nested", R_NESTED},
	{"/flaky", R_FLAKY},
	{"/count", R_COUNT},
	{"/arrivals", R_ARRIVALS},
	{"/open", R_OPEN},
	{"/reset", R_RESET},
	{"/chaos", R_CHAOS},
	{"/redirect", R_REDIRECT},
	{"/headers", R_HEADERS},
	{"/close", R_CLOSE},
	{"/hang", R_HANG},
	{"/oauth/token", R_OAUTH_TOKEN},
	{"/oauth/last", R_OAUTH_LAST},
	{"/oauth/resource", R_OAUTH_RESOURCE},
	{"/oauth/revoke-access", R_OAUTH_REVOKE_ACCESS},
	{"/oauth/reset", R_OAUTH_RESET},
};

static Route
route_of(const char *url, const char **arg)
{
	size_t		i;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
	{
		size_t		plen = strlen(routes[i].prefix);

		if (strncmp(url, routes[i].prefix, plen) == 0 &&
			(url[plen] == '\0' || url[plen] == '/'))
		{
			*arg = url[plen] == '/' ? url + plen + 1 : url + plen;
			return routes[i].route;
		}
	}
	*arg = "";
	return R_ECHO;
}

/* Parse a non-empty string of decimal digits no greater than max. */
static bool
parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t	v = 0;

	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
	{
		if (*s < '0' || *s > '9')
			return false;
		if (v > (max - (uint64_t) (*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t) (*s - '0');
	}
	*out = v;
	return true;
}

static bool
parse_status(const char *s, unsigned int *out)
{
	uint64_t	v;

	if (!parse_uint(s, 599, &v) || v < 100)
		return false;
	*out = (unsigned int) v;
	return true;
}


/* Per-request state, freed by request_completed(). */
typedef struct Request
{
	Route		route;
	const char *arg;			/* points into the url MHD passes */
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
	bool		too_large;
	char	   *test_key;		/* X-Test-Key, or NULL */
	char	   *flaky_key;		/* /flaky/<key>/<n>: key, or NULL if bad */
	uint64_t	flaky_n;
	long long	flaky_count;	/* count of flaky_key after this request */
	bool		open;			/* counted open under test_key */
	uint64_t	open_gen;		/* the reset generation it was counted in */
} Request;

/* The request is no longer open (once). */
static void
request_close(Request *req)
{
	if (req->open)
	{
		req->open = false;
		keylog_close(req->test_key, req->open_gen);
	}
}

static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	Request    *req = *con_cls;

	(void) cls;
	(void) conn;
	(void) toe;
	if (req == NULL)
		return;
	request_close(req);
	free(req->body);
	free(req->test_key);
	free(req->flaky_key);
	free(req);
	*con_cls = NULL;
}

/* Collect the request at its first callback and count it. */
static Request *
request_start(struct MHD_Connection *conn, const char *url)
{
	Request    *req = calloc(1, sizeof(Request));
	const char *key;
	const char *keys[4];
	int			nkeys = 0;
	int			i;
	int			j;

	if (req == NULL)
		return NULL;
	req->route = route_of(url, &req->arg);

	key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Test-Key");
	if (key != NULL)
	{
		req->test_key = strdup(key);
		if (req->test_key == NULL)
		{
			free(req);
			return NULL;
		}
	}

	if (req->route == R_FLAKY)
	{
		const char *slash = strrchr(req->arg, '/');

		if (slash != NULL && slash > req->arg &&
			parse_uint(slash + 1, UINT64_MAX, &req->flaky_n))
		{
			req->flaky_key = strndup(req->arg, (size_t) (slash - req->arg));
			if (req->flaky_key == NULL)
			{
				free(req->test_key);
				free(req);
				return NULL;
			}
		}
	}

	if (req->route == R_COUNT || req->route == R_ARRIVALS ||
		req->route == R_OPEN || req->route == R_RESET ||
		req->route == R_OAUTH_LAST || req->route == R_OAUTH_REVOKE_ACCESS ||
		req->route == R_OAUTH_RESET)
		return req;

	if (req->test_key)
	{
		req->open_gen = keylog_arrive(req->test_key);
		req->open = true;
	}

	/* Count once under each distinct key. */
	keys[nkeys++] = "*";
	if (req->test_key)
		keys[nkeys++] = req->test_key;
	if (req->flaky_key)
		keys[nkeys++] = req->flaky_key;
	if (req->route == R_OAUTH_TOKEN)
		keys[nkeys++] = "oauth-token";
	else if (req->route == R_OAUTH_RESOURCE)
		keys[nkeys++] = "oauth-resource";
	for (i = 0; i < nkeys; i++)
	{
		long long	n;

		for (j = 0; j < i; j++)
			if (strcmp(keys[i], keys[j]) == 0)
				break;
		if (j < i)
			n = counter_get(keys[i]);
		else
			n = counter_incr(keys[i]);
		if (req->flaky_key && strcmp(keys[i], req->flaky_key) == 0)
			req->flaky_count = n;
	}
	return req;
}


/* Collecting query arguments and headers for the echo JSON */
typedef struct Pair
{
	char	   *key;
	size_t		key_len;
	Buf			value;
	bool		null_value;
} Pair;

typedef struct Pairs
{
	Pair	   *items;
	size_t		n;
	size_t		max;
	bool		lower;			/* lower-case keys, join repeats with ", " */
	bool		failed;
} Pairs;

static void
pairs_free(Pairs *ps)
{
	size_t		i;

	for (i = 0; i < ps->n; i++)
	{
		free(ps->items[i].key);
		buf_free(&ps->items[i].value);
	}
	free(ps->items);
}

static enum MHD_Result
pairs_add(void *cls, enum MHD_ValueKind kind, const char *key,
		  size_t key_size, const char *value, size_t value_size)
{
	Pairs	   *ps = cls;
	Pair	   *p = NULL;
	char	   *k;
	size_t		i;

	(void) kind;
	if (key == NULL)
		return MHD_YES;
	k = malloc(key_size + 1);
	if (k == NULL)
	{
		ps->failed = true;
		return MHD_NO;
	}
	memcpy(k, key, key_size);
	k[key_size] = '\0';
	if (ps->lower)
		for (i = 0; i < key_size; i++)
			if (k[i] >= 'A' && k[i] <= 'Z')
				k[i] = (char) (k[i] - 'A' + 'a');

	for (i = 0; i < ps->n; i++)
		if (ps->items[i].key_len == key_size &&
			memcmp(ps->items[i].key, k, key_size) == 0)
		{
			p = &ps->items[i];
			break;
		}

	if (p != NULL)
	{
		free(k);
		if (ps->lower)
		{
			/* repeated header: join */
			buf_puts(&p->value, ", ");
		}
		else
		{
			/* repeated query argument: the last one wins */
			p->value.len = 0;
			if (p->value.data)
				p->value.data[0] = '\0';
		}
	}
	else
	{
		if (ps->n == ps->max)
		{
			size_t		newmax = ps->max ? ps->max * 2 : 16;
			Pair	   *items = realloc(ps->items, newmax * sizeof(Pair));

			if (items == NULL)
			{
				free(k);
				ps->failed = true;
				return MHD_NO;
			}
			ps->items = items;
			ps->max = newmax;
		}
		p = &ps->items[ps->n++];
		memset(p, 0, sizeof(Pair));
		p->key = k;
		p->key_len = key_size;
	}

	p->null_value = (value == NULL);
	if (value != NULL)
		buf_append(&p->value, value, value_size);
	if (p->value.failed)
	{
		ps->failed = true;
		return MHD_NO;
	}
	return MHD_YES;
}

static void
json_pairs(Buf *b, struct MHD_Connection *conn, enum MHD_ValueKind kind,
		   bool lower)
{
	Pairs		ps;
	size_t		i;

	memset(&ps, 0, sizeof(ps));
	ps.lower = lower;
	if (MHD_get_connection_values_n(conn, kind, pairs_add, &ps) < 0)
		ps.failed = true;
	if (ps.failed)
		b->failed = true;
	else
	{
		buf_puts(b, "{");
		for (i = 0; i < ps.n; i++)
		{
			Pair	   *p = &ps.items[i];

			if (i > 0)
				buf_puts(b, ", ");
			json_string(b, p->key, p->key_len);
			buf_puts(b, ": ");
			if (p->null_value)
				buf_puts(b, "null");
			else
				json_string(b, p->value.data ? p->value.data : "",
							p->value.len);
		}
		buf_puts(b, "}");
	}
	pairs_free(&ps);
}

static void
build_echo(Buf *b, struct MHD_Connection *conn, Request *req,
		   const char *url, const char *method)
{
	buf_puts(b, "{\"method\": ");
	json_cstring(b, method);
	buf_puts(b, ", \"path\": ");
	json_cstring(b, url);
	buf_puts(b, ", \"query\": ");
	json_pairs(b, conn, MHD_GET_ARGUMENT_KIND, false);
	buf_puts(b, ", \"headers\": ");
	json_pairs(b, conn, MHD_HEADER_KIND, true);
	buf_puts(b, ", \"body\": ");
	json_string(b, req->body ? req->body : "", req->body_len);
	buf_puts(b, ", \"count\": ");
	if (req->test_key)
		buf_printf(b, "%lld", counter_get(req->test_key));
	else
		buf_puts(b, "null");

	/*
	 * The client's port: the same port on two requests means the client
	 * reused its connection (keep-alive).
	 */
	{
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

		buf_puts(b, ", \"peer_port\": ");
		if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
			buf_printf(b, "%u", ntohs(((const struct sockaddr_in *) ci->client_addr)->sin_port));
		else
			buf_puts(b, "null");
	}
	buf_puts(b, "}");
}


/* Building and sending responses */

/* Make a response from b (taking its memory); NULL on failure. */
static struct MHD_Response *
buf_response(Buf *b, const char *content_type)
{
	struct MHD_Response *resp;

	if (b->failed)
	{
		buf_free(b);
		return NULL;
	}
	resp = MHD_create_response_from_buffer(b->len, b->data,
										   MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
	{
		buf_free(b);
		return NULL;
	}
	b->data = NULL;
	b->len = b->cap = 0;
	if (content_type != NULL &&
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
								content_type) != MHD_YES)
	{
		MHD_destroy_response(resp);
		return NULL;
	}
	return resp;
}

static struct MHD_Response *
static_response(const char *body, const char *content_type)
{
	struct MHD_Response *resp;

	resp = MHD_create_response_from_buffer(strlen(body), (void *) body,
										   MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
		return NULL;
	if (content_type != NULL &&
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
								content_type) != MHD_YES)
	{
		MHD_destroy_response(resp);
		return NULL;
	}
	return resp;
}

/* Queue resp (which may be NULL after a failure) and release it. */
static enum MHD_Result
send_response(struct MHD_Connection *conn, unsigned int status,
			  struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (resp == NULL)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
send_error(struct MHD_Connection *conn, unsigned int status, const char *msg)
{
	Buf			b = {0};

	buf_puts(&b, "{\"error\": ");
	json_cstring(&b, msg);
	buf_puts(&b, "}");
	return send_response(conn, status, buf_response(&b, "application/json"));
}

/*
 * The echo JSON with the given status; retry_after, if not NULL, becomes a
 * Retry-After header.  1xx, 204 and 304 answers carry no body.
 */
static enum MHD_Result
send_echo(struct MHD_Connection *conn, Request *req, const char *url,
		  const char *method, unsigned int status, const char *retry_after)
{
	struct MHD_Response *resp;
	Buf			b = {0};

	if (status < 200 || status == 204 || status == 304)
		resp = static_response("", NULL);
	else
	{
		build_echo(&b, conn, req, url, method);
		resp = buf_response(&b, "application/json");
	}
	if (resp == NULL)
		return MHD_NO;
	if (retry_after != NULL &&
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER,
								retry_after) != MHD_YES)
	{
		MHD_destroy_response(resp);
		return send_error(conn, 400, "invalid retry_after");
	}
	return send_response(conn, status, resp);
}

static const char *
query_arg(struct MHD_Connection *conn, const char *key)
{
	return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
}


/* Sleeping */

/* Sleep ms milliseconds in slices; false if the server is stopping. */
static bool
sleep_ms(long ms)
{
	while (ms > 0)
	{
		long		slice = ms < SLICE_MS ? ms : SLICE_MS;
		struct timespec ts;

		if (atomic_load(&stopping))
			return false;
		ts.tv_sec = slice / 1000;
		ts.tv_nsec = (slice % 1000) * 1000000L;
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		ms -= slice;
	}
	return !atomic_load(&stopping);
}

/* Has the client closed its end of the connection? */
static bool
client_gone(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info;
	struct pollfd pfd;
	char		c;
	ssize_t		n;

	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (info == NULL)
		return false;
	pfd.fd = info->connect_fd;
	pfd.events = POLLIN | POLLRDHUP;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) <= 0)
		return false;
	if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
		return true;
	if (pfd.revents & POLLIN)
	{
		n = recv(pfd.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0)
			return true;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
			errno != EINTR)
			return true;
	}
	return false;
}


/* /bytes */
static ssize_t
bytes_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	uint64_t	total = *(uint64_t *) cls;
	size_t		n;

	if (pos >= total)
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = max;
	if ((uint64_t) n > total - pos)
		n = (size_t) (total - pos);
	if (n > (size_t) SSIZE_MAX)
		n = (size_t) SSIZE_MAX;
	memset(buf, 'x', n);
	return (ssize_t) n;
}

static enum MHD_Result
send_bytes(struct MHD_Connection *conn, Request *req)
{
	struct MHD_Response *resp;
	uint64_t	n;
	uint64_t   *total;
	const char *type = query_arg(conn, "type");
	const char *chunked = query_arg(conn, "chunked");
	bool		use_chunked = chunked != NULL && strcmp(chunked, "1") == 0;

	if (!parse_uint(req->arg, MAX_BYTES, &n))
		return send_error(conn, 400, "invalid byte count");
	total = malloc(sizeof(uint64_t));
	if (total == NULL)
		return MHD_NO;
	*total = n;
	resp = MHD_create_response_from_callback(use_chunked ? MHD_SIZE_UNKNOWN : n,
											 64 * 1024, bytes_reader, total,
											 free);
	if (resp == NULL)
	{
		free(total);
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
								type ? type : "text/plain") != MHD_YES)
	{
		MHD_destroy_response(resp);
		return send_error(conn, 400, "invalid type");
	}
	return send_response(conn, MHD_HTTP_OK, resp);
}


/* /headers: every query argument becomes a response header. */
typedef struct HeaderCtx
{
	struct MHD_Response *resp;
	bool		failed;
	bool		has_content_type;
} HeaderCtx;

static enum MHD_Result
add_query_header(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	HeaderCtx  *ctx = cls;

	(void) kind;
	if (key == NULL)
		return MHD_YES;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_TYPE) == 0)
		ctx->has_content_type = true;
	if (MHD_add_response_header(ctx->resp, key, value ? value : "") != MHD_YES)
	{
		ctx->failed = true;
		return MHD_NO;
	}
	return MHD_YES;
}

static enum MHD_Result
send_headers(struct MHD_Connection *conn, Request *req, const char *url,
			 const char *method)
{
	struct MHD_Response *resp;
	HeaderCtx	ctx = {0};
	Buf			b = {0};

	build_echo(&b, conn, req, url, method);
	resp = buf_response(&b, NULL);
	if (resp == NULL)
		return MHD_NO;
	ctx.resp = resp;
	if (MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND,
								  add_query_header, &ctx) < 0 ||
		ctx.failed)
	{
		MHD_destroy_response(resp);
		return send_error(conn, 400, "cannot set a requested header");
	}
	if (!ctx.has_content_type &&
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
								"application/json") != MHD_YES)
	{
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	return send_response(conn, MHD_HTTP_OK, resp);
}


/*
 * OAuth2: an authorization server (/oauth/token) and a resource it protects
 * (/oauth/resource).  The issued tokens and the record of the latest token
 * request live in memory behind oauth_lock.
 */
#define OAUTH_CLIENT_ID		"ductape-client"
#define OAUTH_CLIENT_SECRET	"s3cret/client:1"
#define OAUTH_DEFAULT_EXPIRES_IN	3600
#define OAUTH_MAX_EXPIRES_IN	1000000000	/* about 31 years */
#define OAUTH_TOKEN_LEN		32

typedef struct OAuthToken
{
	char		token[OAUTH_TOKEN_LEN];
	int64_t		expires;		/* access tokens: CLOCK_MONOTONIC, in ns */
} OAuthToken;

typedef struct OAuthTokens
{
	OAuthToken *items;
	size_t		n;
	size_t		max;
} OAuthTokens;

/* The parameters of a token request body; NULL when absent. */
typedef struct OAuthParams
{
	char	   *grant_type;
	char	   *client_id;
	char	   *client_secret;
	char	   *refresh_token;
	char	   *scope;
} OAuthParams;

static pthread_mutex_t oauth_lock = PTHREAD_MUTEX_INITIALIZER;
static OAuthTokens oauth_access;	/* valid unless expired */
static OAuthTokens oauth_refresh;	/* all valid */
static long long oauth_serial;	/* the N of the latest at-N / rt-N */
static const char *oauth_last_client_auth;	/* "basic", "post" or NULL */
static OAuthParams oauth_last;	/* only grant_type, refresh_token, scope */

static int64_t
monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Index of token in ts, or -1.  Caller holds oauth_lock. */
static ssize_t
oauth_find(OAuthTokens *ts, const char *token)
{
	size_t		i;

	for (i = 0; i < ts->n; i++)
		if (strcmp(ts->items[i].token, token) == 0)
			return (ssize_t) i;
	return -1;
}

/* Add a token to ts; false if out of memory.  Caller holds oauth_lock. */
static bool
oauth_add(OAuthTokens *ts, const char *token, int64_t expires)
{
	OAuthToken *t;

	if (ts->n == ts->max)
	{
		size_t		newmax = ts->max ? ts->max * 2 : 16;
		OAuthToken *items = realloc(ts->items, newmax * sizeof(OAuthToken));

		if (items == NULL)
			return false;
		ts->items = items;
		ts->max = newmax;
	}
	t = &ts->items[ts->n++];
	snprintf(t->token, sizeof(t->token), "%s", token);
	t->expires = expires;
	return true;
}

/* Remove the token at index i of ts.  Caller holds oauth_lock. */
static void
oauth_remove(OAuthTokens *ts, size_t i)
{
	ts->items[i] = ts->items[--ts->n];
}

static void
oauth_params_free(OAuthParams *p)
{
	free(p->grant_type);
	free(p->client_id);
	free(p->client_secret);
	free(p->refresh_token);
	free(p->scope);
	memset(p, 0, sizeof(OAuthParams));
}

/* Forget all tokens and the latest token request; oauth_serial stays. */
static void
oauth_reset(void)
{
	pthread_mutex_lock(&oauth_lock);
	free(oauth_access.items);
	free(oauth_refresh.items);
	memset(&oauth_access, 0, sizeof(oauth_access));
	memset(&oauth_refresh, 0, sizeof(oauth_refresh));
	oauth_last_client_auth = NULL;
	oauth_params_free(&oauth_last);
	pthread_mutex_unlock(&oauth_lock);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Append the application/x-www-form-urlencoded decoding of s (n bytes) to
 * b: "%XX" is that byte and "+" a space.  False on a bad escape or on %00
 * (the results are used as C strings).
 */
static bool
form_decode(Buf *b, const char *s, size_t n)
{
	size_t		i;

	buf_append(b, "", 0);		/* a result even for n == 0 */
	for (i = 0; i < n; i++)
	{
		char		c = s[i];

		if (c == '+')
			c = ' ';
		else if (c == '%')
		{
			int			hi;
			int			lo;

			if (i + 2 >= n)
				return false;
			hi = hex_value(s[i + 1]);
			lo = hex_value(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return false;
			c = (char) (hi * 16 + lo);
			i += 2;
		}
		buf_append(b, &c, 1);
	}
	return true;
}

static char **
oauth_param_slot(OAuthParams *p, const char *name)
{
	if (strcmp(name, "grant_type") == 0)
		return &p->grant_type;
	if (strcmp(name, "client_id") == 0)
		return &p->client_id;
	if (strcmp(name, "client_secret") == 0)
		return &p->client_secret;
	if (strcmp(name, "refresh_token") == 0)
		return &p->refresh_token;
	if (strcmp(name, "scope") == 0)
		return &p->scope;
	return NULL;
}

/*
 * Parse an application/x-www-form-urlencoded body (len bytes) into p.
 * Unknown parameters are ignored and empty ones count as absent (RFC 6749
 * section 3.1).  False, with *err set, on a bad encoding or a repeated
 * parameter; p holds what was parsed before.
 */
static bool
oauth_parse_form(const char *body, size_t len, OAuthParams *p,
				 const char **err)
{
	size_t		pos = 0;

	while (pos < len)
	{
		const char *seg = body + pos;
		const char *amp = memchr(seg, '&', len - pos);
		size_t		seglen = amp ? (size_t) (amp - seg) : len - pos;
		const char *eq = memchr(seg, '=', seglen);
		size_t		keylen = eq ? (size_t) (eq - seg) : seglen;
		Buf			key = {0};
		Buf			value = {0};
		char	  **slot;
		bool		ok;

		pos += seglen + 1;
		if (seglen == 0)
			continue;
		ok = form_decode(&key, seg, keylen) &&
			(eq == NULL || form_decode(&value, eq + 1, seglen - keylen - 1));
		if (!ok || key.failed || value.failed)
		{
			*err = "malformed request body";
			buf_free(&key);
			buf_free(&value);
			return false;
		}
		slot = oauth_param_slot(p, key.data);
		if (slot != NULL && value.len > 0)
		{
			if (*slot != NULL)
			{
				*err = "repeated parameter";
				buf_free(&key);
				buf_free(&value);
				return false;
			}
			*slot = value.data;
			value.data = NULL;
		}
		buf_free(&key);
		buf_free(&value);
	}
	return true;
}

static int
base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Append the base64 decoding of s (n bytes, padding optional) to b. */
static bool
base64_decode(Buf *b, const char *s, size_t n)
{
	uint32_t	acc = 0;
	int			bits = 0;
	size_t		nchars = 0;
	size_t		npad = 0;
	size_t		i;

	buf_append(b, "", 0);
	for (i = 0; i < n; i++)
	{
		int			v;

		if (s[i] == '=')
		{
			npad++;
			continue;
		}
		if (npad > 0 || (v = base64_value(s[i])) < 0)
			return false;
		acc = ((acc << 6) | (uint32_t) v) & 0xffff;
		bits += 6;
		nchars++;
		if (bits >= 8)
		{
			char		c;

			bits -= 8;
			c = (char) ((acc >> bits) & 0xff);
			buf_append(b, &c, 1);
		}
	}
	if (nchars % 4 == 1 || npad > 2 || (npad > 0 && (nchars + npad) % 4 != 0))
		return false;
	return true;
}

/*
 * The bytes a form-encoded string may hold: the ones form encoding leaves
 * alone ('~' too, which RFC 3986 encoders leave alone), '%' and '+'.
 */
#define FORM_ENCODED_CHARS \
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~*%+"

/*
 * Decode "Authorization: Basic ..." (RFC 6749 section 2.3.1: the id and
 * the secret are form-encoded before they are joined with ':') into
 * malloc'd *id and *secret.  False if malformed, which includes an id or
 * secret that was not form-encoded (a raw ':' or '/', say).
 */
static bool
oauth_parse_basic(const char *value, char **id, char **secret)
{
	size_t		len;
	Buf			raw = {0};
	Buf			bid = {0};
	Buf			bsecret = {0};
	const char *colon;
	bool		ok;

	*id = *secret = NULL;
	value += 5;					/* "Basic" */
	value += strspn(value, " \t");
	len = strcspn(value, " \t");
	if (value[len + strspn(value + len, " \t")] != '\0')
		return false;
	ok = base64_decode(&raw, value, len) && !raw.failed &&
		memchr(raw.data, '\0', raw.len) == NULL &&
		(colon = strchr(raw.data, ':')) != NULL &&
		strspn(raw.data, FORM_ENCODED_CHARS) == (size_t) (colon - raw.data) &&
		strspn(colon + 1, FORM_ENCODED_CHARS) == strlen(colon + 1) &&
		form_decode(&bid, raw.data, (size_t) (colon - raw.data)) &&
		form_decode(&bsecret, colon + 1, strlen(colon + 1)) &&
		!bid.failed && !bsecret.failed;
	buf_free(&raw);
	if (!ok)
	{
		buf_free(&bid);
		buf_free(&bsecret);
		return false;
	}
	*id = bid.data;
	*secret = bsecret.data;
	return true;
}

/* Does the Authorization header value use the given scheme? */
static bool
auth_scheme_is(const char *value, const char *scheme)
{
	size_t		n = strlen(scheme);

	return value != NULL && strncasecmp(value, scheme, n) == 0 &&
		(value[n] == ' ' || value[n] == '\t');
}

/* Send an OAuth error; invalid_client answers get WWW-Authenticate. */
static enum MHD_Result
send_oauth_error(struct MHD_Connection *conn, unsigned int status,
				 const char *error, const char *description)
{
	Buf			b = {0};
	struct MHD_Response *resp;

	buf_puts(&b, "{\"error\": ");
	json_cstring(&b, error);
	if (description != NULL)
	{
		buf_puts(&b, ", \"error_description\": ");
		json_cstring(&b, description);
	}
	buf_puts(&b, "}");
	resp = buf_response(&b, "application/json");
	if (resp == NULL)
		return MHD_NO;
	if ((status == MHD_HTTP_UNAUTHORIZED &&
		 MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
								 "Basic realm=\"test\"") != MHD_YES) ||
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
								"no-store") != MHD_YES)
	{
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	return send_response(conn, status, resp);
}

static enum MHD_Result
send_method_not_allowed(struct MHD_Connection *conn, const char *allow)
{
	Buf			b = {0};
	struct MHD_Response *resp;

	buf_puts(&b, "{\"error\": \"method not allowed\"}");
	resp = buf_response(&b, "application/json");
	if (resp == NULL)
		return MHD_NO;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
	{
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	return send_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
}

/*
 * Check the client's authentication; NULL if it is the valid client using
 * an accepted method, else why not.  accept is "basic", "post" or NULL
 * (either).
 */
static const char *
oauth_client_error(const char *accept, bool has_basic, bool basic_ok,
				   const char *basic_id, const char *basic_secret,
				   const OAuthParams *p)
{
	const char *id;
	const char *secret;

	if (!has_basic && p->client_id == NULL && p->client_secret == NULL)
		return "no client authentication";
	if (has_basic && p->client_secret != NULL)
		return "more than one client authentication method";
	if (has_basic && accept != NULL && strcmp(accept, "post") == 0)
		return "client_secret_basic is not accepted here";
	if (!has_basic && accept != NULL && strcmp(accept, "basic") == 0)
		return "client_secret_post is not accepted here";
	if (has_basic)
	{
		if (!basic_ok)
			return "malformed Basic credentials, expected "
				"base64(urlencode(id) \":\" urlencode(secret))";
		if (p->client_id != NULL && strcmp(p->client_id, basic_id) != 0)
			return "client_id does not match the Basic credentials";
		id = basic_id;
		secret = basic_secret;
	}
	else
	{
		id = p->client_id;
		secret = p->client_secret;
		if (id == NULL || secret == NULL)
			return "client_id and client_secret are both required";
	}
	if (strcmp(id, OAUTH_CLIENT_ID) != 0)
		return "unknown client";
	if (strcmp(secret, OAUTH_CLIENT_SECRET) != 0)
		return "wrong client secret";
	return NULL;
}

static char *
strdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* POST /oauth/token */
static enum MHD_Result
send_oauth_token(struct MHD_Connection *conn, Request *req,
				 const char *method)
{
	const char *accept = query_arg(conn, "auth");
	const char *expires_arg = query_arg(conn, "expires_in");
	const char *expires_json = query_arg(conn, "expires_json");
	const char *rotate_arg = query_arg(conn, "rotate");
	const char *delay_arg = query_arg(conn, "delay_ms");
	const char *fail = query_arg(conn, "fail");
	const char *authz;
	uint64_t	expires_in = OAUTH_DEFAULT_EXPIRES_IN;
	uint64_t	delay = 0;
	bool		rotate = true;
	OAuthParams p = {0};
	const char *form_error = NULL;
	bool		has_basic;
	bool		basic_ok = false;
	char	   *basic_id = NULL;
	char	   *basic_secret = NULL;
	const char *client_error;
	unsigned int status = MHD_HTTP_OK;
	const char *error = NULL;
	const char *description = NULL;
	char		access[OAUTH_TOKEN_LEN];
	char		refresh[OAUTH_TOKEN_LEN];
	Buf			b = {0};
	struct MHD_Response *resp;

	if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
		return send_method_not_allowed(conn, "POST");
	if (accept != NULL && strcmp(accept, "basic") != 0 &&
		strcmp(accept, "post") != 0)
		return send_error(conn, 400, "invalid auth");
	if (expires_arg != NULL &&
		!parse_uint(expires_arg, OAUTH_MAX_EXPIRES_IN, &expires_in))
		return send_error(conn, 400, "invalid expires_in");
	if (expires_json != NULL &&
		(expires_json[0] == '\0' || strlen(expires_json) > 64 ||
		 strspn(expires_json, "0123456789+-.eE\"") != strlen(expires_json)))
		return send_error(conn, 400, "invalid expires_json");
	if (rotate_arg != NULL)
	{
		if (strcmp(rotate_arg, "0") == 0)
			rotate = false;
		else if (strcmp(rotate_arg, "1") != 0)
			return send_error(conn, 400, "invalid rotate");
	}
	if (delay_arg != NULL && !parse_uint(delay_arg, UINT64_MAX, &delay))
		return send_error(conn, 400, "invalid delay_ms");
	if (fail != NULL && strcmp(fail, "invalid_client") != 0 &&
		strcmp(fail, "invalid_grant") != 0)
		return send_error(conn, 400, "invalid fail");

	if (!oauth_parse_form(req->body ? req->body : "", req->body_len, &p,
						  &form_error) && form_error == NULL)
		form_error = "malformed request body";
	authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
										MHD_HTTP_HEADER_AUTHORIZATION);
	has_basic = auth_scheme_is(authz, "Basic");
	if (has_basic)
		basic_ok = oauth_parse_basic(authz, &basic_id, &basic_secret);

	if (delay > MAX_DELAY_MS)
		delay = MAX_DELAY_MS;
	if (delay > 0 && !sleep_ms((long) delay))
	{
		oauth_params_free(&p);
		free(basic_id);
		free(basic_secret);
		return MHD_NO;
	}

	pthread_mutex_lock(&oauth_lock);

	/* Remember this request for /oauth/last. */
	oauth_last_client_auth = has_basic ? "basic" :
		(p.client_id || p.client_secret) ? "post" : NULL;
	oauth_params_free(&oauth_last);
	oauth_last.grant_type = strdup_or_null(p.grant_type);
	oauth_last.refresh_token = strdup_or_null(p.refresh_token);
	oauth_last.scope = strdup_or_null(p.scope);

	client_error = oauth_client_error(accept, has_basic, basic_ok, basic_id,
									  basic_secret, &p);
	if (fail != NULL && strcmp(fail, "invalid_client") == 0)
	{
		status = MHD_HTTP_UNAUTHORIZED;
		error = "invalid_client";
		description = "forced by fail=invalid_client";
	}
	else if (fail != NULL)
	{
		status = MHD_HTTP_BAD_REQUEST;
		error = "invalid_grant";
		description = "forced by fail=invalid_grant";
	}
	else if (form_error != NULL)
	{
		status = MHD_HTTP_BAD_REQUEST;
		error = "invalid_request";
		description = form_error;
	}
	else if (client_error != NULL)
	{
		status = MHD_HTTP_UNAUTHORIZED;
		error = "invalid_client";
		description = client_error;
	}
	else if (p.grant_type == NULL ||
			 (strcmp(p.grant_type, "client_credentials") != 0 &&
			  strcmp(p.grant_type, "refresh_token") != 0))
	{
		status = MHD_HTTP_BAD_REQUEST;
		error = "unsupported_grant_type";
	}
	else
	{
		ssize_t		used = -1;
		long long	n;

		if (strcmp(p.grant_type, "refresh_token") == 0)
		{
			if (p.refresh_token == NULL)
				description = "missing refresh_token";
			else if ((used = oauth_find(&oauth_refresh, p.refresh_token)) < 0)
				description = "unknown, rotated or revoked refresh_token";
			if (description != NULL)
			{
				status = MHD_HTTP_BAD_REQUEST;
				error = "invalid_grant";
			}
		}
		if (error == NULL)
		{
			n = ++oauth_serial;
			snprintf(access, sizeof(access), "at-%lld", n);
			if (used >= 0 && !rotate)
				snprintf(refresh, sizeof(refresh), "%s",
						 oauth_refresh.items[used].token);
			else
				snprintf(refresh, sizeof(refresh), "rt-%lld", n);
			if (!oauth_add(&oauth_access, access,
						   monotonic_ns() +
						   (int64_t) expires_in * 1000000000) ||
				((used < 0 || rotate) &&
				 !oauth_add(&oauth_refresh, refresh, 0)))
			{
				status = MHD_HTTP_INTERNAL_SERVER_ERROR;
				error = "server_error";
				description = "out of memory";
			}
			else if (used >= 0 && rotate)
				oauth_remove(&oauth_refresh, (size_t) used);
		}
	}
	pthread_mutex_unlock(&oauth_lock);

	free(basic_id);
	free(basic_secret);
	if (error != NULL)
	{
		oauth_params_free(&p);
		return send_oauth_error(conn, status, error, description);
	}

	buf_puts(&b, "{\"access_token\": ");
	json_cstring(&b, access);
	if (expires_json != NULL)
		buf_printf(&b, ", \"token_type\": \"Bearer\", \"expires_in\": %s",
				   expires_json);
	else
		buf_printf(&b, ", \"token_type\": \"Bearer\", \"expires_in\": %llu",
				   (unsigned long long) expires_in);
	buf_puts(&b, ", \"refresh_token\": ");
	json_cstring(&b, refresh);
	if (p.scope != NULL)
	{
		buf_puts(&b, ", \"scope\": ");
		json_cstring(&b, p.scope);
	}
	buf_puts(&b, "}");
	oauth_params_free(&p);
	resp = buf_response(&b, "application/json");
	if (resp == NULL)
		return MHD_NO;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
								"no-store") != MHD_YES ||
		MHD_add_response_header(resp, MHD_HTTP_HEADER_PRAGMA,
								"no-cache") != MHD_YES)
	{
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	return send_response(conn, MHD_HTTP_OK, resp);
}

/* GET /oauth/last */
static enum MHD_Result
send_oauth_last(struct MHD_Connection *conn, const char *method)
{
	Buf			b = {0};

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
		strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return send_method_not_allowed(conn, "GET, HEAD");

	pthread_mutex_lock(&oauth_lock);
	buf_puts(&b, "{\"client_auth\": ");
	if (oauth_last_client_auth)
		json_cstring(&b, oauth_last_client_auth);
	else
		buf_puts(&b, "null");
	buf_puts(&b, ", \"grant_type\": ");
	if (oauth_last.grant_type)
		json_cstring(&b, oauth_last.grant_type);
	else
		buf_puts(&b, "null");
	buf_puts(&b, ", \"refresh_token\": ");
	if (oauth_last.refresh_token)
		json_cstring(&b, oauth_last.refresh_token);
	else
		buf_puts(&b, "null");
	buf_puts(&b, ", \"scope\": ");
	if (oauth_last.scope)
		json_cstring(&b, oauth_last.scope);
	else
		buf_puts(&b, "null");
	buf_puts(&b, "}");
	pthread_mutex_unlock(&oauth_lock);
	return send_response(conn, MHD_HTTP_OK,
						 buf_response(&b, "application/json"));
}

/* /oauth/resource: the echo JSON for a valid bearer token. */
static enum MHD_Result
send_oauth_resource(struct MHD_Connection *conn, Request *req,
					const char *url, const char *method)
{
	const char *authz;
	bool		valid = false;
	struct MHD_Response *resp;

	authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
										MHD_HTTP_HEADER_AUTHORIZATION);
	if (auth_scheme_is(authz, "Bearer"))
	{
		const char *token = authz + 6 + strspn(authz + 6, " \t");
		ssize_t		i;

		pthread_mutex_lock(&oauth_lock);
		i = oauth_find(&oauth_access, token);
		valid = i >= 0 && monotonic_ns() < oauth_access.items[i].expires;
		pthread_mutex_unlock(&oauth_lock);
	}
	if (valid)
		return send_echo(conn, req, url, method, MHD_HTTP_OK, NULL);

	resp = static_response("{\"error\": \"invalid_token\"}",
						   "application/json");
	if (resp == NULL)
		return MHD_NO;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
								"Bearer error=\"invalid_token\"") != MHD_YES)
	{
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	return send_response(conn, MHD_HTTP_UNAUTHORIZED, resp);
}


/* Answer a request whose body has been received. */
static enum MHD_Result
dispatch(struct MHD_Connection *conn, Request *req, const char *url,
		 const char *method)
{
	unsigned int status;
	uint64_t	v;

	if (req->too_large)
		return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE,
						  "request body too large");

	switch (req->route)
	{
		case R_ECHO:
			return send_echo(conn, req, url, method, MHD_HTTP_OK, NULL);

		case R_STATUS:
			if (!parse_status(req->arg, &status))
				return send_error(conn, 400, "invalid status");
			return send_echo(conn, req, url, method, status,
							 query_arg(conn, "retry_after"));

		case R_DELAY:
			if (!parse_uint(req->arg, UINT64_MAX, &v))
				return send_error(conn, 400, "invalid delay");
			if (v > MAX_DELAY_MS)
				v = MAX_DELAY_MS;
			if (!sleep_ms((long) v))
				return MHD_NO;
			return send_echo(conn, req, url, method, MHD_HTTP_OK, NULL);

		case R_BYTES:
			return send_bytes(conn, req);

		case R_TEXT:
			return send_response(conn, MHD_HTTP_OK,
								 static_response("hello, world",
												 "text/plain; charset=utf-8"));

		case R_EMPTY:
			return send_response(conn, MHD_HTTP_NO_CONTENT,
								 static_response("", NULL));

		case R_EMPTY200:
			return send_response(conn, MHD_HTTP_OK,
								 static_response("", NULL));

		case R_BADJSON:
			return send_response(conn, MHD_HTTP_OK,
								 static_response("{not json",
												 "application/json"));

		case R_JSON:
			{
				const char *body = query_arg(conn, "body");
				Buf			b = {0};

				buf_puts(&b, body ? body : "");
				return send_response(conn, MHD_HTTP_OK,
									 buf_response(&b, "application/json"));
			}

		case R_NESTED:
			{
				Buf			b = {0};

				if (!parse_uint(req->arg, 10000000, &v))
					return send_error(conn, 400, "expected /nested/<n>");
				for (uint64_t i = 0; i < v; i++)
					buf_puts(&b, "[");
				for (uint64_t i = 0; i < v; i++)
					buf_puts(&b, "]");
				return send_response(conn, MHD_HTTP_OK,
									 buf_response(&b, "application/json"));
			}

		case R_FLAKY:
			if (req->flaky_key == NULL)
				return send_error(conn, 400,
								  "expected /flaky/<key>/<n>");
			if ((uint64_t) req->flaky_count <= req->flaky_n)
			{
				const char *s = query_arg(conn, "status");

				status = MHD_HTTP_SERVICE_UNAVAILABLE;
				if (s != NULL && !parse_status(s, &status))
					return send_error(conn, 400, "invalid status");
				return send_echo(conn, req, url, method, status,
								 query_arg(conn, "retry_after"));
			}
			return send_echo(conn, req, url, method, MHD_HTTP_OK, NULL);

		case R_CHAOS:
			{
				char	   *end;
				long		pct = strtol(req->arg ? req->arg : "", &end, 10);
				static __thread unsigned int seed = 0;

				if (req->arg == NULL || *end != '\0' || pct < 0 || pct > 100)
					return send_error(conn, 400, "expected /chaos/<pct>, 0 to 100");
				if (seed == 0)
					seed = (unsigned int) time(NULL) ^ (unsigned int) (uintptr_t) &seed;
				status = (long) (rand_r(&seed) % 100) < pct ?
					MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK;
				return send_echo(conn, req, url, method, status, NULL);
			}

		case R_COUNT:
			{
				Buf			b = {0};

				buf_puts(&b, "{\"key\": ");
				json_cstring(&b, req->arg);
				buf_printf(&b, ", \"count\": %lld}", counter_get(req->arg));
				return send_response(conn, MHD_HTTP_OK,
									 buf_response(&b, "application/json"));
			}

		case R_ARRIVALS:
		case R_OPEN:
			{
				Buf			b = {0};

				if (req->route == R_ARRIVALS)
					keylog_arrivals_json(&b, req->arg);
				else
					keylog_open_json(&b, req->arg);
				return send_response(conn, MHD_HTTP_OK,
									 buf_response(&b, "application/json"));
			}

		case R_RESET:
			counter_reset();
			return send_response(conn, MHD_HTTP_OK,
								 static_response("{\"reset\": true}",
												 "application/json"));

		case R_REDIRECT:
			{
				const char *to = query_arg(conn, "to");
				const char *s = query_arg(conn, "status");
				struct MHD_Response *resp;

				if (to == NULL)
					return send_error(conn, 400, "missing to");
				status = MHD_HTTP_FOUND;
				if (s != NULL && !parse_status(s, &status))
					return send_error(conn, 400, "invalid status");
				resp = static_response("", NULL);
				if (resp == NULL)
					return MHD_NO;
				if (MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION,
											to) != MHD_YES)
				{
					MHD_destroy_response(resp);
					return send_error(conn, 400, "invalid to");
				}
				return send_response(conn, status, resp);
			}

		case R_HEADERS:
			return send_headers(conn, req, url, method);

		case R_CLOSE:
			{
				Buf			b = {0};
				struct MHD_Response *resp;

				build_echo(&b, conn, req, url, method);
				resp = buf_response(&b, "application/json");
				if (resp == NULL)
					return MHD_NO;
				if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
											"close") != MHD_YES)
				{
					MHD_destroy_response(resp);
					return MHD_NO;
				}
				return send_response(conn, MHD_HTTP_OK, resp);
			}

		case R_HANG:
			{
				long		waited;

				for (waited = 0; waited < HANG_MS; waited += SLICE_MS)
				{
					if (client_gone(conn) || !sleep_ms(SLICE_MS))
						return MHD_NO;
				}
				return send_echo(conn, req, url, method, MHD_HTTP_OK, NULL);
			}

		case R_OAUTH_TOKEN:
			return send_oauth_token(conn, req, method);

		case R_OAUTH_LAST:
			return send_oauth_last(conn, method);

		case R_OAUTH_RESOURCE:
			return send_oauth_resource(conn, req, url, method);

		case R_OAUTH_REVOKE_ACCESS:
			if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
				return send_method_not_allowed(conn, "POST");
			pthread_mutex_lock(&oauth_lock);
			oauth_access.n = 0;
			pthread_mutex_unlock(&oauth_lock);
			return send_response(conn, MHD_HTTP_OK,
								 static_response("{\"revoked\": true}",
												 "application/json"));

		case R_OAUTH_RESET:
			if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
				return send_method_not_allowed(conn, "POST");
			oauth_reset();
			return send_response(conn, MHD_HTTP_OK,
								 static_response("{\"reset\": true}",
												 "application/json"));
	}
	return send_error(conn, 500, "unknown route");
}

static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	Request    *req = *con_cls;

	(void) cls;
	(void) version;

	if (req == NULL)
	{
		/* Headers are complete: set up, count, and ask for the body. */
		req = request_start(conn, url);
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		return MHD_YES;
	}

	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		*upload_data_size = 0;
		if (req->too_large || req->body_len + n > MAX_BODY)
		{
			/* Drop the body and keep reading; the answer will be 413. */
			req->too_large = true;
			free(req->body);
			req->body = NULL;
			req->body_len = req->body_cap = 0;
			return MHD_YES;
		}
		if (req->body_len + n > req->body_cap)
		{
			size_t		newcap = req->body_cap ? req->body_cap : 4096;
			char	   *p;

			while (newcap < req->body_len + n)
				newcap *= 2;
			p = realloc(req->body, newcap);
			if (p == NULL)
				return MHD_NO;
			req->body = p;
			req->body_cap = newcap;
		}
		memcpy(req->body + req->body_len, upload_data, n);
		req->body_len += n;
		return MHD_YES;
	}

	{
		enum MHD_Result result = dispatch(conn, req, url, method);

		/* the answer is queued (or the connection is to be dropped) */
		request_close(req);
		return result;
	}
}


/* Main */

static void
usage(FILE *f)
{
	fprintf(f, "usage: api_server [--port N] [--port-file PATH] [--tls-cert PEM --tls-key PEM]\n");
}

/* Read a whole (small) file into a NUL-terminated malloc'd string. */
static char *
read_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *data = NULL;
	size_t		len = 0;
	size_t		cap = 0;
	size_t		n;
	char		chunk[4096];

	if (f == NULL)
	{
		fprintf(stderr, "api_server: cannot open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
	{
		if (len + n + 1 > cap)
		{
			char	   *p;

			cap = (len + n + 1) * 2;
			p = realloc(data, cap);
			if (p == NULL)
			{
				free(data);
				fclose(f);
				return NULL;
			}
			data = p;
		}
		memcpy(data + len, chunk, n);
		len += n;
	}
	fclose(f);
	if (data)
		data[len] = '\0';
	return data;
}

static bool
write_port_file(const char *path, unsigned int port)
{
	char	   *tmp;
	FILE	   *f;
	bool		ok;

	if (asprintf(&tmp, "%s.tmp.%ld", path, (long) getpid()) < 0)
		return false;
	f = fopen(tmp, "w");
	if (f == NULL)
	{
		fprintf(stderr, "api_server: cannot create %s: %s\n", tmp,
				strerror(errno));
		free(tmp);
		return false;
	}
	ok = fprintf(f, "%u\n", port) > 0;
	if (fclose(f) != 0)
		ok = false;
	if (ok && rename(tmp, path) != 0)
	{
		fprintf(stderr, "api_server: cannot rename %s to %s: %s\n", tmp, path,
				strerror(errno));
		ok = false;
	}
	if (!ok)
		unlink(tmp);
	free(tmp);
	return ok;
}

int
main(int argc, char **argv)
{
	uint64_t	port = 0;
	const char *port_file = NULL;
	const char *tls_cert = NULL;
	const char *tls_key = NULL;
	char	   *cert_pem = NULL;
	char	   *key_pem = NULL;
	struct sockaddr_in addr;
	struct MHD_Daemon *daemon;
	const union MHD_DaemonInfo *info;
	sigset_t	sigs;
	int			sig;
	int			i;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
		{
			if (!parse_uint(argv[++i], 65535, &port))
			{
				fprintf(stderr, "api_server: invalid port \"%s\"\n", argv[i]);
				return 2;
			}
		}
		else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
			port_file = argv[++i];
		else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc)
			tls_cert = argv[++i];
		else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc)
			tls_key = argv[++i];
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			usage(stdout);
			return 0;
		}
		else
		{
			usage(stderr);
			return 2;
		}
	}

	/*
	 * Block the stop signals before any thread exists, so that every thread
	 * inherits the mask and main() alone takes them with sigwait().
	 */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
	{
		fprintf(stderr, "api_server: cannot block signals\n");
		return 1;
	}

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

	if ((tls_cert == NULL) != (tls_key == NULL))
	{
		fprintf(stderr, "api_server: --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (tls_cert != NULL)
	{
		cert_pem = read_file(tls_cert);
		key_pem = read_file(tls_key);
		if (cert_pem == NULL || key_pem == NULL)
			return 1;
	}

	{
		/* TLS options only when serving https */
		struct MHD_OptionItem tls_opts[] = {
			{MHD_OPTION_HTTPS_MEM_CERT, 0, cert_pem},
			{MHD_OPTION_HTTPS_MEM_KEY, 0, key_pem},
			{MHD_OPTION_END, 0, NULL}
		};
		struct MHD_OptionItem no_opts[] = {{MHD_OPTION_END, 0, NULL}};

		daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
								  MHD_USE_INTERNAL_POLLING_THREAD |
								  MHD_USE_POLL | MHD_USE_ERROR_LOG |
								  (cert_pem ? MHD_USE_TLS : 0),
								  (uint16_t) port, NULL, NULL,
								  handle_request, NULL,
								  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
								  MHD_OPTION_CONNECTION_LIMIT,
								  (unsigned int) CONNECTION_LIMIT,
								  MHD_OPTION_CONNECTION_TIMEOUT,
								  (unsigned int) CONNECTION_TIMEOUT,
								  MHD_OPTION_CONNECTION_MEMORY_LIMIT,
								  (size_t) (256 * 1024),
								  MHD_OPTION_THREAD_STACK_SIZE,
								  (size_t) (1024 * 1024),
								  MHD_OPTION_NOTIFY_COMPLETED,
								  request_completed, NULL,
								  MHD_OPTION_ARRAY, cert_pem ? tls_opts : no_opts,
								  MHD_OPTION_END);
	}
	if (daemon == NULL)
	{
		fprintf(stderr, "api_server: cannot start the server on 127.0.0.1:%u\n",
				(unsigned int) port);
		return 1;
	}

	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0)
	{
		fprintf(stderr, "api_server: cannot get the bound port\n");
		MHD_stop_daemon(daemon);
		return 1;
	}
	if (port_file != NULL && !write_port_file(port_file, info->port))
	{
		MHD_stop_daemon(daemon);
		return 1;
	}
	printf("PORT %u\n", (unsigned int) info->port);
	fflush(stdout);

	for (;;)
	{
		if (sigwait(&sigs, &sig) == 0 && (sig == SIGINT || sig == SIGTERM))
			break;
	}

	atomic_store(&stopping, 1);
	MHD_stop_daemon(daemon);
	return 0;
}
