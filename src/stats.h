/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Counters of the requests ductape makes, kept in shared memory
 *	  (stats.c): per database, role, app, action and env, the calls, the
 *	  errors by class and a latency histogram.  http.c counts every request
 *	  that makes a call record; ductape.stats (SQL) and /metrics read them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUCTAPE_STATS_H
#define DUCTAPE_STATS_H

#include "utils/timestamp.h"

/*
 * Capacity: entries for (database, role, app, action, env) keys, and
 * entries kept for the overflow of each database (one per database).  When
 * the regular entries are all taken, a new key's calls are counted in its
 * database's overflow entry; when those are all taken too, they are only
 * counted as lost (StatsGetInfo).
 */
#define DT_STATS_MAX_ENTRIES 4096
#define DT_STATS_MAX_OVERFLOW 64

#define DT_STATS_NAMELEN 64		/* app, action and env: tags are <= 63 */

/*
 * The latency histogram: DT_STATS_NBUCKETS buckets, bucket i counting the
 * calls whose duration d (ms) has DtStatsBucketUpperMs[i - 1] < d <=
 * DtStatsBucketUpperMs[i]; the last bucket has no upper bound (+Inf).
 * Prometheus' "le" labels are these bounds in seconds.
 */
#define DT_STATS_NBUCKETS 17
extern const double DtStatsBucketUpperMs[DT_STATS_NBUCKETS - 1];

/* Error classes of a failed call; a success counts in no class. */
typedef enum DtStatsErrorClass
{
	DT_STATS_OK = -1,			/* not an error */
	DT_STATS_4XX = 0,			/* the API answered 400-499 */
	DT_STATS_5XX,				/* the API answered 500-599 */
	DT_STATS_NETWORK,			/* no answer: DT001 (network, timeout) */
	DT_STATS_EGRESS,			/* refused by the egress policy: DT002 */
	DT_STATS_OTHER,				/* any other failure: another status the
								 * action does not accept, a response too
								 * large, a cancelled statement */
	DT_STATS_NCLASSES
} DtStatsErrorClass;

/* The counters of one entry (or of several, summed). */
typedef struct DtStatsCounters
{
	int64		calls;
	int64		errors[DT_STATS_NCLASSES];
	int64		buckets[DT_STATS_NBUCKETS];
	double		sum_ms;			/* sum of the durations */
	double		min_ms;			/* of the calls counted; 0 when none */
	double		max_ms;
	TimestampTz last_at;		/* start of the latest call */
	TimestampTz since;			/* when counting began (entry created) */
} DtStatsCounters;

/* One row of a snapshot (StatsCollect). */
typedef struct DtStatsRow
{
	Oid			dbid;
	Oid			roleid;			/* InvalidOid when summed over roles, and
								 * for a database's overflow row */
	bool		overflow;		/* the database's overflow row: app, action
								 * and env are empty */
	char		app[DT_STATS_NAMELEN];	/* "" = none (ductape.http) */
	char		action[DT_STATS_NAMELEN];
	char		env[DT_STATS_NAMELEN];
	DtStatsCounters c;
} DtStatsRow;

/* Cluster-wide figures about the counters themselves. */
typedef struct DtStatsInfo
{
	int			entries;		/* regular entries in use */
	int			max_entries;	/* DT_STATS_MAX_ENTRIES */
	int			overflow_entries;	/* overflow entries in use */
	int64		overflowed;		/* calls counted in an overflow entry */
	int64		lost;			/* calls not counted anywhere */
} DtStatsInfo;

extern void StatsShmemRegister(void);

/*
 * Count one request (every process that sends HTTP, next to its call
 * record).  app, action, env: NULL for none; roleid: InvalidOid for the
 * current user.  Takes no table lock and never raises.
 */
extern void StatsCount(const char *app, const char *action, const char *env,
					   Oid roleid, double duration_ms, DtStatsErrorClass cls,
					   TimestampTz at);

/*
 * A snapshot: the entries of dbid (InvalidOid: every database) and of
 * roleid (InvalidOid: every role), palloc'd into *rows in the current
 * memory context; returns how many.  With merge_roles the rows of one
 * (database, app, action, env) are summed into one, roleid InvalidOid.
 * Rows are sorted by database, then overflow last, then app, action, env.
 */
extern int	StatsCollect(Oid dbid, Oid roleid, bool merge_roles, DtStatsRow **rows);

/* The q-quantile (0 < q < 1) of a histogram, ms, or -1 without calls. */
extern double StatsPercentile(const DtStatsCounters *c, double q);

/* Remove the entries of dbid; returns how many were removed. */
extern int	StatsForgetDatabase(Oid dbid);

extern void StatsGetInfo(DtStatsInfo *info);

#endif							/* DUCTAPE_STATS_H */
