/*-------------------------------------------------------------------------
 *
 * counters.c
 *	  Operational counters and gauges per database, in shared memory: what
 *	  /metrics serves and ductape.health() reports (docs/reference.md,
 *	  "Metrics").
 *
 * Layer 1 (utilities): calls shmem.c and PostgreSQL only.
 *
 * One slot per database: its name, a counter per outcome (jobs finished,
 * deliveries, inbound webhook events, OAuth2 refreshes; counters.h lists
 * them) and the gauges its worker publishes every few seconds (queue
 * depths, deliveries waiting, disabled endpoints, when the oldest due job
 * became due).  A counter is bumped where the outcome is decided, by the
 * process that decides it: most often the database's worker, inside the
 * transaction that stores the outcome (CountersAddAtCommit: added when that
 * transaction commits, forgotten when it aborts), or the listener, or a
 * backend (a cancel).  Counters and gauges are atomics, so bumping and
 * reading take no lock; the slot table itself (which database owns which
 * slot, and its name) is under the segment's LWLock, taken once per
 * process to find its slot, by a reader to copy the table, and when a
 * database goes away (CountersForget).
 *
 * Slots are taken on first use and freed only when the database is dropped
 * or the extension is dropped from it (its worker then leaves); counters
 * start from zero again after a server restart, as Prometheus expects of a
 * counter.  With DT_COUNTER_DBS databases holding slots, a further database
 * counts nothing (docs say so).
 *
 * The database's name is known only inside a transaction (a catalog
 * lookup): a process notes it the first time it bumps or publishes inside
 * one, and the slot keeps it for readers, which never touch the catalog.
 * Slots are keyed by the database's oid, and a name can change (ALTER
 * DATABASE ... RENAME, refused while anyone is connected to it, so a
 * process's noted name is current for its whole life): each process
 * writes the name it noted into its slot when it first finds the slot,
 * and the worker's every CountersPublish writes it again if it differs.
 * Writing a name clears it from any other slot that holds it (a database
 * renamed away, whose processes have not come back yet): no two slots
 * ever hold the same name, so /metrics never exports one database label
 * twice; a slot without a name is left out until its database's processes
 * note the new one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"

#include "counters.h"
#include "shmem.h"

typedef struct CounterSlot
{
	Oid			dbid;			/* InvalidOid: free; under the lock */
	char		name[NAMEDATALEN];	/* under the lock */
	pg_atomic_uint64 counters[DT_C_COUNT];
	pg_atomic_uint64 gauges[DT_G_COUNT];	/* int64 values */
	pg_atomic_uint64 published_at;	/* TimestampTz of the gauges; 0: never */
} CounterSlot;

typedef struct CountersShared
{
	LWLock	   *lock;
	CounterSlot slots[DT_COUNTER_DBS];
} CountersShared;

static CountersShared *Counters = NULL;

static Size
CountersShmemSize(void)
{
	return sizeof(CountersShared);
}

static void
CountersShmemInit(void *mem, LWLockPadded *locks)
{
	CountersShared *c = mem;
	int			i,
				j;

	c->lock = &locks[0].lock;
	for (i = 0; i < DT_COUNTER_DBS; i++)
	{
		CounterSlot *s = &c->slots[i];

		for (j = 0; j < DT_C_COUNT; j++)
			pg_atomic_init_u64(&s->counters[j], 0);
		for (j = 0; j < DT_G_COUNT; j++)
			pg_atomic_init_u64(&s->gauges[j], 0);
		pg_atomic_init_u64(&s->published_at, 0);
	}
}

/* A slot taken again starts from zero; the lock is held exclusive. */
static void
ClearSlot(CounterSlot *s)
{
	int			i;

	for (i = 0; i < DT_C_COUNT; i++)
		pg_atomic_write_u64(&s->counters[i], 0);
	for (i = 0; i < DT_G_COUNT; i++)
		pg_atomic_write_u64(&s->gauges[i], 0);
	pg_atomic_write_u64(&s->published_at, 0);
}

