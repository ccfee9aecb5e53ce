/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Counters of the requests ductape makes, in shared memory: what
 *	  ductape.stats shows and /metrics exports (docs/reference.md, "Call
 *	  records and stats").
 *
 * Layer 1 (utilities): calls shmem.c and PostgreSQL only.  http.c counts
 * each request here next to its call record.
 *
 * THE TABLE
 *
 * One entry per (database, role, app, action, env), with the calls, the
 * errors by class, a latency histogram of fixed buckets (stats.h), the sum,
 * minimum and maximum of the durations, the start of the latest call and
 * when the entry began counting.  Every request that makes a call record
 * is counted, whatever ductape.log_requests keeps: synchronous calls in
 * backends, the worker's job attempts and OAuth2 token requests (outbound
 * deliveries are recorded in ductape.deliveries, not here).
 *
 * The entries are a fixed array in the segment, found through a chained
 * hash table of entry indexes (heads[], next), so the segment holds no
 * pointer and every process uses it as it is.  Capacity is fixed
 * (DT_STATS_MAX_ENTRIES regular entries, DT_STATS_MAX_OVERFLOW overflow
 * entries): when every regular entry is taken, a new key's calls are
 * counted in its database's overflow entry (shown as app "(other)"), and
 * the calls so counted are counted (overflowed); when the overflow entries
 * are taken too, the call is only counted as lost.  Entries are freed only
 * by ductape.stats_reset (the database's entries) and when their database
 * is dropped.
 *
 * LOCKING (the protocol of all shared state is in shmem.c)
 *
 * The table's LWLock guards the hash chains, the free list and which
 * entries are in use; each entry's spinlock guards its counters.
 *	- counting a call: the lock in shared mode, find the entry, its
 *	  spinlock, add, release both.  Only a key seen for the first time
 *	  takes the lock exclusive, to add its entry (looking again first).
 *	- reading: the lock in shared mode, each entry's counters copied under
 *	  its spinlock into memory allocated before the lock was taken.
 *	- removing a database's entries: the lock exclusive.
 * Nothing else is held meanwhile; under the spinlock only the counters are
 * touched (a few additions, no call).
 *
 * RESTARTS
 *
 * At a clean shutdown the postmaster writes every entry to
 * PGDATA/pg_stat/ductape_stats.stat (a shmem-exit callback, as
 * pg_stat_statements does); the next start reads the file back and
 * removes it.  After a crash, or an immediate shutdown, the postmaster
 * does not write the file and the counters start from zero.  Entries of a
 * database dropped while the server was down are removed the first time
 * any database reads ductape.stats (or _stats_info, or resets).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "calls.h"
#include "ductape.h"
#include "shmem.h"
#include "stats.h"

PG_FUNCTION_INFO_V1(dt_stats);
PG_FUNCTION_INFO_V1(dt_stats_reset);
PG_FUNCTION_INFO_V1(dt_stats_info);

#define DT_STATS_CAPACITY (DT_STATS_MAX_ENTRIES + DT_STATS_MAX_OVERFLOW)
#define DT_STATS_HASH_SIZE 8192	/* chains; a power of 2 above capacity */

#define DT_STATS_FILE PGSTAT_STAT_PERMANENT_DIRECTORY "/ductape_stats.stat"
#define DT_STATS_TMPFILE DT_STATS_FILE ".tmp"
#define DT_STATS_FILE_MAGIC 0x44545331	/* "DTS1" */
#define DT_STATS_FILE_VERSION 2

/*
 * The most calls an entry read from the file may have: summed over every
 * entry they still fit in an int64 (about 2 * 10^15 calls, 70 years at a
 * million a second).
 */
#define DT_STATS_FILE_MAX_CALLS (PG_INT64_MAX / DT_STATS_CAPACITY)

/* Upper bounds of the histogram's buckets, ms; the last bucket is +Inf. */
const double DtStatsBucketUpperMs[DT_STATS_NBUCKETS - 1] = {
	0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
	30000, 60000
};

/* What an entry counts; zero-filled, so equal keys are equal bytes. */
typedef struct StatsKey
{
	Oid			dbid;
	Oid			roleid;			/* InvalidOid in an overflow entry */
	int32		overflow;		/* 1: the database's overflow entry */
	char		app[DT_STATS_NAMELEN];
	char		action[DT_STATS_NAMELEN];
	char		env[DT_STATS_NAMELEN];
} StatsKey;

typedef struct StatsEntry
{
	StatsKey	key;
	int32		next;			/* next in its chain, or in the free list */
	bool		in_use;
	slock_t		mutex;			/* guards c */
	DtStatsCounters c;
} StatsEntry;

typedef struct StatsShared
{
	LWLock	   *lock;
	int32		nregular;		/* regular entries in use */
	int32		noverflow;		/* overflow entries in use */
	int32		free_list;		/* first free entry, -1: none */
	pg_atomic_uint64 overflowed;	/* calls counted in an overflow entry */
	pg_atomic_uint64 lost;		/* calls counted nowhere */
	int32		heads[DT_STATS_HASH_SIZE];	/* first entry of each chain */
	StatsEntry	entries[DT_STATS_CAPACITY];
} StatsShared;

/* The file: a header, then (key, counters) for each entry. */
typedef struct StatsFileHeader
{
	uint32		magic;
	uint32		version;		/* DT_STATS_FILE_VERSION */
	uint32		nbuckets;
	uint32		key_size;
	uint32		counters_size;
	int32		nentries;
} StatsFileHeader;

static StatsShared *Stats = NULL;

static void StatsLoad(void);
static void StatsSave(int code, Datum arg);

static Size
StatsSegmentSize(void)
{
	return sizeof(StatsShared);
}

static void
StatsSegmentInit(void *mem, LWLockPadded *locks)
{
	StatsShared *s = mem;
	int			i;

	s->lock = &locks[0].lock;
	pg_atomic_init_u64(&s->overflowed, 0);
	pg_atomic_init_u64(&s->lost, 0);
	for (i = 0; i < DT_STATS_HASH_SIZE; i++)
		s->heads[i] = -1;
	for (i = 0; i < DT_STATS_CAPACITY; i++)
	{
		s->entries[i].next = i + 1 < DT_STATS_CAPACITY ? i + 1 : -1;
		SpinLockInit(&s->entries[i].mutex);
	}
	s->free_list = 0;

	/*
	 * In the postmaster (or a single-user backend), at start and after a
	 * crash: the counters the last clean shutdown saved, and the callback
	 * that saves them at the next one.
	 */
	if (!IsUnderPostmaster)
	{
		Stats = s;
		StatsLoad();
		on_shmem_exit(StatsSave, (Datum) 0);
	}
}

static const DtShmemSegment StatsSegment = {
	.name = "ductape stats",
	.nlocks = 1,
	.size = StatsSegmentSize,
	.init = StatsSegmentInit,
	.mem = (void **) &Stats,
};

void
StatsShmemRegister(void)
{
	DtShmemRegister(&StatsSegment);
}

/* ---- the hash table; the caller holds the lock as each says ---- */

static void
CopyName(char *dst, const char *src)
{
	int			len;

	if (src == NULL)
		return;
	len = pg_mbcliplen(src, strlen(src), DT_STATS_NAMELEN - 1);
	memcpy(dst, src, len);
}

static void
MakeKey(StatsKey *key, Oid dbid, Oid roleid, bool overflow,
		const char *app, const char *action, const char *env)
{
	memset(key, 0, sizeof(*key));
	key->dbid = dbid;
	key->roleid = roleid;
	key->overflow = overflow ? 1 : 0;
	CopyName(key->app, app);
	CopyName(key->action, action);
	CopyName(key->env, env);
}

static uint32
HashKey(const StatsKey *key)
{
	return hash_bytes((const unsigned char *) key, sizeof(StatsKey)) & (DT_STATS_HASH_SIZE - 1);
}

/* The entry of key, or NULL; shared or exclusive. */
static StatsEntry *
Lookup(const StatsKey *key, uint32 h)
{
	int32		i;

	for (i = Stats->heads[h]; i >= 0; i = Stats->entries[i].next)
	{
		StatsEntry *e = &Stats->entries[i];

		if (memcmp(&e->key, key, sizeof(StatsKey)) == 0)
			return e;
	}
	return NULL;
}

/*
 * A new entry for key, or NULL when its kind (regular or overflow) has
 * none left; exclusive.
 */
static StatsEntry *
Insert(const StatsKey *key, uint32 h, TimestampTz since)
{
	StatsEntry *e;
	int32		i;

	if (key->overflow ? Stats->noverflow >= DT_STATS_MAX_OVERFLOW
		: Stats->nregular >= DT_STATS_MAX_ENTRIES)
		return NULL;
	i = Stats->free_list;
	Assert(i >= 0);
	e = &Stats->entries[i];
	Stats->free_list = e->next;
	e->key = *key;
	memset(&e->c, 0, sizeof(e->c));
	e->c.since = since;
	e->in_use = true;
	e->next = Stats->heads[h];
	Stats->heads[h] = i;
	if (key->overflow)
		Stats->noverflow++;
	else
		Stats->nregular++;
	return e;
}

static int
BucketOf(double ms)
{
	int			b;

	for (b = 0; b < DT_STATS_NBUCKETS - 1; b++)
		if (ms <= DtStatsBucketUpperMs[b])
			break;
	return b;
}

/* Add one call to e; the table's lock is held (either mode). */
static void
AddCall(StatsEntry *e, int bucket, double ms, DtStatsErrorClass cls, TimestampTz at)
{
	SpinLockAcquire(&e->mutex);
	if (e->c.calls == 0 || ms < e->c.min_ms)
		e->c.min_ms = ms;
	if (ms > e->c.max_ms)
		e->c.max_ms = ms;
	e->c.calls++;
	if (cls > DT_STATS_OK && cls < DT_STATS_NCLASSES)
		e->c.errors[cls]++;
	e->c.buckets[bucket]++;
	e->c.sum_ms += ms;
	if (at > e->c.last_at)
		e->c.last_at = at;
	SpinLockRelease(&e->mutex);
}

/*
 * Count one request; see stats.h.  Everything that may allocate or fail is
 * done before the lock: building the key, hashing, the bucket.
 */
void
StatsCount(const char *app, const char *action, const char *env, Oid roleid,
		   double duration_ms, DtStatsErrorClass cls, TimestampTz at)
{
	StatsKey	key;
	StatsKey	okey;
	uint32		h,
				oh;
	int			bucket;
	StatsEntry *e;
	bool		full;

	if (Stats == NULL)
		return;
	if (!(duration_ms >= 0))	/* NaN too */
		duration_ms = 0;
	MakeKey(&key, MyDatabaseId, OidIsValid(roleid) ? roleid : GetUserId(), false,
			app, action, env);
	h = HashKey(&key);
	bucket = BucketOf(duration_ms);

	/* the usual case: the entry exists */
	LWLockAcquire(Stats->lock, LW_SHARED);
	e = Lookup(&key, h);
	if (e != NULL)
		AddCall(e, bucket, duration_ms, cls, at);
	full = Stats->nregular >= DT_STATS_MAX_ENTRIES;
	LWLockRelease(Stats->lock);
	if (e != NULL)
		return;

	/*
	 * A new key: its entry is added, or when the table is full the call
	 * goes to its database's overflow entry (added if need be).  The
	 * overflow entry is looked for in shared mode first, so that a full
	 * table does not make every call take the lock exclusive.
	 */
	MakeKey(&okey, MyDatabaseId, InvalidOid, true, NULL, NULL, NULL);
	oh = HashKey(&okey);
	if (full)
	{
		bool		overflowed = false;

		LWLockAcquire(Stats->lock, LW_SHARED);
		e = Lookup(&key, h);	/* added meanwhile? */
		if (e == NULL && Stats->nregular >= DT_STATS_MAX_ENTRIES)
		{
			e = Lookup(&okey, oh);
			overflowed = e != NULL;
		}
		if (e != NULL)
			AddCall(e, bucket, duration_ms, cls, at);
		LWLockRelease(Stats->lock);
		if (overflowed)
			pg_atomic_fetch_add_u64(&Stats->overflowed, 1);
		if (e != NULL)
			return;
	}

	full = false;
	LWLockAcquire(Stats->lock, LW_EXCLUSIVE);
	e = Lookup(&key, h);
	if (e == NULL)
		e = Insert(&key, h, at);
	if (e == NULL)
	{
		full = true;
		e = Lookup(&okey, oh);
		if (e == NULL)
			e = Insert(&okey, oh, at);
	}
	if (e != NULL)
		AddCall(e, bucket, duration_ms, cls, at);
	LWLockRelease(Stats->lock);

	if (e == NULL)
		pg_atomic_fetch_add_u64(&Stats->lost, 1);
	else if (full)
		pg_atomic_fetch_add_u64(&Stats->overflowed, 1);
}

/* ---- reading ---- */

static void
AddCounters(DtStatsCounters *to, const DtStatsCounters *from)
{
	int			i;

	if (from->calls > 0 && (to->calls == 0 || from->min_ms < to->min_ms))
		to->min_ms = from->min_ms;
	if (from->max_ms > to->max_ms)
		to->max_ms = from->max_ms;
	if (to->calls == 0 || from->since < to->since)
		to->since = from->since;
	to->calls += from->calls;
	for (i = 0; i < DT_STATS_NCLASSES; i++)
		to->errors[i] += from->errors[i];
	for (i = 0; i < DT_STATS_NBUCKETS; i++)
		to->buckets[i] += from->buckets[i];
	to->sum_ms += from->sum_ms;
	if (from->last_at > to->last_at)
		to->last_at = from->last_at;
}

/* Order of a snapshot: database, overflow last, app, action, env, role. */
static int
CompareRows(const void *a, const void *b)
{
	const DtStatsRow *x = a;
	const DtStatsRow *y = b;
	int			c;

	if (x->dbid != y->dbid)
		return x->dbid < y->dbid ? -1 : 1;
	if (x->overflow != y->overflow)
		return x->overflow ? 1 : -1;
	if ((c = strcmp(x->app, y->app)) != 0)
		return c;
	if ((c = strcmp(x->action, y->action)) != 0)
		return c;
	if ((c = strcmp(x->env, y->env)) != 0)
		return c;
	if (x->roleid != y->roleid)
		return x->roleid < y->roleid ? -1 : 1;
	return 0;
}

static bool
SameRowKey(const DtStatsRow *x, const DtStatsRow *y)
{
	return x->dbid == y->dbid && x->overflow == y->overflow &&
		strcmp(x->app, y->app) == 0 && strcmp(x->action, y->action) == 0 &&
		strcmp(x->env, y->env) == 0;
}

int
StatsCollect(Oid dbid, Oid roleid, bool merge_roles, DtStatsRow **rows)
{
	DtStatsRow *buf;
	int			n = 0;
	int			i;

	*rows = NULL;
	if (Stats == NULL)
		return 0;
	/* allocated before the lock: under it, only copies */
	buf = palloc(sizeof(DtStatsRow) * DT_STATS_CAPACITY);

	LWLockAcquire(Stats->lock, LW_SHARED);
	for (i = 0; i < DT_STATS_CAPACITY; i++)
	{
		StatsEntry *e = &Stats->entries[i];
		DtStatsRow *r;

		if (!e->in_use ||
			(OidIsValid(dbid) && e->key.dbid != dbid) ||
			(OidIsValid(roleid) && e->key.roleid != roleid))
			continue;
		r = &buf[n++];
		r->dbid = e->key.dbid;
		r->roleid = e->key.roleid;
		r->overflow = e->key.overflow != 0;
		memcpy(r->app, e->key.app, DT_STATS_NAMELEN);
		memcpy(r->action, e->key.action, DT_STATS_NAMELEN);
		memcpy(r->env, e->key.env, DT_STATS_NAMELEN);
		SpinLockAcquire(&e->mutex);
		r->c = e->c;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(Stats->lock);

	if (n > 1)
		qsort(buf, n, sizeof(DtStatsRow), CompareRows);
	if (merge_roles && n > 0)
	{
		int			m = 0;

		buf[0].roleid = InvalidOid;
		for (i = 1; i < n; i++)
		{
			if (SameRowKey(&buf[m], &buf[i]))
				AddCounters(&buf[m].c, &buf[i].c);
			else
			{
				buf[++m] = buf[i];
				buf[m].roleid = InvalidOid;
			}
		}
		n = m + 1;
	}
	*rows = buf;
	return n;
}

/*
 * The q-quantile from the histogram: the bucket where the rank q * calls
 * falls, and a linear interpolation inside it (as Prometheus'
 * histogram_quantile does), the bucket's bounds narrowed to the smallest
 * and largest duration seen.  The true value lies in the same bucket, so
 * the error is less than that bucket's width.
 */
double
StatsPercentile(const DtStatsCounters *c, double q)
{
	int64		total = 0;
	int64		cum = 0;
	double		rank;
	int			i;

	for (i = 0; i < DT_STATS_NBUCKETS; i++)
		total += c->buckets[i];
	if (total <= 0)
		return -1;
	rank = q * (double) total;
	for (i = 0; i < DT_STATS_NBUCKETS; i++)
	{
		double		lo,
					hi;

		if (c->buckets[i] == 0)
			continue;
		if ((double) (cum + c->buckets[i]) < rank && i < DT_STATS_NBUCKETS - 1)
		{
			cum += c->buckets[i];
			continue;
		}
		lo = i == 0 ? 0 : DtStatsBucketUpperMs[i - 1];
		hi = i == DT_STATS_NBUCKETS - 1 ? c->max_ms : DtStatsBucketUpperMs[i];
		lo = Max(lo, c->min_ms);
		hi = Min(hi, c->max_ms);
		if (hi < lo)
			hi = lo;
		return lo + (hi - lo) * Min(1.0, Max(0.0, (rank - (double) cum) / (double) c->buckets[i]));
	}
	return c->max_ms;			/* not reached */
}

int
StatsForgetDatabase(Oid dbid)
{
	int			removed = 0;
	int			h;

	if (Stats == NULL)
		return 0;
	LWLockAcquire(Stats->lock, LW_EXCLUSIVE);
	for (h = 0; h < DT_STATS_HASH_SIZE; h++)
	{
		int32	   *link = &Stats->heads[h];

		while (*link >= 0)
		{
			int32		i = *link;
			StatsEntry *e = &Stats->entries[i];

			if (e->key.dbid != dbid)
			{
				link = &e->next;
				continue;
			}
			*link = e->next;
			e->in_use = false;
			e->next = Stats->free_list;
			Stats->free_list = i;
			if (e->key.overflow)
				Stats->noverflow--;
			else
				Stats->nregular--;
			removed++;
		}
	}
	LWLockRelease(Stats->lock);
	return removed;
}

void
StatsGetInfo(DtStatsInfo *info)
{
	memset(info, 0, sizeof(*info));
	info->max_entries = DT_STATS_MAX_ENTRIES;
	if (Stats == NULL)
		return;
	LWLockAcquire(Stats->lock, LW_SHARED);
	info->entries = Stats->nregular;
	info->overflow_entries = Stats->noverflow;
	LWLockRelease(Stats->lock);
	info->overflowed = (int64) pg_atomic_read_u64(&Stats->overflowed);
	info->lost = (int64) pg_atomic_read_u64(&Stats->lost);
}

/*
 * Remove the entries of databases that no longer exist (dropped while the
 * server was down, or without our DROP DATABASE hook seeing it).  Needs a
 * transaction (catalog lookups), done between the lock's uses.
 */
static void
ForgetDroppedDatabases(void)
{
	Oid		   *dbs = palloc(sizeof(Oid) * DT_STATS_CAPACITY);
	int			n = 0;
	int			i;

	LWLockAcquire(Stats->lock, LW_SHARED);
	for (i = 0; i < DT_STATS_CAPACITY; i++)
	{
		StatsEntry *e = &Stats->entries[i];
		int			k;

		if (!e->in_use)
			continue;
		for (k = 0; k < n && dbs[k] != e->key.dbid; k++)
			;
		if (k == n)
			dbs[n++] = e->key.dbid;
	}
	LWLockRelease(Stats->lock);

	for (i = 0; i < n; i++)
		if (dbs[i] != MyDatabaseId &&
			!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbs[i])))
			(void) StatsForgetDatabase(dbs[i]);
	pfree(dbs);
}

