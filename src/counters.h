/*-------------------------------------------------------------------------
 *
 * counters.h
 *	  Operational counters and gauges per database, in shared memory
 *	  (counters.c): bumped where an item's outcome is decided, gauges
 *	  published by each database's worker, read by /metrics (metrics.c)
 *	  and ductape.health() (health.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_COUNTERS_H
#define DUCTAPE_COUNTERS_H

#include "utils/timestamp.h"

/* databases with counters at once (more than can have workers) */
#define DT_COUNTER_DBS 128

/* Monotonic counts.  Adding one: a member here and a line in metrics.c. */
typedef enum DtCounter
{
	DT_C_JOBS_SUCCEEDED,
	DT_C_JOBS_FAILED,
	DT_C_JOBS_CANCELLED,
	DT_C_JOBS_RETRIED,
	DT_C_DELIVERIES_SUCCEEDED,
	DT_C_DELIVERIES_RETRIED,
	DT_C_DELIVERIES_FAILED,
	DT_C_EVENTS_RECEIVED,
	DT_C_EVENTS_DUPLICATE,
	DT_C_EVENTS_REJECTED,
	DT_C_EVENTS_HANDLED,
	DT_C_EVENTS_RETRIED,
	DT_C_EVENTS_FAILED,
	DT_C_OAUTH_SUCCEEDED,
	DT_C_OAUTH_FAILED,
	DT_C_COUNT
} DtCounter;

/* Values the database's worker reads with SQL and publishes (health.c). */
typedef enum DtGauge
{
	DT_G_JOBS_SCHEDULED,
	DT_G_JOBS_QUEUED,
	DT_G_JOBS_RUNNING,
	DT_G_OLDEST_DUE_AT,			/* TimestampTz the oldest due job became due; 0: none */
	DT_G_DELIVERIES_WAITING,
	DT_G_ENDPOINTS_DISABLED,
	DT_G_EVENTS_WAITING,
	DT_G_COUNT
} DtGauge;

/* One database's state, as a reader copies it. */
typedef struct DtCountersDb
{
	Oid			dbid;
	char		name[NAMEDATALEN];	/* "" until known */
	uint64		counters[DT_C_COUNT];
	int64		gauges[DT_G_COUNT];
	TimestampTz published_at;	/* the gauges' time; 0: never */
} DtCountersDb;

extern void CountersShmemRegister(void);

/* where an outcome is decided, in the current database */
extern void CountersAdd(DtCounter c, uint64 n);
extern void CountersAddAtCommit(DtCounter c, uint64 n);

/* the current database's slot and name, now (inside a transaction) */
extern void CountersAttach(void);

/* the database's worker */
extern void CountersPublish(const int64 *gauges, TimestampTz at);

/* the database is gone (DROP DATABASE, extension dropped) */
extern void CountersForget(Oid dbid);

/* readers: every database's state; returns how many (at most max) */
extern int	CountersSnapshot(DtCountersDb *out, int max);

#endif							/* DUCTAPE_COUNTERS_H */