static const DtShmemSegment CountersSegment = {
	.name = "ductape counters",
	.nlocks = 1,
	.size = CountersShmemSize,
	.init = CountersShmemInit,
	.mem = (void **) &Counters,
};

void
CountersShmemRegister(void)
{
	DtShmemRegister(&CountersSegment);
}

/* ---- this process's slot ---- */

static int	MySlot = -1;		/* index into slots; -1: not looked up */
static char MyDbName[NAMEDATALEN];	/* "" until looked up */
static bool MyNameWritten = false;	/* MyDbName is in the slot */

/* The current database's name, looked up once, inside a transaction. */
static void
NoteDatabaseName(void)
{
	char	   *name;

	if (MyDbName[0] != '\0' || !OidIsValid(MyDatabaseId) || !IsTransactionState())
		return;
	name = get_database_name(MyDatabaseId);
	if (name != NULL)
	{
		strlcpy(MyDbName, name, sizeof(MyDbName));
		pfree(name);
	}
}

/*
 * Give slot s the name this process noted, and take it from any other slot
 * holding it (a stale name of a database since renamed).  The lock is held
 * exclusive.
 */
static void
SetSlotName(CounterSlot *s)
{
	int			i;

	for (i = 0; i < DT_COUNTER_DBS; i++)
	{
		CounterSlot *o = &Counters->slots[i];

		if (o != s && OidIsValid(o->dbid) && strcmp(o->name, MyDbName) == 0)
			o->name[0] = '\0';
	}
	memcpy(s->name, MyDbName, NAMEDATALEN);
}

/*
 * The current database's slot, taken if it has none; NULL when every slot
 * is taken (or outside a database).  The first time this process finds
 * its slot after noting the name, the slot gets that name.
 */
static CounterSlot *
MyCounterSlot(void)
{
	CounterSlot *s = NULL;
	int			i;
	int			free_at = -1;

	if (Counters == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	/* the slot keeps its database until the database is gone */
	if (MySlot >= 0 && Counters->slots[MySlot].dbid == MyDatabaseId &&
		(MyNameWritten || MyDbName[0] == '\0'))
		return &Counters->slots[MySlot];

	LWLockAcquire(Counters->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_COUNTER_DBS && s == NULL; i++)
	{
		if (Counters->slots[i].dbid == MyDatabaseId)
			s = &Counters->slots[i];
		else if (free_at < 0 && !OidIsValid(Counters->slots[i].dbid))
			free_at = i;
	}
	if (s == NULL && free_at >= 0)
	{
		s = &Counters->slots[free_at];
		ClearSlot(s);
		s->dbid = MyDatabaseId;
		s->name[0] = '\0';
	}
	if (s != NULL && MyDbName[0] != '\0')
	{
		if (strcmp(s->name, MyDbName) != 0)
			SetSlotName(s);
		MyNameWritten = true;
	}
	LWLockRelease(Counters->lock);
	MySlot = s != NULL ? (int) (s - Counters->slots) : -1;
	return s;
}

/* n more of c in the current database, now. */
void
CountersAdd(DtCounter c, uint64 n)
{
	CounterSlot *s;

	if (n == 0)
		return;
	NoteDatabaseName();
	s = MyCounterSlot();
	if (s != NULL)
		pg_atomic_fetch_add_u64(&s->counters[c], n);
}

/*
 * Take the current database's slot and note its name now (inside a
 * transaction), so that readers name it before anything is counted.
 */
void
CountersAttach(void)
{
	NoteDatabaseName();
	(void) MyCounterSlot();
}

/* ---- counted when the transaction commits ---- */

static uint64 AtCommit[DT_C_COUNT];
static bool AtCommitPending = false;
static bool AtCommitRegistered = false;

static void
CountersXactCallback(XactEvent event, void *arg)
{
	int			i;

	if (!AtCommitPending)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			for (i = 0; i < DT_C_COUNT; i++)
				CountersAdd((DtCounter) i, AtCommit[i]);
			/* FALLTHROUGH */
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			memset(AtCommit, 0, sizeof(AtCommit));
			AtCommitPending = false;
			break;
		default:
			break;
	}
}

