/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Background workers: the launcher and the per-database workers.
 *
 * The launcher is registered in _PG_init and connects to no database (like
 * the autovacuum launcher: shared catalogs only, shown in pg_stat_activity).  It
 * starts a worker for each database that needs one and has none: it has
 * call records in the ring (calls.c), OAuth2 token requests (oauth.c), or
 * asked for one (the wanted list of the worker registry, registry.c).  A database worker drains
 * its database's records into ductape.calls in batches, each batch in its
 * own short transaction, serves OAuth2 token requests from its backends
 * (oauth.c), and runs background jobs (jobs.c).  The launcher asks for a
 * worker in every database at start (each exits where the extension is not
 * installed), and CREATE EXTENSION asks for one at once; a worker stays
 * while the extension is installed and exits when it is dropped.
 *
 * The worker loop follows worker_spi: die() on SIGTERM, config reload on
 * SIGHUP, WaitLatch with WL_EXIT_ON_PM_DEATH, transaction + snapshot +
 * pgstat_report_activity around each unit of SQL work, and a memory context
 * reset per iteration.
 *
 * DROP DATABASE would fail while a worker is connected, so a ProcessUtility
 * hook stops the database's worker first.
 *
 * worker.c keeps no shared state of its own: the registry (registry.c),
 * the ring (calls.c), the token slots (oauth.c) and the webhooks-pending
 * flag (webhook.c) are each reached through their owner's functions, one
 * at a time (the locking protocol is in shmem.c).
 *
 * Layer 5 (processes): calls every layer below, and the features whose
 * work the database worker runs (jobs, events, oauth, inbound, workflow,
 * webhook).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "calls.h"
#include "counters.h"
#include "registry.h"
#include "stats.h"

PGDLLEXPORT void ductape_launcher_main(Datum arg);
PGDLLEXPORT void ductape_db_worker_main(Datum arg);

#define DT_FLUSH_BATCH 1000
#define DT_BATCH_WINDOW_MS 100

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static const WorkerTask CallRecordsTask;

/*
 * At load: the launcher, and the database worker's own task (storing call
 * records; the features register theirs).
 */
void
WorkerRegisterLauncher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 1;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "ductape");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "ductape_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "ductape launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "ductape launcher");
	RegisterBackgroundWorker(&bgw);
	WorkerRegisterTask(&CallRecordsTask);
}

static bool
StartDbWorker(Oid dbid)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "ductape");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "ductape_db_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "ductape worker for database %u", dbid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "ductape worker");
	bgw.bgw_main_arg = ObjectIdGetDatum(dbid);
	bgw.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&bgw, &handle);
}

/*
 * At start, ask for a worker in every database that accepts connections:
 * each checks whether the extension is installed there and exits if not.
 * So queued and scheduled jobs run again after a restart without anyone
 * dispatching.
 */
static void
ProbeDatabases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	List	   *dbs = NIL;
	ListCell   *lc;
	MemoryContext cxt = CurrentMemoryContext;	/* outlives the transaction */

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	foreach(lc, dbs)
		RegistryWantWorker(lfirst_oid(lc));
	list_free(dbs);
}

/*
 * A database that needs a worker and has none, with a registry entry
 * claimed for it; InvalidOid when there is none (or no entry is free).
 * In this order: call records waiting in the ring, databases that asked
 * for a worker, token requests waiting.  Each list is read under its
 * owner's lock, and each claim under the registry's, one after the other.
 */
static Oid
ClaimDatabaseWithoutWorker(void)
{
	Oid			dbs[DT_MAX_DB_WORKERS];
	Oid			dbid;
	int			n,
				i;

	n = CallsPendingDatabases(dbs, lengthof(dbs));
	for (i = 0; i < n; i++)
		if (RegistryClaim(dbs[i]))
			return dbs[i];
	dbid = RegistryClaimWanted();
	if (OidIsValid(dbid))
		return dbid;
	n = OAuthPendingDatabases(dbs, lengthof(dbs));
	for (i = 0; i < n; i++)
		if (RegistryClaim(dbs[i]))
			return dbs[i];
	return InvalidOid;
}

/*
 * Registry entries whose process never came up within 10 s are freed, and
 * their database's records dropped: a database that cannot be connected to
 * (dropped, not allowing connections, no worker slot free) must not hold
 * the ring's tail and so block every other database's records.
 */
