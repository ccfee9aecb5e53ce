/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  Durable background jobs (docs/reference.md): dispatch, job, wait, cancel,
 *	  retry, and the worker side that runs them.
 *
 * The queue is the LOGGED table ductape.jobs.  A job is visible to the
 * worker only once the dispatching transaction commits, and that commit
 * wakes the worker at once (an XactCallback registered once per backend
 * sets the worker's latch): no polling.
 *
 * The jobs are a queue of the database worker's queue engine (queue.c),
 * which drives this file's hooks:
 *	1. claim a batch of due jobs (UPDATE ... FOR UPDATE SKIP LOCKED) and
 *	   build their requests in one short transaction, then commit;
 *	2. with no transaction open, run up to ductape.max_concurrency
 *	   requests at once on libcurl's multi interface (shared with outbound
 *	   deliveries);
 *	3. write finished attempts back in batches, one transaction per
 *	   batch: succeeded, failed, or queued again with next_attempt_at for a
 *	   retry (the request's retry policy with background defaults, max 8);
 *	4. run on_success/on_failure callbacks, each in its own transaction,
 *	   as the role that dispatched, through the user-code gate.
 * Jobs left running by a worker that died are queued again when the next
 * worker starts (delivery is at-least-once); every attempt of a job sends
 * the same idempotency key (the given one, else ductape-job-<id>) so the
 * provider can de-duplicate.
 *
 * Layer 5 (features): calls the queue engine, the runtime and the layers
 * below.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "commands/extension.h"
#include "catalog/pg_proc.h"
#include "commands/trigger.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "optimizer/optimizer.h"
#include "parser/parse_relation.h"
#include "rewrite/rewriteHandler.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "catalog/namespace.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/regproc.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "ductape.h"
#include "counters.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(dt_dispatch);
PG_FUNCTION_INFO_V1(dt_job);
PG_FUNCTION_INFO_V1(dt_wait);
PG_FUNCTION_INFO_V1(dt_cancel);
PG_FUNCTION_INFO_V1(dt_retry);
PG_FUNCTION_INFO_V1(dt_on_row);


/* ---- the kept inserter ends with its transaction ---- */

static bool xact_callback_registered = false;

static void JobInserterClose(bool clean);

static void
JobsXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			JobInserterClose(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			JobInserterClose(false);
			break;
		default:
			break;
	}
}

static void
JobsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	JobInserterClose(event != SUBXACT_EVENT_ABORT_SUB);
}

static void
EnsureXactCallback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(JobsXactCallback, NULL);
		RegisterSubXactCallback(JobsSubXactCallback, NULL);
		xact_callback_registered = true;
	}
}

/* ---- dispatch ---- */

static Oid	RoleNameFor = InvalidOid;
static NameData RoleName;

/* A callback named at dispatch: the right shape, and the caller may execute it. */
static void
CheckCallback(Oid fn, const char *what)
{
	(void) GateCheckFunction(fn, what);
	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s %s", what, format_procedure(fn))));
}

/*
 * The columns a dispatch writes, in the order of the keyed insert's
 * parameters; the rest come from the table's defaults.
 */
typedef enum JobArg
{
	JA_APP,
	JA_ACTION,
	JA_INPUT,
	JA_ENV,
	JA_PRODUCT,
	JA_RUN_AT,					/* next_attempt_at; also decides the state */
	JA_KEY,
	JA_ON_SUCCESS,
	JA_ON_FAILURE,
	JA_OPTIONS,
	JA_ROLE,
	JA_COUNT
} JobArg;

static const char *const JobColumns[JA_COUNT] = {
	"app", "action", "input", "env", "product", "next_attempt_at",
	"idempotency_key", "on_success", "on_failure", "options", "role"
};

/*
 * A dispatch without an idempotency key writes its row straight into the
 * heap and the indexes, as COPY does, through an insert state kept until
 * the next utility statement or the end of the transaction.  An INSERT statement through SPI costs an
 * executor start-up per row (projections, index predicates, the ModifyTable
 * node), which made a dispatch three times the cost of the INSERT of the
 * same row; this way a dispatch costs about what that INSERT costs.
 *
 * The state belongs to the current (sub)transaction: its resource owner
 * holds the relations and its memory context the rest.  It is closed
 * before any utility statement (DDL checks that the table is not in use),
 * before a commit, PREPARE, subtransaction start or subtransaction commit,
 * and simply forgotten on abort, where the aborting resource owner releases
 * the relations.  A relcache invalidation of ductape.jobs (VACUUM's
 * statistics, say) makes the next dispatch build it again.
 */
typedef struct JobInserter
{
	Oid			relid;
	ResourceOwner owner;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
	AttrNumber	attnum[JA_COUNT];	/* where each argument goes */
	AttrNumber	id_att;
	AttrNumber	state_att;
	Oid			scheduled;		/* the job_state labels */
	Oid			queued;
	ExprState **defaults;		/* per column not written; NULL if none */
} JobInserter;