/* ---- the file ---- */

/* Postmaster, at a clean shutdown (code 0): every entry to the file. */
static void
StatsSave(int code, Datum arg)
{
	FILE	   *file;
	StatsFileHeader hdr;
	int			i;

	if (code != 0 || Stats == NULL)
		return;
	file = AllocateFile(DT_STATS_TMPFILE, PG_BINARY_W);
	if (file == NULL)
		goto error;
	memset(&hdr, 0, sizeof(hdr));
	hdr.magic = DT_STATS_FILE_MAGIC;
	hdr.version = DT_STATS_FILE_VERSION;
	hdr.nbuckets = DT_STATS_NBUCKETS;
	hdr.key_size = sizeof(StatsKey);
	hdr.counters_size = sizeof(DtStatsCounters);
	hdr.nentries = Stats->nregular + Stats->noverflow;
	if (fwrite(&hdr, sizeof(hdr), 1, file) != 1)
		goto error;
	/* no process is left: no lock needed (nor possible in the postmaster) */
	for (i = 0; i < DT_STATS_CAPACITY; i++)
	{
		StatsEntry *e = &Stats->entries[i];

		if (!e->in_use)
			continue;
		if (fwrite(&e->key, sizeof(StatsKey), 1, file) != 1 ||
			fwrite(&e->c, sizeof(DtStatsCounters), 1, file) != 1)
			goto error;
	}
	if (FreeFile(file))
	{
		file = NULL;
		goto error;
	}
	(void) durable_rename(DT_STATS_TMPFILE, DT_STATS_FILE, LOG);
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write ductape stats file \"%s\": %m", DT_STATS_TMPFILE)));
	if (file)
		FreeFile(file);
	unlink(DT_STATS_TMPFILE);
}

