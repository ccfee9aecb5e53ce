/*-------------------------------------------------------------------------
 *
 * flow.c
 *	  Flow control in shared memory: the state of each limit (an app and
 *	  env, or an outbound endpoint) shared by every backend and worker of
 *	  the cluster, and what ductape.limits shows of it.
 *
 * Each limit is an entry of a fixed table, found by hashing its key
 * (database, endpoint or app and env).  An entry holds:
 *	- a token bucket as a GCRA ("generic cell rate algorithm"): one
 *	  timestamp, tat, the time the bucket would be full again.  A request
 *	  may go when tat - (burst - 1) * T <= now, T being the interval between
 *	  two requests at the declared rate; it then moves tat to
 *	  max(tat, now) + T.  In any window of W seconds at most burst + rate * W
 *	  requests start, whoever sends them;
 *	- the requests in flight (concurrency), and a condition variable on
 *	  which synchronous callers wait for a slot;
 *	- paused_until: a 429 or 503 with Retry-After stops everyone until then;
 *	  slow_shift: each 429 without Retry-After halves the rate for
 *	  DT_LIMIT_SLOW_S seconds (the rate doubles back each such period
 *	  without one);
 *	- horizon: how far ahead queue items were already put back, so that
 *	  the next one put back goes after them (the worker never wakes for a
 *	  crowd of items of which one may go); forgotten when a request goes
 *	  after none went for a while (the items put back are gone);
 *	- slots_full_since: items put back for a slot are spaced by the mean
 *	  request time / concurrency (one request that hangs moves the mean
 *	  little), and none comes due sooner than how long every slot has
 *	  stayed taken (at most DT_LIMIT_SLOT_BACKOFF_MS): a request that hangs
 *	  does not make the worker spin, and once it ends the backlog follows
 *	  closely;
 *	- counters for ductape.limits.
 * Every request of an app (whether or not it declares limits) goes through
 * its entry, so that a pause holds for all, and in_flight shows what is
 * under way.  When the table has no room for a new key, a request whose
 * limit declares a rate or a cap does not go (DT_LIMIT_FULL: fail closed,
 * so that an API key is never hammered because the table was full); one
 * without declared limits goes.
 *
 * A database holds at most DT_LIMIT_DB_SHARE entries (a quarter), counted
 * in the shares under the free list's spinlock, so that an admin of one
 * database cannot take the entries every other database needs.
 *
 * Locking: the table is split into DT_LIMIT_PARTITIONS partitions of hash
 * chains, each under an LWLock of its own (no lock is shared by every
 * request); an entry's state is under its spinlock, a leaf held for a few
 * instructions.  Shared mode finds an entry; exclusive mode adds one.  An
 * entry is never moved; it is removed only to make room for another, and
 * only when idle (nothing in flight, nobody waiting, bucket full, no pause,
 * not slowed), which loses nothing but its counters.  A process that holds
 * a slot or waits keeps its entry busy, so it may use the entry's address
 * without the partition lock.  Slots still held when a process exits
 * (an error in the worker) are given back by its exit callback.
 *
 * Layer 1 (utilities): calls PostgreSQL and shmem.c only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "ductape.h"
#include "flow.h"
#include "shmem.h"

#define DT_LIMIT_CAPACITY 8192
#define DT_LIMIT_BUCKETS 8192
#define DT_LIMIT_PARTITIONS 16
#define DT_LIMIT_DB_SHARE (DT_LIMIT_CAPACITY / 4)	/* entries of one database */
#define DT_LIMIT_MAX_DATABASES 256	/* databases holding entries at once */
#define DT_LIMIT_SLACK_US 2000	/* a token due this soon counts as there */
#define DT_LIMIT_MAX_PAUSE_S 3600	/* the longest Retry-After obeyed */
#define DT_LIMIT_SLOT_NAP_MS 100	/* a slot waiter looks again this often */
#define DT_LIMIT_SLOT_BACKOFF_MS 2000	/* items put back for a slot, at most
										 * this far while every slot stays taken */
#define DT_LIMIT_FULL_RETRY_MS 10000	/* no room for a declared limit: again */

