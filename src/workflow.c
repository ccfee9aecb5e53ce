/*-------------------------------------------------------------------------
 *
 * workflow.c
 *	  Workflows: step conditions, the templates of step inputs and outputs
 *	  resolved against a run's context, and the engine's entry points that
 *	  act as a role (a sql step as the workflow's definer, a step's dispatch
 *	  as the run's starter), both through the user-code gate (gate.c).
 *
 * A condition is an expression over placeholders and JSON literals:
 *
 *	  $Step{check}{ok} == true && ($Input{amount} >= 100 || !$Input{trial})
 *
 * Operators, loosest first: ||, &&, ! (prefix), then one comparison
 * (== != > >= < <=) between two operands; parentheses group.  Operands are
 * $Input{...}, $Step{tag}{path...}, $Now, $Uuid and JSON literals (numbers,
 * "strings", true, false, null, [arrays], {objects}; literals are parsed by
 * PostgreSQL's jsonb parser, this file only finds where they end).
 *
 * Semantics: a missing value (a path that is not there, a skipped step's
 * output) is null.  == and != compare JSON values (numbers by value).
 * > >= < <= compare two numbers, or two strings bytewise; any other pair is
 * false.  ||, && and ! take truthiness: false, null, 0 and "" are false,
 * every other value true.
 *
 * The run's context is one jsonb object {"input": {...}, "steps": {tag:
 * output, ...}}; $Input{a}{b} reads input.a.b and $Step{t}{p} steps.t.p.
 *
 * Nesting: a chain of && or || is one node with a list of operands, however
 * long, so only parentheses and ! nest.  A condition whose parentheses and
 * !s nest more than COND_MAX_NESTING levels deep is a syntax problem like
 * any other (22023, listed with its path by workflow_define, and "invalid
 * condition" from _condition_eval), as is a JSON literal nested more than
 * COND_MAX_NESTING levels; the parser and the evaluator also call
 * check_stack_depth().  (Before this, "!!!...!true" three million times
 * long crashed the backend with a stack overflow.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "ductape.h"

/* parentheses and !s inside one another, at most (and JSON literal levels) */
#define COND_MAX_NESTING 100

/* how much of a condition an error message quotes */
#define COND_EXCERPT 40

typedef enum
{
	C_LITERAL,
	C_PLACEHOLDER,
	C_NOT,
	C_AND,
	C_OR,
	C_CMP
} CondKind;

typedef enum
{
	OP_EQ,
	OP_NE,
	OP_GT,
	OP_GE,
	OP_LT,
	OP_LE
} CmpOp;

typedef struct Cond
{
	CondKind	kind;
	CmpOp		op;
	struct Cond *left;			/* C_NOT, C_CMP */
	struct Cond *right;			/* C_CMP */
	List	   *operands;		/* C_AND, C_OR: two or more Conds */
	Jsonb	   *literal;
	PlaceholderKind ph;
	int			nargs;
	char	  **args;
} Cond;

typedef struct Parser
{
	const char *s;
	int			pos;
	int			len;
	char	   *error;			/* the first problem, with its offset */
	List	   *steps;			/* tags named by $Step */
	int			depth;			/* parentheses and !s open around p->pos */
} Parser;

static Cond *ParseOr(Parser *p);

/* At most COND_EXCERPT bytes of s (len bytes), whole characters, "..." if cut. */
static char *
Excerpt(const char *s, int len)
{
	int			cut;

	if (len <= COND_EXCERPT)
		return pnstrdup(s, len);
	cut = pg_mbcliplen(s, len, COND_EXCERPT);
	return psprintf("%.*s...", cut, s);
}

static void
SkipSpace(Parser *p)
{
	while (p->pos < p->len && isspace((unsigned char) p->s[p->pos]))
		p->pos++;
}

static Cond *
Problem(Parser *p, const char *what)
{
	if (p->error == NULL)
		p->error = psprintf("%s at character %d", what, p->pos + 1);
	return NULL;
}

static bool
Accept(Parser *p, const char *tok)
{
	int			n = strlen(tok);

	SkipSpace(p);
	if (p->pos + n <= p->len && strncmp(p->s + p->pos, tok, n) == 0)
	{
		p->pos += n;
		return true;
	}
	return false;
}

/*
 * One more level of parentheses or !: false (with the problem recorded)
 * past COND_MAX_NESTING.  Leave() when the level is done.
 */
static bool
Enter(Parser *p)
{
	check_stack_depth();
	if (p->depth >= COND_MAX_NESTING)
	{
		(void) Problem(p, psprintf("parentheses and \"!\" nest more than %d levels deep",
								   COND_MAX_NESTING));
		return false;
	}
	p->depth++;
	return true;
}