/*
 * Is name, a name field read from the file, one an entry can have: ended
 * within its field and either empty (none: ductape.http) or a tag (an
 * app, an action, "oauth2-token", an env)?  The special names of
 * ductape.stats are not stored: "(other)" is the overflow flag.
 */
static bool
ValidFileName(const char *name)
{
	if (memchr(name, '\0', DT_STATS_NAMELEN) == NULL)
		return false;
	return name[0] == '\0' || DtIsValidTag(name);
}

/*
 * May this entry, read from the file, be loaded?  Everything ductape.stats
 * and /metrics compute from an entry must stay valid: names that are tags
 * (so valid UTF-8), counts that are not negative and never exceed the
 * calls (so no sum overflows, even summed over every entry), finite
 * durations, times that timestamptz can show.  A counter updated when an
 * immediate shutdown stopped a process half-way still passes: the calls
 * are counted first.
 */
static bool
ValidFileEntry(const StatsKey *key, const DtStatsCounters *c)
{
	int64		total;
	int			i;

	if (!OidIsValid(key->dbid) || (key->overflow != 0 && key->overflow != 1))
		return false;
	if (!ValidFileName(key->app) || !ValidFileName(key->action) || !ValidFileName(key->env))
		return false;
	if (key->overflow)
	{
		/* the database's overflow entry: no role, no names */
		if (OidIsValid(key->roleid) || key->app[0] || key->action[0] || key->env[0])
			return false;
	}
	else if (!OidIsValid(key->roleid))
		return false;

	if (c->calls <= 0 || c->calls > DT_STATS_FILE_MAX_CALLS)
		return false;
	total = 0;
	for (i = 0; i < DT_STATS_NCLASSES; i++)
	{
		if (c->errors[i] < 0 || c->errors[i] > c->calls - total)
			return false;
		total += c->errors[i];
	}
	total = 0;
	for (i = 0; i < DT_STATS_NBUCKETS; i++)
	{
		if (c->buckets[i] < 0 || c->buckets[i] > c->calls - total)
			return false;
		total += c->buckets[i];
	}
	if (!isfinite(c->sum_ms) || !isfinite(c->min_ms) || !isfinite(c->max_ms) ||
		c->sum_ms < 0 || c->min_ms < 0 || c->max_ms < c->min_ms)
		return false;
	if (!IS_VALID_TIMESTAMP(c->last_at) || !IS_VALID_TIMESTAMP(c->since))
		return false;
	return true;
}