static JobInserter *Inserter = NULL;
static bool InserterStale = false;
static bool InserterCallbackRegistered = false;

static void
JobInserterRelcacheCallback(Datum arg, Oid relid)
{
	if (Inserter != NULL && (relid == InvalidOid || relid == Inserter->relid))
		InserterStale = true;
}

static AttrNumber
JobColumn(Relation rel, const char *name)
{
	AttrNumber	att = attnameAttNum(rel, name, false);

	if (att == InvalidAttrNumber)
		elog(ERROR, "ductape.jobs has no column \"%s\"", name);
	return att;
}

static void
JobInserterOpen(void)
{
	Oid			relid = get_relname_relid("jobs", get_namespace_oid("ductape", false));
	ResourceOwner save_owner = CurrentResourceOwner;
	MemoryContext old;
	EState	   *estate;
	JobInserter *ins;
	Relation	rel;
	TupleDesc	desc;
	Oid			state_type;
	int			i;

	if (!InserterCallbackRegistered)
	{
		CacheRegisterRelcacheCallback(JobInserterRelcacheCallback, (Datum) 0);
		InserterCallbackRegistered = true;
	}
	EnsureXactCallback();
	CurrentResourceOwner = CurTransactionResourceOwner;
	old = MemoryContextSwitchTo(CurTransactionContext);
	estate = CreateExecutorState();
	MemoryContextSwitchTo(estate->es_query_cxt);

	ins = palloc0(sizeof(JobInserter));
	ins->relid = relid;
	ins->owner = CurTransactionResourceOwner;
	ins->estate = estate;
	rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	ins->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(ins->rri, rel, 0, NULL, 0);
	ExecOpenIndices(ins->rri, false);
	ins->slot = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));

	for (i = 0; i < JA_COUNT; i++)
		ins->attnum[i] = JobColumn(rel, JobColumns[i]);
	ins->id_att = JobColumn(rel, "id");
	ins->state_att = JobColumn(rel, "state");
	state_type = TupleDescAttr(desc, ins->state_att - 1)->atttypid;
	ins->scheduled = DatumGetObjectId(DirectFunctionCall2(enum_in, CStringGetDatum("scheduled"),
														  ObjectIdGetDatum(state_type)));
	ins->queued = DatumGetObjectId(DirectFunctionCall2(enum_in, CStringGetDatum("queued"),
													   ObjectIdGetDatum(state_type)));

	/* defaults (the identity's nextval, now(), ...) for every other column */
	ins->defaults = palloc0(sizeof(ExprState *) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Node	   *expr;
		int			a;
		bool		written = (i + 1 == ins->state_att);

		for (a = 0; a < JA_COUNT; a++)
			written |= (i + 1 == ins->attnum[a]);
		if (written || TupleDescAttr(desc, i)->attisdropped)
			continue;
		expr = build_column_default(rel, i + 1);
		if (expr != NULL)
			ins->defaults[i] = ExecInitExpr(expression_planner((Expr *) expr), NULL);
	}

	MemoryContextSwitchTo(old);
	CurrentResourceOwner = save_owner;
	Inserter = ins;
	InserterStale = false;
}

/* Close the insert state cleanly, or just forget it (abort). */
static void
JobInserterClose(bool clean)
{
	JobInserter *ins = Inserter;

	Inserter = NULL;
	InserterStale = false;
	if (ins != NULL && clean)
	{
		ResourceOwner save_owner = CurrentResourceOwner;

		CurrentResourceOwner = ins->owner;
		ExecDropSingleTupleTableSlot(ins->slot);
		ExecCloseIndices(ins->rri);
		table_close(ins->rri->ri_RelationDesc, NoLock);
		FreeExecutorState(ins->estate);
		CurrentResourceOwner = save_owner;
	}
}

void
JobsCloseInsertState(void)
{
	JobInserterClose(true);
}

/*
 * Insert one job row without an idempotency key and set *id; false if the
 * table has triggers or generated columns, which only the executor honours.
 */