static void
ReapStaleWorkers(void)
{
	Oid			reaped[DT_MAX_DB_WORKERS];
	int			nreaped = RegistryReapStale(reaped, lengthof(reaped));
	int			i;

	for (i = 0; i < nreaped; i++)
	{
		int			n = CallsDiscard(reaped[i], true);

		OAuthDiscardRequests(reaped[i]);

		if (n > 0)
			ereport(WARNING,
					(errmsg_plural("ductape dropped %d call record of database %u",
								   "ductape dropped %d call records of database %u",
								   n, n, reaped[i]),
					 errdetail("No worker could connect to that database within 10 seconds.")));
	}
}

/*
 * Forget dbid's worker (it exits, or never started); with discard_records,
 * drop the database's call records too (the extension is not installed
 * there, or the database goes away).
 */
static void
ReleaseWorker(Oid dbid, bool discard_records)
{
	RegistryRelease(dbid);
	if (discard_records)
	{
		(void) CallsDiscard(dbid, false);
		OAuthDiscardRequests(dbid);
	}
}

/*
 * No background worker slot was free for dbid's worker.  The launcher tries
 * again every second; it says so once, and once more when a worker starts
 * again, not at every try.
 */
static bool SlotsExhausted = false;

static void
NoteSlotsExhausted(Oid dbid)
{
	if (SlotsExhausted)
		return;
	SlotsExhausted = true;
	ereport(WARNING,
			(errmsg("ductape could not start a worker for database %u: no background worker slot is free", dbid),
			 errdetail("The launcher keeps trying every second and logs again when a worker starts; until then that database's jobs, deliveries, webhook events and call records wait."),
			 errhint("Raise max_worker_processes (it counts every background worker of the server, parallel query workers included).")));
}

static void
NoteWorkerStarted(Oid dbid)
{
	if (!SlotsExhausted)
		return;
	SlotsExhausted = false;
	ereport(LOG,
			(errmsg("ductape started a worker for database %u: a background worker slot is free again", dbid)));
}

void
ductape_launcher_main(Datum arg)
{
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	/* no database: shared catalogs only, but visible in pg_stat_activity */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	RegistrySetLauncherLatch(MyLatch);
	ProbeDatabases();
	pgstat_report_activity(STATE_IDLE, NULL);

	for (;;)
	{
		Oid			dbid;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		ReapStaleWorkers();
		while (OidIsValid(dbid = ClaimDatabaseWithoutWorker()))
		{
			if (!StartDbWorker(dbid))
			{
				NoteSlotsExhausted(dbid);
				RegistryRelease(dbid);
				break;
			}
			NoteWorkerStarted(dbid);
		}
	}
}

/* ---- database worker ---- */

static void
DbWorkerDetach(int code, Datum arg)
{
	/*
	 * An error that ends the worker reaches here before the transaction
	 * abort that would release LWLocks: release them before taking the
	 * registry's.
	 */
	LWLockReleaseAll();

	/*
	 * User code that kept ignoring its cancel ended this worker: the next
	 * worker does not run that code again at once.  (Noted before the
	 * entry is released: from then on the launcher may start the next.)
	 */
	if (GateEndedProcess())
	{
		DtUserCode	code;

		if (GateRunningCode(&code))
			RegistryNoteEndedBy(DatumGetObjectId(arg), &code);
	}
	RegistryRelease(DatumGetObjectId(arg));

	/*
	 * The worker is not restarted by the postmaster (it is started on
	 * demand); when user code that kept ignoring its cancel ended it, ask
	 * the launcher for a new one at once, or scheduled work would wait for
	 * the next dispatch to wake the database.
	 */
	if (GateEndedProcess())
	{
		ereport(LOG,
				(errmsg("ductape worker for database %u ended: user code kept running past ductape.user_code_timeout",
						DatumGetObjectId(arg)),
				 errdetail("A new worker is started; it recovers the work this one held, and refuses that code the next time it is called.")));
		RegistryWantWorker(DatumGetObjectId(arg));
	}
}

