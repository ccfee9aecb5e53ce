/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The registry of database workers, in shared memory: one entry per
 *	  database that has a worker or is getting one, the databases that
 *	  asked for a worker, and the launcher's latch.
 *
 * Layer 1 (utilities): calls shmem.c and PostgreSQL only.  The launcher and
 * the database worker (worker.c) keep it; calls.c, oauth.c, jobs.c and
 * webhook.c use it to wake a database's worker.
 *
 * An entry's life: the launcher claims it for a database (RegistryClaim,
 * RegistryClaimWanted: database and start time, no pid yet) and starts a
 * background worker; the worker fills in its pid and latch
 * (RegistryAttach); the entry is freed when the worker exits
 * (RegistryRelease, from its exit callback), when it could not be started,
 * or by the launcher when no worker attached within 10 s
 * (RegistryReapStale).  There is at most one entry per database, so at
 * most one worker.
 *
 * Who wakes whom: RegistryWakeWorker sets the worker's latch, or puts the
 * database on the wanted list and sets the launcher's latch when it has no
 * worker.  RegistryNotify is the call-record ring's cheaper variant
 * (calls.c): it sets the worker's latch only once between two collects
 * (the notified flag), or the launcher's when there is no worker, which
 * then finds the database's records in the ring.  RegistryWakeAtCommit
 * wakes it when the current transaction commits (a dispatch, a publish, a
 * workflow started), and not at all when it aborts: the worker must not
 * look before the rows it is to find are visible.
 *
 * All of it is under the registry's own LWLock; see the locking protocol
 * in shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/timestamp.h"

#include "registry.h"
#include "shmem.h"

#define DT_ATTACH_TIMEOUT_MS 10000	/* a claimed entry's worker must attach */

typedef struct DtDbWorker
{
	Oid			dbid;			/* InvalidOid: free entry */
	pid_t		pid;			/* 0 until the worker attached */
	Latch	   *latch;			/* NULL until the worker attached */
	pg_atomic_uint32 notified;	/* latch set since the last collect */
	TimestampTz started_at;		/* when the entry was claimed */
} DtDbWorker;

typedef struct RegistryShared
{
	LWLock	   *lock;
	Latch	   *launcher_latch;
	DtDbWorker	workers[DT_MAX_DB_WORKERS];
	Oid			wanted[DT_MAX_DB_WORKERS];	/* databases asking for a worker */
	struct
	{
		Oid			dbid;		/* InvalidOid: free */
		DtUserCode	code;
	}			ended[DT_MAX_DB_WORKERS];	/* user code that ended a worker */
} RegistryShared;

static RegistryShared *Registry = NULL;

static Size
RegistryShmemSize(void)
{
	return sizeof(RegistryShared);
}

static void
RegistryShmemInit(void *mem, LWLockPadded *locks)
{
	RegistryShared *r = mem;
	int			i;

	r->lock = &locks[0].lock;
	for (i = 0; i < DT_MAX_DB_WORKERS; i++)
		pg_atomic_init_u32(&r->workers[i].notified, 0);
}

static const DtShmemSegment RegistrySegment = {
	.name = "ductape workers",
	.nlocks = 1,
	.size = RegistryShmemSize,
	.init = RegistryShmemInit,
	.mem = (void **) &Registry,
};

void
RegistryShmemRegister(void)
{
	DtShmemRegister(&RegistrySegment);
}

/* dbid's entry (InvalidOid: a free one) or NULL; the lock is held. */
static DtDbWorker *
FindWorker(Oid dbid)
{
	int			i;

	for (i = 0; i < DT_MAX_DB_WORKERS; i++)
		if (Registry->workers[i].dbid == dbid)
			return &Registry->workers[i];
	return NULL;
}

/* Make w a claimed entry of dbid, or a free one; the lock is held exclusive. */
static void
SetEntry(DtDbWorker *w, Oid dbid, TimestampTz started_at)
{
	w->dbid = dbid;
	w->pid = 0;
	w->latch = NULL;
	pg_atomic_write_u32(&w->notified, 0);
	w->started_at = started_at;
}