static bool
JobInsert(Datum *args, bool *nulls, int64 *id)
{
	JobInserter *ins;
	Relation	rel;
	TupleTableSlot *slot;
	ExprContext *econtext;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			i;

	if (InserterStale)
		JobInserterClose(true);
	if (Inserter == NULL)
		JobInserterOpen();
	ins = Inserter;
	rel = ins->rri->ri_RelationDesc;
	if (rel->trigdesc != NULL ||
		(rel->rd_att->constr != NULL && rel->rd_att->constr->has_generated_stored))
		return false;
	slot = ins->slot;
	econtext = GetPerTupleExprContext(ins->estate);
	ResetExprContext(econtext);

	ExecClearTuple(slot);
	for (i = 0; i < slot->tts_tupleDescriptor->natts; i++)
	{
		slot->tts_isnull[i] = true;
		if (ins->defaults[i] != NULL)
			slot->tts_values[i] = ExecEvalExprSwitchContext(ins->defaults[i], econtext,
															&slot->tts_isnull[i]);
	}
	for (i = 0; i < JA_COUNT; i++)
	{
		slot->tts_values[ins->attnum[i] - 1] = args[i];
		slot->tts_isnull[ins->attnum[i] - 1] = nulls[i];
	}
	/* next_attempt_at = coalesce(run_at, now()); a future run_at is scheduled */
	if (nulls[JA_RUN_AT])
	{
		slot->tts_values[ins->attnum[JA_RUN_AT] - 1] = TimestampTzGetDatum(now);
		slot->tts_isnull[ins->attnum[JA_RUN_AT] - 1] = false;
	}
	slot->tts_values[ins->state_att - 1] =
		ObjectIdGetDatum(!nulls[JA_RUN_AT] && DatumGetTimestampTz(args[JA_RUN_AT]) > now ?
						 ins->scheduled : ins->queued);
	slot->tts_isnull[ins->state_att - 1] = false;
	*id = DatumGetInt64(slot->tts_values[ins->id_att - 1]);
	ExecStoreVirtualTuple(slot);

	if (rel->rd_att->constr != NULL)
		ExecConstraints(ins->rri, slot, ins->estate);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	list_free(DtExecInsertIndexTuples(ins->rri, slot, ins->estate));
	/* as an SPI statement would: later queries of this statement see the row */
	CommandCounterIncrement();
	return true;
}

/*
 * A key in use by another role: only possible while the SQL objects are
 * older than the library (0.2.0 made keys unique across roles).
 */
void
IdempotencyKeyTaken(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("this idempotency key is in use by another role's %s", what),
			 errdetail("Idempotency keys are scoped per role from ductape 0.3.0 on, "
					   "but this database still has the SQL objects of an older version."),
			 errhint("Run ALTER EXTENSION ductape UPDATE.")));
}

/*
 * Insert a job with an idempotency key: INSERT ... ON CONFLICT DO NOTHING,
 * which waits for a concurrent dispatch of the same key to end; the id is
 * the new job's or that of the caller's job that already has the key (the
 * unique index is on role and key: another role's key never matches; the
 * conflict target is left out so that this also works, refusing, while the
 * SQL objects are still 0.2.0's, whose index is on the key alone).  Also used
 * when someone has put triggers on ductape.jobs, so that they fire.
 */