typedef struct LimitEntry
{
	DtLimitKey	key;
	int32		next;			/* in its chain, or in the free list */
	bool		in_use;
	slock_t		mutex;			/* guards everything below */
	DtLimitSpec spec;
	TimestampTz tat;
	TimestampTz horizon;
	TimestampTz paused_until;
	TimestampTz slowed_until;
	int			slow_shift;
	int			in_flight;
	int			waiting;
	TimestampTz slots_full_since;	/* every slot taken since (0: not) */
	TimestampTz last_grant;		/* when a request last went */
	double		mean_ms;		/* recent requests' duration, smoothed */
	int64		granted;
	int64		waited;
	int64		rejected;
	TimestampTz since;
	ConditionVariable cv;		/* a slot was given back */
} LimitEntry;

/* How many entries a database holds (a database may hold a share only). */
typedef struct LimitShare
{
	Oid			dbid;
	int32		count;			/* 0: the slot is free */
} LimitShare;

typedef struct LimitsShared
{
	LWLock	   *locks[DT_LIMIT_PARTITIONS];
	slock_t		free_mutex;		/* the free list and the shares */
	int32		free_list;
	LimitShare	shares[DT_LIMIT_MAX_DATABASES];
	int32		heads[DT_LIMIT_BUCKETS];
	LimitEntry	entries[DT_LIMIT_CAPACITY];
} LimitsShared;

static LimitsShared *Limits = NULL;

/* the slots this process holds (given back at exit) */
static LimitEntry **Held = NULL;
static int	NumHeld = 0;
static int	MaxHeld = 0;
static bool ExitCallback = false;
static LimitEntry *WaitingOn = NULL;	/* the entry LimitWait counts us in */
static bool WarnedFull = false;

PG_FUNCTION_INFO_V1(dt_limits);

static Size
LimitsSegmentSize(void)
{
	return sizeof(LimitsShared);
}

static void
LimitsSegmentInit(void *mem, LWLockPadded *locks)
{
	LimitsShared *s = mem;
	int			i;

	for (i = 0; i < DT_LIMIT_PARTITIONS; i++)
		s->locks[i] = &locks[i].lock;
	SpinLockInit(&s->free_mutex);
	for (i = 0; i < DT_LIMIT_BUCKETS; i++)
		s->heads[i] = -1;
	for (i = 0; i < DT_LIMIT_CAPACITY; i++)
	{
		s->entries[i].next = i + 1 < DT_LIMIT_CAPACITY ? i + 1 : -1;
		SpinLockInit(&s->entries[i].mutex);
		ConditionVariableInit(&s->entries[i].cv);
	}
	s->free_list = 0;
}

static const DtShmemSegment LimitsSegment = {
	.name = "ductape limits",
	.nlocks = DT_LIMIT_PARTITIONS,
	.size = LimitsSegmentSize,
	.init = LimitsSegmentInit,
	.mem = (void **) &Limits,
};

void
LimitsShmemRegister(void)
{
	DtShmemRegister(&LimitsSegment);
}

/* ---- keys and specs ---- */

void
LimitSetApp(DtLimit *l, const char *app, const char *env, const DtLimitSpec *spec)
{
	memset(l, 0, sizeof(*l));
	l->active = true;
	l->key.dbid = MyDatabaseId;
	strlcpy(l->key.app, app, DT_LIMIT_NAMELEN);
	strlcpy(l->key.env, env ? env : "", DT_LIMIT_NAMELEN);
	l->spec = *spec;
}

void
LimitSetEndpoint(DtLimit *l, int64 endpoint_id, int per_second)
{
	memset(l, 0, sizeof(*l));
	l->active = true;
	l->key.dbid = MyDatabaseId;
	l->key.endpoint = endpoint_id;
	if (per_second > 0)
	{
		l->spec.rate = per_second;
		l->spec.per_ms = 1000;
		l->spec.burst = 1;		/* evenly spaced */
	}
}

/* T, the interval between two requests at the current rate, in µs. */
static int64
IntervalUs(LimitEntry *e)
{
	double		t;

	if (e->spec.rate <= 0)
		return 0;
	t = (double) e->spec.per_ms * 1000.0 / e->spec.rate;
	/* (at most a day: definitions are checked so; an env's rate under its
	 * app's per might say more.  burst * T << shift stays within int64) */
	t = Min(t, (double) USECS_PER_DAY);
	return (int64) Max(1.0, ceil(t)) << e->slow_shift;
}

