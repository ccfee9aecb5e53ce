/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  What the database's worker deletes as it ages, and the day partitions
 *	  of ductape.calls.
 *
 * Finished jobs, finished outbound messages with their deliveries, handled
 * or failed inbound webhook events and finished workflow runs (with their
 * steps) older than ductape.job_retention are deleted once a minute (a task
 * of the worker, registered at load), at most 10,000 rows of each table per
 * pass, each pass in one transaction, so that a large backlog is worked off
 * over several minutes instead of in one long transaction.  Rows still
 * queued, running, pending or being received are never deleted, whatever
 * their age.
 *
 * ductape.calls is partitioned by UTC day: ductape.calls_YYYYMMDD holds
 * [that day 00:00 UTC, the next day 00:00 UTC).  The worker is its only
 * writer, so it is the one that makes the partitions:
 *	- the same task makes today's and the next CALLS_DAYS_AHEAD days' ahead
 *	  of time, so that the flush path normally finds its day made (the
 *	  install and the update script make the first four, so that a restore
 *	  running GRANTs on ductape.calls does not meet the worker attaching
 *	  the table's first partition, which updates its pg_class row);
 *	- the flush path (worker.c) calls CallsDaysEnsure for the days of its
 *	  batch before inserting, and a record for a day that has no partition
 *	  (late, or the clock moved) gets its day made on demand: no record is
 *	  refused for its date, and there is no default partition (rows there
 *	  would never expire by a DROP, and making a day would have to move
 *	  them out of it first);
 *	- the task drops the partitions whose whole day is older than
 *	  ductape.call_retention: one DROP TABLE per day, whatever it holds.
 *
 * A partition is made as a plain table (LIKE the parent) and then attached:
 * ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on ductape.calls, which
 * readers and the worker's inserts do not wait for (CREATE TABLE ...
 * PARTITION OF would take ACCESS EXCLUSIVE).  Dropping one takes ACCESS
 * EXCLUSIVE on ductape.calls; with lock_timeout set, so that a long reader
 * of ductape.calls delays the drop to a later pass instead of queueing
 * every other reader behind the worker.  Partitions get no grants and have
 * row level security enabled without a policy (users read through
 * ductape.calls only, where calls_by_role applies), and are made members of
 * the extension: pg_dump leaves them out (as it leaves out the calls of
 * 0.2.0), a restore cannot collide with the partitions the restored
 * database's worker makes, and DROP EXTENSION drops them.  Their names come
 * from the date alone; only superusers can create tables in schema
 * ductape, and a table of that name that is not a partition of
 * ductape.calls is an error, never used.
 *
 * Layer 5 (features): calls the runtime and PostgreSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "ductape.h"

#define RETENTION_EVERY_MS 60000
#define RETAINED "(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => %d))"
#define CALLS_DAYS_AHEAD 3
#define CALLS_LOCK_TIMEOUT "'2s'"

/*
 * Days (since 2000-01-01 UTC) whose partition this worker made or saw, so
 * that the flush path looks at the catalog only for a day it does not
 * know.  Forgotten on any error of the flush path and after drops.
 */
#define KNOWN_DAYS 16
static int32 KnownDays[KNOWN_DAYS];
static int	NKnownDays = 0;

/* The UTC day of t, as days since 2000-01-01. */
int32
CallsDayOf(TimestampTz t)
{
	int64		d = t / USECS_PER_DAY;

	if (t < 0 && t % USECS_PER_DAY != 0)
		d--;
	return (int32) d;
}

static void
DayDate(int32 day, int *y, int *m, int *d)
{
	j2date(day + POSTGRES_EPOCH_JDATE, y, m, d);
}

static char *
DayPartitionName(int32 day)
{
	int			y,
				m,
				d;

	DayDate(day, &y, &m, &d);
	return psprintf("calls_%04d%02d%02d", y, m, d);
}

static char *
DayStart(int32 day)
{
	int			y,
				m,
				d;

	DayDate(day, &y, &m, &d);
	return psprintf("%04d-%02d-%02d 00:00:00+00", y, m, d);
}

static bool
DayKnown(int32 day)
{
	for (int i = 0; i < NKnownDays; i++)
		if (KnownDays[i] == day)
			return true;
	return false;
}

