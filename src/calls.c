/*-------------------------------------------------------------------------
 *
 * calls.c
 *	  The shared-memory buffer of call records (docs/reference.md).
 *
 * Layer 1 (utilities): calls shmem.c, registry.c (to wake a database's
 * worker) and PostgreSQL only.
 *
 * ductape.calls must survive the caller's rollback and must not add a
 * table write to ductape.run.  So a call only copies a fixed-size record
 * into a ring in shared memory (the ring's own LWLock, a memcpy); a
 * per-database background worker (worker.c) drains its database's records
 * in batches and inserts them in its own transaction.
 *
 * The ring is shared by all databases.  Each record carries its database;
 * a worker takes only its own records and marks them consumed, and the
 * ring's tail advances over the consumed prefix.  When the ring is full a
 * record is dropped and counted (the caller is never blocked); the count
 * is shown by ductape._stats_info (CallsDropped), and the process that
 * drops one raises a WARNING, at most one a minute in the whole cluster (a
 * shared timestamp, changed by compare-and-exchange without the lock).
 * The call itself is still counted in ductape.stats (stats.c).
 *
 * Call ids come from a shared counter seeded with the microseconds since
 * 2000 at server start, so they are unique and increasing across restarts
 * without any I/O (they are not dense).
 *
 * Wake-ups: the first record after a collect sets the worker's latch
 * (RegistryNotify, registry.c, once the ring's lock is released); the
 * worker then waits a short batching window and drains everything, so an
 * idle system does no polling and records appear within a fraction of a
 * second.  A database without a worker has the launcher woken instead,
 * which finds it here (CallsPendingDatabases).  The locking protocol is in
 * shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "calls.h"
#include "registry.h"
#include "shmem.h"

typedef struct CallsRing
{
	LWLock	   *lock;
	pg_atomic_uint64 next_id;	/* call ids; used without the lock */
	uint64		head;			/* next record goes to slots[head % size] */
	uint64		tail;			/* oldest record not yet consumed */
	uint64		dropped;		/* records lost: ring full, or no worker */
	pg_atomic_uint64 warned_at; /* TimestampTz of the last WARNING, 0: none */
	pg_atomic_uint64 warned_dropped;	/* dropped as of that WARNING */
	DtCallSlot	slots[DT_CALL_SLOTS];
} CallsRing;

static CallsRing *Calls = NULL;

static Size
CallsShmemSize(void)
{
	return sizeof(CallsRing);
}

static void
CallsShmemInit(void *mem, LWLockPadded *locks)
{
	CallsRing  *ring = mem;

	ring->lock = &locks[0].lock;
	pg_atomic_init_u64(&ring->next_id, (uint64) GetCurrentTimestamp());
	pg_atomic_init_u64(&ring->warned_at, 0);
	pg_atomic_init_u64(&ring->warned_dropped, 0);
}

static const DtShmemSegment CallsSegment = {
	.name = "ductape calls",
	.nlocks = 1,
	.size = CallsShmemSize,
	.init = CallsShmemInit,
	.mem = (void **) &Calls,
};

void
CallsShmemRegister(void)
{
	DtShmemRegister(&CallsSegment);
}