char *
LimitDescribe(const DtLimitSpec *spec)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (spec->rate > 0)
	{
		appendStringInfo(&buf, "%g request%s per ", spec->rate, spec->rate == 1 ? "" : "s");
		if (spec->per_ms % 3600000 == 0)
			appendStringInfo(&buf, INT64_FORMAT "h", spec->per_ms / 3600000);
		else if (spec->per_ms % 60000 == 0)
			appendStringInfo(&buf, INT64_FORMAT "m", spec->per_ms / 60000);
		else if (spec->per_ms % 1000 == 0)
			appendStringInfo(&buf, INT64_FORMAT "s", spec->per_ms / 1000);
		else
			appendStringInfo(&buf, INT64_FORMAT "ms", spec->per_ms);
		appendStringInfo(&buf, " (burst %d)", spec->burst);
	}
	if (spec->concurrency > 0)
		appendStringInfo(&buf, "%s%d in flight at once", buf.len ? ", " : "", spec->concurrency);
	if (buf.len == 0)
		appendStringInfoString(&buf, "no declared limit");
	return buf.data;
}

/* ---- the table ---- */

static uint32
HashKey(const DtLimitKey *key)
{
	return hash_bytes((const unsigned char *) key, sizeof(DtLimitKey));
}

static LWLock *
PartitionLock(uint32 h)
{
	return Limits->locks[(h % DT_LIMIT_BUCKETS) % DT_LIMIT_PARTITIONS];
}

/* The entry of key; the caller holds its partition's lock. */
static LimitEntry *
Lookup(const DtLimitKey *key, uint32 h)
{
	int32		i;

	for (i = Limits->heads[h % DT_LIMIT_BUCKETS]; i >= 0; i = Limits->entries[i].next)
	{
		LimitEntry *e = &Limits->entries[i];

		if (e->in_use && memcmp(&e->key, key, sizeof(DtLimitKey)) == 0)
			return e;
	}
	return NULL;
}

/* Nothing of it would be lost by forgetting it but its counters. */
static bool
Idle(LimitEntry *e, TimestampTz now)
{
	bool		idle;

	SpinLockAcquire(&e->mutex);
	idle = e->in_flight == 0 && e->waiting == 0 && e->tat <= now &&
		e->horizon <= now && e->paused_until <= now && e->slow_shift == 0;
	SpinLockRelease(&e->mutex);
	return idle;
}

/*
 * Count an entry for dbid in its database's share; false when the
 * database holds its share already.  (When DT_LIMIT_MAX_DATABASES other
 * databases hold entries, its entries go uncounted, and unbounded, rather
 * than none.)  The caller holds free_mutex.
 */
static bool
ShareTake(Oid dbid)
{
	LimitShare *unused = NULL;

	for (int i = 0; i < DT_LIMIT_MAX_DATABASES; i++)
	{
		LimitShare *sh = &Limits->shares[i];

		if (sh->count > 0 && sh->dbid == dbid)
		{
			if (sh->count >= DT_LIMIT_DB_SHARE)
				return false;
			sh->count++;
			return true;
		}
		if (sh->count == 0 && unused == NULL)
			unused = sh;
	}
	if (unused != NULL)
	{
		unused->dbid = dbid;
		unused->count = 1;
	}
	return true;
}

/* The caller holds free_mutex. */
static void
ShareGive(Oid dbid)
{
	for (int i = 0; i < DT_LIMIT_MAX_DATABASES; i++)
		if (Limits->shares[i].count > 0 && Limits->shares[i].dbid == dbid)
		{
			Limits->shares[i].count--;
			return;
		}
}

/*
 * An entry for a new key of database dbid: a free one, or an idle one of
 * the same partition taken out of its chain; -1 when there is none.  A
 * database that holds its share of the table already (*over_share) may
 * only take over an idle entry of its own, so that no database can take
 * the entries the others need.  The caller holds the partition's lock
 * exclusively.
 */
