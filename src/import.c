/*-------------------------------------------------------------------------
 *
 * import.c
 *	  Reading the documents import_openapi takes (docs/reference.md): JSON
 *	  through PostgreSQL's own parser, YAML through libyaml, both into
 *	  jsonb; and the list of "$ref"s in a document with their JSON pointers.
 *	  Turning the document into an app spec is SQL (ductape--*.sql).
 *
 * YAML scalars are resolved with the YAML 1.2 core schema (null, true,
 * false, integers, floats; everything quoted is a string; yes/no/on/off
 * stay strings; tags are not interpreted, as libyaml's loader gives every
 * untagged scalar the !!str tag), mapping keys become text, aliases are expanded (at most
 * 1,000,000 values in all, against alias bombs) and "<<" merge keys are
 * applied.  A syntax error reports its line and column; either way the
 * error is 22023 and nothing is stored.
 *
 * Nesting: a document whose arrays and objects (mappings and sequences)
 * nest more than MAX_DOC_DEPTH levels deep is refused with 22023 and the
 * line where it goes too deep, before anything recursive sees it: JSON by
 * a scan of the text ahead of jsonb_in (whose own limit is the stack, with
 * a message that says nothing about the document), YAML by a pass of
 * libyaml's event parser ahead of its loader (whose scanner takes time
 * quadratic in the nesting of [ and {, 50 seconds for 100,000 levels).
 * Expanding aliases cannot go deeper either, and the walk of _json_refs
 * has the same limit; every recursive function calls check_stack_depth().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <yaml.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#include "ductape.h"

#define MAX_YAML_VALUES 1000000
/* arrays and objects inside one another in a document, at most */
#define MAX_DOC_DEPTH 512

typedef struct YamlCtx
{
	yaml_document_t *doc;
	const char *what;
	long		values;
} YamlCtx;

static JsonbValue *YamlPush(YamlCtx *cx, JsonbParseState **st, yaml_node_t *node,
							JsonbIteratorToken token, int depth);

static bool
Matches(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* A YAML 1.2 core-schema number, as numeric text; NULL when s is not one. */
static char *
CoreNumber(const char *s)
{
	const char *p = s;
	bool		digits = false;

	if ((s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) && s[2] != '\0')
	{
		char	   *end;
		long long	v = strtoll(s + 2, &end, s[1] == 'x' ? 16 : 8);

		return *end == '\0' ? psprintf("%lld", v) : NULL;
	}
	if (*p == '-' || *p == '+')
		p++;
	while (isdigit((unsigned char) *p))
		p++, digits = true;
	if (*p == '.')
	{
		p++;
		while (isdigit((unsigned char) *p))
			p++, digits = true;
	}
	if (!digits)
		return NULL;
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!isdigit((unsigned char) *p))
			return NULL;
		while (isdigit((unsigned char) *p))
			p++;
	}
	if (*p != '\0')
		return NULL;
	return pstrdup(s[0] == '+' ? s + 1 : s);
}

/*
 * A YAML number as a numeric.  numeric_in refuses what numeric cannot hold
 * (1e999999) with 22003 and no position: say where it is instead.
 */
static Numeric
YamlNumber(YamlCtx *cx, yaml_node_t *node, char *num)
{
	MemoryContext mcx = CurrentMemoryContext;
	volatile Numeric result = NULL;

	PG_TRY();
	{
		result = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(num),
													 ObjectIdGetDatum(InvalidOid),
													 Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(mcx);
		e = CopyErrorData();
		if (e->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not valid: line %lu: the number is out of range",
						cx->what, (unsigned long) node->start_mark.line + 1),
				 errdetail("%s", e->message)));
	}
	PG_END_TRY();
	return result;
}

static void
YamlScalar(YamlCtx *cx, yaml_node_t *node, JsonbValue *v)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	const char *s = (const char *) node->data.scalar.value;
	bool		plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	char	   *num;

	if (plain && Matches(s, nulls))
		v->type = jbvNull;
	else if (plain && Matches(s, trues))
	{
		v->type = jbvBool;
		v->val.boolean = true;
	}
	else if (plain && Matches(s, falses))
	{
		v->type = jbvBool;
		v->val.boolean = false;
	}
	else if (plain && (num = CoreNumber(s)) != NULL)
	{
		v->type = jbvNumeric;
		v->val.numeric = YamlNumber(cx, node, num);
	}
	else
	{
		v->type = jbvString;
		v->val.string.len = node->data.scalar.length;
		v->val.string.val = pnstrdup(s, node->data.scalar.length);
	}
}

