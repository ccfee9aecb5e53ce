/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  ductape's shared memory: its set-up for every subsystem, and the
 *	  locking protocol they all follow (below).
 *
 * Layer 1 (utilities): calls PostgreSQL only.  The subsystems call it to
 * register their segments; it reaches their size and init functions only
 * through the DtShmemSegment they registered.
 *
 * SET-UP
 *
 * Each subsystem that keeps state across processes owns a segment: a
 * struct in its own file, registered from _PG_init (ductape.c) with a name,
 * a size function, an init function, how many LWLocks it wants and where
 * its pointer lives (shmem.h).  At the request hook (shmem_request_hook on
 * PostgreSQL 15 and later; _PG_init itself on 14, see compat.h) shmem.c
 * asks for the space of every segment and one named LWLock tranche for each
 * segment that wants locks, named like the segment.  At the startup hook it
 * creates each segment under AddinShmemInitLock; the first time, it zeroes
 * the segment and calls its init function with its tranche's locks.  Every
 * process gets the subsystem's pointer set.  Giving a subsystem shared
 * state therefore means a segment in that subsystem's file and one
 * register call in _PG_init, and nothing else.
 *
 * THE LOCKING PROTOCOL
 *
 * What exists, what guards it, who reads and writes it:
 *
 *	"ductape calls" (calls.c): the ring of call records -- slots, head,
 *	tail, dropped -- under one LWLock of its own.
 *	  exclusive: every process that sends HTTP appends a record
 *	  (CallsRecord); a database's worker takes its database's records out
 *	  and advances tail (CallsCollect); the launcher and DROP DATABASE
 *	  discard a database's records (CallsDiscard).
 *	  shared: the worker asks whether it has records (CallsPendingFor); the
 *	  launcher lists the databases that have some (CallsPendingDatabases).
 *	  next_id (call ids) is an atomic counter, used without the lock.
 *
 *	"ductape workers" (registry.c): the registry of database workers --
 *	one entry per database that has or is getting a worker (database,
 *	pid, latch, start time), the databases that asked for a worker, the
 *	launcher's latch -- under one LWLock of its own.
 *	  exclusive: the launcher claims an entry before starting a worker
 *	  (RegistryClaim, RegistryClaimWanted), frees entries whose worker
 *	  never came up (RegistryReapStale) and sets its latch; a worker fills
 *	  in its pid and latch (RegistryAttach); the entry is freed when the
 *	  worker exits or cannot start (RegistryRelease); any process asks for
 *	  a worker (RegistryWantWorker).
 *	  shared: any process wakes a worker or the launcher (RegistryWakeWorker,
 *	  RegistryNotify) or looks up a worker's pid (RegistryWorkerPid).
 *	  Each entry's notified flag is an atomic changed under the shared
 *	  lock (which keeps the entry from being freed meanwhile): set by
 *	  RegistryNotify when a call record was queued and the worker's latch
 *	  set, cleared by RegistryClearNotified before the worker collects.
 *
 *	"ductape oauth tokens" (oauth.c): the OAuth2 token request slots
 *	under one LWLock of their own.
 *	  exclusive: a backend posts a request, gives it up, or takes its
 *	  answer and frees the slot; the database's worker marks a request
 *	  WORKING, writes the answer, and at start puts back the requests a
 *	  dead worker left WORKING (OAuthRecoverRequests).
 *	  shared: the waiting backend reads its slot's state; the launcher
 *	  lists the databases that have pending requests.
 *
 *	"ductape stats" (stats.c): the request counters -- a fixed array of
 *	entries per (database, role, app, action, env), found through hash
 *	chains of entry indexes -- under one LWLock of its own, plus a
 *	spinlock in each entry.
 *	  shared: every process that sends HTTP finds its entry and adds a call
 *	  under the entry's spinlock (StatsCount); readers copy the entries,
 *	  each under its spinlock (StatsCollect, StatsGetInfo).  The spinlock
 *	  is held for a few additions only and is the one lock ever taken
 *	  while one of ours is held (it is a leaf: nothing is taken under it).
 *	  exclusive: adding the entry of a key seen for the first time (or of
 *	  a database's overflow), removing a database's entries (stats_reset,
 *	  DROP DATABASE).  The overflowed and lost counters are atomics.
 *	  The init function (in the postmaster) reads the file the last clean
 *	  exit wrote; the postmaster writes it at exit, when no other process
 *	  is left, without the lock.
 *
 *	"ductape webhook listener" (webhook.c): two atomics, no lock.  The
 *	listener's bound port: written by the listener (0 when it exits), read
 *	by webhook_url.  The webhooks-pending flag: set by the listener after
 *	it committed new events, exchanged for 0 by the database's worker
 *	(WebhooksTakePending).  Each is a hint on its own; neither has to agree
 *	with any other state, so they need no lock and no ordering.
 *
 *	"ductape counters" (counters.c): per database, its name, a counter
 *	per outcome and the gauges its worker publishes, under one LWLock of
 *	its own for the slot table only (which database owns a slot, its
 *	name); the counters and gauges are atomics, bumped and read without
 *	the lock.
 *	  exclusive: a process takes its database's slot on its first bump,
 *	  once (MyCounterSlot), or fills in the name; DROP DATABASE and a
 *	  worker leaving a database without the extension free it
 *	  (CountersForget).
 *	  shared: readers copy every slot (CountersSnapshot: /metrics in the
 *	  listener, ductape.health() in a backend).
 *
 *	"ductape limits" (flow.c): the flow-control state of each app and
 *	env, and of each endpoint -- a fixed array of entries found through
 *	hash chains of entry indexes -- split into 16 partitions of chains,
 *	each under an LWLock of its own, a spinlock in each entry, and a
 *	spinlock for the free list.
 *	  shared (the key's partition): every process that sends a request of
 *	  an app or a delivery finds its entry and, under the entry's
 *	  spinlock, takes a token and a slot or learns why not
 *	  (LimitTryAcquire), gives the slot back and records a pause or a
 *	  slowing (LimitRelease), or puts a queue item back (LimitDeferUntil);
 *	  ductape.limits copies each entry under its spinlock, one partition
 *	  at a time.
 *	  exclusive (the key's partition): adding the entry of a new key, which
 *	  takes one from the free list (its spinlock, a leaf) or reclaims an
 *	  idle entry of the same partition.
 *	  A process that holds a slot or waits has in_flight or waiting above
 *	  zero, which keeps its entry from being reclaimed: it uses the entry
 *	  (its spinlock, its condition variable) without the partition lock.
 *	  The condition variable is signalled after the entry's spinlock is
 *	  released; its own spinlock is PostgreSQL's.
 *
 * No two of these locks are ever held together.  Every function that
 * takes one releases it before returning and, while holding it, calls
 * nothing that takes another.  An operation that concerns two subsystems
 * does one after the other, each under its own lock:
 *
 *	- recording a call: the record goes into the ring (ring lock); then
 *	  the worker is notified (registry lock, shared) -- or the launcher,
 *	  when the database has no worker;
 *	- collecting: the notified flag is cleared (registry lock, shared);
 *	  then the records are taken (ring lock).  The flag is cleared before
 *	  the ring is read and set after a record is in it, so a record queued
 *	  during a collect is either taken by it or sets the flag and the
 *	  latch again: no wake-up is lost (each lock and the atomic exchange
 *	  are full barriers);
 *	- the launcher: it lists the databases with call records, then those
 *	  with token requests (each under its own lock, copied into a local
 *	  array), and claims a registry entry for each (registry lock).  The
 *	  claim checks again, under the registry lock, that the database has
 *	  no worker, so a worker that appeared meanwhile is never doubled; a
 *	  database whose records were taken meanwhile gets a worker that finds
 *	  nothing to do, which is harmless;
 *	- a worker's exit: its registry entry is released, then, where wanted,
 *	  its records are discarded;
 *	- a request is counted (stats lock) before its record is queued (ring
 *	  lock), one after the other.
 * So there is no lock order to keep and no deadlock among them.  The only
 * other lock involved is PostgreSQL's AddinShmemInitLock, held by shmem.c
 * alone while it creates the segments; init functions take no lock (the
 * stats segment's init reads its file, in the postmaster, before any other
 * process exists).
 *
 * While holding one of these LWLocks, code does bounded work on shared
 * memory only: copy a record or a slot, scan a fixed array, set a field.
 * It never
 *	- allocates (palloc), raises (ereport/elog at any level that can
 *	  throw) or calls anything that might: strings are cut to size and
 *	  timestamps taken before the lock is taken;
 *	- does I/O, SQL or catalog access, or waits (latch, sleep, another
 *	  lock of ours);
 *	- sets a latch: the latch is remembered and set after the release;
 *	- runs CHECK_FOR_INTERRUPTS (interrupts are held off anyway).
 * So no error unwinds while one of them is held.  For errors raised
 * elsewhere: a transaction abort releases every LWLock (LWLockReleaseAll);
 * code that catches an error and goes on without aborting a transaction
 * (the worker's token call, made outside any transaction; the listener's
 * request handler) calls LWLockReleaseAll itself once the error is copied
 * out; exit callbacks that take one of these locks (the worker's registry
 * release, a backend's abandoned token requests) release any LWLock first,
 * since they run before the exit's transaction abort.  Inside PG_CATCH,
 * nothing allocates, takes a lock or raises before the error has been
 * copied out: switch to a context that is not ErrorContext, CopyErrorData,
 * FlushErrorState, then clean up and rethrow (ReThrowError) or report.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "compat.h"
#include "shmem.h"

#define DT_MAX_SEGMENTS 8

static const DtShmemSegment *Segments[DT_MAX_SEGMENTS];
static int	NSegments = 0;

#ifdef DT_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* A subsystem's segment; from _PG_init, before DtShmemInstallHooks. */
void
DtShmemRegister(const DtShmemSegment *seg)
{
	if (NSegments >= DT_MAX_SEGMENTS)
		elog(ERROR, "too many ductape shared-memory segments");
	Segments[NSegments++] = seg;
}

/* The space and the LWLock tranches of every registered segment. */
static void
RequestSegments(void)
{
	int			i;

	for (i = 0; i < NSegments; i++)
	{
		RequestAddinShmemSpace(MAXALIGN(Segments[i]->size()));
		if (Segments[i]->nlocks > 0)
			RequestNamedLWLockTranche(Segments[i]->name, Segments[i]->nlocks);
	}
}

/*
 * Create each segment, or find it when it exists; its init function runs
 * only when it was created.
 */
static void
CreateSegments(void)
{
	int			i;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (i = 0; i < NSegments; i++)
	{
		const DtShmemSegment *seg = Segments[i];
		Size		size = seg->size();
		bool		found;
		void	   *mem = ShmemInitStruct(seg->name, size, &found);

		if (!found)
		{
			memset(mem, 0, size);
			if (seg->init)
				seg->init(mem, seg->nlocks > 0 ? GetNamedLWLockTranche(seg->name) : NULL);
		}
		*seg->mem = mem;
	}
	LWLockRelease(AddinShmemInitLock);
}

#ifdef DT_HAVE_SHMEM_REQUEST_HOOK
static void
dt_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestSegments();
}
#endif

static void
dt_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	CreateSegments();
}

/* From _PG_init, once every segment is registered. */
void
DtShmemInstallHooks(void)
{
#ifdef DT_HAVE_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = dt_shmem_request;
#else
	RequestSegments();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = dt_shmem_startup;
}

/*
 * Attach to segments another copy of the library created (test/fuzz loads
 * a second, instrumented copy into a running server).
 */
void
DtShmemAttach(void)
{
	CreateSegments();
}
