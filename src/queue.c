/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  The queue engine: one claim -> prepare -> send (or run) -> judge ->
 *	  write back -> recover cycle for every durable queue of the database's
 *	  worker: jobs (jobs.c), outbound deliveries (events.c) and inbound
 *	  webhook events (inbound.c).
 *
 * A queue is a logged table whose rows are due, then in progress, then
 * finished or due again later.  A queue kind (QueueKind, ductape.h) supplies
 * its statements and the work of one item; this file supplies the cycle and
 * the rules every queue follows:
 *
 *	1. claim: in one short transaction the kind's claim statement takes up to
 *	   n due rows (FOR UPDATE SKIP LOCKED) and returns them; each row is
 *	   prepared (its request built, its secrets opened) in a subtransaction
 *	   of its own, so that a bad row fails alone with its SQLSTATE kept
 *	   (runtime.c RunInSubtransaction); then the transaction commits.
 *	2. send or run, with no transaction open: a prepared request goes to the
 *	   transport (http.c) and the worker's loop goes on while it is in
 *	   flight; a kind without requests (inbound events: user code) runs each
 *	   item itself, and its result is stored at once.
 *	3. judge: a finished transfer is judged by the kind (succeeded, again
 *	   after a delay, failed) in the item's own memory context.
 *	4. write back: finished items are stored in one transaction per batch;
 *	   what must follow the commit (job callbacks) runs after it, each in a
 *	   transaction of its own.
 *	   An item its limit (flow.c: rate, concurrency, a pause the API asked
 *	   for) keeps from going now is not sent: it is written back as due
 *	   again when the limit says, without counting an attempt
 *	   (item->defer_until), and so waits in its queue, never failed by a
 *	   limit; an item whose OAuth2 token is being refreshed waits the same
 *	   way.
 *	5. recover: when a worker starts, rows a dead worker left in progress
 *	   are due again (delivery is at-least-once; the kinds send the same
 *	   idempotency key or webhook-id on every attempt).
 *
 * The kinds that send requests share ductape.max_concurrency: they take
 * turns at claiming first, and each claims at most what is left.  The
 * engine is one task of the database worker (runtime.c WorkerRegisterTask):
 * it runs when the worker is woken, when results wait, and when the
 * earliest due row of a queue comes due.
 *
 * Layer 4 (runtime): calls runtime.c, the transport and the layers below;
 * the kinds (layer 5) register with it and are called only through their
 * hooks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "ductape.h"

#define QUEUE_MAX_KINDS 8
#define QUEUE_TOKEN_WAIT_MS 50	/* an item waiting for an OAuth2 token */

/* the engine's state of one registered kind */
typedef struct QueueState
{
	const QueueKind *kind;
	int			inflight;		/* items with a transfer */
	List	   *finished;		/* QueueItem * to write back */
	TimestampTz next_at;		/* claim again from then on, when not woken */
	bool		more;			/* the last claim was full */
} QueueState;

static QueueState Queues[QUEUE_MAX_KINDS];
static int	NumQueues = 0;
static MemoryContext QueueContext = NULL;	/* items' contexts and the lists */
static int	FirstTurn = 0;		/* which kind claims first this round */

static void QueueTransferDone(Xfer *x);

static const WorkerTask QueueTask;

/*
 * A feature's queue joins the engine (at load, from _PG_init); the engine
 * becomes a task of the worker with the first.
 */
void
QueueRegister(const QueueKind *kind)
{
	if (NumQueues >= QUEUE_MAX_KINDS)
		elog(ERROR, "too many queue kinds");
	if (NumQueues == 0)
		WorkerRegisterTask(&QueueTask);
	Queues[NumQueues].kind = kind;
	NumQueues++;
}

static QueueState *
StateOf(const QueueKind *kind)
{
	for (int i = 0; i < NumQueues; i++)
		if (Queues[i].kind == kind)
			return &Queues[i];
	elog(ERROR, "queue kind \"%s\" is not registered", kind->name);
	return NULL;				/* keep the compiler quiet */
}