static void
YamlKey(YamlCtx *cx, yaml_node_t *key, JsonbParseState **st)
{
	JsonbValue	k;

	if (key == NULL || key->type != YAML_SCALAR_NODE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not valid: line %lu: a mapping key must be a scalar",
						cx->what, (unsigned long) (key ? key->start_mark.line + 1 : 0))));
	k.type = jbvString;
	k.val.string.len = key->data.scalar.length;
	k.val.string.val = pnstrdup((char *) key->data.scalar.value, key->data.scalar.length);
	pushJsonbValue(st, WJB_KEY, &k);
}

static bool
IsMergeKey(yaml_node_t *key)
{
	return key && key->type == YAML_SCALAR_NODE &&
		strcmp((char *) key->data.scalar.value, "<<") == 0 &&
		key->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* The pairs of a mapping: merged ones ("<<") first, so its own keys win. */
static void
YamlPairs(YamlCtx *cx, JsonbParseState **st, yaml_node_t *map, int depth, bool merged_only)
{
	yaml_node_pair_t *pair;

	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++)
	{
		yaml_node_t *key = yaml_document_get_node(cx->doc, pair->key);
		yaml_node_t *value = yaml_document_get_node(cx->doc, pair->value);

		if (IsMergeKey(key))
		{
			if (!merged_only || value == NULL)
				continue;
			if (value->type == YAML_MAPPING_NODE)
				YamlPairs(cx, st, value, depth + 1, false);
			else if (value->type == YAML_SEQUENCE_NODE)
			{
				yaml_node_item_t *item;

				for (item = value->data.sequence.items.start; item < value->data.sequence.items.top; item++)
				{
					yaml_node_t *m = yaml_document_get_node(cx->doc, *item);

					if (m && m->type == YAML_MAPPING_NODE)
						YamlPairs(cx, st, m, depth + 1, false);
				}
			}
			continue;
		}
		if (merged_only)
			continue;
		YamlKey(cx, key, st);
		(void) YamlPush(cx, st, value, WJB_VALUE, depth + 1);
	}
}

static JsonbValue *
YamlPush(YamlCtx *cx, JsonbParseState **st, yaml_node_t *node, JsonbIteratorToken token, int depth)
{
	JsonbValue	v;
	JsonbValue *res = NULL;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (++cx->values > MAX_YAML_VALUES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not valid: it expands to more than %d values",
						cx->what, MAX_YAML_VALUES),
				 errhint("Aliases (*name) that repeat large parts of the document multiply its size.")));
	/* (YamlCheckNesting saw the document; aliases can nest it deeper) */
	if (depth > MAX_DOC_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not valid: line %lu: with its aliases expanded, mappings and sequences nest more than %d levels deep",
						cx->what, (unsigned long) (node ? node->start_mark.line + 1 : 0), MAX_DOC_DEPTH),
				 errhint("An alias (*name) inside the node it names repeats it without end.")));
	if (node == NULL)
	{
		v.type = jbvNull;
		return pushJsonbValue(st, token, &v);
	}
	switch (node->type)
	{
		case YAML_SCALAR_NODE:
			YamlScalar(cx, node, &v);
			if (token == WJB_DONE)
			{
				/* a scalar document is a one-element raw-scalar array */
				JsonbValue	arr;

				arr.type = jbvArray;
				arr.val.array.rawScalar = true;
				arr.val.array.nElems = 1;
				pushJsonbValue(st, WJB_BEGIN_ARRAY, &arr);
				pushJsonbValue(st, WJB_ELEM, &v);
				return pushJsonbValue(st, WJB_END_ARRAY, NULL);
			}
			return pushJsonbValue(st, token, &v);
		case YAML_SEQUENCE_NODE:
			{
				yaml_node_item_t *item;

				pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
				for (item = node->data.sequence.items.start; item < node->data.sequence.items.top; item++)
					(void) YamlPush(cx, st, yaml_document_get_node(cx->doc, *item), WJB_ELEM, depth + 1);
				res = pushJsonbValue(st, WJB_END_ARRAY, NULL);
				break;
			}
		case YAML_MAPPING_NODE:
			pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
			YamlPairs(cx, st, node, depth, true);
			YamlPairs(cx, st, node, depth, false);
			res = pushJsonbValue(st, WJB_END_OBJECT, NULL);
			break;
		default:
			v.type = jbvNull;
			return pushJsonbValue(st, token, &v);
	}
	return res;
}