/*
 * Postmaster, when the segment is created: the entries the last clean
 * shutdown saved.  The file is removed once read, so that after a crash
 * the counters start from zero rather than from an old file.
 *
 * The file is only ever written by the postmaster, but it lies in the data
 * directory: a damaged or altered file must not make ductape.stats fail or
 * show names that are not tags.  A header that is not this version's
 * (magic, version, sizes, an entry count within capacity) makes the whole
 * file ignored; an entry that is not valid (ValidFileEntry), repeats a key
 * or finds no room is skipped; either is logged once.
 */
static void
StatsLoad(void)
{
	FILE	   *file;
	StatsFileHeader hdr;
	int			i;
	int			skipped = 0;

	file = AllocateFile(DT_STATS_FILE, PG_BINARY_R);
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read ductape stats file \"%s\": %m", DT_STATS_FILE)));
		return;
	}
	if (fread(&hdr, sizeof(hdr), 1, file) != 1 ||
		hdr.magic != DT_STATS_FILE_MAGIC || hdr.version != DT_STATS_FILE_VERSION ||
		hdr.nbuckets != DT_STATS_NBUCKETS ||
		hdr.key_size != sizeof(StatsKey) || hdr.counters_size != sizeof(DtStatsCounters) ||
		hdr.nentries < 0 || hdr.nentries > DT_STATS_CAPACITY)
	{
		ereport(LOG,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("ignoring ductape stats file \"%s\": its header is not one this version writes",
						DT_STATS_FILE),
				 errdetail("The request counters start from zero.")));
		goto done;
	}
	for (i = 0; i < hdr.nentries; i++)
	{
		StatsKey	raw;
		StatsKey	key;
		DtStatsCounters c;
		StatsEntry *e;
		uint32		h;

		if (fread(&raw, sizeof(raw), 1, file) != 1 ||
			fread(&c, sizeof(c), 1, file) != 1)
		{
			ereport(LOG,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("ductape stats file \"%s\" is cut short: %d of %d entries read",
							DT_STATS_FILE, i, hdr.nentries)));
			break;
		}
		if (!ValidFileEntry(&raw, &c))
		{
			skipped++;
			continue;
		}
		/* rebuilt, so that equal keys are equal bytes */
		MakeKey(&key, raw.dbid, raw.roleid, raw.overflow != 0,
				raw.app, raw.action, raw.env);
		h = HashKey(&key);
		if (Lookup(&key, h) != NULL || (e = Insert(&key, h, c.since)) == NULL)
		{
			skipped++;
			continue;
		}
		e->c = c;
	}
	if (skipped > 0)
		ereport(LOG,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("ductape stats file \"%s\": %d of its %d entries skipped",
						DT_STATS_FILE, skipped, hdr.nentries),
				 errdetail("An entry is skipped when its names are not tags, a count is negative or larger than its calls, a duration is not finite, a time is outside the range of timestamp with time zone, or its key repeats another's.")));

