/*-------------------------------------------------------------------------
 *
 * runtime.c
 *	  The worker runtime: how the database worker (and the listener) do a
 *	  unit of SQL work -- a transaction with its snapshot, reported to
 *	  pg_stat_activity, the memory context restored afterwards -- try one
 *	  that may fail, isolate one item of a batch in a subtransaction (keeping
 *	  the error's SQLSTATE), and run a user's function as its role through
 *	  the user-code gate (gate.c) in a transaction of its own; and the
 *	  registry of the database worker's tasks (WorkerTask: what each feature
 *	  has the worker do, run by worker.c's loop without naming them).
 *
 * Layer 4 (runtime): calls gate.c, the worker registry (calls.c) and
 * PostgreSQL; the queue engine, the features and the processes call it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "ductape.h"
#include "calls.h"
#include "registry.h"

/*
 * A unit of SQL work in a background worker (worker_spi's idiom): its own
 * transaction and snapshot, reported to pg_stat_activity.  Used by every
 * worker-side subsystem (jobs, OAuth2 token requests, call records).
 *
 * The commit leaves CurrentMemoryContext at TopMemoryContext; WorkerEndWork
 * returns to the caller's context instead, so that what the caller
 * allocates next goes into its per-iteration context and not, for the life
 * of the process, into TopMemoryContext (bench/soak saw the worker grow by
 * 200 kB a minute that way).  (Units do not nest.)
 */
static MemoryContext WorkCallerContext = NULL;

void
WorkerBeginWork(const char *activity)
{
	WorkCallerContext = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
WorkerEndWork(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(WorkCallerContext);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Inside a unit of work: when the extension is not installed in this
 * database (it was dropped meanwhile), the worker leaves.
 */
void
WorkerEnsureInstalled(void)
{
	if (!OidIsValid(get_extension_oid("ductape", true)))
	{
		WorkerEndWork();
		WorkerLeaveUninstalled();
	}
}

/* WorkerBeginWork in a database where the extension is installed. */
void
WorkerBeginInstalledWork(const char *activity)
{
	WorkerBeginWork(activity);
	WorkerEnsureInstalled();
}

/*
 * Run work(arg) as one unit of work that may fail: on an error the
 * transaction is rolled back and false returned, with the message in *error
 * when error is not NULL.  (Job callbacks, webhook handlers, workflows.)
 */
bool
WorkerTry(void (*work) (void *arg), void *arg, const char *activity, char **error)
{
	MemoryContext here = CurrentMemoryContext;
	bool		ok = true;

	PG_TRY();
	{
		WorkerBeginWork(activity);
		work(arg);
		WorkerEndWork();
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(here);
		ed = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(here);
		if (error)
			*error = pstrdup(ed->message);
		FreeErrorData(ed);
		pgstat_report_activity(STATE_IDLE, NULL);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Call fn(arg) in a subtransaction of the current transaction, so that one
 * item's error does not abort a worker's batch.  Returns NULL, or the
 * error's message (allocated in the caller's memory context) after rolling
 * the subtransaction back, with its SQLSTATE in *sqlerrcode when that is
 * not NULL (decide on the code, never on the message text).  The caller's
 * memory context and resource owner are current again on return.
 */
char *
RunInSubtransaction(void (*fn) (void *), void *arg, int *sqlerrcode)
{
	MemoryContext here = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(here);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(here);
		ed = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		/* (the rollback made the transaction's context current) */
		MemoryContextSwitchTo(here);
		error = pstrdup(ed->message);
		if (sqlerrcode)
			*sqlerrcode = ed->sqlerrcode;
		FreeErrorData(ed);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(here);
	CurrentResourceOwner = owner;
	return error;
}

typedef struct RoleCall
{
	Oid			fn;
	const char *what;
	Oid			role;
	Jsonb	   *arg;
} RoleCall;

static void
RunAsRoleWork(void *p)
{
	RoleCall   *call = p;

	GateCallFunction(call->fn, call->what, call->role, call->arg);
}

/*
 * Run fn(arg) in its own transaction as role, through the user-code gate
 * (gate.c): job callbacks, webhook handlers.  Returns false on an error,
 * with its message in *error when error is not NULL; the transaction is
 * rolled back.
 */
bool
RunAsRole(Oid fn, const char *what, Oid role, Jsonb *arg, const char *activity, char **error)
{
	RoleCall	call = {fn, what, role, arg};

	return WorkerTry(RunAsRoleWork, &call, activity, error);
}

/* ---- the worker's tasks ---- */

#define MAX_WORKER_TASKS 16

static const WorkerTask *Tasks[MAX_WORKER_TASKS];
static int	NumTasks = 0;

/* A feature's work joins the database worker's loop (at load, from _PG_init). */
void
WorkerRegisterTask(const WorkerTask *task)
{
	if (NumTasks >= MAX_WORKER_TASKS)
		elog(ERROR, "too many ductape worker tasks");
	Tasks[NumTasks++] = task;
}

/* The registered tasks, in the order registered. */
int
WorkerTasks(const WorkerTask *const **tasks)
{
	*tasks = Tasks;
	return NumTasks;
}

/*
 * The extension is not installed in this database (or was dropped): the
 * worker gives its slot back, with the call records it held, and exits.
 */
void
WorkerLeaveUninstalled(void)
{
	RegistryRelease(MyDatabaseId);
	(void) CallsDiscard(MyDatabaseId, false);
	proc_exit(0);
}
