/*-------------------------------------------------------------------------
 *
 * template.c
 *	  $Placeholder{...} templates (docs/reference.md): parse, check at define
 *	  time, and resolve at run time.
 *
 * A template is any jsonb value.  Strings inside it may hold placeholders:
 *
 *	  $Secret{NAME}  $Constant{key}  $Constant{app}{key}  $Variable{key}
 *	  $Input{a}{b}   $Auth{field}    $Row{col}  $Old{col}
 *	  $Step{tag}{path...}  $Event{path...}  $Now  $Uuid
 *
 * "$$" is a literal "$".  A "$" not followed by a placeholder name is kept
 * as it is ("costs $5"); an unknown name followed by "{" is an error, so a
 * typo such as $Inptu{x} is caught instead of being sent.  A string that is
 * exactly one placeholder takes the value's own JSON type ("$Input{amount}"
 * stays a number); otherwise values are interpolated as text.
 *
 * The engine knows the syntax; what a placeholder means comes from a
 * resolver callback supplied by the caller (request.c for actions), so
 * triggers, webhooks and workflows reuse the same code.
 *
 * Nesting: a template whose arrays and objects nest more than
 * TPL_MAX_NESTING levels deep is refused with 22023 naming where: listed
 * as "path: ..." by the define-time check, raised by TemplateApply (so a
 * template stored before the limit existed fails cleanly).  The walk also
 * calls check_stack_depth(); placeholders themselves never nest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "ductape.h"

#define PH_MAX_ARGS 16

/* arrays and objects inside one another in a template, at most */
#define TPL_MAX_NESTING 100

typedef struct PhSpec
{
	const char *name;
	int			min_args;
	int			max_args;
} PhSpec;

static const PhSpec ph_specs[PH__COUNT] = {
	[PH_SECRET] = {"Secret", 1, 1},
	[PH_CONSTANT] = {"Constant", 1, 2},
	[PH_VARIABLE] = {"Variable", 1, 1},
	[PH_INPUT] = {"Input", 1, PH_MAX_ARGS},
	[PH_AUTH] = {"Auth", 1, 1},
	[PH_ROW] = {"Row", 1, 1},
	[PH_OLD] = {"Old", 1, 1},
	[PH_STEP] = {"Step", 1, PH_MAX_ARGS},
	[PH_EVENT] = {"Event", 1, PH_MAX_ARGS},
	[PH_HEADER] = {"Header", 1, 1},
	[PH_NOW] = {"Now", 0, 0},
	[PH_UUID] = {"Uuid", 0, 0},
};

/* One piece of a parsed string: literal text or a placeholder. */
typedef struct TplPart
{
	bool		is_ph;
	char	   *text;			/* literal text, or the placeholder as written */
	PlaceholderKind kind;
	int			nargs;
	char	   *args[PH_MAX_ARGS];
} TplPart;

/*
 * Split s (len bytes) into parts.  Returns NULL on success, else a palloc'd
 * description of the syntax error.
 */