static void
EnsureContext(void)
{
	if (QueueContext == NULL)
		QueueContext = AllocSetContextCreate(TopMemoryContext, "ductape queues",
											 ALLOCSET_DEFAULT_SIZES);
}

/* Lists live in QueueContext: items' own contexts come and go. */
static void
AddFinished(QueueState *q, QueueItem *item)
{
	MemoryContext old = MemoryContextSwitchTo(QueueContext);

	q->finished = lappend(q->finished, item);
	MemoryContextSwitchTo(old);
}

/*
 * At worker start: rows a dead worker left in progress are due again, for
 * every kind, in one transaction.  Returns false when the extension is not
 * installed in this database.
 */
bool
QueueRecover(void)
{
	bool		installed;

	WorkerBeginWork("ductape: recovering queues");
	SPI_connect();
	installed = OidIsValid(get_extension_oid("ductape", true));
	if (installed)
		for (int i = 0; i < NumQueues; i++)
			if (Queues[i].kind->recover)
				Queues[i].kind->recover();
	SPI_finish();
	WorkerEndWork();
	return installed;
}

typedef struct PrepareCall
{
	QueueItem  *item;
	HeapTuple	tup;
	TupleDesc	desc;
} PrepareCall;

static void
PrepareInItemContext(void *arg)
{
	PrepareCall *pc = arg;
	MemoryContext old = MemoryContextSwitchTo(pc->item->cxt);

	pc->item->kind->prepare(pc->item, pc->tup, pc->desc);
	MemoryContextSwitchTo(old);
}

/* Store one kind's finished items (one transaction), then what follows. */
static int
WriteBack(QueueState *q)
{
	List	   *batch = q->finished;
	List	   *after = NIL;
	MemoryContext here = CurrentMemoryContext;
	ListCell   *lc;
	int			n = list_length(batch);

	if (batch == NIL)
		return 0;
	q->finished = NIL;
	WorkerBeginWork(psprintf("ductape: storing %s", q->kind->name));
	SPI_connect();
	after = q->kind->write_back(batch, here);
	SPI_finish();
	WorkerEndWork();
	MemoryContextSwitchTo(here);
	foreach(lc, batch)
		MemoryContextDelete(((QueueItem *) lfirst(lc))->cxt);
	list_free(batch);
	if (after != NIL && q->kind->after_commit)
		q->kind->after_commit(after);
	MemoryContextSwitchTo(here);
	return n;
}

/*
 * Claim up to n due rows of one kind and prepare them (one transaction);
 * then, with it committed, send their requests or run them.  Returns how
 * many rows were claimed.
 */