static int32
TakeEntry(uint32 h, Oid dbid, bool *over_share)
{
	int32		i;
	int			part = (h % DT_LIMIT_BUCKETS) % DT_LIMIT_PARTITIONS;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&Limits->free_mutex);
	*over_share = !ShareTake(dbid);
	i = -1;
	if (!*over_share)
	{
		i = Limits->free_list;
		if (i >= 0)
			Limits->free_list = Limits->entries[i].next;
	}
	SpinLockRelease(&Limits->free_mutex);
	if (i >= 0)
		return i;

	for (int b = part; b < DT_LIMIT_BUCKETS; b += DT_LIMIT_PARTITIONS)
	{
		int32	   *link = &Limits->heads[b];

		while (*link >= 0)
		{
			LimitEntry *e = &Limits->entries[*link];

			if ((!*over_share || e->key.dbid == dbid) && Idle(e, now))
			{
				i = *link;
				*link = e->next;
				e->in_use = false;
				if (!*over_share)
				{
					SpinLockAcquire(&Limits->free_mutex);
					ShareGive(e->key.dbid);
					SpinLockRelease(&Limits->free_mutex);
				}
				return i;
			}
			link = &e->next;
		}
	}
	if (!*over_share)
	{
		SpinLockAcquire(&Limits->free_mutex);
		ShareGive(dbid);
		SpinLockRelease(&Limits->free_mutex);
	}
	return -1;
}

/*
 * The entry of key, added if need be; NULL when the table is full of busy
 * entries (said once per process).  Returns with the partition's lock held
 * (shared, or exclusive when it had to add the entry: a new entry is idle,
 * and must not be reclaimed before the caller uses it); the caller does
 * only spinlock work under it and releases *lock.
 */
static LimitEntry *
Find(const DtLimitKey *key, LWLock **lock)
{
	uint32		h = HashKey(key);
	LimitEntry *e;
	int32		i;
	bool		over_share = false;

	*lock = PartitionLock(h);
	LWLockAcquire(*lock, LW_SHARED);
	e = Lookup(key, h);
	if (e != NULL)
		return e;
	LWLockRelease(*lock);

	LWLockAcquire(*lock, LW_EXCLUSIVE);
	e = Lookup(key, h);
	if (e == NULL && (i = TakeEntry(h, key->dbid, &over_share)) >= 0)
	{
		e = &Limits->entries[i];
		SpinLockAcquire(&e->mutex);
		memcpy(&e->key, key, sizeof(DtLimitKey));
		memset(&e->spec, 0, sizeof(e->spec));
		e->tat = e->horizon = e->paused_until = e->slowed_until = 0;
		e->slow_shift = e->in_flight = e->waiting = 0;
		e->slots_full_since = e->last_grant = 0;
		e->mean_ms = 0;
		e->granted = e->waited = e->rejected = 0;
		e->since = GetCurrentTimestamp();
		e->in_use = true;
		SpinLockRelease(&e->mutex);
		e->next = Limits->heads[h % DT_LIMIT_BUCKETS];
		Limits->heads[h % DT_LIMIT_BUCKETS] = (int32) (e - Limits->entries);
	}
	if (e != NULL || WarnedFull)
		return e;

	/* (no message is raised under the lock) */
	LWLockRelease(*lock);
	WarnedFull = true;
	if (over_share)
		ereport(WARNING,
				(errmsg("ductape limits table is full for this database"),
				 errdetail("This database holds %d entries, its share of the %d, with requests in flight, waiters or pauses. Until some are idle, requests of its apps and endpoints without an entry wait if they declare a rate or a concurrency cap, and go unlimited if they do not.",
						   DT_LIMIT_DB_SHARE, DT_LIMIT_CAPACITY)));
	else
		ereport(WARNING,
				(errmsg("ductape limits table is full"),
				 errdetail("All %d entries hold requests in flight, waiters or pauses. Until some are idle, requests of apps and endpoints without an entry wait if they declare a rate or a concurrency cap, and go unlimited if they do not.",
						   DT_LIMIT_CAPACITY)));
	LWLockAcquire(*lock, LW_SHARED);
	return NULL;
}

/*
 * A dropped database's entries go back to the free list, and its share
 * with them.  Returns how many.  (No process of that database is left:
 * nothing of them is in flight or waiting.)
 */
int
LimitsForgetDatabase(Oid dbid)
{
	int			n = 0;

	if (Limits == NULL)
		return 0;
	for (int p = 0; p < DT_LIMIT_PARTITIONS; p++)
	{
		LWLockAcquire(Limits->locks[p], LW_EXCLUSIVE);
		for (int b = p; b < DT_LIMIT_BUCKETS; b += DT_LIMIT_PARTITIONS)
		{
			int32	   *link = &Limits->heads[b];

			while (*link >= 0)
			{
				int32		i = *link;
				LimitEntry *e = &Limits->entries[i];
				bool		busy;

				SpinLockAcquire(&e->mutex);
				busy = e->in_flight > 0 || e->waiting > 0;
				SpinLockRelease(&e->mutex);
				if (e->key.dbid != dbid || busy)
				{
					link = &e->next;
					continue;
				}
				*link = e->next;
				e->in_use = false;
				SpinLockAcquire(&Limits->free_mutex);
				ShareGive(dbid);
				e->next = Limits->free_list;
				Limits->free_list = i;
				SpinLockRelease(&Limits->free_mutex);
				n++;
			}
		}
		LWLockRelease(Limits->locks[p]);
	}
	return n;
}