done:
	FreeFile(file);
	unlink(DT_STATS_FILE);
}

/* ---- SQL ---- */

/*
 * ductape._stats(): the current database's counters, one row per (app,
 * action, env) summed over the roles the caller may see: its own, or every
 * role for an administrator.  Backs the ductape.stats view.
 */
Datum
dt_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DtStatsRow *rows;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (Stats == NULL)
		PG_RETURN_VOID();
	ForgetDroppedDatabases();
	n = StatsCollect(MyDatabaseId, DtCallerIsAdmin() ? InvalidOid : GetUserId(), true, &rows);
	for (i = 0; i < n; i++)
	{
		DtStatsRow *r = &rows[i];
		DtStatsCounters *c = &r->c;
		Datum		values[18];
		bool		nulls[18];
		int64		errors = 0;
		int			k;
		int			col = 0;

		memset(nulls, 0, sizeof(nulls));
		for (k = 0; k < DT_STATS_NCLASSES; k++)
			errors += c->errors[k];
		if (r->overflow)
		{
			values[col++] = CStringGetTextDatum("(other)");
			nulls[col++] = true;
			nulls[col++] = true;
		}
		else
		{
			if (r->app[0])
				values[col++] = CStringGetTextDatum(r->app);
			else
				nulls[col++] = true;
			if (r->action[0])
				values[col++] = CStringGetTextDatum(r->action);
			else
				nulls[col++] = true;
			if (r->env[0])
				values[col++] = CStringGetTextDatum(r->env);
			else
				nulls[col++] = true;
		}
		values[col++] = Int64GetDatum(c->calls);
		values[col++] = Int64GetDatum(errors);
		for (k = 0; k < DT_STATS_NCLASSES; k++)
			values[col++] = Int64GetDatum(c->errors[k]);
		values[col++] = Float8GetDatum(StatsPercentile(c, 0.50));
		values[col++] = Float8GetDatum(StatsPercentile(c, 0.95));
		values[col++] = Float8GetDatum(StatsPercentile(c, 0.99));
		values[col++] = Float8GetDatum(c->sum_ms / (double) c->calls);
		values[col++] = Float8GetDatum(c->min_ms);
		values[col++] = Float8GetDatum(c->max_ms);
		values[col++] = TimestampTzGetDatum(c->last_at);
		values[col++] = TimestampTzGetDatum(c->since);
		Assert(col == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/* ductape.stats_reset(): remove the current database's counters. */
Datum
dt_stats_reset(PG_FUNCTION_ARGS)
{
	if (Stats != NULL)
	{
		ForgetDroppedDatabases();
		(void) StatsForgetDatabase(MyDatabaseId);
	}
	PG_RETURN_VOID();
}

/*
 * ductape._stats_info(): cluster-wide figures about the counters and the
 * call-record buffer (for health checks).
 */
Datum
dt_stats_info(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	DtStatsInfo info;
	Datum		values[6];
	bool		nulls[6];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (Stats != NULL)
		ForgetDroppedDatabases();
	StatsGetInfo(&info);
	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(info.entries);
	values[1] = Int32GetDatum(info.max_entries);
	values[2] = Int32GetDatum(info.overflow_entries);
	values[3] = Int64GetDatum(info.overflowed);
	values[4] = Int64GetDatum(info.lost);
	values[5] = Int64GetDatum(CallsDropped());
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