static int64
JobInsertKeyed(Datum *args, bool *nulls)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[JA_COUNT] = {TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
	TEXTOID, OIDOID, OIDOID, JSONBOID, NAMEOID};
	char		n[JA_COUNT];
	Oid			save_user;
	int			save_sec;
	int64		id;
	bool		isnull;
	int			i;

	for (i = 0; i < JA_COUNT; i++)
		n[i] = nulls[i] ? 'n' : ' ';

	/*
	 * Insert as the catalog's owner.  Every operator and function in these
	 * statements is schema-qualified, so neither planning nor a replan
	 * depends on the caller's search_path.
	 */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(CatalogOwner(), save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	SPI_connect();
	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("INSERT INTO ductape.jobs (app, action, input, env, product, "
									"  state, next_attempt_at, idempotency_key, on_success, on_failure, options, role) "
									"VALUES ($1, $2, $3, $4, $5, "
									"  CASE WHEN $6 OPERATOR(pg_catalog.>) pg_catalog.now() THEN 'scheduled'::ductape.job_state ELSE 'queued'::ductape.job_state END, "
									"  coalesce($6, pg_catalog.now()), $7, $8, $9, $10, $11) "
									"ON CONFLICT DO NOTHING "
									"RETURNING id",
									JA_COUNT, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the job insert");
		plan = p;
	}
	if (SPI_execute_plan(plan, args, n, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert the job");
	if (SPI_processed != 1)
	{
		/*
		 * this role has a job with this idempotency key: that job is the
		 * answer (keys are scoped per role: another role's never matches)
		 */
		Oid			kt[2] = {TEXTOID, NAMEOID};
		Datum		kv[2] = {args[JA_KEY], args[JA_ROLE]};

		if (SPI_execute_with_args("SELECT id FROM ductape.jobs WHERE idempotency_key OPERATOR(pg_catalog.=) $1 "
								  "AND role OPERATOR(pg_catalog.=) $2",
								  2, kt, kv, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not find the job of an idempotency key");
		if (SPI_processed != 1)
			IdempotencyKeyTaken("job");
	}
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	return id;
}

/*
 * Validate and queue one job; returns its id (or the id of the job that
 * already has this idempotency key).  Shared by dispatch() and on_row().
 */
int64
JobsDispatch(const char *app_tag, const char *action_tag, Jsonb *input,
			 const char *env, const char *product, bool has_run_at,
			 TimestampTz run_at, const char *key, Oid on_success, Oid on_failure,
			 Jsonb *options)
{
	DtApp	   *app;
	DtAction   *action;
	DtRequest	probe;
	ListCell   *lc;
	Datum		args[JA_COUNT];
	bool		nulls[JA_COUNT] = {0};
	int64		id;
	NameData	role;

	/* validate first: names, binding, input shape, :params, options */
	CatalogBeginCall();
	app = CatalogGetApp(app_tag);
	action = CatalogGetAction(app, action_tag);
	(void) CatalogGetBinding(app, product, env);
	if (!JB_ROOT_IS_OBJECT(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("input of %s.%s must be a JSON object", app_tag, action_tag)));
	SchemaValidateInput(app_tag, action_tag, action->input, input);
	foreach(lc, action->path_params)
	{
		const char *p = lfirst(lc);

		if (JsonbGetField(input, p) == NULL &&
			JsonbGetField(input, psprintf("params:%s", p)) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("missing path parameter \"%s\" for %s.%s", p, app_tag, action_tag),
					 errdetail("The resource is %s.", action->resource),
					 errhint("Pass \"%s\" (or \"params:%s\") in the input.", p, p)));
	}
	memset(&probe, 0, sizeof(probe));
	RetryPolicyDefaults(&probe.policy, RETRY_BACKGROUND_MAX);
	RequestApplyOptions(&probe, options, "Idempotency-Key");
	if (key != NULL && key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key cannot be empty")));
	if (OidIsValid(on_success))
		CheckCallback(on_success, "on_success function");
	if (OidIsValid(on_failure))
		CheckCallback(on_failure, "on_failure function");

	/* then write (the row records the caller) */
	if (RoleNameFor != GetUserId())
	{
		namestrcpy(&RoleName, GetUserNameFromId(GetUserId(), false));
		RoleNameFor = GetUserId();
	}
	role = RoleName;
	args[JA_APP] = CStringGetTextDatum(app_tag);
	args[JA_ACTION] = CStringGetTextDatum(action_tag);
	args[JA_INPUT] = JsonbPGetDatum(input);
	args[JA_ENV] = CStringGetTextDatum(env);
	args[JA_PRODUCT] = CStringGetTextDatum(product);
	args[JA_RUN_AT] = TimestampTzGetDatum(run_at);
	nulls[JA_RUN_AT] = !has_run_at;
	args[JA_KEY] = key ? CStringGetTextDatum(key) : (Datum) 0;
	nulls[JA_KEY] = (key == NULL);
	args[JA_ON_SUCCESS] = ObjectIdGetDatum(on_success);
	nulls[JA_ON_SUCCESS] = !OidIsValid(on_success);
	args[JA_ON_FAILURE] = ObjectIdGetDatum(on_failure);
	nulls[JA_ON_FAILURE] = !OidIsValid(on_failure);
	args[JA_OPTIONS] = JsonbPGetDatum(options);
	args[JA_ROLE] = NameGetDatum(&role);

	if (key != NULL || !JobInsert(args, nulls, &id))
		id = JobInsertKeyed(args, nulls);
	RegistryWakeAtCommit();
	return id;
}

static Jsonb *
EmptyObject(void)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
}

/*
 * dispatch(app, action, input, env, product, run_at, idempotency_key,
 *			on_success, on_failure, options) -> job id
 */
Datum
dt_dispatch(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("app and action cannot be NULL")));
	PG_RETURN_INT64(JobsDispatch(text_to_cstring(PG_GETARG_TEXT_PP(0)),
								 text_to_cstring(PG_GETARG_TEXT_PP(1)),
								 PG_ARGISNULL(2) ? EmptyObject() : PG_GETARG_JSONB_P(2),
								 PG_ARGISNULL(3) ? ductape_env : text_to_cstring(PG_GETARG_TEXT_PP(3)),
								 PG_ARGISNULL(4) ? ductape_product : text_to_cstring(PG_GETARG_TEXT_PP(4)),
								 !PG_ARGISNULL(5),
								 PG_ARGISNULL(5) ? 0 : PG_GETARG_TIMESTAMPTZ(5),
								 PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6)),
								 PG_ARGISNULL(7) ? InvalidOid : PG_GETARG_OID(7),
								 PG_ARGISNULL(8) ? InvalidOid : PG_GETARG_OID(8),
								 PG_ARGISNULL(9) ? EmptyObject() : PG_GETARG_JSONB_P(9)));
}

/* ---- on_row: a trigger that dispatches ---- */

typedef struct RowCtx
{
	Jsonb	   *row;			/* NEW, or OLD for DELETE */
	Jsonb	   *old;			/* OLD, or NULL for INSERT */
} RowCtx;

