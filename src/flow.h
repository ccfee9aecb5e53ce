/*-------------------------------------------------------------------------
 *
 * flow.h
 *	  Flow control in shared memory (flow.c): per app and env, and per
 *	  outbound endpoint, a token bucket, a count of requests in flight, a
 *	  pause asked for by the API (429/503 with Retry-After) and a slowed
 *	  rate after a 429 without one -- shared by every backend and worker of
 *	  the cluster.  The transport (http.c) makes synchronous calls wait; the
 *	  queue engine (queue.c) puts items back in their queue until they may
 *	  go; ductape.limits shows the state.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_FLOW_H
#define DUCTAPE_FLOW_H

#include "datatype/timestamp.h"

#define DT_LIMIT_NAMELEN 64		/* app and env tags are <= 63 */
#define DT_LIMIT_DEFAULT_MAX_WAIT_MS 1000
#define DT_LIMIT_SLOW_S 60		/* a 429 without Retry-After halves the rate
								 * for this long */
#define DT_LIMIT_SLOW_MAX_SHIFT 4	/* down to 1/16 of the declared rate */
#define DT_LIMIT_PAUSE_MS 1000	/* a 429 without Retry-After and without a
								 * declared rate: everyone waits this long */

/*
 * What an app (env) or endpoint declares.  rate 0: no token bucket;
 * concurrency 0: no cap on requests in flight.
 */
typedef struct DtLimitSpec
{
	double		rate;			/* requests per per_ms */
	int64		per_ms;
	int			burst;
	int			concurrency;
	int			max_wait_ms;
} DtLimitSpec;

/* Whose limit: an app and one of its envs, or an endpoint. */
typedef struct DtLimitKey
{
	Oid			dbid;
	int64		endpoint;		/* 0 for an app */
	char		app[DT_LIMIT_NAMELEN];
	char		env[DT_LIMIT_NAMELEN];
} DtLimitKey;

/*
 * A request's limit: set when its request is built (request.c for an
 * action, events.c for a delivery); active false for requests no limit
 * applies to (ductape.http, token requests).  held: the slot taken by
 * LimitTryAcquire, given back by LimitRelease.
 */
typedef struct DtLimit
{
	bool		active;
	DtLimitKey	key;
	DtLimitSpec spec;
	void	   *held;			/* flow.c's entry while a slot is held */
	TimestampTz sent_at;		/* when the slot was taken */
	int64		charged;		/* the interval its token cost, µs */
	bool		counted;		/* this call's wait is counted */
} DtLimit;

/* Why a request may not go yet. */
typedef enum DtLimitReason
{
	DT_LIMIT_GO,				/* it may: the token and the slot are taken */
	DT_LIMIT_RATE,				/* no token until *until */
	DT_LIMIT_PAUSED,			/* the API asked for a pause until *until */
	DT_LIMIT_SLOTS,				/* every slot is taken; no telling when */
	DT_LIMIT_FULL				/* the limit declares a rate or a cap but
								 * the table has no room to keep it: not
								 * sent until it has (fails closed) */
} DtLimitReason;

extern void LimitsShmemRegister(void);
extern int	LimitsForgetDatabase(Oid dbid);

extern void LimitSetApp(DtLimit *l, const char *app, const char *env,
						const DtLimitSpec *spec);
extern void LimitSetEndpoint(DtLimit *l, int64 endpoint_id, int per_second);

/* Take a token and a slot now, or say why not and until when. */
extern DtLimitReason LimitTryAcquire(DtLimit *l, TimestampTz *until);

/*
 * A synchronous caller waits (latch, interruptible) until the reason may
 * have passed, at most until deadline.  Returns false at the deadline.
 */
extern bool LimitWait(DtLimit *l, DtLimitReason why, TimestampTz until,
					  TimestampTz deadline);

/* A synchronous caller gives up: counted as rejected. */
extern void LimitRejected(DtLimit *l);

/*
 * A queue item may not go: when it should be tried again, spaced after the
 * items put back before it so that they do not all come due at once.
 */
extern TimestampTz LimitDeferUntil(DtLimit *l, DtLimitReason why, TimestampTz until);

/*
 * The request ended (status 0: no response): the slot is given back, and
 * a 429 or 503 with Retry-After pauses the app for everyone, a 429 without
 * one slows it (whatever the request's retry policy says of Retry-After:
 * that is about its own retries).  retry_after_ms -1: none.  sent false:
 * nothing reached the API (refused by the egress policy, no connection):
 * its token is given back too.  Safe to call when nothing is held.
 */
extern void LimitRelease(DtLimit *l, int status, double retry_after_ms, bool sent);

/* One limit as a snapshot shows it (LimitsCollect). */
typedef struct DtLimitRow
{
	DtLimitKey	key;
	DtLimitSpec spec;
	double		effective_rate;	/* per second now; 0: no rate */
	double		tokens;			/* that may start now; -1: no rate */
	int			in_flight;
	int			waiting;
	TimestampTz paused_until;	/* 0: not paused */
	TimestampTz slowed_until;	/* 0: not slowed */
	int64		granted;
	int64		waited;
	int64		rejected;
	TimestampTz since;
} DtLimitRow;

/*
 * A snapshot of the limits of dbid (InvalidOid: every database), with or
 * without the endpoints', palloc'd into *rows; returns how many.
 */
extern int	LimitsCollect(Oid dbid, bool endpoints, DtLimitRow **rows);

/* What a DT004 says about the limit ("50 requests per 1s (burst 50)"). */
extern char *LimitDescribe(const DtLimitSpec *spec);

#endif							/* DUCTAPE_FLOW_H */