/* ---- the launcher ---- */

void
RegistrySetLauncherLatch(Latch *latch)
{
	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	Registry->launcher_latch = latch;
	LWLockRelease(Registry->lock);
}

/*
 * Claim an entry for dbid, so that the launcher starts its worker; false
 * when it has an entry already or none is free.
 */
bool
RegistryClaim(Oid dbid)
{
	TimestampTz now = GetCurrentTimestamp();
	DtDbWorker *w = NULL;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	if (FindWorker(dbid) == NULL)
	{
		w = FindWorker(InvalidOid);
		if (w != NULL)
			SetEntry(w, dbid, now);
	}
	LWLockRelease(Registry->lock);
	return w != NULL;
}

/*
 * Take a database off the wanted list and claim an entry for it; InvalidOid
 * when none is wanted that has no worker, or no entry is free.  (A wanted
 * database is taken off the list even when no entry is free: it asks again
 * when it needs to.)
 */
Oid
RegistryClaimWanted(void)
{
	TimestampTz now = GetCurrentTimestamp();
	Oid			found = InvalidOid;
	int			i;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_MAX_DB_WORKERS && !OidIsValid(found); i++)
	{
		Oid			want = Registry->wanted[i];

		if (OidIsValid(want))
		{
			Registry->wanted[i] = InvalidOid;
			if (FindWorker(want) == NULL)
			{
				DtDbWorker *w = FindWorker(InvalidOid);

				if (w == NULL)
					break;
				SetEntry(w, want, now);
				found = want;
			}
		}
	}
	LWLockRelease(Registry->lock);
	return found;
}

/*
 * Free the entries whose worker did not attach within 10 s (the database
 * cannot be connected to: dropped, not allowing connections, no background
 * worker slot); their databases go into reaped (at most max, the rest are
 * reaped next time).  Returns how many.
 */
int
RegistryReapStale(Oid *reaped, int max)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int			i;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_MAX_DB_WORKERS && n < max; i++)
	{
		DtDbWorker *w = &Registry->workers[i];

		if (OidIsValid(w->dbid) && w->pid == 0 &&
			TimestampDifferenceExceeds(w->started_at, now, DT_ATTACH_TIMEOUT_MS))
		{
			reaped[n++] = w->dbid;
			SetEntry(w, InvalidOid, 0);
		}
	}
	LWLockRelease(Registry->lock);
	return n;
}

/* ---- a database worker ---- */

/* Announce this process as dbid's worker. */
void
RegistryAttach(Oid dbid)
{
	TimestampTz now = GetCurrentTimestamp();
	DtDbWorker *w;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	w = FindWorker(dbid);
	if (w == NULL)
	{
		w = FindWorker(InvalidOid);
		if (w != NULL)
			SetEntry(w, dbid, now);
	}
	if (w != NULL)
	{
		w->pid = MyProcPid;
		w->latch = MyLatch;
		pg_atomic_write_u32(&w->notified, 0);
	}
	LWLockRelease(Registry->lock);
}

/* Free dbid's entry (its worker exited, or never started). */
void
RegistryRelease(Oid dbid)
{
	DtDbWorker *w;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	w = FindWorker(dbid);
	if (w != NULL)
		SetEntry(w, InvalidOid, 0);
	LWLockRelease(Registry->lock);
}

/*
 * Before collecting dbid's call records: the next record queued sets the
 * worker's latch again (see RegistryNotify and the protocol in shmem.c).
 */
/*
 * A worker of dbid ends because of code (its exit callback): the next
 * worker of dbid takes it (RegistryTakeEndedBy).  One per database, the
 * latest; when every entry is taken, the first is overwritten.
 */
void
RegistryNoteEndedBy(Oid dbid, const DtUserCode *code)
{
	int			i,
				at = -1;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_MAX_DB_WORKERS; i++)
	{
		if (Registry->ended[i].dbid == dbid)
		{
			at = i;
			break;
		}
		if (at < 0 && !OidIsValid(Registry->ended[i].dbid))
			at = i;
	}
	if (at < 0)
		at = 0;
	Registry->ended[at].dbid = dbid;
	Registry->ended[at].code = *code;
	LWLockRelease(Registry->lock);
}