static char *
ParseTemplateString(const char *s, int len, List **parts)
{
	StringInfoData lit;
	int			i = 0;

	*parts = NIL;
	initStringInfo(&lit);

	while (i < len)
	{
		int			start,
					namelen,
					k;
		PlaceholderKind kind = PH__COUNT;
		TplPart    *part;

		if (s[i] != '$')
		{
			appendStringInfoChar(&lit, s[i++]);
			continue;
		}
		if (i + 1 < len && s[i + 1] == '$')
		{
			appendStringInfoChar(&lit, '$');
			i += 2;
			continue;
		}
		start = i;
		namelen = 0;
		while (i + 1 + namelen < len &&
			   ((s[i + 1 + namelen] >= 'A' && s[i + 1 + namelen] <= 'Z') ||
				(s[i + 1 + namelen] >= 'a' && s[i + 1 + namelen] <= 'z')))
			namelen++;
		for (k = 0; k < PH__COUNT; k++)
		{
			if (strlen(ph_specs[k].name) == namelen &&
				strncmp(ph_specs[k].name, s + i + 1, namelen) == 0)
			{
				kind = (PlaceholderKind) k;
				break;
			}
		}
		if (kind == PH__COUNT)
		{
			/* Unknown name: an error only if it looks like a placeholder. */
			if (namelen > 0 && i + 1 + namelen < len && s[i + 1 + namelen] == '{')
				return psprintf("unknown placeholder \"$%.*s\"", namelen, s + i + 1);
			appendStringInfoChar(&lit, s[i++]);
			continue;
		}

		/* A placeholder: flush pending literal text. */
		if (lit.len > 0)
		{
			part = palloc0(sizeof(TplPart));
			part->text = pstrdup(lit.data);
			*parts = lappend(*parts, part);
			resetStringInfo(&lit);
		}
		part = palloc0(sizeof(TplPart));
		part->is_ph = true;
		part->kind = kind;
		i += 1 + namelen;
		while (i < len && s[i] == '{')
		{
			int			close = i + 1;

			while (close < len && s[close] != '}' && s[close] != '{')
				close++;
			if (close >= len || s[close] != '}')
				return psprintf("unclosed \"{\" in placeholder \"$%s\"", ph_specs[kind].name);
			if (close == i + 1)
				return psprintf("empty \"{}\" in placeholder \"$%s\"", ph_specs[kind].name);
			if (part->nargs >= PH_MAX_ARGS)
				return psprintf("too many \"{...}\" parts in placeholder \"$%s\"", ph_specs[kind].name);
			part->args[part->nargs++] = pnstrdup(s + i + 1, close - i - 1);
			i = close + 1;
		}
		part->text = pnstrdup(s + start, i - start);
		if (part->nargs < ph_specs[kind].min_args || part->nargs > ph_specs[kind].max_args)
		{
			if (ph_specs[kind].max_args == 0)
				return psprintf("placeholder \"$%s\" takes no \"{...}\" part", ph_specs[kind].name);
			return psprintf(ph_specs[kind].min_args == 1 ?
							"placeholder \"%s\" needs %s%d \"{...}\" part" :
							"placeholder \"%s\" needs %s%d \"{...}\" parts",
							part->text,
							ph_specs[kind].min_args == ph_specs[kind].max_args ? "" : "at least ",
							ph_specs[kind].min_args);
		}
		*parts = lappend(*parts, part);
	}
	if (lit.len > 0 || *parts == NIL)
	{
		TplPart    *part = palloc0(sizeof(TplPart));

		part->text = pstrdup(lit.data);
		*parts = lappend(*parts, part);
	}
	return NULL;
}

/* Render a jsonb value as text, for interpolation into a larger string. */
char *
JsonbValueAsText(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return pstrdup("");
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			{
				Jsonb	   *j = JsonbValueToJsonb(v);

				return JsonbToCString(NULL, &j->root, VARSIZE(j));
			}
	}
}

/* Append a JSON-pointer segment, escaping ~ and /. */
static void
PathPush(StringInfo path, const char *seg, int len)
{
	int			i;

	appendStringInfoChar(path, '/');
	for (i = 0; i < len; i++)
	{
		if (seg[i] == '~')
			appendStringInfoString(path, "~0");
		else if (seg[i] == '/')
			appendStringInfoString(path, "~1");
		else
			appendStringInfoChar(path, seg[i]);
	}
}

typedef struct ApplyState
{
	TemplateResolver resolver;
	void	   *arg;
	StringInfoData path;
} ApplyState;

static void
ResolvePart(ApplyState *st, TplPart *part, JsonbValue *out)
{
	if (!st->resolver(st->arg, part->kind, part->nargs, part->args, out))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("placeholder %s has no value", part->text),
				 errdetail("The template at %s refers to %s, which is missing.",
						   st->path.len ? st->path.data : "/", part->text),
				 errhint("Pass the missing value in the call's input, or fix the template.")));
}