static void
Leave(Parser *p)
{
	p->depth--;
}

/*
 * Where a JSON literal starting at p->pos ends (strings and brackets
 * aware); -1 when it does not end, -2 when it nests more than
 * COND_MAX_NESTING levels deep.
 */
static int
LiteralEnd(Parser *p)
{
	int			i = p->pos;
	int			depth = 0;
	char		c = p->s[i];

	if (c == '"' || c == '[' || c == '{')
	{
		bool		in_string = false;

		for (; i < p->len; i++)
		{
			c = p->s[i];
			if (in_string)
			{
				if (c == '\\')
					i++;
				else if (c == '"')
				{
					in_string = false;
					if (depth == 0)
						return i + 1;
				}
			}
			else if (c == '"')
				in_string = true;
			else if (c == '[' || c == '{')
			{
				if (++depth > COND_MAX_NESTING)
					return -2;
			}
			else if (c == ']' || c == '}')
			{
				if (--depth == 0)
					return i + 1;
			}
		}
		return -1;
	}
	while (i < p->len && (isalnum((unsigned char) p->s[i]) || p->s[i] == '.' ||
						  p->s[i] == '-' || p->s[i] == '+'))
		i++;
	return i > p->pos ? i : -1;
}

static Cond *
ParsePrimary(Parser *p)
{
	Cond	   *c;

	SkipSpace(p);
	if (p->pos >= p->len)
		return Problem(p, "an operand is missing");
	if (Accept(p, "("))
	{
		if (!Enter(p))
			return NULL;
		c = ParseOr(p);
		Leave(p);
		if (c == NULL)
			return NULL;
		if (!Accept(p, ")"))
			return Problem(p, "\")\" expected");
		return c;
	}
	c = palloc0(sizeof(Cond));
	if (p->s[p->pos] == '$')
	{
		int			end = p->pos + 1;
		char	   *err;

		while (end < p->len && isalpha((unsigned char) p->s[end]))
			end++;
		while (end < p->len && p->s[end] == '{')
		{
			while (end < p->len && p->s[end] != '}')
				end++;
			if (end < p->len)
				end++;
		}
		err = TemplateParsePlaceholder(p->s + p->pos, end - p->pos, &c->ph, &c->nargs, &c->args);
		if (err)
			return Problem(p, err);
		if ((PH_WORKFLOW_KINDS & PH_BIT(c->ph)) == 0)
			return Problem(p, psprintf("placeholder \"%s\" cannot be used in a condition",
									   Excerpt(p->s + p->pos, end - p->pos)));
		if (c->ph == PH_STEP)
			p->steps = lappend(p->steps, c->args[0]);
		c->kind = C_PLACEHOLDER;
		p->pos = end;
		return c;
	}
	{
		int			end = LiteralEnd(p);
		char	   *text;
		MemoryContext mcx = CurrentMemoryContext;
		volatile bool ok = true;

		if (end == -2)
			return Problem(p, psprintf("a JSON literal nests more than %d levels deep",
									   COND_MAX_NESTING));
		if (end < 0)
			return Problem(p, "an operand (a placeholder or a JSON literal) is expected");
		text = pnstrdup(p->s + p->pos, end - p->pos);
		PG_TRY();
		{
			c->literal = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		}
		PG_CATCH();
		{
			ErrorData  *e;

			/*
			 * jsonb_in refuses the text with a data exception (22xxx: not
			 * JSON, a number numeric cannot hold, \u0000) or a limit (54xxx).
			 * Anything else (a cancel, out of memory) is not about the
			 * text: let it through.
			 */
			MemoryContextSwitchTo(mcx);
			e = CopyErrorData();
			if (ERRCODE_TO_CATEGORY(e->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
				ERRCODE_TO_CATEGORY(e->sqlerrcode) != ERRCODE_PROGRAM_LIMIT_EXCEEDED)
				PG_RE_THROW();
			FlushErrorState();
			ok = false;
		}
		PG_END_TRY();
		if (!ok)
			return Problem(p, psprintf("%s is not a placeholder or a JSON literal",
									   Excerpt(text, end - p->pos)));
		c->kind = C_LITERAL;
		p->pos = end;
		return c;
	}
}

static Cond *
ParseComparison(Parser *p)
{
	static const struct
	{
		const char *tok;
		CmpOp		op;
	}			ops[] = {{"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GE}, {"<=", OP_LE}, {">", OP_GT}, {"<", OP_LT}};
	Cond	   *left = ParsePrimary(p);
	int			i;

	if (left == NULL)
		return NULL;
	for (i = 0; i < lengthof(ops); i++)
		if (Accept(p, ops[i].tok))
		{
			Cond	   *c = palloc0(sizeof(Cond));

			c->kind = C_CMP;
			c->op = ops[i].op;
			c->left = left;
			c->right = ParsePrimary(p);
			return c->right ? c : NULL;
		}
	return left;
}

static Cond *
ParseUnary(Parser *p)
{
	SkipSpace(p);
	if (p->pos < p->len && p->s[p->pos] == '!' &&
		!(p->pos + 1 < p->len && p->s[p->pos + 1] == '='))
	{
		Cond	   *c = palloc0(sizeof(Cond));

		if (!Enter(p))
			return NULL;
		p->pos++;
		c->kind = C_NOT;
		c->left = ParseUnary(p);
		Leave(p);
		return c->left ? c : NULL;
	}
	return ParseComparison(p);
}

/* a chain "x tok y tok z ..." is one node with its operands in a list */
static Cond *
ParseBinary(Parser *p, const char *tok, CondKind kind, Cond *(*next) (Parser *))
{
	Cond	   *first = next(p);
	Cond	   *c;

	if (first == NULL || !Accept(p, tok))
		return first;
	c = palloc0(sizeof(Cond));
	c->kind = kind;
	c->operands = list_make1(first);
	do
	{
		Cond	   *operand = next(p);

		if (operand == NULL)
			return NULL;
		c->operands = lappend(c->operands, operand);
	} while (Accept(p, tok));
	return c;
}

static Cond *
ParseAnd(Parser *p)
{
	return ParseBinary(p, "&&", C_AND, ParseUnary);
}

static Cond *
ParseOr(Parser *p)
{
	return ParseBinary(p, "||", C_OR, ParseAnd);
}

/* Parse a whole condition; NULL with *error set on a problem. */
static Cond *
ConditionParse(const char *s, List **steps, char **error)
{
	Parser		p = {s, 0, strlen(s), NULL, NIL, 0};
	Cond	   *c = ParseOr(&p);

	SkipSpace(&p);
	if (c != NULL && p.pos < p.len)
		c = Problem(&p, psprintf("unexpected \"%s\"", Excerpt(p.s + p.pos, p.len - p.pos)));
	if (c == NULL && p.error == NULL)
		p.error = pstrdup("the condition is empty");
	*error = c ? NULL : p.error;
	if (steps)
		*steps = p.steps;
	return c;
}

/* ---- evaluation against a run's context ---- */

/* The value at a path in the context; jbvNull when it is not there. */
static void
ContextValue(Jsonb *context, const char *section, int nargs, char **args, JsonbValue *out)
{
	JsonbValue	v;
	JsonbContainer *c = &context->root;
	int			i;

	out->type = jbvNull;
	if (JB_ROOT_IS_SCALAR(context) ||
		getKeyJsonValueFromContainer(c, section, strlen(section), &v) == NULL)
		return;
	for (i = 0; i < nargs; i++)
	{
		JsonbValue *next = NULL;

		if (v.type != jbvBinary)
			return;
		if (JsonContainerIsObject(v.val.binary.data))
			next = getKeyJsonValueFromContainer(v.val.binary.data, args[i], strlen(args[i]), NULL);
		else if (JsonContainerIsArray(v.val.binary.data))
		{
			char	   *e;
			long		n = strtol(args[i], &e, 10);

			if (*e == '\0' && n >= 0)
				next = getIthJsonbValueFromContainer(v.val.binary.data, (uint32) n);
		}
		if (next == NULL)
			return;
		v = *next;
	}
	*out = v;
}

static bool
ContextResolver(void *arg, PlaceholderKind kind, int nargs, char **args, JsonbValue *out)
{
	Jsonb	   *context = arg;

	switch (kind)
	{
		case PH_INPUT:
			ContextValue(context, "input", nargs, args, out);
			return out->type != jbvNull;
		case PH_STEP:
			ContextValue(context, "steps", nargs, args, out);
			return out->type != jbvNull;
		case PH_NOW:
			out->type = jbvString;
			out->val.string.val = DatumGetCString(DirectFunctionCall1(timestamptz_out,
																	  TimestampTzGetDatum(GetCurrentTimestamp())));
			out->val.string.len = strlen(out->val.string.val);
			return true;
		case PH_UUID:
			out->type = jbvString;
			out->val.string.val = DatumGetCString(DirectFunctionCall1(uuid_out,
																	  DirectFunctionCall1(gen_random_uuid, (Datum) 0)));
			out->val.string.len = strlen(out->val.string.val);
			return true;
		default:
			return false;
	}
}

static void
Operand(Cond *c, Jsonb *context, JsonbValue *out)
{
	if (c->kind == C_LITERAL)
	{
		if (JB_ROOT_IS_SCALAR(c->literal))
			JsonbExtractScalar(&c->literal->root, out);
		else
		{
			out->type = jbvBinary;
			out->val.binary.data = &c->literal->root;
			out->val.binary.len = VARSIZE(c->literal) - VARHDRSZ;
		}
	}
	else if (!ContextResolver(context, c->ph, c->nargs, c->args, out))
		out->type = jbvNull;
}

static bool
Truthy(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return false;
		case jbvBool:
			return v->val.boolean;
		case jbvNumeric:
			return !numeric_is_nan(v->val.numeric) &&
				DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(v->val.numeric),
												  NumericGetDatum(int64_to_numeric(0)))) != 0;
		case jbvString:
			return v->val.string.len > 0;
		default:
			return true;
	}
}