/* Copy src into dst (size bytes), cut on a character boundary. */
static void
CopyField(char *dst, const char *src, size_t size)
{
	int			len;

	if (src == NULL)
	{
		dst[0] = '\0';
		return;
	}
	len = pg_mbcliplen(src, strlen(src), size - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * A record was dropped (dropped: the count after it): a WARNING, unless one
 * was raised in the last minute by any process.  After the ring's lock is
 * released.  Whichever session drops the record sees it, a usage role's
 * too: it says only cluster-wide counts and the ring's size, never a
 * database, role, app or URL (docs/security.md).
 */
static void
WarnDropped(uint64 dropped)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		last = pg_atomic_read_u64(&Calls->warned_at);
	uint64		before;

	if (last != 0 && !TimestampDifferenceExceeds((TimestampTz) last, now, 60 * 1000))
		return;
	/* one process wins the minute */
	if (!pg_atomic_compare_exchange_u64(&Calls->warned_at, &last, (uint64) now))
		return;
	before = pg_atomic_exchange_u64(&Calls->warned_dropped, dropped);
	ereport(WARNING,
			(errmsg("ductape's buffer of call records is full: call records are being dropped"),
			 errdetail("Call records dropped since the last such warning: %llu; since the server started: %llu. The buffer holds %d records. The calls are still counted in ductape.stats.",
					   (unsigned long long) (dropped > before ? dropped - before : 0),
					   (unsigned long long) dropped, DT_CALL_SLOTS),
			 errhint("Each database's ductape worker moves the records into ductape.calls: check that it runs (pg_stat_activity, backend_type \"ductape worker\") and keeps up, or keep fewer records with ductape.log_requests = 'errors'.")));
}

/*
 * Queue a record; returns its call id (0 when the ring was full).  The
 * record is built before the lock is taken: under it, only the copy.
 */
int64
CallsRecord(const DtCallInfo *info)
{
	DtCallSlot	rec;
	int64		id;
	uint64		dropped = 0;

	if (Calls == NULL)
		return 0;

	memset(&rec, 0, offsetof(DtCallSlot, url));
	rec.dbid = MyDatabaseId;
	rec.roleid = OidIsValid(info->roleid) ? info->roleid : GetUserId();
	rec.at = GetCurrentTimestamp() - (TimestampTz) (info->duration_ms * 1000.0);
	rec.status = info->status;
	rec.attempts = info->attempts;
	rec.duration_ms = info->duration_ms;
	rec.job_id = info->job_id;
	CopyField(rec.app, info->app, sizeof(rec.app));
	CopyField(rec.action, info->action, sizeof(rec.action));
	CopyField(rec.env, info->env, sizeof(rec.env));
	CopyField(rec.product, info->product, sizeof(rec.product));
	CopyField(rec.method, info->method, sizeof(rec.method));
	CopyField(rec.url, info->url, sizeof(rec.url));
	CopyField(rec.error, info->error, sizeof(rec.error));
	rec.has_error = info->error != NULL;
	id = (int64) pg_atomic_fetch_add_u64(&Calls->next_id, 1);
	rec.id = id;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	if (Calls->head - Calls->tail >= DT_CALL_SLOTS)
	{
		Calls->dropped++;
		dropped = Calls->dropped;
		id = 0;
	}
	else
	{
		Calls->slots[Calls->head % DT_CALL_SLOTS] = rec;
		Calls->head++;
	}
	LWLockRelease(Calls->lock);

	if (dropped > 0)
		WarnDropped(dropped);

	/* after the record is in: see the protocol in shmem.c */
	RegistryNotify(MyDatabaseId);
	return id;
}

/* Records dropped since the server started. */
int64
CallsDropped(void)
{
	uint64		n;

	if (Calls == NULL)
		return 0;
	LWLockAcquire(Calls->lock, LW_SHARED);
	n = Calls->dropped;
	LWLockRelease(Calls->lock);
	return (int64) n;
}

/* Advance tail over the consumed prefix; the lock is held exclusive. */
static void
AdvanceTail(void)
{
	while (Calls->tail < Calls->head && Calls->slots[Calls->tail % DT_CALL_SLOTS].consumed)
		Calls->tail++;
}

/*
 * Take up to max records of dbid out of the ring into buf (worker side).
 * Clears the worker's notified flag first, so a record queued afterwards
 * wakes it again.
 */
int
CallsCollect(Oid dbid, DtCallSlot *buf, int max)
{
	uint64		i;
	int			n = 0;

	RegistryClearNotified(dbid);

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	for (i = Calls->tail; i < Calls->head && n < max; i++)
	{
		DtCallSlot *s = &Calls->slots[i % DT_CALL_SLOTS];

		if (!s->consumed && s->dbid == dbid)
		{
			buf[n] = *s;
			n++;
			s->consumed = true;
		}
	}
	AdvanceTail();
	LWLockRelease(Calls->lock);
	return n;
}

/*
 * Count n collected records as dropped (worker side: a batch it could not
 * store).
 */
void
CallsCountDropped(int n)
{
	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	Calls->dropped += n;
	LWLockRelease(Calls->lock);
}

/* Are there call records of dbid not yet collected? */
bool
CallsPendingFor(Oid dbid)
{
	uint64		i;
	bool		pending = false;

	LWLockAcquire(Calls->lock, LW_SHARED);
	for (i = Calls->tail; i < Calls->head && !pending; i++)
	{
		DtCallSlot *s = &Calls->slots[i % DT_CALL_SLOTS];

		pending = !s->consumed && s->dbid == dbid;
	}
	LWLockRelease(Calls->lock);
	return pending;
}

/*
 * Launcher side: the databases that have records not yet collected, in the
 * order of their oldest record, at most max of them; returns how many.
 * (With max = DT_MAX_DB_WORKERS nothing is missed that the launcher could
 * act on: if all of those listed have a worker, every registry entry is
 * taken.)
 */
int
CallsPendingDatabases(Oid *dbs, int max)
{
	uint64		i;
	int			n = 0;

	LWLockAcquire(Calls->lock, LW_SHARED);
	for (i = Calls->tail; i < Calls->head && n < max; i++)
	{
		DtCallSlot *s = &Calls->slots[i % DT_CALL_SLOTS];
		int			k;

		if (s->consumed)
			continue;
		for (k = 0; k < n && dbs[k] != s->dbid; k++)
			;
		if (k == n)
			dbs[n++] = s->dbid;
	}
	LWLockRelease(Calls->lock);
	return n;
}

/*
 * Drop every record of dbid (its database has no worker and will not get
 * one); returns how many.  With count_dropped they count as dropped.
 */
int
CallsDiscard(Oid dbid, bool count_dropped)
{
	uint64		i;
	int			n = 0;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	for (i = Calls->tail; i < Calls->head; i++)
	{
		DtCallSlot *s = &Calls->slots[i % DT_CALL_SLOTS];

		if (!s->consumed && s->dbid == dbid)
		{
			s->consumed = true;
			n++;
		}
	}
	AdvanceTail();
	if (count_dropped)
		Calls->dropped += n;
	LWLockRelease(Calls->lock);
	return n;
}