/* ---- the slots this process holds ---- */

static void
GiveBack(LimitEntry *e)
{
	int			waiting;

	SpinLockAcquire(&e->mutex);
	if (e->in_flight > 0)
		e->in_flight--;
	if (e->in_flight < e->spec.concurrency)
		e->slots_full_since = 0;
	waiting = e->waiting;
	SpinLockRelease(&e->mutex);
	if (waiting > 0)
		ConditionVariableBroadcast(&e->cv);
}

static void
LimitsAtExit(int code, Datum arg)
{
	/* (a FATAL error in LimitWait skips its PG_FINALLY) */
	if (WaitingOn != NULL)
	{
		SpinLockAcquire(&WaitingOn->mutex);
		WaitingOn->waiting--;
		SpinLockRelease(&WaitingOn->mutex);
		WaitingOn = NULL;
	}
	while (NumHeld > 0)
		GiveBack(Held[--NumHeld]);
}

static void
EnsureExitCallback(void)
{
	if (!ExitCallback)
	{
		before_shmem_exit(LimitsAtExit, (Datum) 0);
		ExitCallback = true;
	}
}

static void
RememberHeld(LimitEntry *e)
{
	EnsureExitCallback();
	if (NumHeld == MaxHeld)
	{
		MaxHeld = Max(16, MaxHeld * 2);
		Held = Held == NULL ?
			MemoryContextAlloc(TopMemoryContext, sizeof(LimitEntry *) * MaxHeld) :
			repalloc(Held, sizeof(LimitEntry *) * MaxHeld);
	}
	Held[NumHeld++] = e;
}

static void
ForgetHeld(LimitEntry *e)
{
	for (int i = NumHeld - 1; i >= 0; i--)
		if (Held[i] == e)
		{
			Held[i] = Held[--NumHeld];
			return;
		}
}

/* ---- taking, waiting, deferring, giving back ---- */

/* The caller holds e's spinlock. */
static void
RecoverSlowed(LimitEntry *e, TimestampTz now)
{
	if (e->slow_shift > 0 && now >= e->slowed_until)
	{
		e->slow_shift--;
		e->slowed_until = e->slow_shift > 0 ?
			now + (TimestampTz) DT_LIMIT_SLOW_S * USECS_PER_SEC : 0;
	}
}

