/*-------------------------------------------------------------------------
 *
 * calls.c
 *	  The shared-memory buffer of call records (docs/reference.md).
 *
 * ductape.calls must survive the caller's rollback and must not add a
 * table write to ductape.run.  So a call only copies a fixed-size record
 * into a ring in shared memory (one LWLock, a memcpy); a per-database
 * background worker (worker.c) drains its database's records in batches
 * and inserts them in its own transaction.
 *
 * The ring is shared by all databases.  Each record carries its database;
 * a worker takes only its own records and marks them consumed, and the
 * ring's tail advances over the consumed prefix.  When the ring is full a
 * record is dropped and counted (the caller is never blocked).
 *
 * Call ids come from a shared counter seeded with the microseconds since
 * 2000 at server start, so they are unique and increasing across restarts
 * without any I/O (they are not dense).
 *
 * Wake-ups: the first record after a flush sets the worker's latch; the
 * worker then waits a short batching window and drains everything, so an
 * idle system does no polling and records appear within a fraction of a
 * second.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "calls.h"

static CallsShared *Calls = NULL;

Size
CallsShmemSize(void)
{
	return MAXALIGN(sizeof(CallsShared));
}

void
CallsShmemInit(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Calls = ShmemInitStruct("ductape calls", CallsShmemSize(), &found);
	if (!found)
	{
		memset(Calls, 0, sizeof(CallsShared));
		Calls->lock = &(GetNamedLWLockTranche("ductape"))->lock;
		pg_atomic_init_u64(&Calls->next_id, (uint64) GetCurrentTimestamp());
		pg_atomic_init_u32(&Calls->listener_port, 0);
		pg_atomic_init_u32(&Calls->webhooks_pending, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

CallsShared *
CallsGetShared(void)
{
	return Calls;
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

static DtDbWorker *
FindWorker(Oid dbid)
{
	int			i;

	for (i = 0; i < DT_MAX_DB_WORKERS; i++)
		if (Calls->workers[i].dbid == dbid)
			return &Calls->workers[i];
	return NULL;
}

/* Queue a record; returns its call id (0 when the ring was full). */
int64
CallsRecord(const DtCallInfo *info)
{
	DtCallSlot	rec;
	DtDbWorker *w;
	Latch	   *wake = NULL;
	int64		id;

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
		id = 0;
	}
	else
	{
		Calls->slots[Calls->head % DT_CALL_SLOTS] = rec;
		Calls->head++;
	}
	w = FindWorker(MyDatabaseId);
	if (w == NULL)
		wake = Calls->launcher_latch;
	else if (!w->notified && w->latch != NULL)
	{
		w->notified = true;
		wake = w->latch;
	}
	LWLockRelease(Calls->lock);

	if (wake)
		SetLatch(wake);
	return id;
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
	DtDbWorker *w;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	w = FindWorker(dbid);
	if (w)
		w->notified = false;
	for (i = Calls->tail; i < Calls->head && n < max; i++)
	{
		DtCallSlot *s = &Calls->slots[i % DT_CALL_SLOTS];

		if (!s->consumed && s->dbid == dbid)
		{
			if (buf)
				buf[n] = *s;
			n++;
			s->consumed = true;
		}
	}
	while (Calls->tail < Calls->head && Calls->slots[Calls->tail % DT_CALL_SLOTS].consumed)
		Calls->tail++;
	LWLockRelease(Calls->lock);
	return n;
}

/*
 * Launcher side: a database with pending records and no worker, or
 * InvalidOid.  Registers a placeholder worker slot for it, so it is
 * returned once.
 */
Oid
CallsClaimDatabaseWithoutWorker(void)
{
	uint64		i;
	Oid			found = InvalidOid;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	for (i = Calls->tail; i < Calls->head; i++)
	{
		DtCallSlot *s = &Calls->slots[i % DT_CALL_SLOTS];

		if (!s->consumed && FindWorker(s->dbid) == NULL)
		{
			DtDbWorker *w = FindWorker(InvalidOid);

			if (w == NULL)
				break;			/* all worker slots taken */
			memset(w, 0, sizeof(*w));
			w->dbid = s->dbid;
			w->started_at = GetCurrentTimestamp();
			found = s->dbid;
			break;
		}
	}
	for (i = 0; i < DT_MAX_DB_WORKERS && !OidIsValid(found); i++)
	{
		Oid			want = Calls->wanted[i];

		if (OidIsValid(want))
		{
			Calls->wanted[i] = InvalidOid;
			if (FindWorker(want) == NULL)
			{
				DtDbWorker *w = FindWorker(InvalidOid);

				if (w == NULL)
					break;
				memset(w, 0, sizeof(*w));
				w->dbid = want;
				w->started_at = GetCurrentTimestamp();
				found = want;
			}
		}
	}
	for (i = 0; i < DT_TOKEN_SLOTS && !OidIsValid(found); i++)
	{
		DtTokenSlot *t = &Calls->tokens[i];

		if (t->state == TOKEN_PENDING && FindWorker(t->dbid) == NULL)
		{
			DtDbWorker *w = FindWorker(InvalidOid);

			if (w == NULL)
				break;
			memset(w, 0, sizeof(*w));
			w->dbid = t->dbid;
			w->started_at = GetCurrentTimestamp();
			found = t->dbid;
		}
	}
	LWLockRelease(Calls->lock);
	return found;
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

/* Ask the launcher for a worker for dbid (if it has none). */
void
CallsWantWorker(Oid dbid)
{
	int			i;
	int			free_slot = -1;
	Latch	   *wake;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_MAX_DB_WORKERS; i++)
	{
		if (Calls->wanted[i] == dbid)
			free_slot = -2;
		else if (free_slot == -1 && !OidIsValid(Calls->wanted[i]))
			free_slot = i;
	}
	if (free_slot >= 0 && FindWorker(dbid) == NULL)
		Calls->wanted[free_slot] = dbid;
	wake = Calls->launcher_latch;
	LWLockRelease(Calls->lock);
	if (wake)
		SetLatch(wake);
}