/* Resolve one string scalar into *out. */
static void
ApplyString(ApplyState *st, JsonbValue *v, JsonbValue *out)
{
	List	   *parts;
	char	   *err;
	ListCell   *lc;
	StringInfoData buf;

	if (memchr(v->val.string.val, '$', v->val.string.len) == NULL)
	{
		*out = *v;
		return;
	}
	err = ParseTemplateString(v->val.string.val, v->val.string.len, &parts);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid template at %s", st->path.len ? st->path.data : "/"),
				 errdetail("%s.", err)));

	if (list_length(parts) == 1)
	{
		TplPart    *part = linitial(parts);

		if (part->is_ph)
		{
			ResolvePart(st, part, out);
			return;
		}
	}

	initStringInfo(&buf);
	foreach(lc, parts)
	{
		TplPart    *part = lfirst(lc);

		if (part->is_ph)
		{
			JsonbValue	r;

			ResolvePart(st, part, &r);
			appendStringInfoString(&buf, JsonbValueAsText(&r));
		}
		else
			appendStringInfoString(&buf, part->text);
	}
	out->type = jbvString;
	out->val.string.val = buf.data;
	out->val.string.len = buf.len;
}

/*
 * Does something to every string in a template.  The visitor gets each
 * string scalar with the path pointing at it (a JSON pointer) and fills
 * *out with its replacement.  With ps, the walk rebuilds the container
 * with the replacements pushed into *ps; without, it only visits.  A
 * container nested more than TPL_MAX_NESTING levels deep is not entered:
 * too_deep (if any) is told its path and may raise an error; if it
 * returns, the walk stops there (once is enough).
 */
typedef void (*StringVisitor) (void *st, StringInfo path, JsonbValue *in, JsonbValue *out);
typedef void (*DepthVisitor) (void *st, StringInfo path);

typedef struct WalkCtx
{
	StringInfo	path;
	JsonbParseState **ps;		/* NULL: only visit */
	StringVisitor visit;
	DepthVisitor too_deep;		/* may be NULL */
	void	   *st;				/* the visitors' state */
	bool		stopped;		/* something nested too deeply */
} WalkCtx;

static JsonbValue *
Walk(WalkCtx *w, JsonbContainer *c, int depth)
{
	StringInfo	path = w->path;
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	v;
	JsonbValue *res = NULL;
	int			base = path->len;
	int			index = 0;

	check_stack_depth();
	if (depth > TPL_MAX_NESTING)
	{
		if (w->too_deep)
			w->too_deep(w->st, path);
		w->stopped = true;
		return NULL;
	}
	it = JsonbIteratorInit(c);
	while (!w->stopped && (r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue	out;
		JsonbValue *push = &v;

		if (r == WJB_KEY || r == WJB_ELEM)
		{
			char		num[16];

			path->len = base;
			path->data[base] = '\0';
			if (r == WJB_KEY)
				PathPush(path, v.val.string.val, v.val.string.len);
			else
			{
				snprintf(num, sizeof(num), "%d", index++);
				PathPush(path, num, strlen(num));
			}
		}
		if ((r == WJB_ELEM || r == WJB_VALUE) && v.type == jbvBinary)
		{
			res = Walk(w, v.val.binary.data, depth + 1);
			continue;
		}
		if ((r == WJB_ELEM || r == WJB_VALUE) && v.type == jbvString)
		{
			w->visit(w->st, path, &v, &out);
			push = &out;
		}
		if (w->ps)
			res = pushJsonbValue(w->ps, r,
								 (r == WJB_BEGIN_ARRAY || r == WJB_BEGIN_OBJECT ||
								  r == WJB_END_ARRAY || r == WJB_END_OBJECT) ? NULL : push);
	}
	path->len = base;
	path->data[base] = '\0';
	return res;
}

/* Walk a whole (non-scalar) template from its root. */
static JsonbValue *
WalkTemplate(Jsonb *tpl, StringInfo path, JsonbParseState **ps,
			 StringVisitor visit, DepthVisitor too_deep, void *st)
{
	WalkCtx		w;

	w.path = path;
	w.ps = ps;
	w.visit = visit;
	w.too_deep = too_deep;
	w.st = st;
	w.stopped = false;
	return Walk(&w, &tpl->root, 1);
}

static void
ApplyVisitor(void *st, StringInfo path, JsonbValue *in, JsonbValue *out)
{
	ApplyString((ApplyState *) st, in, out);
}

static void
ApplyTooDeep(void *st, StringInfo path)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the template nests more than %d levels deep", TPL_MAX_NESTING),
			 errdetail("The array or object at %s is nested %d levels deep.",
					   JsonPointerShort(path), TPL_MAX_NESTING + 1),
			 errhint("Arrays and objects in a template may nest at most %d levels deep.",
					 TPL_MAX_NESTING)));
}