static Datum
TextArray(Datum *vals, bool *nulls, int n)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	return PointerGetDatum(construct_md_array(vals, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
FixedArray(Datum *vals, bool *nulls, int n, Oid type, int len, bool byval, char align)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	return PointerGetDatum(construct_md_array(vals, nulls, 1, dims, lbs, type, len, byval, align));
}

/*
 * Insert records into ductape.calls, one statement for the whole batch,
 * into the parent (PostgreSQL routes each row to its day's partition),
 * after making sure the batch's days have their partitions (retention.c).
 * (When the extension is not installed here, the worker leaves, dropping
 * them.)  Called by WorkerTry, inside a unit of work.  ON CONFLICT names
 * no target: the key is (id, at), or id while the SQL objects are still
 * 0.2.0's.
 */
static SPIPlanPtr FlushPlan = NULL;

static void
FlushCalls(DtCallSlot *recs, int n)
{
	static const Oid argtypes[14] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	INT4ARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID};
	int			c,
				i;
	Datum	   *vals[14];
	bool	   *nulls[14];
	Datum		args[14];

	WorkerEnsureInstalled();
	{
		int32		days[8];
		int			ndays = 0;

		/* the batch's days: one or two, unless records came late */
		for (i = 0; i < n; i++)
		{
			int32		day = CallsDayOf(recs[i].at);
			int			k;

			for (k = 0; k < ndays && days[k] != day; k++)
				;
			if (k < ndays)
				continue;
			if (ndays == lengthof(days))
			{
				CallsDaysEnsure(days, ndays);
				ndays = 0;
			}
			days[ndays++] = day;
		}
		CallsDaysEnsure(days, ndays);

		for (c = 0; c < 14; c++)
		{
			vals[c] = palloc(sizeof(Datum) * n);
			nulls[c] = palloc0(sizeof(bool) * n);
		}
		for (i = 0; i < n; i++)
		{
			DtCallSlot *r = &recs[i];
			char	   *role = GetUserNameFromId(r->roleid, true);

#define TEXTCOL(k, f) do { if ((f)[0]) vals[k][i] = CStringGetTextDatum(f); else nulls[k][i] = true; } while (0)
			vals[0][i] = Int64GetDatum(r->id);
			vals[1][i] = TimestampTzGetDatum(r->at);
			TEXTCOL(2, r->app);
			TEXTCOL(3, r->action);
			TEXTCOL(4, r->env);
			TEXTCOL(5, r->product);
			vals[6][i] = CStringGetTextDatum(r->method);
			vals[7][i] = CStringGetTextDatum(r->url);
#undef TEXTCOL
			vals[8][i] = Int32GetDatum(r->status);
			nulls[8][i] = r->status == 0;
			vals[9][i] = Int32GetDatum(r->attempts);
			vals[10][i] = Float8GetDatum(r->duration_ms);
			if (r->has_error)
				vals[11][i] = CStringGetTextDatum(r->error);
			else
				nulls[11][i] = true;
			vals[12][i] = Int64GetDatum(r->job_id);
			nulls[12][i] = r->job_id == 0;
			if (role)
				vals[13][i] = CStringGetTextDatum(role);
			else
				nulls[13][i] = true;
		}
		args[0] = FixedArray(vals[0], nulls[0], n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
		args[1] = FixedArray(vals[1], nulls[1], n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
		for (c = 2; c <= 7; c++)
			args[c] = TextArray(vals[c], nulls[c], n);
		args[8] = FixedArray(vals[8], nulls[8], n, INT4OID, 4, true, TYPALIGN_INT);
		args[9] = FixedArray(vals[9], nulls[9], n, INT4OID, 4, true, TYPALIGN_INT);
		args[10] = FixedArray(vals[10], nulls[10], n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
		args[11] = TextArray(vals[11], nulls[11], n);
		args[12] = FixedArray(vals[12], nulls[12], n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
		args[13] = TextArray(vals[13], nulls[13], n);

		SPI_connect();
		/*
		 * Planned once and kept (the plan cache plans it again when
		 * ductape.calls changes: a partition made or dropped, the extension
		 * made again): planning the routing to the day partitions was a
		 * quarter of the worker's time under a stream of calls.
		 */
		if (FlushPlan == NULL)
		{
			SPIPlanPtr	plan = SPI_prepare("INSERT INTO ductape.calls (id, at, app, action, env, product, method, url, "
										   "status, attempts, duration_ms, error, job_id, role) "
										   "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
										   "  pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7), "
										   "  pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11), "
										   "  pg_catalog.unnest($12), pg_catalog.unnest($13), pg_catalog.unnest($14::pg_catalog.name[])) "
										   "ON CONFLICT DO NOTHING",
										   14, (Oid *) argtypes);

			if (plan == NULL || SPI_keepplan(plan) != 0)
				elog(ERROR, "could not plan the insert of call records");
			FlushPlan = plan;
		}
		if (SPI_execute_plan(FlushPlan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not store call records");
		SPI_finish();
	}
}

/*
 * The worker's task for call records: store them once the oldest waiting
 * is a batching window old (many calls, one transaction).
 *
 * A batch taken out of the ring stays in this worker's memory until it is
 * stored: when the INSERT fails (a lock not granted, a partition that
 * could not be made, a constraint a superuser added), the same batch is
 * tried again after 1, 2, 4 and 8 s, and nothing more is taken from the
 * ring meanwhile (its records wait there).  A batch that fails
 * DT_FLUSH_ATTEMPTS times (a poison row) is dropped, counted with the
 * ring's dropped records, and logged once, so that it cannot hold the ring
 * (shared by all databases) forever.
 */
#define DT_FLUSH_ATTEMPTS 5

static DtCallSlot *FlushBuffer;
static int	FlushCount = 0;		/* records in FlushBuffer not yet stored */
static int	FlushFailures = 0;	/* failed attempts to store them */
static TimestampTz FirstPending = 0;

static bool
CallRecordsReady(long *in_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	long		waited;

	/* a batch waiting to be tried again: when the task is due */
	if (FlushCount > 0)
		return false;
	if (!CallsPendingFor(MyDatabaseId))
	{
		FirstPending = 0;
		return false;
	}
	if (FirstPending == 0)
		FirstPending = now;
	waited = (long) ((now - FirstPending) / 1000);
	if (waited >= DT_BATCH_WINDOW_MS)
		return true;
	*in_ms = DT_BATCH_WINDOW_MS - waited;
	return false;
}

/*
 * Store the batch in FlushBuffer; on an error, roll back and return false
 * with the error's message in *error.
 */
static void
FlushBufferWork(void *arg)
{
	FlushCalls(FlushBuffer, FlushCount);
}

static bool
FlushPending(char **error)
{
	return WorkerTry(FlushBufferWork, NULL, "ductape: storing call records", error);
}

static long
CallRecordsRun(bool *did_work)
{
	for (;;)
	{
		char	   *error = NULL;

		if (FlushCount == 0)
			FlushCount = CallsCollect(MyDatabaseId, FlushBuffer, DT_FLUSH_BATCH);
		if (FlushCount == 0)
			break;
		if (FlushPending(&error))
		{
			FlushCount = 0;
			FlushFailures = 0;
		}
		else if (++FlushFailures < DT_FLUSH_ATTEMPTS)
		{
			long		delay_ms = 1000L << (FlushFailures - 1);

			/* the partitions may have changed under the worker */
			CallsDaysForget();
			ereport(LOG,
					(errmsg_plural("ductape could not store %d call record: %s",
								   "ductape could not store %d call records: %s",
								   FlushCount, FlushCount, error),
					 errdetail("Attempt %d of %d; the worker tries again in %ld ms.",
							   FlushFailures, DT_FLUSH_ATTEMPTS, delay_ms)));
			return delay_ms;
		}
		else
		{
			CallsDaysForget();
			CallsCountDropped(FlushCount);
			ereport(LOG,
					(errmsg_plural("ductape dropped %d call record: %s",
								   "ductape dropped %d call records: %s",
								   FlushCount, FlushCount, error),
					 errdetail("Storing them in ductape.calls failed %d times; they are counted as dropped.",
							   DT_FLUSH_ATTEMPTS)));
			FlushCount = 0;
			FlushFailures = 0;
		}
		CHECK_FOR_INTERRUPTS();
	}
	FirstPending = 0;
	return -1;
}

static const WorkerTask CallRecordsTask = {
	.name = "call records",
	.on_wake = false,
	.ready = CallRecordsReady,
	.run = CallRecordsRun,
};

void
ductape_db_worker_main(Datum arg)
{
	Oid			dbid = DatumGetObjectId(arg);
	MemoryContext loopcxt;
	const WorkerTask *const *tasks;
	int			ntasks = WorkerTasks(&tasks);
	TimestampTz *due_at;
	bool		woken = true;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dbid, InvalidOid, 0);

	/*
	 * This session is the bootstrap superuser's.  Its own SQL names every
	 * object with its schema, and its search_path is pinned besides (as the
	 * reset value too): nothing a user creates in public or elsewhere is
	 * picked up by it.  User code runs only through the gate (gate.c), whose
	 * settings never outlive it.
	 */
	GatePinSession();
	WorkflowMarkEngineProcess();

	before_shmem_exit(DbWorkerDetach, ObjectIdGetDatum(dbid));
	RegistryAttach(dbid);
	{
		DtUserCode	code;

		if (RegistryTakeEndedBy(dbid, &code))
			GateRefuseOnce(&code);
	}
	OAuthRecoverRequests(dbid);
	if (!QueueRecover())
	{
		/* not installed here: nothing to do, no token request to serve */
		OAuthDiscardRequests(dbid);
		WorkerLeaveUninstalled();
	}

	loopcxt = AllocSetContextCreate(TopMemoryContext, "ductape worker loop",
									ALLOCSET_DEFAULT_SIZES);
	FlushBuffer = MemoryContextAlloc(TopMemoryContext, sizeof(DtCallSlot) * DT_FLUSH_BATCH);
	due_at = MemoryContextAllocZero(TopMemoryContext, sizeof(TimestampTz) * Max(ntasks, 1));
	for (int i = 0; i < ntasks; i++)
		due_at[i] = GetCurrentTimestamp();	/* each runs once at start */

	/*
	 * Each round runs the tasks the features registered (runtime.c), in
	 * order, those that are due; then waits for the latch, a transfer, or
	 * the earliest time a task asked for.
	 */
	for (;;)
	{
		long		timeout = WORKER_TICK_MS;
		bool		again = false;
		List	   *done = NIL;
		ListCell   *lc;

		MemoryContextReset(loopcxt);
		MemoryContextSwitchTo(loopcxt);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		for (int i = 0; i < ntasks; i++)
		{
			const WorkerTask *t = tasks[i];
			TimestampTz now = GetCurrentTimestamp();
			long		in_ms = -1;
			bool		run;
			bool		did_work = false;
			long		next;

			run = (woken && t->on_wake) || now >= due_at[i] ||
				(t->ready && t->ready(&in_ms));
			if (!run)
			{
				if (due_at[i] != DT_NOEND)
					timeout = Min(timeout, Max(0, (long) ((due_at[i] - now) / 1000)));
				if (in_ms >= 0)
					timeout = Min(timeout, in_ms);
				continue;
			}
			next = t->run(&did_work);
			MemoryContextSwitchTo(loopcxt);
			CHECK_FOR_INTERRUPTS();
			due_at[i] = next < 0 ? DT_NOEND : GetCurrentTimestamp() + (TimestampTz) next * 1000;
			if (next == 0)
				again = true;
			else if (next > 0)
				timeout = Min(timeout, next);
			/* the tasks after this one follow up on its work at once */
			if (did_work)
				woken = true;
		}

		/*
		 * What ended the previous worker was refused if this first round ran
		 * it again (a webhook event's handler, a workflow's sql step);
		 * later, it is user code like any other.
		 */
		GateForgetRefused();

		/* wait for the latch, a transfer, or the next deadline */
		woken = DriverPump(again ? 0 : Max(timeout, 0), &done) || again;
		foreach(lc, done)
		{
			Xfer	   *x = lfirst(lc);

			((XferClient *) XferOwner(x))->done(x);
		}
	}
}

/* ---- DROP DATABASE: stop that database's worker first ---- */

static void
StopWorkerForDatabase(Oid dbid)
{
	pid_t		pid = RegistryWorkerPid(dbid);
	int			i;

	if (pid == 0)
	{
		ReleaseWorker(dbid, true);
		return;
	}
	kill(pid, SIGTERM);
	for (i = 0; i < 500 && RegistryWorkerPid(dbid) == pid; i++)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
	ReleaseWorker(dbid, true);
}

static void
dt_ProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				  ProcessUtilityContext context, ParamListInfo params,
				  QueryEnvironment *queryEnv, DestReceiver *dest,
				  QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	Oid			dropped_db = InvalidOid;

	/* DDL on ductape.jobs must not find it held open by a dispatch */
	JobsCloseInsertState();

	/*
	 * Only for a DROP DATABASE that can succeed: by the owner, outside a
	 * transaction block (anyone else must not be able to stop the worker or
	 * discard its pending records by trying).
	 */
	if (IsA(stmt, DropdbStmt) && !IsTransactionBlock())
	{
		Oid			dbid = get_database_oid(((DropdbStmt *) stmt)->dbname, true);

		if (OidIsValid(dbid) && dbid != MyDatabaseId &&
			pg_database_ownercheck(dbid, GetUserId()))
		{
			StopWorkerForDatabase(dbid);
			dropped_db = dbid;
		}
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	/* the database is gone (DROP DATABASE raises otherwise): its counters and limits too */
	if (OidIsValid(dropped_db))
	{
		(void) StatsForgetDatabase(dropped_db);
		CountersForget(dropped_db);
		(void) LimitsForgetDatabase(dropped_db);
	}

	/*
	 * A new installation gets its worker within moments of its commit (not
	 * before: a worker started earlier would not see the extension).
	 */
	if (IsA(stmt, CreateExtensionStmt) &&
		strcmp(((CreateExtensionStmt *) stmt)->extname, "ductape") == 0)
		RegistryWakeAtCommit();
}

void
WorkerInstallHooks(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = dt_ProcessUtility;
}