static Jsonb *
TupleToJsonb(HeapTuple tuple, TupleDesc desc)
{
	Datum		rec = heap_copy_tuple_as_datum(tuple, desc);
	Datum		json = DirectFunctionCall1(row_to_json, rec);

	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
											  CStringGetDatum(text_to_cstring(DatumGetTextPP(json)))));
}

static bool
ResolveRowPlaceholder(void *arg, PlaceholderKind kind, int nargs, char **args,
					  JsonbValue *out)
{
	RowCtx	   *ctx = arg;
	JsonbValue *v = NULL;

	switch (kind)
	{
		case PH_ROW:
			v = JsonbGetField(ctx->row, args[0]);
			break;
		case PH_OLD:
			v = ctx->old ? JsonbGetField(ctx->old, args[0]) : NULL;
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an on_row input template can use $Row{col} and $Old{col} only")));
	}
	if (v == NULL)
		return false;
	*out = *v;
	return true;
}

/*
 * EXECUTE FUNCTION ductape.on_row('app', 'action' [, input_template
 * [, env [, product]]]): dispatches a job per row.  The input is
 * to_jsonb(NEW) (OLD for DELETE), or the template with $Row{col} (the same
 * row) and $Old{col} (the row before an UPDATE or DELETE).  It only
 * queues: the writing transaction never waits on the network.
 */
Datum
dt_on_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	TupleDesc	desc;
	RowCtx		ctx;
	Jsonb	   *input;
	HeapTuple	result;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ductape.on_row must be called as a trigger")));
	tg = td->tg_trigger;
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ductape.on_row must be a FOR EACH ROW trigger")));
	if (tg->tgnargs < 2 || tg->tgnargs > 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ductape.on_row takes app, action [, input_template [, env [, product]]]"),
				 errdetail_plural("Trigger \"%s\" passes %d argument.",
								  "Trigger \"%s\" passes %d arguments.",
								  tg->tgnargs, tg->tgname, tg->tgnargs)));
	desc = td->tg_relation->rd_att;
	memset(&ctx, 0, sizeof(ctx));
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		ctx.row = TupleToJsonb(td->tg_trigtuple, desc);
		ctx.old = ctx.row;
		result = td->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		ctx.row = TupleToJsonb(td->tg_newtuple, desc);
		ctx.old = TupleToJsonb(td->tg_trigtuple, desc);
		result = td->tg_newtuple;
	}
	else
	{
		ctx.row = TupleToJsonb(td->tg_trigtuple, desc);
		result = td->tg_trigtuple;
	}

	if (tg->tgnargs >= 3 && tg->tgargs[2][0] != '\0')
	{
		Jsonb	   *tpl = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(tg->tgargs[2])));

		input = TemplateApply(tpl, ResolveRowPlaceholder, &ctx);
	}
	else
		input = ctx.row;

	(void) JobsDispatch(tg->tgargs[0], tg->tgargs[1], input,
						tg->tgnargs >= 4 && tg->tgargs[3][0] ? tg->tgargs[3] : ductape_env,
						tg->tgnargs >= 5 && tg->tgargs[4][0] ? tg->tgargs[4] : ductape_product,
						false, 0, NULL, InvalidOid, InvalidOid, EmptyObject());
	return PointerGetDatum(TRIGGER_FIRED_AFTER(td->tg_event) ? NULL : result);
}

/* ---- job, wait, cancel, retry ---- */

#define JOB_JSON \
	"pg_catalog.jsonb_build_object('id', id, 'app', app, 'action', action, 'env', env, 'product', product, " \
	"'state', state, 'attempts', attempts, 'next_attempt_at', next_attempt_at, " \
	"'response', response, 'error', error, 'created_at', created_at, 'finished_at', finished_at)"

/*
 * Every function and operator in ductape's own SQL is named with its schema
 * (and the worker's search_path is pinned besides): a database owner can
 * create, say, an operator public.= on ductape.job_state, and nothing of
 * the kind may run with the worker's rights.  (OPERATOR() binds all alike,
 * left to right: a chain of them needs parentheses.)
 */
#define JOB_DUE "'{queued,scheduled}'::ductape.job_state[]"
#define JOB_FINISHED "'{succeeded,failed,cancelled}'::ductape.job_state[]"

/* A role sees its own jobs; administrators see all. */
#define JOB_VISIBLE \
	"(role OPERATOR(pg_catalog.=) $2 OR pg_catalog.has_function_privilege($3, 'ductape.secret_get(pg_catalog.text)', 'EXECUTE'))"