/*
 * Refuse a YAML document whose mappings and sequences nest more than
 * MAX_DOC_DEPTH levels deep, with the line where it goes too deep.  The
 * event parser stops there, before libyaml's loader (which would build the
 * whole graph, slowly: see the top of the file) and YamlPush.  Syntax
 * errors are left to the loader, which reports them the same way as ever.
 */
static void
YamlCheckNesting(const char *text, size_t len, const char *what)
{
	yaml_parser_t parser;
	yaml_event_t event;
	int			depth = 0;
	bool		done = false;
	unsigned long too_deep = 0;

	if (!yaml_parser_initialize(&parser))
		elog(ERROR, "could not initialize the YAML parser");
	yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
	/* no ereport in this loop: the parser and the event are malloc'd */
	while (!done && yaml_parser_parse(&parser, &event))
	{
		switch (event.type)
		{
			case YAML_SEQUENCE_START_EVENT:
			case YAML_MAPPING_START_EVENT:
				if (++depth > MAX_DOC_DEPTH)
				{
					too_deep = (unsigned long) event.start_mark.line + 1;
					done = true;
				}
				break;
			case YAML_SEQUENCE_END_EVENT:
			case YAML_MAPPING_END_EVENT:
				depth--;
				break;
			case YAML_DOCUMENT_END_EVENT:	/* the loader reads the first only */
			case YAML_STREAM_END_EVENT:
				done = true;
				break;
			default:
				break;
		}
		yaml_event_delete(&event);
	}
	yaml_parser_delete(&parser);
	if (too_deep > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not valid: line %lu: mappings and sequences nest more than %d levels deep",
						what, too_deep, MAX_DOC_DEPTH),
				 errhint("ductape reads documents nested at most %d levels deep.", MAX_DOC_DEPTH)));
}

static Jsonb *
YamlToJsonb(const char *text, size_t len, const char *what)
{
	/*
	 * libyaml writes the parser and the document inside PG_TRY, and
	 * PG_FINALLY reads them: they are not locals, whose values a longjmp
	 * may leave stale, but palloc'd.
	 */
	yaml_parser_t *parser = palloc0(sizeof(yaml_parser_t));
	yaml_document_t *doc = palloc0(sizeof(yaml_document_t));
	YamlCtx		cx;
	JsonbParseState *st = NULL;
	JsonbValue *res;
	yaml_node_t *root;
	volatile bool loaded = false;
	Jsonb	   *volatile result = NULL;

	YamlCheckNesting(text, len, what);
	if (!yaml_parser_initialize(parser))
		elog(ERROR, "could not initialize the YAML parser");
	yaml_parser_set_input_string(parser, (const unsigned char *) text, len);
	PG_TRY();
	{
		if (!yaml_parser_load(parser, doc))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s is not valid YAML: line %lu column %lu: %s",
							what, (unsigned long) parser->problem_mark.line + 1,
							(unsigned long) parser->problem_mark.column + 1,
							parser->problem ? parser->problem : "syntax error"),
					 parser->context ? errdetail("The problem is %s (line %lu).", parser->context,
												(unsigned long) parser->context_mark.line + 1) : 0));
		loaded = true;
		root = yaml_document_get_root_node(doc);
		if (root == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s is empty", what)));
		cx.doc = doc;
		cx.what = what;
		cx.values = 0;
		if (root->type == YAML_SCALAR_NODE)
			res = YamlPush(&cx, &st, root, WJB_DONE, 0);
		else
			res = YamlPush(&cx, &st, root, WJB_VALUE, 0);
		result = JsonbValueToJsonb(res);
	}
	PG_FINALLY();
	{
		if (loaded)
			yaml_document_delete(doc);
		yaml_parser_delete(parser);
	}
	PG_END_TRY();
	pfree(doc);
	pfree(parser);
	return result;
}

/*
 * Refuse JSON text whose arrays and objects nest more than MAX_DOC_DEPTH
 * levels deep, with the line where it goes too deep, before jsonb_in
 * recurses into it.  Brackets inside strings do not count; whether the
 * text is JSON at all is jsonb_in's to say.
 */
static void
JsonCheckNesting(const char *text, const char *what)
{
	const char *p;
	int			depth = 0;
	unsigned long line = 1;
	bool		in_string = false;

	for (p = text; *p; p++)
	{
		if (*p == '\n')
			line++;
		if (in_string)
		{
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				in_string = false;
			continue;
		}
		if (*p == '"')
			in_string = true;
		else if (*p == '[' || *p == '{')
		{
			if (++depth > MAX_DOC_DEPTH)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s is not valid JSON: line %lu: arrays and objects nest more than %d levels deep",
								what, line, MAX_DOC_DEPTH),
						 errhint("ductape reads documents nested at most %d levels deep.", MAX_DOC_DEPTH)));
		}
		else if (*p == ']' || *p == '}')
			depth--;
	}
}