static int
Claim(QueueState *q, int n)
{
	const QueueKind *kind = q->kind;
	MemoryContext here = CurrentMemoryContext;
	List	   *claimed = NIL;
	ListCell   *lc;
	int			got;

	if (n <= 0)
		return 0;
	EnsureContext();
	WorkerBeginInstalledWork(psprintf("ductape: claiming %s", kind->name));
	SPI_connect();
	kind->claim(n);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext cxt = AllocSetContextCreate(QueueContext, "ductape queue item",
												  ALLOCSET_SMALL_SIZES);
		QueueItem  *item = MemoryContextAllocZero(cxt, kind->item_size);
		PrepareCall pc = {item, SPI_tuptable->vals[i], SPI_tuptable->tupdesc};
		char	   *error;
		int			code = 0;

		MemoryContextSetIdentifier(cxt, kind->name);
		item->client.done = QueueTransferDone;
		item->kind = kind;
		item->cxt = cxt;

		/* an item that cannot be prepared fails alone */
		MemoryContextSwitchTo(cxt);
		error = RunInSubtransaction(PrepareInItemContext, &pc, &code);
		if (error != NULL)
		{
			item->error = error;
			item->sqlerrcode = code;
			item->req = NULL;
		}
		MemoryContextSwitchTo(here);
		claimed = lappend(claimed, item);
	}
	SPI_finish();
	WorkerEndWork();
	MemoryContextSwitchTo(here);
	got = list_length(claimed);

	/* no transaction open from here: send, or run */
	foreach(lc, claimed)
	{
		QueueItem  *item = lfirst(lc);
		MemoryContext old = MemoryContextSwitchTo(item->cxt);

		item->started = GetCurrentTimestamp();
		if (item->error != NULL && item->sqlerrcode == ERRCODE_DT_TOKEN_PENDING)
		{
			/* its OAuth2 token is being refreshed: back to the queue */
			item->error = NULL;
			item->req = NULL;
			item->defer_until = item->started + QUEUE_TOKEN_WAIT_MS * 1000;
			AddFinished(q, item);
		}
		else if (item->error == NULL && item->req != NULL)
		{
			TimestampTz until;
			DtLimitReason why = LimitTryAcquire(&item->req->limit, &until);

			if (why != DT_LIMIT_GO)
			{
				/* its limit says not yet: back to the queue until it may */
				item->defer_until = LimitDeferUntil(&item->req->limit, why, until);
				AddFinished(q, item);
			}
			else
			{
				Xfer	   *x = XferSubmit(item->req, item);

				q->inflight++;
				if (XferDone(x))
					QueueTransferDone(x);
			}
		}
		else
		{
			if (item->error == NULL && kind->run != NULL)
				kind->run(item);
			AddFinished(q, item);
		}
		MemoryContextSwitchTo(old);
		if (!kind->transfers)
		{
			/* user code ran: store its outcome before the next item runs */
			(void) WriteBack(q);
			CHECK_FOR_INTERRUPTS();
		}
	}
	list_free(claimed);
	if (q->inflight > 0)
		DriverKick();
	return got;
}

/*
 * A transfer finished (the driver handed it back): the kind judges it.
 *
 * Judging reads what the far end sent (a job's answer becomes jsonb), with
 * no transaction open.  An error there -- an answer jsonb cannot hold, such
 * as the number 1e200000 or arrays nested deeper than the stack -- fails
 * the item with its message and SQLSTATE, as a prepare error does.  It must
 * not end the worker: the item's row would stay in progress, and the next
 * worker would send the same request again and die the same way, for good.
 */
static void
QueueTransferDone(Xfer *x)
{
	QueueItem  *item = XferOwner(x);
	QueueState *q = StateOf(item->kind);
	MemoryContext old = MemoryContextSwitchTo(item->cxt);

	item->duration_ms = (GetCurrentTimestamp() - item->started) / 1000.0;
	{
		int			status;
		const char *error;
		const char *body;
		size_t		len;
		double		retry_after_ms;

		/* first: the slot goes back whatever happens next */
		XferResult(x, &status, &error, &body, &len, &retry_after_ms);
		LimitRelease(&item->req->limit, status, retry_after_ms, XferSent(x));
	}
	PG_TRY();
	{
		item->kind->judge(item, x);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(item->cxt);
		ed = CopyErrorData();
		FlushErrorState();
		/* no transaction abort releases LWLocks here (shmem.c) */
		LWLockReleaseAll();
		item->error = ed->message;
		item->sqlerrcode = ed->sqlerrcode;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(item->cxt);
	XferFree(x);
	MemoryContextSwitchTo(old);
	q->inflight--;
	AddFinished(q, item);
}

/*
 * When each kind that claimed without filling its batch is due next (one
 * transaction for those that can tell).
 */
static void
ScheduleNext(bool *asked)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		need_sql = false;

	for (int i = 0; i < NumQueues; i++)
	{
		if (!asked[i])
			continue;
		if (Queues[i].kind->next_due)
			need_sql = true;
		else
			Queues[i].next_at = now + (TimestampTz) WORKER_TICK_MS * 1000;
	}
	if (!need_sql)
		return;
	WorkerBeginInstalledWork("ductape: checking the queues");
	SPI_connect();
	now = GetCurrentTimestamp();
	for (int i = 0; i < NumQueues; i++)
	{
		QueueState *q = &Queues[i];
		TimestampTz at = now + (TimestampTz) WORKER_TICK_MS * 1000;
		bool		isnull;
		Datum		d;

		if (!asked[i] || q->kind->next_due == NULL)
			continue;
		q->kind->next_due();
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			at = Min(at, DatumGetTimestampTz(d));
		q->next_at = at;
		q->more = q->more || at <= now;
	}
	SPI_finish();
	WorkerEndWork();
}