static Jsonb *
FetchJob(int64 id, bool *finished, bool *mine)
{
	Oid			argtypes[3] = {INT8OID, NAMEOID, OIDOID};
	Datum		args[3];
	NameData	role;
	DtElevated	elevated;
	Jsonb	   *job = NULL;
	bool		isnull;

	namestrcpy(&role, GetUserNameFromId(GetUserId(), false));
	args[0] = Int64GetDatum(id);
	args[1] = NameGetDatum(&role);
	args[2] = ObjectIdGetDatum(GetUserId());
	ElevateBegin(&elevated);
	SPI_connect();
	if (SPI_execute_with_args("SELECT " JOB_JSON ", state OPERATOR(pg_catalog.=) ANY (" JOB_FINISHED "), xmin "
							  "FROM ductape.jobs WHERE id OPERATOR(pg_catalog.=) $1 AND " JOB_VISIBLE,
							  3, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read ductape.jobs");
	if (SPI_processed == 1)
	{
		job = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		*finished = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (mine)
			*mine = TransactionIdIsCurrentTransactionId(
				DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)));
	}
	SPI_finish();
	ElevateEnd(&elevated);
	if (job == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job %lld does not exist", (long long) id)));
	return job;
}

Datum
dt_job(PG_FUNCTION_ARGS)
{
	bool		finished;

	PG_RETURN_JSONB_P(FetchJob(PG_GETARG_INT64(0), &finished, NULL));
}

/* wait(id, timeout): the job once finished, or as it is when time runs out. */
Datum
dt_wait(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Interval   *timeout = PG_GETARG_INTERVAL_P(1);
	TimestampTz end = GetCurrentTimestamp() +
		(TimestampTz) (timeout->time + (int64) timeout->day * USECS_PER_DAY +
					   (int64) timeout->month * 30 * USECS_PER_DAY);
	bool		finished = false;
	Jsonb	   *job;

	for (;;)
	{
		bool		mine = false;

		job = FetchJob(id, &finished, &mine);
		if (mine && !finished)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("job %lld was dispatched or changed in this transaction", (long long) id),
					 errdetail("The worker cannot see it before this transaction commits, so waiting here would never end."),
					 errhint("Commit, then call ductape.wait.")));
		if (finished || GetCurrentTimestamp() >= end)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, DT_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_JSONB_P(job);
}

static bool
UpdateJob(int64 id, const char *set, const char *from_states)
{
	Oid			argtypes[3] = {INT8OID, NAMEOID, OIDOID};
	Datum		args[3];
	NameData	role;
	DtElevated	elevated;
	bool		done;
	bool		finished;

	(void) FetchJob(id, &finished, NULL);	/* 42704 when missing or not visible */
	namestrcpy(&role, GetUserNameFromId(GetUserId(), false));
	args[0] = Int64GetDatum(id);
	args[1] = NameGetDatum(&role);
	args[2] = ObjectIdGetDatum(GetUserId());
	ElevateBegin(&elevated);
	SPI_connect();
	if (SPI_execute_with_args(psprintf("UPDATE ductape.jobs SET %s WHERE id OPERATOR(pg_catalog.=) $1 "
									   "AND state OPERATOR(pg_catalog.=) ANY (%s) AND " JOB_VISIBLE,
									   set, from_states),
							  3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update job %lld", (long long) id);
	done = SPI_processed == 1;
	SPI_finish();
	ElevateEnd(&elevated);
	return done;
}

/* cancel(id): a scheduled or queued job is cancelled; true if it was. */
Datum
dt_cancel(PG_FUNCTION_ARGS)
{
	bool		done = UpdateJob(PG_GETARG_INT64(0),
								 "state = 'cancelled', finished_at = pg_catalog.now()",
								 "'{scheduled,queued}'::ductape.job_state[]");

	if (done)
		CountersAddAtCommit(DT_C_JOBS_CANCELLED, 1);
	PG_RETURN_BOOL(done);
}

/* retry(id): a failed or cancelled job goes back to queued; true if it did. */
Datum
dt_retry(PG_FUNCTION_ARGS)
{
	bool		done = UpdateJob(PG_GETARG_INT64(0),
								 "state = 'queued', next_attempt_at = pg_catalog.now(), attempts = 0, "
								 "error = NULL, finished_at = NULL",
								 "'{failed,cancelled}'::ductape.job_state[]");

	if (done)
		RegistryWakeAtCommit();
	PG_RETURN_BOOL(done);
}

/* ---- the worker side: a kind of the queue engine (queue.c) ---- */

typedef struct JobRun
{
	QueueItem	item;			/* first */
	int64		id;
	int			attempt;
	/* result */
	XferVerdict verdict;
	Jsonb	   *response;
	char	   *error;
	int64		delay_ms;
} JobRun;

/* Jobs a dead worker left running are queued again. */
static void
JobsRecover(void)
{
	SPI_execute("UPDATE ductape.jobs SET state = 'queued' "
				"WHERE state OPERATOR(pg_catalog.=) 'running'::ductape.job_state", false, 0);
}

/* Claim up to n due jobs, marking them running and counting the attempt. */
static void
JobsClaim(int n)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(n)};

	if (SPI_execute_with_args("UPDATE ductape.jobs j SET state = 'running', attempts = j.attempts OPERATOR(pg_catalog.+) 1 "
							  "WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT id FROM ductape.jobs "
							  "  WHERE state OPERATOR(pg_catalog.=) ANY (" JOB_DUE ") "
							  "    AND next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now() "
							  "  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)) "
							  "RETURNING j.id, j.app, j.action, j.input, j.env, j.product, j.options, "
							  "  j.idempotency_key, j.attempts, j.role",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim jobs");
}

/*
 * Build one claimed job's request.  The request outlives the claim's
 * transaction and perhaps the catalog cache (another claim may rebuild it
 * while this one is in flight): what points into the cache is copied.
 */
static void
JobsPrepare(QueueItem *item, HeapTuple tup, TupleDesc desc)
{
	JobRun	   *run = (JobRun *) item;
	bool		isnull;
	char	   *key;
	DtApp	   *app;
	DtAction   *action;
	DtRequest  *req = palloc0(sizeof(DtRequest));

	run->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	run->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
	key = SPI_getvalue(tup, desc, 8);

	CatalogBeginCall();
	app = CatalogGetApp(SPI_getvalue(tup, desc, 2));
	action = CatalogGetAction(app, SPI_getvalue(tup, desc, 3));
	req->job_id = run->id;
	req->roleid = get_role_oid(SPI_getvalue(tup, desc, 10), true);
	RequestBuild(req, app, action,
				 CatalogGetBinding(app, SPI_getvalue(tup, desc, 6), SPI_getvalue(tup, desc, 5)),
				 DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull)),
				 DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull)));
	/* the same key on every attempt: the given one, else from the job id */
	RequestAddHeader(req, app->idempotency_header,
					 key ? key : psprintf("ductape-job-%lld", (long long) run->id));
	req->has_idempotency_key = true;

	req->method = pstrdup(req->method);
	req->app = pstrdup(req->app);
	req->action = pstrdup(req->action);
	req->env = pstrdup(req->env);
	req->product = pstrdup(req->product);
	if (req->nsuccess > 0)
	{
		int		   *success = palloc(sizeof(int) * req->nsuccess);

		memcpy(success, req->success, sizeof(int) * req->nsuccess);
		req->success = success;
	}
	item->req = req;
}