static bool
Evaluate(Cond *c, Jsonb *context)
{
	JsonbValue	a,
				b;
	int			cmp;
	ListCell   *lc;

	/* the parser bounds the nesting; this is a second line of defence */
	check_stack_depth();
	switch (c->kind)
	{
		case C_NOT:
			return !Evaluate(c->left, context);
		case C_AND:
			foreach(lc, c->operands)
				if (!Evaluate(lfirst(lc), context))
					return false;
			return true;
		case C_OR:
			foreach(lc, c->operands)
				if (Evaluate(lfirst(lc), context))
					return true;
			return false;
		case C_CMP:
			Operand(c->left, context, &a);
			Operand(c->right, context, &b);
			if (c->op == OP_EQ)
				return JsonbValueEqual(&a, &b);
			if (c->op == OP_NE)
				return !JsonbValueEqual(&a, &b);
			if (a.type == jbvNumeric && b.type == jbvNumeric)
				cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a.val.numeric),
														NumericGetDatum(b.val.numeric)));
			else if (a.type == jbvString && b.type == jbvString)
			{
				cmp = memcmp(a.val.string.val, b.val.string.val, Min(a.val.string.len, b.val.string.len));
				if (cmp == 0)
					cmp = a.val.string.len - b.val.string.len;
			}
			else
				return false;
			switch (c->op)
			{
				case OP_GT:
					return cmp > 0;
				case OP_GE:
					return cmp >= 0;
				case OP_LT:
					return cmp < 0;
				default:
					return cmp <= 0;
			}
		default:
			Operand(c, context, &a);
			return Truthy(&a);
	}
}