/*
 * n more of c in the current database once the current transaction
 * commits; nothing if it aborts.  (A subtransaction rolled back later does
 * not take it back.)  The callback is registered once per process.
 */
void
CountersAddAtCommit(DtCounter c, uint64 n)
{
	if (!IsTransactionState())
	{
		CountersAdd(c, n);
		return;
	}
	if (!AtCommitRegistered)
	{
		RegisterXactCallback(CountersXactCallback, NULL);
		AtCommitRegistered = true;
	}
	NoteDatabaseName();
	AtCommit[c] += n;
	AtCommitPending = true;
}

/* ---- gauges ---- */

/* The database's worker: its gauges, read at "at". */
void
CountersPublish(const int64 *gauges, TimestampTz at)
{
	CounterSlot *s;
	int			i;

	NoteDatabaseName();
	s = MyCounterSlot();
	if (s == NULL)
		return;

	/*
	 * The slot's name, again: cleared meanwhile if another slot took it
	 * (which only a stale name can cause), or never written.  An unlocked
	 * look first; the lock only when it differs.
	 */
	if (MyDbName[0] != '\0' && strncmp(s->name, MyDbName, NAMEDATALEN) != 0)
	{
		LWLockAcquire(Counters->lock, LW_EXCLUSIVE);
		if (s->dbid == MyDatabaseId && strcmp(s->name, MyDbName) != 0)
			SetSlotName(s);
		LWLockRelease(Counters->lock);
	}
	for (i = 0; i < DT_G_COUNT; i++)
		pg_atomic_write_u64(&s->gauges[i], (uint64) gauges[i]);
	pg_atomic_write_u64(&s->published_at, (uint64) at);
}

/* ---- a database goes away ---- */

void
CountersForget(Oid dbid)
{
	int			i;

	if (Counters == NULL)
		return;
	LWLockAcquire(Counters->lock, LW_EXCLUSIVE);
	for (i = 0; i < DT_COUNTER_DBS; i++)
	{
		CounterSlot *s = &Counters->slots[i];

		if (s->dbid == dbid)
		{
			s->dbid = InvalidOid;
			s->name[0] = '\0';
			ClearSlot(s);
		}
	}
	LWLockRelease(Counters->lock);
	if (dbid == MyDatabaseId)
	{
		MySlot = -1;
		MyNameWritten = false;
	}
}

/* ---- readers ---- */

/*
 * Copy every database's slot into out (at most max), in slot order; the
 * lock is held shared for the copy only.
 */
int
CountersSnapshot(DtCountersDb *out, int max)
{
	int			n = 0;
	int			i,
				j;

	if (Counters == NULL)
		return 0;
	LWLockAcquire(Counters->lock, LW_SHARED);
	for (i = 0; i < DT_COUNTER_DBS && n < max; i++)
	{
		CounterSlot *s = &Counters->slots[i];
		DtCountersDb *d = &out[n];

		if (!OidIsValid(s->dbid))
			continue;
		d->dbid = s->dbid;
		memcpy(d->name, s->name, NAMEDATALEN);
		for (j = 0; j < DT_C_COUNT; j++)
			d->counters[j] = pg_atomic_read_u64(&s->counters[j]);
		for (j = 0; j < DT_G_COUNT; j++)
			d->gauges[j] = (int64) pg_atomic_read_u64(&s->gauges[j]);
		d->published_at = (TimestampTz) pg_atomic_read_u64(&s->published_at);
		n++;
	}
	LWLockRelease(Counters->lock);
	return n;
}