/*
 * Resolve every placeholder in tpl.  Raises 22023 for syntax errors and for
 * placeholders the resolver has no value for.
 */
Jsonb *
TemplateApply(Jsonb *tpl, TemplateResolver resolver, void *arg)
{
	ApplyState	st;
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	st.resolver = resolver;
	st.arg = arg;
	initStringInfo(&st.path);

	if (JB_ROOT_IS_SCALAR(tpl))
	{
		JsonbValue	v,
					out;

		JsonbExtractScalar(&tpl->root, &v);
		if (v.type != jbvString)
			return tpl;
		ApplyString(&st, &v, &out);
		return JsonbValueToJsonb(&out);
	}
	if (!TemplateHasPlaceholders(tpl))
		return tpl;
	res = WalkTemplate(tpl, &st.path, &ps, ApplyVisitor, ApplyTooDeep, &st);
	return JsonbValueToJsonb(res);
}

/* Does any string in tpl contain a "$"?  (A cheap pre-check.) */
bool
TemplateHasPlaceholders(Jsonb *tpl)
{
	JsonbIterator *it = JsonbIteratorInit(&tpl->root);
	JsonbIteratorToken r;
	JsonbValue	v;

	while ((r = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((r == WJB_VALUE || r == WJB_ELEM) && v.type == jbvString &&
			memchr(v.val.string.val, '$', v.val.string.len) != NULL)
			return true;
	}
	return false;
}

/* ---- define-time checks ---- */

typedef struct CheckState
{
	uint32		allowed;
	Jsonb	   *constants;
	Jsonb	   *variables;
	List	  **errors;
	StringInfoData path;
} CheckState;

static void
CheckString(CheckState *st, JsonbValue *v)
{
	List	   *parts;
	char	   *err;
	ListCell   *lc;
	const char *path = st->path.len ? st->path.data : "/";

	if (memchr(v->val.string.val, '$', v->val.string.len) == NULL)
		return;
	err = ParseTemplateString(v->val.string.val, v->val.string.len, &parts);
	if (err)
	{
		*st->errors = lappend(*st->errors, psprintf("%s: %s", path, err));
		return;
	}
	foreach(lc, parts)
	{
		TplPart    *part = lfirst(lc);

		if (!part->is_ph)
			continue;
		if ((st->allowed & PH_BIT(part->kind)) == 0)
		{
			*st->errors = lappend(*st->errors,
								  psprintf("%s: placeholder \"$%s\" cannot be used here",
										   path, ph_specs[part->kind].name));
			continue;
		}
		if (part->kind == PH_CONSTANT && part->nargs == 1 &&
			JsonbGetField(st->constants, part->args[0]) == NULL)
			*st->errors = lappend(*st->errors,
								  psprintf("%s: %s names no constant of this app",
										   path, part->text));
		if (part->kind == PH_VARIABLE &&
			JsonbGetField(st->variables, part->args[0]) == NULL)
			*st->errors = lappend(*st->errors,
								  psprintf("%s: %s names no declared variable of this app",
										   path, part->text));
	}
}

static void
CheckVisitor(void *st, StringInfo path, JsonbValue *in, JsonbValue *out)
{
	CheckString((CheckState *) st, in);
}

static void
CheckTooDeep(void *arg, StringInfo path)
{
	CheckState *st = arg;

	*st->errors = lappend(*st->errors,
						  psprintf("%s: arrays and objects nest more than %d levels deep",
								   JsonPointerShort(path), TPL_MAX_NESTING));
}

/*
 * Check a template at define time.  path is the JSON pointer of tpl in the
 * definition; every problem is appended to *errors as "path: reason".
 */
void
TemplateCheck(Jsonb *tpl, const char *path, uint32 allowed,
			  Jsonb *constants, Jsonb *variables, List **errors)
{
	CheckState	st;

	st.allowed = allowed;
	st.constants = constants;
	st.variables = variables;
	st.errors = errors;
	initStringInfo(&st.path);
	appendStringInfoString(&st.path, path);

	if (JB_ROOT_IS_SCALAR(tpl))
	{
		JsonbValue	v;

		JsonbExtractScalar(&tpl->root, &v);
		if (v.type == jbvString)
			CheckString(&st, &v);
		return;
	}
	(void) WalkTemplate(tpl, &st.path, NULL, CheckVisitor, CheckTooDeep, &st);
}

/* ---- single placeholders and $Step references (workflows) ---- */

/*
 * Parse s (len bytes), which must be exactly one placeholder such as
 * "$Step{charge}{id}".  Returns NULL and fills kind/nargs/args, or a
 * palloc'd description of the problem.
 */
char *
TemplateParsePlaceholder(const char *s, int len, PlaceholderKind *kind, int *nargs, char ***args)
{
	List	   *parts;
	char	   *err = ParseTemplateString(s, len, &parts);
	TplPart    *part;

	if (err)
		return err;
	part = linitial(parts);
	if (list_length(parts) != 1 || !part->is_ph)
		return psprintf("\"%.*s\" is not a placeholder", len, s);
	*kind = part->kind;
	*nargs = part->nargs;
	*args = palloc(sizeof(char *) * Max(part->nargs, 1));
	memcpy(*args, part->args, sizeof(char *) * part->nargs);
	return NULL;
}

typedef struct StepRefState
{
	List	   *refs;			/* step tags named by $Step{...} */
} StepRefState;

static void
StepRefVisitor(void *arg, StringInfo path, JsonbValue *in, JsonbValue *out)
{
	StepRefState *st = arg;
	List	   *parts;
	ListCell   *lc;

	if (memchr(in->val.string.val, '$', in->val.string.len) == NULL ||
		ParseTemplateString(in->val.string.val, in->val.string.len, &parts) != NULL)
		return;
	foreach(lc, parts)
	{
		TplPart    *part = lfirst(lc);

		if (part->is_ph && part->kind == PH_STEP)
			st->refs = lappend(st->refs, part->args[0]);
	}
}

/* The step tags a template's $Step{tag}... placeholders name. */
List *
TemplateStepRefs(Jsonb *tpl)
{
	StepRefState st = {NIL};
	StringInfoData path;

	initStringInfo(&path);
	if (JB_ROOT_IS_SCALAR(tpl))
	{
		JsonbValue	v;

		JsonbExtractScalar(&tpl->root, &v);
		if (v.type == jbvString)
			StepRefVisitor(&st, &path, &v, NULL);
		return st.refs;
	}
	/* (what nests too deeply is the define-time check's to report) */
	(void) WalkTemplate(tpl, &path, NULL, StepRefVisitor, NULL, &st);
	return st.refs;
}

/* ---- define-time template check, called from the SQL validators ---- */

PG_FUNCTION_INFO_V1(dt_template_errors);

/* _template_errors(tpl, path, constants, variables) -> text[] of problems */

Datum
dt_template_errors(PG_FUNCTION_ARGS)
{
	Jsonb	   *tpl;
	char	   *path;
	Jsonb	   *constants = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	Jsonb	   *variables = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	List	   *errors = NIL;

	if (PG_ARGISNULL(0))
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	tpl = PG_GETARG_JSONB_P(0);
	path = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	TemplateCheck(tpl, path, PH_APP_KINDS, constants, variables, &errors);

	PG_RETURN_DATUM(CStringListToTextArray(errors));
}