/* JSON through jsonb_in; its syntax error becomes our 22023. */
static Jsonb *
JsonToJsonb(char *text, const char *what)
{
	MemoryContext mcx = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	JsonCheckNesting(text, what);
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(mcx);
		e = CopyErrorData();
		/* a syntax error, or a number numeric cannot hold (1e999999) */
		if (e->sqlerrcode != ERRCODE_INVALID_TEXT_REPRESENTATION &&
			e->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not valid JSON", what),
				 errdetail("%s", e->detail ? e->detail : e->message)));
	}
	PG_END_TRY();
	return result;
}

/* _document_parse(doc text, what text) -> jsonb: JSON or YAML */
PG_FUNCTION_INFO_V1(dt_document_parse);
Datum
dt_document_parse(PG_FUNCTION_ARGS)
{
	text	   *doc = PG_GETARG_TEXT_PP(0);
	char	   *what = PG_ARGISNULL(1) ? "the document" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *s = text_to_cstring(doc);
	char	   *p = s;

	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p == '{' || *p == '[')
		PG_RETURN_JSONB_P(JsonToJsonb(s, what));
	PG_RETURN_JSONB_P(YamlToJsonb(s, strlen(s), what));
}

/* ---- the $refs of a document ---- */

typedef struct RefWalk
{
	Tuplestorestate *store;
	TupleDesc	desc;
	StringInfoData path;
} RefWalk;

static void
WalkRefs(RefWalk *w, JsonbContainer *c, int depth)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken r;
	JsonbValue	v;
	int			index = 0;
	int			saved = w->path.len;
	bool		is_object = JsonContainerIsObject(c);

	check_stack_depth();
	if (depth > MAX_DOC_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the document nests more than %d levels deep", MAX_DOC_DEPTH),
				 errdetail("The array or object at %s is nested %d levels deep.",
						   JsonPointerShort(&w->path), depth),
				 errhint("ductape reads documents nested at most %d levels deep.", MAX_DOC_DEPTH)));
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
		{
			int			i;

			w->path.len = saved;
			w->path.data[saved] = '\0';
			appendStringInfoChar(&w->path, '/');
			for (i = 0; i < v.val.string.len; i++)
			{
				char		ch = v.val.string.val[i];

				if (ch == '~')
					appendStringInfoString(&w->path, "~0");
				else if (ch == '/')
					appendStringInfoString(&w->path, "~1");
				else
					appendStringInfoChar(&w->path, ch);
			}
			continue;
		}
		if (r == WJB_ELEM)
		{
			w->path.len = saved;
			w->path.data[saved] = '\0';
			appendStringInfo(&w->path, "/%d", index++);
		}
		if (r != WJB_VALUE && r != WJB_ELEM)
			continue;
		if (v.type == jbvBinary)
			WalkRefs(w, v.val.binary.data, depth + 1);
		else if (is_object && r == WJB_VALUE && v.type == jbvString &&
				 w->path.len - saved == 5 && strcmp(w->path.data + saved, "/$ref") == 0)
		{
			Datum		vals[2];
			bool		nulls[2] = {false, false};

			vals[0] = CStringGetTextDatum(saved > 0 ? pnstrdup(w->path.data, saved) : "");
			vals[1] = PointerGetDatum(cstring_to_text_with_len(v.val.string.val, v.val.string.len));
			tuplestore_putvalues(w->store, w->desc, vals, nulls);
		}
	}
	w->path.len = saved;
	w->path.data[saved] = '\0';
}

/*
 * _json_refs(doc jsonb) -> setof (at text, ref text): every "$ref" string
 * value, with the JSON pointer of the object holding it.
 */
PG_FUNCTION_INFO_V1(dt_json_refs);
Datum
dt_json_refs(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_GETARG_JSONB_P(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RefWalk		w;

	InitMaterializedSRF(fcinfo, 0);
	w.store = rsinfo->setResult;
	w.desc = rsinfo->setDesc;
	initStringInfo(&w.path);
	if (!JB_ROOT_IS_SCALAR(doc))
		WalkRefs(&w, &doc->root, 1);
	return (Datum) 0;
}