/* At a worker's start: the user code that ended the previous one, if any. */
bool
RegistryTakeEndedBy(Oid dbid, DtUserCode *code)
{
	bool		found = false;
	int			i;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_MAX_DB_WORKERS && !found; i++)
	{
		if (Registry->ended[i].dbid == dbid)
		{
			*code = Registry->ended[i].code;
			Registry->ended[i].dbid = InvalidOid;
			found = true;
		}
	}
	LWLockRelease(Registry->lock);
	return found;
}

void
RegistryClearNotified(Oid dbid)
{
	DtDbWorker *w;

	LWLockAcquire(Registry->lock, LW_SHARED);
	w = FindWorker(dbid);
	if (w != NULL)
		(void) pg_atomic_exchange_u32(&w->notified, 0);
	LWLockRelease(Registry->lock);
}

/* ---- anyone ---- */

/* dbid's worker's pid; 0 when it has none, or it has not attached yet. */
pid_t
RegistryWorkerPid(Oid dbid)
{
	DtDbWorker *w;
	pid_t		pid = 0;

	LWLockAcquire(Registry->lock, LW_SHARED);
	w = FindWorker(dbid);
	if (w != NULL)
		pid = w->pid;
	LWLockRelease(Registry->lock);
	return pid;
}

/* Ask the launcher for a worker for dbid (if it has none). */
void
RegistryWantWorker(Oid dbid)
{
	int			i;
	int			free_slot = -1;
	Latch	   *wake;

	LWLockAcquire(Registry->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_MAX_DB_WORKERS; i++)
	{
		if (Registry->wanted[i] == dbid)
			free_slot = -2;
		else if (free_slot == -1 && !OidIsValid(Registry->wanted[i]))
			free_slot = i;
	}
	if (free_slot >= 0 && FindWorker(dbid) == NULL)
		Registry->wanted[free_slot] = dbid;
	wake = Registry->launcher_latch;
	LWLockRelease(Registry->lock);
	if (wake)
		SetLatch(wake);
}

/* Wake dbid's worker now, or have the launcher start one. */
void
RegistryWakeWorker(Oid dbid)
{
	DtDbWorker *w;
	Latch	   *wake = NULL;
	bool		want = false;

	LWLockAcquire(Registry->lock, LW_SHARED);
	w = FindWorker(dbid);
	if (w != NULL && w->latch != NULL)
		wake = w->latch;
	else if (w == NULL)
		want = true;
	LWLockRelease(Registry->lock);
	if (wake)
		SetLatch(wake);
	else if (want)
		RegistryWantWorker(dbid);
}

/*
 * A call record of dbid was queued: set its worker's latch, unless it was
 * set since the worker last collected; with no worker, set the launcher's
 * (it finds the database in the ring).  A worker that is starting (no
 * latch yet) looks at the ring as soon as it runs.
 */
void
RegistryNotify(Oid dbid)
{
	DtDbWorker *w;
	Latch	   *wake = NULL;

	LWLockAcquire(Registry->lock, LW_SHARED);
	w = FindWorker(dbid);
	if (w == NULL)
		wake = Registry->launcher_latch;
	else if (w->latch != NULL && pg_atomic_exchange_u32(&w->notified, 1) == 0)
		wake = w->latch;
	LWLockRelease(Registry->lock);
	if (wake)
		SetLatch(wake);
}

/* ---- waking the worker when a transaction commits ---- */

static bool wake_at_commit = false;
static bool wake_callback_registered = false;

static void
WakeXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				RegistryWakeWorker(MyDatabaseId);
			wake_at_commit = false;
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * Wake this database's worker (or have one started) when the current
 * transaction commits; nothing happens if it aborts.  The callback is
 * registered once per backend, not per transaction.
 */
void
RegistryWakeAtCommit(void)
{
	if (!wake_callback_registered)
	{
		RegisterXactCallback(WakeXactCallback, NULL);
		wake_callback_registered = true;
	}
	wake_at_commit = true;
}
