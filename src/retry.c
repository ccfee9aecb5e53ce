/*-------------------------------------------------------------------------
 *
 * retry.c
 *	  Retry policies, in one place: what a policy says (the defaults of a
 *	  synchronous call and of a job, and a definition's or a call's
 *	  "retries" laid over them), whether an attempt's outcome is worth
 *	  another and after how long, and the fixed schedules of outbound
 *	  deliveries and of inbound webhook handler rounds.
 *
 * A policy retries on 429, 500, 502, 503, 504, timeouts and network errors
 * by default, with exponential backoff and jitter, honouring Retry-After.
 * An attempt that may have reached the provider (a response, or a failure
 * after bytes were sent) is retried only for safe methods, or with an
 * idempotency key, or when the policy says "unsafe": true; 429, and 503
 * with Retry-After, say the request was not processed and are retried
 * whatever the method.
 *
 * Layer 2 (core logic): calls PostgreSQL and jsonb_util.c only; the
 * request builder, the transport and the queues call it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/pg_prng.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "ductape.h"

/* ---- policies ---- */

/* The defaults, with at most max retries. */
void
RetryPolicyDefaults(DtRetryPolicy *p, int max)
{
	static const int statuses[] = {429, 500, 502, 503, 504};
	int			i;

	memset(p, 0, sizeof(*p));
	p->max = max;
	for (i = 0; i < lengthof(statuses); i++)
		p->on_status[statuses[i] / 64] |= UINT64CONST(1) << (statuses[i] % 64);
	p->on_timeout = true;
	p->on_network = true;
	p->initial_delay_ms = 200;
	p->max_delay_ms = 60000;
	p->multiplier = 2.0;
	p->jitter = 0.2;
	p->respect_retry_after = true;
	p->unsafe = false;
}

static void
PolicyError(const char *what, const char *key, const char *must)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid retry policy in %s", what),
			 errdetail("/retries/%s: %s", key, must)));
}

static double
PolicyNumber(JsonbValue *v, const char *what, const char *key, double lo, double hi)
{
	double		d;

	if (v->type != jbvNumeric)
		PolicyError(what, key, "must be a number");
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	if (d < lo || d > hi)
		PolicyError(what, key, psprintf("must be between %g and %g", lo, hi));
	return d;
}

static bool
PolicyBool(JsonbValue *v, const char *what, const char *key)
{
	if (v->type != jbvBool)
		PolicyError(what, key, "must be true or false");
	return v->val.boolean;
}

/* Overlay the keys present in spec onto p (definitions were checked at define time; options are checked here). */
void
RetryPolicyOverlay(DtRetryPolicy *p, Jsonb *spec, const char *what)
{
	JsonbValue *v;

	if (spec == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(spec))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid retry policy in %s", what),
				 errdetail("/retries: must be an object.")));
	if ((v = JsonbGetField(spec, "max")) != NULL)
		p->max = (int) PolicyNumber(v, what, "max", 0, 100);
	if ((v = JsonbGetField(spec, "initial_delay_ms")) != NULL)
		p->initial_delay_ms = (int) PolicyNumber(v, what, "initial_delay_ms", 0, 86400000);
	if ((v = JsonbGetField(spec, "max_delay_ms")) != NULL)
		p->max_delay_ms = (int) PolicyNumber(v, what, "max_delay_ms", 0, 86400000);
	if ((v = JsonbGetField(spec, "multiplier")) != NULL)
		p->multiplier = PolicyNumber(v, what, "multiplier", 1, 10);
	if ((v = JsonbGetField(spec, "jitter")) != NULL)
		p->jitter = PolicyNumber(v, what, "jitter", 0, 1);
	if ((v = JsonbGetField(spec, "respect_retry_after")) != NULL)
		p->respect_retry_after = PolicyBool(v, what, "respect_retry_after");
	if ((v = JsonbGetField(spec, "unsafe")) != NULL)
		p->unsafe = PolicyBool(v, what, "unsafe");
	if ((v = JsonbGetField(spec, "on")) != NULL)
	{
		JsonbIterator *it;
		JsonbIteratorToken r;
		JsonbValue	e;

		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
			PolicyError(what, "on", "must be an array of statuses, \"timeout\" and \"network\"");
		memset(p->on_status, 0, sizeof(p->on_status));
		p->on_timeout = p->on_network = false;
		it = JsonbIteratorInit(v->val.binary.data);
		while ((r = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (r != WJB_ELEM)
				continue;
			if (e.type == jbvString && e.val.string.len == 7 &&
				strncmp(e.val.string.val, "timeout", 7) == 0)
				p->on_timeout = true;
			else if (e.type == jbvString && e.val.string.len == 7 &&
					 strncmp(e.val.string.val, "network", 7) == 0)
				p->on_network = true;
			else
			{
				int			s = (int) PolicyNumber(&e, what, "on", 100, 599);

				p->on_status[s / 64] |= UINT64CONST(1) << (s % 64);
			}
		}
	}
}