/* ---- SQL entry points ---- */

/*
 * _condition_check(cond text, path text, OUT problems text[], OUT steps text[]):
 * the condition's syntax problem (if any) and the steps it names.
 */
PG_FUNCTION_INFO_V1(dt_condition_check);
Datum
dt_condition_check(PG_FUNCTION_ARGS)
{
	char	   *cond = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	List	   *steps = NIL;
	char	   *error;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_condition_check must return a record");
	(void) ConditionParse(cond, &steps, &error);
	values[0] = CStringListToTextArray(error ? list_make1(psprintf("%s: %s", path, error)) : NIL);
	values[1] = CStringListToTextArray(error ? NIL : steps);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* _condition_eval(cond text, context jsonb) -> boolean */
PG_FUNCTION_INFO_V1(dt_condition_eval);
Datum
dt_condition_eval(PG_FUNCTION_ARGS)
{
	char	   *cond = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *context = PG_GETARG_JSONB_P(1);
	char	   *error;
	Cond	   *c = ConditionParse(cond, NULL, &error);

	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid condition \"%s\"", Excerpt(cond, strlen(cond))),
				 errdetail("%s.", error)));
	PG_RETURN_BOOL(Evaluate(c, context));
}

/* _workflow_template_errors(tpl jsonb, path text) -> text[] */
PG_FUNCTION_INFO_V1(dt_workflow_template_errors);
Datum
dt_workflow_template_errors(PG_FUNCTION_ARGS)
{
	List	   *errors = NIL;

	if (!PG_ARGISNULL(0))
		TemplateCheck(PG_GETARG_JSONB_P(0), PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1)),
					  PH_WORKFLOW_KINDS, NULL, NULL, &errors);
	PG_RETURN_DATUM(CStringListToTextArray(errors));
}

/* _template_steps(tpl jsonb) -> text[]: the steps its $Step placeholders name */
PG_FUNCTION_INFO_V1(dt_template_steps);
Datum
dt_template_steps(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(CStringListToTextArray(TemplateStepRefs(PG_GETARG_JSONB_P(0))));
}