/* An attempt finished: succeeded, retried after a delay, or failed. */
static void
JobsJudge(QueueItem *item, Xfer *x)
{
	JobRun	   *run = (JobRun *) item;

	run->verdict = XferJudge(x, run->attempt, item->duration_ms, &run->response, &run->error,
							 &run->delay_ms);
}

typedef struct Callback
{
	Oid			fn;
	Oid			role;
	Jsonb	   *job;
} Callback;

/*
 * Store finished attempts, one statement for the batch; returns the
 * callbacks to run once that has committed (the job JSON is built only for
 * them).  A job whose request could not be built failed, alone; one the
 * engine did not send (its limit, or its OAuth2 token being refreshed:
 * item.defer_until) goes back to the queue until then, without counting
 * the attempt and keeping its last error.
 */
static List *
JobsWriteBack(List *batch, MemoryContext after_cxt)
{
	List	   *callbacks = NIL;
	ListCell   *lc;
	int			n = list_length(batch);
	int			i = 0;
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *states = palloc(sizeof(Datum) * n);
	Datum	   *responses = palloc(sizeof(Datum) * n);
	bool	   *resp_nulls = palloc(sizeof(bool) * n);
	Datum	   *errors = palloc(sizeof(Datum) * n);
	bool	   *err_nulls = palloc(sizeof(bool) * n);
	Datum	   *delays = palloc(sizeof(Datum) * n);
	Datum	   *dues = palloc(sizeof(Datum) * n);
	bool	   *due_nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Oid			argtypes[6] = {INT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
	TIMESTAMPTZARRAYOID};
	Datum		args[6];

	foreach(lc, batch)
	{
		JobRun	   *run = lfirst(lc);
		const char *state;
		int64		delay = -1;

		if (run->item.error != NULL)
		{
			run->verdict = XFER_FAILED;
			run->error = run->item.error;
		}
		if (run->item.defer_until != 0)
		{
			/* not sent (its limit, its token): queued again, uncounted */
			state = "queued";
		}
		else
			switch (run->verdict)
		{
			case XFER_SUCCEEDED:
				state = "succeeded";
				CountersAddAtCommit(DT_C_JOBS_SUCCEEDED, 1);
				break;
			case XFER_RETRY:
				state = "queued";
				delay = run->delay_ms;
				CountersAddAtCommit(DT_C_JOBS_RETRIED, 1);
				break;
			default:
				state = "failed";
				CountersAddAtCommit(DT_C_JOBS_FAILED, 1);
				break;
		}
		ids[i] = Int64GetDatum(run->id);
		states[i] = CStringGetTextDatum(state);
		responses[i] = run->response ? JsonbPGetDatum(run->response) : (Datum) 0;
		resp_nulls[i] = run->response == NULL;
		errors[i] = run->error ? CStringGetTextDatum(run->error) : (Datum) 0;
		err_nulls[i] = run->error == NULL;
		delays[i] = Int64GetDatum(delay);
		dues[i] = TimestampTzGetDatum(run->item.defer_until);
		due_nulls[i] = run->item.defer_until == 0;
		i++;
	}
	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(states, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(responses, resp_nulls, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
	args[3] = PointerGetDatum(construct_md_array(errors, err_nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	args[4] = PointerGetDatum(construct_array(delays, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[5] = PointerGetDatum(construct_md_array(dues, due_nulls, 1, dims, lbs, TIMESTAMPTZOID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	if (SPI_execute_with_args("UPDATE ductape.jobs j SET state = r.state::ductape.job_state, "
							  "  response = coalesce(r.response, j.response), "
							  "  error = CASE WHEN r.due IS NOT NULL THEN j.error ELSE r.error END, "
							  "  attempts = CASE WHEN r.due IS NOT NULL "
							  "    THEN j.attempts OPERATOR(pg_catalog.-) 1 ELSE j.attempts END, "
							  "  next_attempt_at = CASE WHEN r.due IS NOT NULL THEN r.due "
							  "    WHEN r.delay OPERATOR(pg_catalog.>=) 0 "
							  "    THEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => r.delay OPERATOR(pg_catalog./) 1000.0) "
							  "    ELSE j.next_attempt_at END, "
							  "  finished_at = CASE WHEN r.state OPERATOR(pg_catalog.=) ANY ('{succeeded,failed}'::pg_catalog.text[]) "
							  "    THEN pg_catalog.clock_timestamp() END "
							  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
							  "  pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6)) "
							  "  AS r(id, state, response, error, delay, due) "
							  "WHERE j.id OPERATOR(pg_catalog.=) r.id "
							  "  AND j.state OPERATOR(pg_catalog.=) 'running'::ductape.job_state "
							  "RETURNING CASE WHEN r.state OPERATOR(pg_catalog.=) 'succeeded' THEN j.on_success "
							  "  WHEN r.state OPERATOR(pg_catalog.=) 'failed' THEN j.on_failure END, "
							  "  (SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) j.role), "
							  "  CASE WHEN (r.state OPERATOR(pg_catalog.=) 'succeeded' AND j.on_success IS NOT NULL) "
							  "    OR (r.state OPERATOR(pg_catalog.=) 'failed' AND j.on_failure IS NOT NULL) THEN "
							  "  pg_catalog.jsonb_build_object('id', j.id, 'app', j.app, 'action', j.action, 'env', j.env, "
							  "    'product', j.product, 'state', r.state, 'attempts', j.attempts, "
							  "    'next_attempt_at', j.next_attempt_at, 'response', coalesce(r.response, j.response), "
							  "    'error', r.error, 'created_at', j.created_at, 'finished_at', pg_catalog.clock_timestamp()) END",
							  6, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not store job results");
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		Datum		fn = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(after_cxt);
			Callback   *cb = palloc(sizeof(Callback));

			cb->fn = DatumGetObjectId(fn);
			cb->role = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
			cb->job = DatumGetJsonbPCopy(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
			callbacks = lappend(callbacks, cb);
			MemoryContextSwitchTo(old);
		}
	}
	return callbacks;
}

/* Each callback in its own transaction, as the role that dispatched. */
static void
JobsRunCallbacks(List *callbacks)
{
	ListCell   *lc;

	foreach(lc, callbacks)
	{
		Callback   *cb = lfirst(lc);
		char	   *error;

		if (!OidIsValid(cb->role))
			continue;			/* the dispatching role was dropped */
		if (!RunAsRole(cb->fn, "job callback", cb->role, cb->job, "ductape: job callback", &error))
			ereport(WARNING,
					(errmsg("ductape job callback (function %u) failed: %s", cb->fn, error)));
	}
}

/* When the next scheduled or retried job is due. */
static void
JobsNextDue(void)
{
	if (SPI_execute("SELECT pg_catalog.min(next_attempt_at) FROM ductape.jobs "
					"WHERE state OPERATOR(pg_catalog.=) ANY (" JOB_DUE ")",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read when the next job is due");
}

static const QueueKind JobsQueue = {
	.name = "jobs",
	.item_size = sizeof(JobRun),
	.batch = 1000,
	.transfers = true,
	.followed = true,			/* workflows wait for jobs */
	.claim = JobsClaim,
	.prepare = JobsPrepare,
	.judge = JobsJudge,
	.write_back = JobsWriteBack,
	.after_commit = JobsRunCallbacks,
	.recover = JobsRecover,
	.next_due = JobsNextDue,
};

/* At load: the jobs queue joins the worker's queue engine. */
void
JobsInit(void)
{
	QueueRegister(&JobsQueue);
}