/* ---- one attempt's outcome ---- */

/* Does status count as success for req (its action's "success", else 2xx)? */
bool
ResponseIsSuccess(DtRequest *req, long status)
{
	if (req->success == NULL || req->nsuccess == 0)
		return status >= 200 && status < 300;
	for (int i = 0; i < req->nsuccess; i++)
		if (req->success[i] == status)
			return true;
	return false;
}

/*
 * Is an attempt that ended so worth another under req's policy?  sent:
 * whether any byte of the request left; final: never worth retrying (a bad
 * URL, a redirect loop).  (The number of attempts is the caller's check.)
 */
bool
RetryWorthIt(DtRequest *req, OutcomeKind kind, bool sent, bool final, long status,
			 double retry_after_ms)
{
	DtRetryPolicy *p = &req->policy;
	bool		unsafe_method = strcmp(req->method, "POST") == 0 ||
		strcmp(req->method, "PATCH") == 0;
	bool		safe = !unsafe_method || req->has_idempotency_key || p->unsafe;

	if (final)
		return false;
	switch (kind)
	{
		case OUT_RESPONSE:
			if (ResponseIsSuccess(req, status) || status < 100 || status >= 640)
				return false;
			if ((p->on_status[status / 64] & (UINT64CONST(1) << (status % 64))) == 0)
				return false;
			if (status == 429 || (status == 503 && retry_after_ms >= 0))
				return true;
			return safe;
		case OUT_TIMEOUT:
			return p->on_timeout && (!sent || safe);
		case OUT_NETWORK:
			return p->on_network && (!sent || safe);
		default:
			return false;
	}
}

/* The delay before retry number retry (1, 2, ...) under p, in ms. */
int64
RetryDelayMs(DtRetryPolicy *p, int retry, double retry_after_ms)
{
	double		d;

	if (p->respect_retry_after && retry_after_ms >= 0)
		return (int64) Min(retry_after_ms, (double) p->max_delay_ms);
	d = p->initial_delay_ms * pow(p->multiplier, retry - 1);
	d = Min(d, (double) p->max_delay_ms);
	d *= 1.0 + p->jitter * (2.0 * pg_prng_double(&pg_global_prng_state) - 1.0);
	return (int64) Max(d, 0);
}

/* ---- the fixed schedules ---- */

/*
 * Outbound deliveries follow Svix's schedule: the delay before attempt k+1,
 * after attempt k failed, with +-20% jitter; a longer Retry-After is
 * honoured (up to a day).
 */
static const int64 DeliveryScheduleMs[] = {
	5 * 1000,					/* after the first, immediate, attempt */
	5 * 60 * 1000,
	30 * 60 * 1000,
	2 * 3600 * 1000,
	5 * 3600 * 1000,
	10 * 3600 * 1000,
	10 * 3600 * 1000,
};

StaticAssertDecl(lengthof(DeliveryScheduleMs) + 1 == RETRY_DELIVERY_MAX_ATTEMPTS,
				 "the delivery schedule has a delay before each attempt but the first");

/* The delay before the next delivery attempt after attempt failed; -1: no more. */
int64
RetryDeliveryDelayMs(int attempt, int status, double retry_after_ms)
{
	int64		delay;

	if (status == 410 || attempt >= RETRY_DELIVERY_MAX_ATTEMPTS || attempt < 1)
		return -1;
	delay = DeliveryScheduleMs[attempt - 1];
	delay = (int64) (delay * (0.8 + 0.4 * pg_prng_double(&pg_global_prng_state)));
	if (retry_after_ms > delay)
		delay = (int64) Min(retry_after_ms, 24.0 * 3600 * 1000);
	return delay;
}

/*
 * The delay before an inbound event's handlers run again after round
 * number rounds (1, 2, ...) failed: 2 s doubling, at most an hour.
 */
int64
RetryHandlerDelayMs(int rounds)
{
	return Min((int64) 2000 << Min(rounds - 1, 20), (int64) 3600 * 1000);
}
