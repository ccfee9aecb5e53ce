/*-------------------------------------------------------------------------
 *
 * gate.c
 *	  The one gate through which ductape runs user code, and the caller
 *	  proxy through which ductape's own SQL functions learn who called them.
 *
 * The database worker's session belongs to the bootstrap superuser.  Every
 * piece of code a user can name and the worker runs -- job callbacks,
 * webhook handlers, workflow sql steps -- goes through GateEnter/GateLeave:
 *
 *	- a new GUC nest level that is always rolled back, so that nothing the
 *	  code sets (search_path, statement_timeout, ductape.env, ...) outlives
 *	  it, not even with set_config(..., false);
 *	- SetUserIdAndSecContext(role, SECURITY_LOCAL_USERID_CHANGE |
 *	  SECURITY_RESTRICTED_OPERATION): the code runs as its owner, and
 *	  PostgreSQL refuses SET ROLE, SET SESSION AUTHORIZATION, temporary
 *	  objects, LISTEN and cursors WITH HOLD inside it;
 *	- search_path is PostgreSQL's default ("$user", public) inside, whatever
 *	  the worker's is (pinned to pg_catalog, pg_temp outside);
 *	- on the way out, what a restricted operation still lets outlive a
 *	  transaction is dropped: session advisory locks and prepared
 *	  statements.
 *
 * The worker's own SQL runs outside the gate with search_path pinned to
 * pg_catalog, pg_temp (worker.c) and names every object with its schema.
 *
 * The caller proxy: a SECURITY DEFINER function cannot see who called it
 * (current_user is its owner), yet functions such as workflow_start must
 * record the caller -- current_user at the call, which inside a callback is
 * the callback's role, not session_user.  Such a function is declared in SQL
 * as LANGUAGE c 'dt_as_caller'; the proxy notes GetUserId() and calls the
 * SECURITY DEFINER function of the same name with a leading underscore and
 * the same arguments, which reads the caller with ductape._caller().  The
 * implementation is granted to nobody and _caller() fails outside a proxied
 * call, so the recorded role cannot be chosen by anyone.
 *
 * User code also has a deadline, ductape.user_code_timeout: past it, it is
 * cancelled, and if it keeps catching the cancel, the worker ends (and
 * restarts), since the worker runs user code one piece at a time.
 *
 * The worker and the listener also pin their own session here
 * (GatePinSession): settings a database owner can give the database
 * (search_path, role, timeouts) do not reach ductape's own SQL.
 *
 * May call: utilities, SPI, fmgr, the parser (to check that a sql step is
 * one SELECT).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/prepare.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "parser/parser.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "ductape.h"

PG_FUNCTION_INFO_V1(dt_as_caller);
PG_FUNCTION_INFO_V1(dt_as_caller_hidden);
PG_FUNCTION_INFO_V1(dt_caller);

/* ---- the worker's own session ---- */

/*
 * Settings a worker or the listener holds whatever the database or a role
 * says (ALTER DATABASE ... SET is the database owner's): its search_path,
 * its role (none: the bootstrap superuser it connected as), and no timeout
 * or read-only default that would fail its own work.  Set as the reset
 * values too, at a level user code can only override inside the gate,
 * where it is rolled back.
 */