DtLimitReason
LimitTryAcquire(DtLimit *l, TimestampTz *until)
{
	LWLock	   *lock;
	LimitEntry *e;
	DtLimitReason why = DT_LIMIT_GO;
	TimestampTz now;

	*until = 0;
	if (!l->active || Limits == NULL)
		return DT_LIMIT_GO;
	Assert(l->held == NULL);
	e = Find(&l->key, &lock);
	if (e == NULL)
	{
		LWLockRelease(lock);
		/* a declared limit cannot be kept: nothing goes (not unlimited) */
		if (l->spec.rate > 0 || l->spec.concurrency > 0)
		{
			*until = GetCurrentTimestamp() + DT_LIMIT_FULL_RETRY_MS * 1000;
			return DT_LIMIT_FULL;
		}
		return DT_LIMIT_GO;
	}
	now = GetCurrentTimestamp();
	SpinLockAcquire(&e->mutex);
	if (e->spec.rate != l->spec.rate || e->spec.per_ms != l->spec.per_ms ||
		e->spec.burst != l->spec.burst)
	{
		/*
		 * The app's rate was redefined (or a session still sees the
		 * definition before): the bucket keeps what it owes, counted in
		 * requests, at the new rate -- so that a faster rate applies at
		 * once, and sessions alternating two definitions never refill it.
		 */
		int64		t_old = IntervalUs(e);
		int64		t_new;

		e->spec = l->spec;
		t_new = IntervalUs(e);
		if (t_old == 0 || t_new == 0)
			e->tat = 0;
		else if (e->tat > now)
			e->tat = now + (TimestampTz) ceil((double) (e->tat - now) * t_new / t_old);
	}
	else
		e->spec = l->spec;		/* concurrency, max_wait_ms */
	RecoverSlowed(e, now);
	if (e->paused_until > now)
	{
		why = DT_LIMIT_PAUSED;
		*until = e->paused_until;
	}
	else if (e->spec.rate > 0)
	{
		int64		t = IntervalUs(e);
		TimestampTz allowed = e->tat - (TimestampTz) (Max(e->spec.burst, 1) - 1) * t;

		if (allowed > now + Min(DT_LIMIT_SLACK_US, t))
		{
			why = DT_LIMIT_RATE;
			*until = allowed;
		}
	}
	if (why == DT_LIMIT_GO && e->spec.concurrency > 0 && e->in_flight >= e->spec.concurrency)
	{
		why = DT_LIMIT_SLOTS;
		if (e->slots_full_since == 0)
			e->slots_full_since = now;
	}
	if (why == DT_LIMIT_GO)
	{
		/*
		 * No request went for a while (two intervals, and a second): the
		 * items put back before are gone (cancelled jobs) -- they would
		 * have been coming due and going -- so they no longer push the
		 * next ones back.
		 */
		if (e->horizon > now &&
			e->last_grant + Max(2 * IntervalUs(e), (int64) USECS_PER_SEC) <= now)
			e->horizon = 0;
		e->slots_full_since = 0;
		e->last_grant = now;
		l->charged = IntervalUs(e);
		if (e->spec.rate > 0)
			e->tat = Max(e->tat, now) + l->charged;
		e->in_flight++;
		e->granted++;
		l->held = e;
		l->sent_at = now;
	}
	SpinLockRelease(&e->mutex);
	LWLockRelease(lock);
	if (l->held != NULL)
		RememberHeld(e);
	return why;
}