/* _workflow_apply(tpl jsonb, context jsonb) -> jsonb: the template resolved */
PG_FUNCTION_INFO_V1(dt_workflow_apply);
Datum
dt_workflow_apply(PG_FUNCTION_ARGS)
{
	PG_RETURN_JSONB_P(TemplateApply(PG_GETARG_JSONB_P(0), ContextResolver, PG_GETARG_JSONB_P(1)));
}

/* ---- the worker's tick ---- */

static void
TickWork(void *arg)
{
	int		   *n = arg;

	SPI_connect();
	if (SPI_execute("SELECT ductape._workflow_tick()", false, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		*n = isnull ? 0 : DatumGetInt32(d);
	}
	SPI_finish();
}

/*
 * Advance the runs that have something to do (ductape._workflow_tick) in
 * one transaction of the database worker; an error is logged and the runs
 * are looked at again next time.
 */
static long
WorkflowsTick(bool *did_work)
{
	int			n = 0;
	char	   *error;

	if (!WorkerTry(TickWork, &n, "ductape: workflows", &error))
		ereport(WARNING, (errmsg("ductape: advancing workflows failed: %s", error)));
	if (n > 0)
	{
		*did_work = true;		/* steps may have queued jobs */
		return 0;
	}
	return WORKER_TICK_MS;		/* sleeping steps; runs a crash left mid-way */
}

/*
 * The worker moves workflows on when woken (a run started, jobs finished)
 * and each second.
 */
static const WorkerTask WorkflowTask = {
	.name = "workflows",
	.on_wake = true,
	.ready = NULL,
	.run = WorkflowsTick,
};

void
WorkflowInit(void)
{
	WorkerRegisterTask(&WorkflowTask);
}

/* ---- entry points of the workflow engine: steps as a role, through the gate ---- */

PG_FUNCTION_INFO_V1(dt_workflow_sql);
PG_FUNCTION_INFO_V1(dt_workflow_dispatch_as);

static bool EngineProcess = false;

/* The database worker says so at start: only it runs the workflow engine. */
void
WorkflowMarkEngineProcess(void)
{
	EngineProcess = true;
}

/*
 * The engine's helpers act as a run's role; they are refused anywhere but
 * at the top of the database worker (not inside user code it runs, not in
 * any other session, whoever holds EXECUTE).
 */
static void
EngineOnly(const char *what)
{
	if (!EngineProcess || InLocalUserIdChange() || InSecurityRestrictedOperation() ||
		!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s is for ductape's workflow engine only", what),
				 errdetail("The database worker calls it while it advances a workflow run.")));
}

static Oid
RunRole(Name role)
{
	Oid			oid = get_role_oid(NameStr(*role), true);

	if (!OidIsValid(oid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" of the workflow run no longer exists", NameStr(*role))));
	return oid;
}

/* _workflow_sql(role name, sql text) returns jsonb: a sql step, as the workflow's definer. */
Datum
dt_workflow_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *out;

	EngineOnly("ductape._workflow_sql");
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a workflow sql step needs a role and a statement")));
	out = GateSelect(RunRole(PG_GETARG_NAME(0)), text_to_cstring(PG_GETARG_TEXT_PP(1)));
	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(out);
}

/*
 * _workflow_dispatch_as(role, app, action, input, env, product, key, options)
 * returns bigint: dispatch a step's job as the run's role (the job records
 * that role; its callbacks, none here, and its rows are that role's).
 */
Datum
dt_workflow_dispatch_as(PG_FUNCTION_ARGS)
{
	DtGate		gate;
	int64		id = 0;
	int			i;

	EngineOnly("ductape._workflow_dispatch_as");
	for (i = 0; i < 6; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a workflow step's dispatch needs a role, app, action, input, env and product")));
	GateEnter(&gate, RunRole(PG_GETARG_NAME(0)));
	PG_TRY();
	{
		id = JobsDispatch(text_to_cstring(PG_GETARG_TEXT_PP(1)),
						  text_to_cstring(PG_GETARG_TEXT_PP(2)),
						  PG_GETARG_JSONB_P(3),
						  text_to_cstring(PG_GETARG_TEXT_PP(4)),
						  text_to_cstring(PG_GETARG_TEXT_PP(5)),
						  false, 0,
						  PG_ARGISNULL(6) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(6)),
						  InvalidOid, InvalidOid,
						  PG_ARGISNULL(7) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
						  : PG_GETARG_JSONB_P(7));
	}
	PG_FINALLY();
	{
		GateLeave(&gate);
	}
	PG_END_TRY();
	PG_RETURN_INT64(id);
}