static void
DayRemember(int32 day)
{
	if (DayKnown(day))
		return;
	if (NKnownDays == KNOWN_DAYS)
	{
		memmove(KnownDays, KnownDays + 1, sizeof(int32) * (KNOWN_DAYS - 1));
		NKnownDays--;
	}
	KnownDays[NKnownDays++] = day;
}

void
CallsDaysForget(void)
{
	NKnownDays = 0;
}

/*
 * ductape.calls, when it is partitioned; InvalidOid while the SQL objects
 * are still 0.2.0's (a plain table, until ALTER EXTENSION ductape UPDATE:
 * records go into it as they did).
 */
static Oid
CallsRelid(void)
{
	Oid			nsp = get_namespace_oid("ductape", false);
	Oid			relid = get_relname_relid("calls", nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation ductape.calls does not exist")));
	if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		return InvalidOid;
	return relid;
}

/*
 * Is relid a day partition of ductape.calls?  A relation of that name that
 * is not is an error: only a superuser could have made it.
 */
static bool
DayPartitionExists(Oid calls, const char *name)
{
	Oid			relid = get_relname_relid(name, get_namespace_oid("ductape", false));

	if (!OidIsValid(relid))
		return false;
	if (!get_rel_relispartition(relid) || get_partition_parent(relid, true) != calls)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("relation ductape.%s exists and is not a partition of ductape.calls", name),
				 errdetail("The ductape worker stores the call records of that day in a partition of that name."),
				 errhint("Drop or rename ductape.%s (only superusers can create relations in schema ductape).", name)));
	return true;
}

/*
 * Make day's partition (in the current transaction, SPI not connected).
 * The statements name objects by the schema and take only the date.
 */
static void
DayPartitionCreate(int32 day)
{
	char	   *name = DayPartitionName(day);
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SET LOCAL lock_timeout = " CALLS_LOCK_TIMEOUT "; "
					 "CREATE TABLE ductape.%s (LIKE ductape.calls); "
					 "ALTER TABLE ductape.calls ATTACH PARTITION ductape.%s FOR VALUES FROM ('%s') TO ('%s'); "
					 "ALTER TABLE ductape.%s ENABLE ROW LEVEL SECURITY; "
					 "ALTER EXTENSION ductape ADD TABLE ductape.%s",
					 name, name, DayStart(day), DayStart(day + 1), name, name);
	SPI_connect();
	SPI_execute(sql.data, false, 0);
	SPI_finish();
	ereport(DEBUG1, (errmsg("ductape created partition ductape.%s", name)));
}

/*
 * Make sure the partitions of days[0..n-1] exist, making those that do not
 * (in the caller's transaction: the flush path, before its INSERT).
 */
void
CallsDaysEnsure(const int32 *days, int n)
{
	Oid			calls = InvalidOid;

	for (int i = 0; i < n; i++)
	{
		if (DayKnown(days[i]))
			continue;
		if (!OidIsValid(calls))
			calls = CallsRelid();
		if (!OidIsValid(calls))
			return;				/* not partitioned (yet) */
		if (!DayPartitionExists(calls, DayPartitionName(days[i])))
			DayPartitionCreate(days[i]);
		DayRemember(days[i]);
	}
}

/*
 * Drop the partitions of ductape.calls whose whole day ended before
 * now - ductape.call_retention (in the caller's transaction), at most
 * CALLS_DROPS_PER_PASS of them (each holds its locks to the commit; a
 * retention lowered by months is worked off over a few minutes).  Only
 * partitions named by a date are looked at.
 */
#define CALLS_DROPS_PER_PASS 30