void
GatePinSession(void)
{
	static const char *const pins[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		{"role", "none"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
	};
	int			i;

	for (i = 0; i < lengthof(pins); i++)
		SetConfigOption(pins[i][0], pins[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}

/* ---- the time user code may take ---- */

int			ductape_user_code_timeout_ms = 60 * 1000;

#define GATE_KILL_AFTER_FIRINGS 10	/* seconds of cancels ignored: end the worker */

static TimeoutId GateTimeout = MAX_TIMEOUTS;
static volatile sig_atomic_t GateOverdue = 0;
static volatile sig_atomic_t GateEnded = 0;

/* Did user code that ignored its cancel end this process (gate.c's doing)? */
bool
GateEndedProcess(void)
{
	return GateEnded != 0;
}

/*
 * Past the deadline, once a second: cancel what runs (QueryCancelPending,
 * so that the next CHECK_FOR_INTERRUPTS raises), and when the code keeps
 * catching that for GATE_KILL_AFTER_FIRINGS seconds, end the process as
 * pg_terminate_backend would (the worker restarts and recovers its work).
 * Runs in a signal handler: flags and the latch only.
 */
static void
GateTimeoutHandler(void)
{
	GateOverdue++;
	if (GateOverdue > GATE_KILL_AFTER_FIRINGS)
	{
		GateEnded = 1;
		ProcDiePending = true;
	}
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

static void
GateArm(void)
{
	GateOverdue = 0;
	if (ductape_user_code_timeout_ms <= 0)
		return;
	if (GateTimeout == MAX_TIMEOUTS)
		GateTimeout = RegisterTimeout(USER_TIMEOUT, GateTimeoutHandler);
	enable_timeout_every(GateTimeout,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ductape_user_code_timeout_ms),
						 1000);
}

static void
GateDisarm(void)
{
	if (GateTimeout != MAX_TIMEOUTS)
		disable_timeout(GateTimeout, false);
	/* a cancel of ours still pending must not hit the worker's own code */
	if (GateOverdue > 0)
		QueryCancelPending = false;
}

/*
 * Rethrow an error copied out of a call through the gate (after the gate
 * was left): a cancel caused by the deadline says so, instead of
 * "canceling statement due to user request".
 */
static void
GateRethrow(ErrorData *ed, const char *what)
{
	if (GateOverdue != 0 && ed->sqlerrcode == ERRCODE_QUERY_CANCELED)
	{
		ed->message = psprintf("%s ran longer than ductape.user_code_timeout (%d ms) and was cancelled",
							   what, ductape_user_code_timeout_ms);
		ed->detail = NULL;
		ed->hint = pstrdup("Make it faster, or dispatch the slow work as a job of its own.");
	}
	GateOverdue = 0;
	ReThrowError(ed);
}

/*
 * The error being handled, copied out of the error state first (nothing is
 * allocated or locked before that), then the gate left.
 */
static ErrorData *
GateCatch(DtGate *g, MemoryContext cxt)
{
	ErrorData  *ed;

	MemoryContextSwitchTo(cxt);
	ed = CopyErrorData();
	FlushErrorState();
	GateDisarm();
	GateLeave(g);
	return ed;
}

/* ---- user code that ended the worker ---- */

/*
 * The user code running now (set while a callback, handler or sql step
 * runs), which the worker's exit callback keeps in the registry when that
 * code is what ended the worker; and the code the previous worker kept
 * there, which this worker refuses once (GateRefuseOnce).  Without that,
 * what ended the worker -- a webhook handler whose event had not counted
 * the attempt, a workflow sql step whose tick was rolled back -- ran again
 * at once in the next worker, and ended it again, for good.
 */
static DtUserCode Running;
static DtUserCode Refused;

/* The code running now, if any (the worker's exit callback asks). */
bool
GateRunningCode(DtUserCode *code)
{
	*code = Running;
	return OidIsValid(Running.role);
}

/* At a worker's start: code refuses the next call of that same code. */
void
GateRefuseOnce(const DtUserCode *code)
{
	Refused = *code;
}

/* After the worker's first round: what was to be refused ran no more. */
void
GateForgetRefused(void)
{
	memset(&Refused, 0, sizeof(Refused));
}

/* The user code about to run: refused if it ended the previous worker. */
static void
GateStartCode(Oid role, Oid fn, const char *sql, const char *name)
{
	DtUserCode	code;

	memset(&code, 0, sizeof(code));
	code.role = role;
	code.fn = fn;
	if (sql != NULL)
	{
		code.sql_len = strlen(sql);
		code.sql_hash = hash_bytes((const unsigned char *) sql, code.sql_len);
	}
	if (OidIsValid(Refused.role) && Refused.role == code.role && Refused.fn == code.fn &&
		Refused.sql_hash == code.sql_hash && Refused.sql_len == code.sql_len)
	{
		GateForgetRefused();
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("%s ended the previous worker: it kept running past ductape.user_code_timeout, catching its cancel",
						name),
				 errdetail("It is not run again this time."),
				 errhint("Make it stop when it is cancelled.")));
	}
	Running = code;
}

static void
GateEndCode(void)
{
	memset(&Running, 0, sizeof(Running));
}

/* ---- the gate ---- */

void
GateEnter(DtGate *g, Oid role)
{
	GetUserIdAndSecContext(&g->save_userid, &g->save_sec_context);
	g->save_nestlevel = NewGUCNestLevel();
	SetUserIdAndSecContext(role, g->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	(void) set_config_option("search_path", "\"$user\", public",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

/* Also on the error path: none of this depends on the transaction. */
void
GateLeave(DtGate *g)
{
	AtEOXact_GUC(false, g->save_nestlevel);
	SetUserIdAndSecContext(g->save_userid, g->save_sec_context);
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
}

/*
 * fn is a function ductape may call with one jsonb (a job callback, a
 * webhook handler): it exists, is a plain function, takes one jsonb and
 * returns one value.  what names it in the error ("on_success function").
 * Checked when it is named and again each time it is called.  Returns its
 * schema.
 */
Oid
GateCheckFunction(Oid fn, const char *what)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			nsp;
	bool		ok;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s %u does not exist", what, fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	nsp = proc->pronamespace;
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->pronargs == 1 && proc->proargtypes.values[0] == JSONBOID;
	ReleaseSysCache(tup);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s must take one jsonb argument", what, format_procedure(fn)),
				 errhint("Declare it as a function of one jsonb argument returning one value (not a set, not a procedure).")));
	return nsp;
}

/*
 * Call fn(arg) as role through the gate (a job callback, a webhook
 * handler).  The function is called by its oid through fmgr, never by a
 * name put back together from the catalog.  The role needs EXECUTE on it
 * and USAGE on its schema, as a SELECT would.  (Its name, for the message
 * of a deadline's cancel, is formatted before the call: the error path
 * looks nothing up in the catalog before the transaction is rolled back.)
 */
void
GateCallFunction(Oid fn, const char *what, Oid role, Jsonb *arg)
{
	Oid			nsp = GateCheckFunction(fn, what);
	char	   *name = psprintf("%s %s", what, format_procedure(fn));
	DtGate		gate;

	MemoryContext here = CurrentMemoryContext;

	GateStartCode(role, fn, NULL, name);
	GateEnter(&gate, role);
	GateArm();
	PG_TRY();
	{
		FmgrInfo	flinfo;
		LOCAL_FCINFO(fcinfo, 1);

		if (pg_namespace_aclcheck(nsp, role, ACL_USAGE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for schema %s", get_namespace_name(nsp))));
		if (pg_proc_aclcheck(fn, role, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for %s %s", what, format_procedure(fn))));
		fmgr_info(fn, &flinfo);
		InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = JsonbPGetDatum(arg);
		fcinfo->args[0].isnull = false;
		(void) FunctionCallInvoke(fcinfo);
	}
	PG_CATCH();
	{
		ErrorData  *ed = GateCatch(&gate, here);

		GateEndCode();
		GateRethrow(ed, name);
	}
	PG_END_TRY();
	GateDisarm();
	GateLeave(&gate);
	GateEndCode();
}

/*
 * Run sql as role through the gate and return its first row as a JSON
 * object (NULL when it returns no row).  sql must be exactly one SELECT
 * statement: it is parsed alone, checked, and run as written -- never
 * pasted into a statement of ductape's.
 */
Jsonb *
GateSelect(Oid role, const char *sql)
{
	MemoryContext here = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;
	DtGate		gate;

	GateStartCode(role, InvalidOid, sql, "a workflow sql step");
	GateEnter(&gate, role);
	GateArm();
	PG_TRY();
	{
		List	   *parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
		Node	   *stmt = list_length(parsed) == 1 ? ((RawStmt *) linitial(parsed))->stmt : NULL;

		if (stmt == NULL || !IsA(stmt, SelectStmt) || ((SelectStmt *) stmt)->intoClause != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a workflow sql step must be exactly one SELECT statement"),
					 errdetail_plural("The step holds %d statement.", "The step holds %d statements.",
									  list_length(parsed), list_length(parsed))));
		SPI_connect();
		if (SPI_execute(sql, false, 1) != SPI_OK_SELECT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a workflow sql step must be exactly one SELECT statement")));
		if (SPI_processed > 0)
		{
			MemoryContext old = MemoryContextSwitchTo(here);
			TupleDesc	desc = BlessTupleDesc(CreateTupleDescCopy(SPI_tuptable->tupdesc));
			Datum		row = heap_copy_tuple_as_datum(SPI_tuptable->vals[0], desc);
			text	   *json = DatumGetTextPP(DirectFunctionCall1(row_to_json, row));

			result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														CStringGetDatum(text_to_cstring(json))));
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
	}
	PG_CATCH();
	{
		ErrorData  *ed = GateCatch(&gate, here);

		GateEndCode();
		GateRethrow(ed, "a workflow sql step");
	}
	PG_END_TRY();
	GateDisarm();
	GateLeave(&gate);
	GateEndCode();
	return result;
}

/* ---- the caller proxy ---- */

static Oid	Caller = InvalidOid;

static Datum
CallerProxy(FunctionCallInfo fcinfo, bool hide_statement)
{
	FmgrInfo   *impl = fcinfo->flinfo->fn_extra;
	Oid			save = Caller;
	Datum		result;
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);

	if (impl == NULL)
	{
		HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
		Form_pg_proc proc;
		char	   *name;
		Oid			implid;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
		proc = (Form_pg_proc) GETSTRUCT(tup);
		name = psprintf("_%s", NameStr(proc->proname));
		implid = LookupFuncName(list_make2(makeString(get_namespace_name(proc->pronamespace)),
										   makeString(name)),
								proc->pronargs, proc->proargtypes.values, false);
		ReleaseSysCache(tup);
		tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(implid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for function %u", implid);
		if (!((Form_pg_proc) GETSTRUCT(tup))->prosecdef)
			elog(ERROR, "%s must be SECURITY DEFINER", format_procedure(implid));
		ReleaseSysCache(tup);
		impl = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(implid, impl, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = impl;
	}
	InitFunctionCallInfoData(*inner, impl, fcinfo->nargs, fcinfo->fncollation, NULL, NULL);
	memcpy(inner->args, fcinfo->args, sizeof(NullableDatum) * fcinfo->nargs);

	Caller = GetUserId();
	PG_TRY();
	{
		/* (hiding: the arguments may hold a secret; see secrets.c) */
		result = hide_statement ? RunHidingStatement(impl->fn_addr, inner)
			: FunctionCallInvoke(inner);
	}
	PG_CATCH();
	{
		Caller = save;
		PG_RE_THROW();
	}
	PG_END_TRY();
	Caller = save;
	fcinfo->isnull = inner->isnull;
	return result;
}

Datum
dt_as_caller(PG_FUNCTION_ARGS)
{
	return CallerProxy(fcinfo, false);
}

/* The same, for functions whose arguments may hold a plaintext secret. */
Datum
dt_as_caller_hidden(PG_FUNCTION_ARGS)
{
	return CallerProxy(fcinfo, true);
}

/* _caller() returns name: who called the proxied function being run. */
Datum
dt_caller(PG_FUNCTION_ARGS)
{
	Name		name;

	if (!OidIsValid(Caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("ductape._caller() can only be used by ductape's own functions")));
	name = palloc0(NAMEDATALEN);
	namestrcpy(name, GetUserNameFromId(Caller, false));
	PG_RETURN_NAME(name);
}