/* Room left for transfers under ductape.max_concurrency. */
static int
Room(void)
{
	int			room = ductape_max_concurrency;

	for (int i = 0; i < NumQueues; i++)
		if (Queues[i].kind->transfers)
			room -= Queues[i].inflight;
	return room;
}

/*
 * When the engine is due: results to store, or a queue due now (and, for
 * the kinds that send requests, room to send); else *in_ms until the next.
 * A kind that sends is not looked at while there is no room: a finished
 * transfer wakes the worker.
 */
static long
DueIn(TimestampTz now, int room)
{
	long		wait = -1;

	for (int i = 0; i < NumQueues; i++)
	{
		QueueState *q = &Queues[i];
		long		ms;

		if (q->finished != NIL)
			return 0;
		if (q->kind->transfers && room <= 0)
			continue;
		if (q->more)
			return 0;
		/* (rounded up: woken a little early, the claim would find nothing) */
		ms = (long) Max(0, (q->next_at - now + 999) / 1000);
		if (wait < 0 || ms < wait)
			wait = ms;
	}
	return wait;
}

static bool
QueueReady(long *in_ms)
{
	*in_ms = DueIn(GetCurrentTimestamp(), Room());
	return *in_ms == 0;
}

/*
 * The engine's round: store what finished, then claim what is due while
 * there is room, the kinds taking turns at going first.  A kind without a
 * signalled hook is claimed at every round (the worker runs this task when
 * woken); one with it, when signalled, when its last claim was full, or when
 * its next row is due.  Returns the ms until a queue is due (0: more now);
 * the tasks after this one follow up at once when a followed kind (jobs:
 * workflows wait for them) stored or claimed anything.
 */
static long
QueueRun(bool *did_work)
{
	bool		asked[QUEUE_MAX_KINDS] = {false};
	bool		any_asked = false;
	TimestampTz now;
	int			room;

	for (int i = 0; i < NumQueues; i++)
		if (WriteBack(&Queues[i]) > 0 && Queues[i].kind->followed)
			*did_work = true;
	room = Room();

	now = GetCurrentTimestamp();
	FirstTurn = (FirstTurn + 1) % Max(NumQueues, 1);
	for (int turn = 0; turn < NumQueues; turn++)
	{
		int			i = (FirstTurn + turn) % NumQueues;
		QueueState *q = &Queues[i];
		const QueueKind *kind = q->kind;
		int			want;
		int			got;

		if (kind->signalled && !kind->signalled() && !q->more && now < q->next_at)
			continue;
		want = kind->transfers ? Min(room, kind->batch) : kind->batch;
		if (want <= 0)
		{
			q->more = true;		/* due, but no room: after results */
			continue;
		}
		got = Claim(q, want);
		if (got > 0 && kind->followed)
			*did_work = true;
		if (kind->transfers)
			room -= got;
		q->more = got == want;
		if (!q->more)
		{
			asked[i] = true;
			any_asked = true;
		}
	}
	if (any_asked)
		ScheduleNext(asked);
	return DueIn(GetCurrentTimestamp(), Room());
}

static const WorkerTask QueueTask = {
	.name = "queues",
	.on_wake = true,
	.ready = QueueReady,
	.run = QueueRun,
};