static int
CallsDropExpired(void)
{
	Oid			calls = CallsRelid();
	TimestampTz cutoff = GetCurrentTimestamp() - (TimestampTz) ductape_call_retention_s * USECS_PER_SEC;
	List	   *parts;
	ListCell   *lc;
	int			dropped = 0;

	if (!OidIsValid(calls))
		return 0;
	parts = find_inheritance_children(calls, NoLock);

	foreach(lc, parts)
	{
		char	   *name = get_rel_name(lfirst_oid(lc));
		int			y,
					m,
					d;
		char		rest;
		int32		day;

		if (name == NULL || strlen(name) != 14 ||
			sscanf(name, "calls_%4d%2d%2d%c", &y, &m, &d, &rest) != 3 ||
			strcmp(name, psprintf("calls_%04d%02d%02d", y, m, d)) != 0 ||
			m < 1 || m > 12 || d < 1 || d > 31)
			continue;
		day = date2j(y, m, d) - POSTGRES_EPOCH_JDATE;
		if ((TimestampTz) (day + 1) * USECS_PER_DAY > cutoff)
			continue;
		SPI_connect();
		SPI_execute(psprintf("SET LOCAL lock_timeout = " CALLS_LOCK_TIMEOUT "; "
							 "ALTER EXTENSION ductape DROP TABLE ductape.%s; "
							 "DROP TABLE ductape.%s", name, name), false, 0);
		SPI_finish();
		ereport(DEBUG1, (errmsg("ductape dropped partition ductape.%s", name)));
		/* a bounded number of locks per transaction: the rest next pass */
		if (++dropped >= CALLS_DROPS_PER_PASS)
			break;
	}
	return dropped;
}

/* One pass over the partitions of ductape.calls (run by WorkerTry). */
static void
CallsPartitionsWork(void *arg)
{
	int32		today = CallsDayOf(GetCurrentTimestamp());
	int32		days[CALLS_DAYS_AHEAD + 1];

	CallsDaysForget();
	for (int i = 0; i <= CALLS_DAYS_AHEAD; i++)
		days[i] = today + i;
	CallsDaysEnsure(days, CALLS_DAYS_AHEAD + 1);
	if (CallsDropExpired() > 0)
		CallsDaysForget();
}

static long
RetentionRun(bool *did_work)
{
	char	   *error = NULL;

	WorkerBeginInstalledWork("ductape: deleting what is past ductape.job_retention");
	SPI_connect();
	SPI_execute(psprintf("DELETE FROM ductape.jobs WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.jobs WHERE state OPERATOR(pg_catalog.=) ANY "
						 "('{succeeded,failed,cancelled}'::ductape.job_state[]) "
						 "AND finished_at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000)); "
						 "DELETE FROM ductape.outbox WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.outbox "
						 "WHERE finished_at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000)); "
						 "DELETE FROM ductape.deliveries WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.deliveries "
						 "WHERE at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000)); "
						 "DELETE FROM ductape.messages WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT m.id FROM ductape.messages m "
						 "WHERE m.created_at OPERATOR(pg_catalog.<) " RETAINED " AND NOT EXISTS "
						 "(SELECT FROM ductape.outbox o WHERE o.message_id OPERATOR(pg_catalog.=) m.id) "
						 "LIMIT 10000)); "
						 "DELETE FROM ductape.webhook_events WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.webhook_events "
						 "WHERE state OPERATOR(pg_catalog.=) ANY ('{handled,failed}'::ductape.webhook_state[]) "
						 "AND received_at OPERATOR(pg_catalog.<) " RETAINED " LIMIT 10000)); "
	/* finished runs only; their steps go with them (ON DELETE CASCADE) */
						 "DELETE FROM ductape.workflow_runs WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT id FROM ductape.workflow_runs "
						 "WHERE finished_at OPERATOR(pg_catalog.<) " RETAINED " AND state OPERATOR(pg_catalog.=) ANY "
						 "('{completed,failed,rolled_back,cancelled}'::ductape.workflow_state[]) LIMIT 10000))",
						 ductape_job_retention_s, ductape_job_retention_s, ductape_job_retention_s,
						 ductape_job_retention_s, ductape_job_retention_s, ductape_job_retention_s),
				false, 0);
	SPI_finish();
	WorkerEndWork();

	/*
	 * The partitions of ductape.calls, in a unit of their own: a lock not
	 * granted in time (a long reader of ductape.calls) is tried again at
	 * the next pass.
	 */
	if (!WorkerTry(CallsPartitionsWork, NULL,
				   "ductape: creating and dropping partitions of ductape.calls", &error))
	{
		CallsDaysForget();
		ereport(LOG,
				(errmsg("ductape could not create or drop partitions of ductape.calls: %s", error),
				 errdetail("The worker tries again in a minute.")));
	}
	return RETENTION_EVERY_MS;
}

static const WorkerTask RetentionTask = {
	.name = "retention",
	.on_wake = false,
	.ready = NULL,
	.run = RetentionRun,
};

void
RetentionInit(void)
{
	WorkerRegisterTask(&RetentionTask);
}