/* Wake dbid's worker now, or have the launcher start one. */
void
CallsWakeWorker(Oid dbid)
{
	DtDbWorker *w;
	Latch	   *wake = NULL;
	bool		want = false;

	LWLockAcquire(Calls->lock, LW_SHARED);
	w = FindWorker(dbid);
	if (w && w->latch)
		wake = w->latch;
	else if (w == NULL)
		want = true;
	LWLockRelease(Calls->lock);
	if (wake)
		SetLatch(wake);
	else if (want)
		CallsWantWorker(dbid);
}

/* Forget a database's worker slot (it exited or never started). */
void
CallsReleaseWorker(Oid dbid, bool discard_records)
{
	DtDbWorker *w;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	w = FindWorker(dbid);
	if (w)
		memset(w, 0, sizeof(*w));
	LWLockRelease(Calls->lock);
	if (discard_records)
		while (CallsCollect(dbid, NULL, DT_CALL_SLOTS) > 0)
			;
}

/* Worker side: announce this process as dbid's worker. */
void
CallsAttachWorker(Oid dbid)
{
	DtDbWorker *w;
	int			i;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	w = FindWorker(dbid);
	if (w == NULL)
		w = FindWorker(InvalidOid);
	if (w != NULL)
	{
		w->dbid = dbid;
		w->pid = MyProcPid;
		w->latch = MyLatch;
		w->notified = false;
	}
	/* token requests a previous worker died serving are served again */
	for (i = 0; i < DT_TOKEN_SLOTS; i++)
	{
		DtTokenSlot *t = &Calls->tokens[i];

		if (t->dbid == dbid && t->state == TOKEN_WORKING)
			t->state = t->abandoned ? TOKEN_FREE : TOKEN_PENDING;
	}
	LWLockRelease(Calls->lock);
}

pid_t
CallsWorkerPid(Oid dbid)
{
	DtDbWorker *w;
	pid_t		pid = 0;

	LWLockAcquire(Calls->lock, LW_SHARED);
	w = FindWorker(dbid);
	if (w)
		pid = w->pid;
	LWLockRelease(Calls->lock);
	return pid;
}

void
CallsSetLauncherLatch(Latch *latch)
{
	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	Calls->launcher_latch = latch;
	LWLockRelease(Calls->lock);
}

/*
 * Worker slots whose process never came up within 10 s are freed, and
 * their database's records dropped: a database that cannot be connected to
 * (dropped, not allowing connections, no worker slot free) must not hold
 * the ring's tail and so block every other database's records.
 */
void
CallsReapStaleWorkers(void)
{
	int			i;
	TimestampTz now = GetCurrentTimestamp();
	Oid			reaped[DT_MAX_DB_WORKERS];
	int			nreaped = 0;

	LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_MAX_DB_WORKERS; i++)
	{
		DtDbWorker *w = &Calls->workers[i];

		if (OidIsValid(w->dbid) && w->pid == 0 &&
			TimestampDifferenceExceeds(w->started_at, now, 10000))
		{
			reaped[nreaped++] = w->dbid;
			memset(w, 0, sizeof(*w));
		}
	}
	LWLockRelease(Calls->lock);
	for (i = 0; i < nreaped; i++)
	{
		int			n = 0,
					k;

		while ((k = CallsCollect(reaped[i], NULL, DT_CALL_SLOTS)) > 0)
			n += k;
		if (n > 0)
		{
			LWLockAcquire(Calls->lock, LW_EXCLUSIVE);
			Calls->dropped += n;
			LWLockRelease(Calls->lock);
			ereport(WARNING,
					(errmsg("ductape dropped %d call records of database %u", n, reaped[i]),
					 errdetail("No worker could connect to that database within 10 seconds.")));
		}
	}
}