bool
LimitWait(DtLimit *l, DtLimitReason why, TimestampTz until, TimestampTz deadline)
{
	LWLock	   *lock;
	LimitEntry *e;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz end = why == DT_LIMIT_SLOTS ?
		Min(deadline, now + DT_LIMIT_SLOT_NAP_MS * 1000) : Min(until, deadline);
	volatile bool sleep_cv = false;

	if (now >= deadline)
		return false;
	e = Find(&l->key, &lock);
	if (e == NULL)
	{
		/* the table filled meanwhile: wait without an entry */
		LWLockRelease(lock);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) Max(1, (end - now + 999) / 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		return GetCurrentTimestamp() < deadline;
	}
	EnsureExitCallback();
	SpinLockAcquire(&e->mutex);
	e->waiting++;
	if (!l->counted)
		e->waited++;			/* once per call */
	SpinLockRelease(&e->mutex);
	WaitingOn = e;
	LWLockRelease(lock);
	l->counted = true;

	/* from here e stays ours: waiting > 0 keeps it in the table */
	PG_TRY();
	{
		if (why == DT_LIMIT_SLOTS)
		{
			bool		free_now;

			ConditionVariablePrepareToSleep(&e->cv);
			SpinLockAcquire(&e->mutex);
			free_now = e->in_flight < e->spec.concurrency || e->spec.concurrency == 0;
			SpinLockRelease(&e->mutex);
			sleep_cv = true;
			if (!free_now && end > now)
				(void) ConditionVariableTimedSleep(&e->cv, (long) ((end - now + 999) / 1000),
												   PG_WAIT_EXTENSION);
			ConditionVariableCancelSleep();
			sleep_cv = false;
		}
		else if (end > now)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 (long) ((end - now + 999) / 1000), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
	PG_FINALLY();
	{
		if (sleep_cv)
			ConditionVariableCancelSleep();
		SpinLockAcquire(&e->mutex);
		e->waiting--;
		SpinLockRelease(&e->mutex);
		WaitingOn = NULL;
	}
	PG_END_TRY();
	return GetCurrentTimestamp() < deadline || (why != DT_LIMIT_SLOTS && until <= deadline);
}

void
LimitRejected(DtLimit *l)
{
	LWLock	   *lock;
	LimitEntry *e;

	if (!l->active || Limits == NULL)
		return;
	e = Find(&l->key, &lock);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->rejected++;
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(lock);
}

TimestampTz
LimitDeferUntil(DtLimit *l, DtLimitReason why, TimestampTz until)
{
	LWLock	   *lock;
	LimitEntry *e;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz due;
	int64		step = 0;
	int64		backoff = 0;

	e = Find(&l->key, &lock);
	if (e == NULL)
	{
		LWLockRelease(lock);
		return Max(until, now + DT_LIMIT_FULL_RETRY_MS * 1000);
	}
	SpinLockAcquire(&e->mutex);
	if (e->spec.rate > 0)
		step = IntervalUs(e);
	if (e->spec.concurrency > 0 && why == DT_LIMIT_SLOTS)
	{
		/*
		 * A slot frees about every mean duration / concurrency; but the
		 * longer every slot has stayed taken (a request that hangs), the
		 * less that mean says: then no item comes due sooner than that
		 * time (up to DT_LIMIT_SLOT_BACKOFF_MS), so that the worker does
		 * not spin on items that cannot go.
		 */
		double		mean_us = (e->mean_ms > 0 ? e->mean_ms : 100.0) * 1000.0;

		step = Max(step, Max((int64) 1000, (int64) (mean_us / e->spec.concurrency)));
		if (e->slots_full_since > 0)
			backoff = Min(now - e->slots_full_since, DT_LIMIT_SLOT_BACKOFF_MS * (int64) 1000);
	}
	due = why == DT_LIMIT_SLOTS ? now + step : until;
	due = Max(due, Max(e->horizon, now));
	e->horizon = due + step;
	/* (not pushed on the horizon: once the slot frees, they follow closely) */
	due = Max(due, now + backoff);
	e->waited++;
	SpinLockRelease(&e->mutex);
	LWLockRelease(lock);
	return due;
}

void
LimitRelease(DtLimit *l, int status, double retry_after_ms, bool sent)
{
	LWLock	   *lock = NULL;
	LimitEntry *e = l->held;
	TimestampTz now;
	int			waiting;
	bool		throttled = status == 429 || (status == 503 && retry_after_ms >= 0);

	if (!l->active || Limits == NULL)
		return;
	if (e == NULL && !throttled)
		return;
	if (e == NULL)
	{
		/* not sent under a slot (the table was full): still obey the API */
		e = Find(&l->key, &lock);
		if (e == NULL)
		{
			LWLockRelease(lock);
			return;
		}
	}
	now = GetCurrentTimestamp();
	SpinLockAcquire(&e->mutex);
	if (l->held != NULL)
	{
		double		ms = (now - l->sent_at) / 1000.0;

		if (e->in_flight > 0)
			e->in_flight--;
		if (e->in_flight < e->spec.concurrency)
			e->slots_full_since = 0;
		if (!sent && e->spec.rate > 0)
			e->tat -= l->charged;	/* the API saw nothing: no token spent */
		else
		{
			/* (one request that hangs must not make the mean say minutes) */
			if (e->mean_ms > 0)
				ms = Min(ms, 4 * e->mean_ms);
			e->mean_ms = e->mean_ms > 0 ? 0.8 * e->mean_ms + 0.2 * ms : ms;
		}
	}
	if (throttled && retry_after_ms >= 0)
	{
		TimestampTz t = now + (TimestampTz) (Min(retry_after_ms, DT_LIMIT_MAX_PAUSE_S * 1000.0) * 1000.0);

		e->paused_until = Max(e->paused_until, t);
	}
	else if (throttled && e->spec.rate > 0)
	{
		e->slow_shift = Min(e->slow_shift + 1, DT_LIMIT_SLOW_MAX_SHIFT);
		e->slowed_until = now + (TimestampTz) DT_LIMIT_SLOW_S * USECS_PER_SEC;
	}
	else if (throttled)
		e->paused_until = Max(e->paused_until, now + (TimestampTz) DT_LIMIT_PAUSE_MS * 1000);
	waiting = e->waiting;
	SpinLockRelease(&e->mutex);
	if (waiting > 0)
		ConditionVariableBroadcast(&e->cv);
	if (lock != NULL)
		LWLockRelease(lock);
	if (l->held != NULL)
	{
		ForgetHeld(e);
		l->held = NULL;
	}
	l->counted = false;
}

/* ---- snapshots: ductape.limits, /metrics ---- */

int
LimitsCollect(Oid dbid, bool endpoints, DtLimitRow **rows)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int			max = 64;

	*rows = palloc(sizeof(DtLimitRow) * max);
	if (Limits == NULL)
		return 0;
	for (int p = 0; p < DT_LIMIT_PARTITIONS; p++)
	{
		LWLockAcquire(Limits->locks[p], LW_SHARED);
		for (int b = p; b < DT_LIMIT_BUCKETS; b += DT_LIMIT_PARTITIONS)
		{
			for (int32 i = Limits->heads[b]; i >= 0; i = Limits->entries[i].next)
			{
				LimitEntry *e = &Limits->entries[i];
				LimitEntry	c;
				DtLimitRow *r;

				if (!e->in_use || (OidIsValid(dbid) && e->key.dbid != dbid) ||
					(e->key.endpoint != 0 && !endpoints))
					continue;
				SpinLockAcquire(&e->mutex);
				memcpy(&c, e, offsetof(LimitEntry, cv));
				SpinLockRelease(&e->mutex);
				RecoverSlowed(&c, now);
				if (n == max)
				{
					max *= 2;
					*rows = repalloc(*rows, sizeof(DtLimitRow) * max);
				}
				r = &(*rows)[n++];
				r->key = c.key;
				r->spec = c.spec;
				r->effective_rate = 0;
				r->tokens = -1;
				if (c.spec.rate > 0)
				{
					int64		t = IntervalUs(&c);

					r->effective_rate = c.spec.rate * 1000.0 / c.spec.per_ms /
						(double) (1 << c.slow_shift);
					r->tokens = c.tat <= now ? c.spec.burst :
						Max(0.0, c.spec.burst - (double) (c.tat - now) / t);
				}
				r->in_flight = c.in_flight;
				r->waiting = c.waiting;
				r->paused_until = c.paused_until > now ? c.paused_until : 0;
				r->slowed_until = c.slow_shift > 0 ? c.slowed_until : 0;
				r->granted = c.granted;
				r->waited = c.waited;
				r->rejected = c.rejected;
				r->since = c.since;
			}
		}
		LWLockRelease(Limits->locks[p]);
	}
	return n;
}

/*
 * ductape._limits(): the current database's limits (and its endpoints',
 * for an administrator).  Backs the ductape.limits view.
 */
Datum
dt_limits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DtLimitRow *rows;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	n = LimitsCollect(MyDatabaseId, DtCallerIsAdmin(), &rows);
	for (int i = 0; i < n; i++)
	{
		DtLimitRow *r = &rows[i];
		Datum		values[18];
		bool		nulls[18];
		int			col = 0;
		bool		rated = r->spec.rate > 0;

		memset(nulls, 0, sizeof(nulls));
		if (r->key.endpoint == 0)
		{
			values[col++] = CStringGetTextDatum(r->key.app);
			values[col++] = CStringGetTextDatum(r->key.env);
			nulls[col++] = true;
		}
		else
		{
			nulls[col++] = true;
			nulls[col++] = true;
			values[col++] = Int64GetDatum(r->key.endpoint);
		}
		nulls[col] = !rated;
		values[col++] = Float8GetDatum(r->spec.rate);
		nulls[col] = !rated;
		values[col++] = rated ?
			DirectFunctionCall7(make_interval, 0, 0, 0, 0, 0, 0,
								Float8GetDatum(r->spec.per_ms / 1000.0)) : (Datum) 0;
		nulls[col] = !rated;
		values[col++] = Int32GetDatum(r->spec.burst);
		nulls[col] = r->spec.concurrency == 0;
		values[col++] = Int32GetDatum(r->spec.concurrency);
		nulls[col] = r->key.endpoint != 0;
		values[col++] = Int32GetDatum(r->spec.max_wait_ms);
		nulls[col] = !rated;
		values[col++] = Float8GetDatum(r->effective_rate);
		nulls[col] = !rated;
		values[col++] = Float8GetDatum(r->tokens);
		values[col++] = Int32GetDatum(r->in_flight);
		values[col++] = Int32GetDatum(r->waiting);
		nulls[col] = r->paused_until == 0;
		values[col++] = TimestampTzGetDatum(r->paused_until);
		nulls[col] = r->slowed_until == 0;
		values[col++] = TimestampTzGetDatum(r->slowed_until);
		values[col++] = Int64GetDatum(r->granted);
		values[col++] = Int64GetDatum(r->waited);
		values[col++] = Int64GetDatum(r->rejected);
		values[col++] = TimestampTzGetDatum(r->since);
		Assert(col == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
