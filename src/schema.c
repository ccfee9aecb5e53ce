/*-------------------------------------------------------------------------
 *
 * schema.c
 *	  JSON Schema validation of an action's flat input (docs/reference.md),
 *	  run before anything is sent, and the define-time check of a schema.
 *
 * The validator interprets the schema's jsonb directly (no compiled form to
 * keep in step with the catalog): each keyword is a lookup or one pass of a
 * JsonbIterator, so a 10-property schema costs a few microseconds.
 *
 * Keywords: type, properties, required, additionalProperties,
 * patternProperties, dependencies, minProperties, maxProperties, items,
 * additionalItems, minItems, maxItems, uniqueItems, enum, const, minimum,
 * maximum, exclusiveMinimum and exclusiveMaximum (draft 4 booleans or
 * draft 6+ numbers), multipleOf, minLength, maxLength (in characters),
 * pattern (PostgreSQL's regex engine, unanchored like ECMAScript's test),
 * format (email, uuid, date-time, date, uri; others are ignored, as the
 * specification allows), allOf, anyOf, oneOf, not, local "$ref" (JSON
 * pointers into the same schema; a sibling of $ref is ignored, as in
 * draft 4 and OpenAPI 3.0), boolean schemas, and OpenAPI 3.0's
 * "nullable".  Numbers compare as numerics, so 1 and 1.0 are equal and
 * 1.0 is an integer (draft 6+).
 *
 * From drafts 6 to 2020-12 (the dialect of OpenAPI 3.1): if/then/else,
 * contains with minContains and maxContains, propertyNames,
 * dependentRequired, dependentSchemas, prefixItems (with items, which
 * must then be a schema, for the items after the listed ones), and
 * unevaluatedProperties: the properties that neither the schema's own
 * properties, patternProperties and additionalProperties nor the in-place
 * subschemas the object passes ($ref, allOf, anyOf, oneOf, if/then/else,
 * dependentSchemas) evaluate (Evaluated, below).  unevaluatedItems,
 * $dynamicRef and $recursiveRef are refused at define time, and so is
 * unevaluatedProperties next to $ref (whose siblings are ignored): ignoring
 * them would let through input the schema forbids.  Other unknown
 * keywords are annotations and are ignored.
 *
 * Every violation is reported as "/json/pointer: reason" where the pointer
 * locates the offending value in the instance; when a result only matters
 * as true/false (inside anyOf, oneOf and not) validation stops at the first
 * violation.
 *
 * Nesting (every recursive function here also calls check_stack_depth()):
 *	  - at define time, schemas nested in one another more than
 *		SCHEMA_MAX_NESTING levels deep are a problem listed with the pointer
 *		of the first one too deep (22023 from app_define and the others, like
 *		every problem with a schema), and so is a chain of more than
 *		SCHEMA_MAX_APPLY schemas applied to the same value ($ref, allOf, ...);
 *	  - when validating, more than SCHEMA_MAX_APPLY schemas applied inside
 *		one another (a recursive schema and a deep value) stop validation with
 *		54001 (statement_too_complex) and the instance pointer where it
 *		happened, like the 54000 of the step limit: the value is not wrong,
 *		it is too much to check.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_collation.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/numeric.h"

#include "ductape.h"

#define MAX_VIOLATIONS 100
#define MAX_REF_HOPS 64
/* schemas applied to one value, at most: a guard against a $ref graph that
 * multiplies (each level referring to the next twice) */
#define MAX_VALIDATE_STEPS 1000000
/* schemas inside one another in a schema, at most (define time) */
#define SCHEMA_MAX_NESTING 100
/* schemas applied inside one another while validating one value, at most */
#define SCHEMA_MAX_APPLY 1000

typedef struct SchemaCtx
{
	JsonbContainer *root;		/* the whole schema, for "$ref" */
	StringInfo	errors;			/* NULL: only the verdict is wanted */
	int			nerrors;
	int			hops;			/* $refs followed without descending */
	long		steps;			/* Validate calls so far */
	int			depth;			/* Validate calls open */
} SchemaCtx;

/* in a probe (no error buffer) the first violation decides */
#define GIVE_UP_IF_PROBING() do { if (!ok && cx->errors == NULL) return false; } while (0)

static bool Validate(SchemaCtx *cx, JsonbValue *schema, JsonbValue *inst, StringInfo path);

/* ---- small jsonb helpers ---- */

static JsonbValue *
Field(JsonbContainer *obj, const char *key, JsonbValue *res)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), res);
}

static bool
IsObject(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

static bool
IsArray(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

static bool
IsIntegral(Numeric n)
{
	return DatumGetInt32(DirectFunctionCall1(numeric_min_scale, NumericGetDatum(n))) == 0;
}

static int
NumCmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a), NumericGetDatum(b)));
}

static Numeric
Zero(void)
{
	return int64_to_numeric(0);
}

/*
 * The value of a count keyword (minLength, maxItems, ...) as an int64.  The
 * define-time check wants a non-negative integer, but an integer past int64
 * (a maxLength of 1e40) is one: it counts as int64's largest, which no
 * string, array or object reaches, instead of failing numeric_int8 at call
 * time (found by the fuzzer).
 */
static int64
CountLimit(Numeric n)
{
	if (NumCmp(n, int64_to_numeric(PG_INT64_MAX)) > 0)
		return PG_INT64_MAX;
	if (NumCmp(n, int64_to_numeric(PG_INT64_MIN)) < 0)
		return PG_INT64_MIN;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
}

/* Is a count keyword's value 1 (for "1 item" rather than "1 items")? */
static bool
IsOne(JsonbValue *v)
{
	return v->type == jbvNumeric && NumCmp(v->val.numeric, int64_to_numeric(1)) == 0;
}

static const char *
TypeOf(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvBool:
			return "boolean";
		case jbvString:
			return "string";
		case jbvNumeric:
			return IsIntegral(v->val.numeric) ? "integer" : "number";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "object" : "array";
		default:
			return "unknown";
	}
}

/* JSON equality: numbers by value, objects by keys, arrays in order. */
bool
JsonbValueEqual(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return NumCmp(a->val.numeric, b->val.numeric) == 0;
		case jbvBinary:
			if (JsonContainerIsObject(a->val.binary.data) != JsonContainerIsObject(b->val.binary.data))
				return false;
			return compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			return false;
	}
}

/* A value as short JSON text for messages. */
static char *
ValueJson(JsonbValue *v)
{
	char	   *s;

	if (v->type == jbvBinary)
		s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	else
	{
		Jsonb	   *j = JsonbValueToJsonb(v);

		s = JsonbToCString(NULL, &j->root, VARSIZE(j));
	}
	if (strlen(s) > 60)
		s = psprintf("%.57s...", s);
	return s;
}

/* ---- instance paths (JSON pointers) ---- */

static int
PathPushKey(StringInfo path, const char *key, int len)
{
	int			saved = path->len;
	int			i;

	appendStringInfoChar(path, '/');
	for (i = 0; i < len; i++)
	{
		if (key[i] == '~')
			appendStringInfoString(path, "~0");
		else if (key[i] == '/')
			appendStringInfoString(path, "~1");
		else
			appendStringInfoChar(path, key[i]);
	}
	return saved;
}

static int
PathPushIndex(StringInfo path, int i)
{
	int			saved = path->len;

	appendStringInfo(path, "/%d", i);
	return saved;
}

static void
PathPop(StringInfo path, int saved)
{
	path->len = saved;
	path->data[saved] = '\0';
}

/*
 * Record one violation; returns false so callers can "return Fail(...)".
 * With no error buffer (a probe) nothing is formatted.
 */
static bool
Fail(SchemaCtx *cx, StringInfo path, const char *fmt,...) pg_attribute_printf(3, 4);

static bool
Fail(SchemaCtx *cx, StringInfo path, const char *fmt,...)
{
	va_list		args;
	char		buf[512];

	if (cx->errors == NULL)
		return false;
	cx->nerrors++;
	if (cx->nerrors > MAX_VIOLATIONS)
		return false;
	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	if (cx->errors->len > 0)
		appendStringInfoChar(cx->errors, '\n');
	appendStringInfo(cx->errors, "%s: %s", path->len > 0 ? path->data : "/", buf);
	return false;
}

/* ---- $ref ---- */

static int
HexValue(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The decoded segments of a local reference ("#", "#/definitions/a", with
 * ~0, ~1 and percent escapes); NIL with *why set when it is not local.
 */
static List *
RefSegments(const char *ref, int reflen, const char **why)
{
	const char *p = ref + 1;
	const char *end = ref + reflen;
	List	   *segs = NIL;

	if (reflen == 0 || ref[0] != '#')
	{
		*why = "only local references (\"#/...\") are supported";
		return NIL;
	}
	if (p < end && *p != '/')
	{
		*why = "only JSON pointers (\"#/...\") are supported";
		return NIL;
	}
	*why = NULL;
	while (p < end)
	{
		StringInfo	seg = makeStringInfo();

		for (p++; p < end && *p != '/'; p++)
		{
			char		c = *p;

			if (c == '%' && end - p > 2 && HexValue(p[1]) >= 0 && HexValue(p[2]) >= 0)
			{
				c = (char) (HexValue(p[1]) * 16 + HexValue(p[2]));
				p += 2;
			}
			else if (c == '~' && p + 1 < end && (p[1] == '0' || p[1] == '1'))
			{
				c = p[1] == '0' ? '~' : '/';
				p++;
			}
			appendStringInfoChar(seg, c);
		}
		segs = lappend(segs, seg);
	}
	return segs;
}

/* Resolve a local reference against root; NULL with *why set when it cannot be. */
static JsonbValue *
ResolveRef(JsonbContainer *root, const char *ref, int reflen, const char **why)
{
	JsonbValue *cur = palloc(sizeof(JsonbValue));
	List	   *segs = RefSegments(ref, reflen, why);
	ListCell   *lc;

	if (*why != NULL)
		return NULL;
	cur->type = jbvBinary;
	cur->val.binary.data = root;
	cur->val.binary.len = 0;
	foreach(lc, segs)
	{
		StringInfo	seg = lfirst(lc);
		JsonbValue *next = NULL;

		if (IsObject(cur))
			next = getKeyJsonValueFromContainer(cur->val.binary.data, seg->data, seg->len, NULL);
		else if (IsArray(cur))
		{
			char	   *e;
			long		i = strtol(seg->data, &e, 10);

			if (seg->len > 0 && *e == '\0' && i >= 0 && isdigit((unsigned char) seg->data[0]))
				next = getIthJsonbValueFromContainer(cur->val.binary.data, (uint32) i);
		}
		if (next == NULL)
		{
			*why = "it points to nothing";
			return NULL;
		}
		cur = next;
	}
	return cur;
}

/* ---- formats ---- */

static bool
AllDigits(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char) s[i]))
			return false;
	return true;
}

static int
Num(const char *s, int n)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* RFC 3339 full-date: YYYY-MM-DD with a real day of the month. */
static bool
FormatDate(const char *s, int len)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			y, m, d;

	if (len != 10 || s[4] != '-' || s[7] != '-' ||
		!AllDigits(s, 4) || !AllDigits(s + 5, 2) || !AllDigits(s + 8, 2))
		return false;
	y = Num(s, 4);
	m = Num(s + 5, 2);
	d = Num(s + 8, 2);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	return true;
}

/* RFC 3339 date-time: full-date "T" HH:MM:SS[.frac] ("Z" / +HH:MM / -HH:MM). */
static bool
FormatDateTime(const char *s, int len)
{
	const char *t;
	const char *end = s + len;

	if (len < 20 || !FormatDate(s, 10) || (s[10] != 'T' && s[10] != 't'))
		return false;
	t = s + 11;
	if (end - t < 8 || t[2] != ':' || t[5] != ':' ||
		!AllDigits(t, 2) || !AllDigits(t + 3, 2) || !AllDigits(t + 6, 2))
		return false;
	if (Num(t, 2) > 23 || Num(t + 3, 2) > 59 || Num(t + 6, 2) > 60)
		return false;
	t += 8;
	if (t < end && *t == '.')
	{
		const char *f = ++t;

		while (t < end && isdigit((unsigned char) *t))
			t++;
		if (t == f)
			return false;
	}
	if (t < end && (*t == 'Z' || *t == 'z'))
		return t + 1 == end;
	if (end - t != 6 || (*t != '+' && *t != '-') || t[3] != ':' ||
		!AllDigits(t + 1, 2) || !AllDigits(t + 4, 2))
		return false;
	return Num(t + 1, 2) <= 23 && Num(t + 4, 2) <= 59;
}

static bool
FormatUuid(const char *s, int len)
{
	int			i;

	if (len != 36)
		return false;
	for (i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/*
 * An addr-spec: a dot-atom local part (or a quoted string) "@" a domain of
 * dot-separated labels (letters, digits, hyphens inside) or an address
 * literal in brackets.
 */
static bool
FormatEmail(const char *s, int len)
{
	const char *at = NULL;
	const char *p;
	const char *label;
	int			i;

	for (i = len - 1; i >= 0; i--)
		if (s[i] == '@')
		{
			at = s + i;
			break;
		}
	if (at == NULL || at == s || at == s + len - 1)
		return false;
	if (s[0] == '"')
	{
		if (at - s < 2 || at[-1] != '"')
			return false;
	}
	else
	{
		if (s[0] == '.' || at[-1] == '.')
			return false;
		for (p = s; p < at; p++)
		{
			if (*p == '.' && p[1] == '.')
				return false;
			if (!(isalnum((unsigned char) *p) || strchr(".!#$%&'*+/=?^_`{|}~-", *p)))
				return false;
		}
	}
	p = at + 1;
	if (*p == '[')
		return s[len - 1] == ']';
	label = p;
	for (; p <= s + len; p++)
	{
		if (p == s + len || *p == '.')
		{
			if (p == label || p - label > 63 || *label == '-' || p[-1] == '-')
				return false;
			label = p + 1;
		}
		else if (!(isalnum((unsigned char) *p) || *p == '-'))
			return false;
	}
	return true;
}

/*
 * An absolute URI (RFC 3986): scheme ":" then only characters a URI may
 * hold (unreserved, reserved, percent-encoded octets), with a well-formed
 * authority when it starts with "//".
 */
static bool
FormatUri(const char *s, int len)
{
	int			i = 0;
	int			colon;

	if (len == 0 || !isalpha((unsigned char) s[0]))
		return false;
	while (i < len && (isalnum((unsigned char) s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (i >= len || s[i] != ':')
		return false;
	colon = i;
	for (i = colon + 1; i < len; i++)
	{
		unsigned char c = s[i];

		if (c == '%')
		{
			if (i + 2 >= len + 0 || HexValue(s[i + 1]) < 0 || HexValue(s[i + 2]) < 0)
				return false;
			i += 2;
		}
		else if (!(isalnum(c) || strchr("-._~:/?#[]@!$&'()*+,;=", c)))
			return false;
	}
	/* "[" and "]" only around an IP literal host */
	for (i = colon + 1; i < len; i++)
		if (s[i] == '[' || s[i] == ']')
		{
			const char *open = memchr(s, '[', len);
			const char *close = memchr(s, ']', len);

			if (len < colon + 3 || s[colon + 1] != '/' || s[colon + 2] != '/' ||
				open == NULL || close == NULL || close < open ||
				memchr(s + colon + 3, '/', open - (s + colon + 3)) != NULL)
				return false;
			break;
		}
	return true;
}

static bool
FormatOk(const char *format, const char *s, int len)
{
	if (strcmp(format, "email") == 0)
		return FormatEmail(s, len);
	if (strcmp(format, "uuid") == 0)
		return FormatUuid(s, len);
	if (strcmp(format, "date-time") == 0)
		return FormatDateTime(s, len);
	if (strcmp(format, "date") == 0)
		return FormatDate(s, len);
	if (strcmp(format, "uri") == 0)
		return FormatUri(s, len);
	return true;				/* unknown formats annotate only */
}

static const char *
FormatName(const char *format)
{
	if (strcmp(format, "email") == 0)
		return "an email address";
	if (strcmp(format, "uuid") == 0)
		return "a UUID";
	if (strcmp(format, "date-time") == 0)
		return "an RFC 3339 date-time";
	if (strcmp(format, "date") == 0)
		return "an RFC 3339 date (YYYY-MM-DD)";
	return "an absolute URI";
}

/* ---- patterns ---- */

static bool
PatternMatches(JsonbValue *pattern, const char *s, int len)
{
	text	   *re = cstring_to_text_with_len(pattern->val.string.val, pattern->val.string.len);

	return RE_compile_and_execute(re, (char *) s, len, REG_ADVANCED, C_COLLATION_OID, 0, NULL);
}

/* ---- keywords ---- */

static bool
CheckType(SchemaCtx *cx, JsonbValue *type, JsonbValue *inst, bool nullable, StringInfo path)
{
	const char *actual = TypeOf(inst);
	StringInfoData want;

	if (nullable && inst->type == jbvNull)
		return true;
	if (type->type == jbvString)
	{
		const char *t = type->val.string.val;
		int			n = type->val.string.len;

		if ((n == (int) strlen(actual) && strncmp(t, actual, n) == 0) ||
			(n == 6 && strncmp(t, "number", 6) == 0 && inst->type == jbvNumeric))
			return true;
		return Fail(cx, path, "must be of type %.*s, not %s", n, t, actual);
	}
	if (IsArray(type))
	{
		JsonbIterator *it = JsonbIteratorInit(type->val.binary.data);
		JsonbIteratorToken r;
		JsonbValue	v;
		bool		ok = false;

		initStringInfo(&want);
		while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (r != WJB_ELEM || v.type != jbvString)
				continue;
			if ((v.val.string.len == (int) strlen(actual) &&
				 strncmp(v.val.string.val, actual, v.val.string.len) == 0) ||
				(v.val.string.len == 6 && strncmp(v.val.string.val, "number", 6) == 0 &&
				 inst->type == jbvNumeric))
				ok = true;
			appendStringInfo(&want, "%s%.*s", want.len > 0 ? " or " : "",
							 v.val.string.len, v.val.string.val);
		}
		if (ok)
			return true;
		return Fail(cx, path, "must be of type %s, not %s", want.data, actual);
	}
	return true;
}

static bool
CheckNumber(SchemaCtx *cx, JsonbContainer *s, Numeric n, StringInfo path)
{
	JsonbValue	buf, buf2;
	JsonbValue *v;
	bool		ok = true;

	if ((v = Field(s, "minimum", &buf)) && v->type == jbvNumeric)
	{
		JsonbValue *ex = Field(s, "exclusiveMinimum", &buf2);
		bool		exclusive = ex && ex->type == jbvBool && ex->val.boolean;
		int			c = NumCmp(n, v->val.numeric);

		if (c < 0 || (exclusive && c == 0))
			ok = Fail(cx, path, "must be %s %s", exclusive ? ">" : ">=", ValueJson(v));
		if (!ok && !cx->errors)
			return false;
	}
	if ((v = Field(s, "exclusiveMinimum", &buf)) && v->type == jbvNumeric &&
		NumCmp(n, v->val.numeric) <= 0)
	{
		ok = Fail(cx, path, "must be > %s", ValueJson(v));
		if (!cx->errors)
			return false;
	}
	if ((v = Field(s, "maximum", &buf)) && v->type == jbvNumeric)
	{
		JsonbValue *ex = Field(s, "exclusiveMaximum", &buf2);
		bool		exclusive = ex && ex->type == jbvBool && ex->val.boolean;
		int			c = NumCmp(n, v->val.numeric);

		if (c > 0 || (exclusive && c == 0))
		{
			ok = Fail(cx, path, "must be %s %s", exclusive ? "<" : "<=", ValueJson(v));
			if (!cx->errors)
				return false;
		}
	}
	if ((v = Field(s, "exclusiveMaximum", &buf)) && v->type == jbvNumeric &&
		NumCmp(n, v->val.numeric) >= 0)
	{
		ok = Fail(cx, path, "must be < %s", ValueJson(v));
		if (!cx->errors)
			return false;
	}
	if ((v = Field(s, "multipleOf", &buf)) && v->type == jbvNumeric &&
		NumCmp(v->val.numeric, Zero()) > 0)
	{
		Numeric		rem = DatumGetNumeric(DirectFunctionCall2(numeric_mod,
															  NumericGetDatum(n),
															  NumericGetDatum(v->val.numeric)));

		if (NumCmp(rem, Zero()) != 0)
			ok = Fail(cx, path, "must be a multiple of %s", ValueJson(v));
	}
	return ok;
}

static bool
CheckString(SchemaCtx *cx, JsonbContainer *s, JsonbValue *inst, StringInfo path)
{
	JsonbValue	buf;
	JsonbValue *v;
	const char *str = inst->val.string.val;
	int			len = inst->val.string.len;
	int			nchars = -1;
	bool		ok = true;

	if ((v = Field(s, "minLength", &buf)) && v->type == jbvNumeric)
	{
		int64		min = CountLimit(v->val.numeric);

		nchars = pg_mbstrlen_with_len(str, len);
		if (nchars < min)
		{
			ok = Fail(cx, path, "must be at least " INT64_FORMAT " character%s long", min, min == 1 ? "" : "s");
			if (!cx->errors)
				return false;
		}
	}
	if ((v = Field(s, "maxLength", &buf)) && v->type == jbvNumeric)
	{
		int64		max = CountLimit(v->val.numeric);

		if (nchars < 0)
			nchars = pg_mbstrlen_with_len(str, len);
		if (nchars > max)
		{
			ok = Fail(cx, path, "must be at most " INT64_FORMAT " character%s long", max, max == 1 ? "" : "s");
			if (!cx->errors)
				return false;
		}
	}
	if ((v = Field(s, "pattern", &buf)) && v->type == jbvString && !PatternMatches(v, str, len))
	{
		ok = Fail(cx, path, "does not match the pattern %s", ValueJson(v));
		if (!cx->errors)
			return false;
	}
	if ((v = Field(s, "format", &buf)) && v->type == jbvString)
	{
		char	   *f = pnstrdup(v->val.string.val, v->val.string.len);

		if (!FormatOk(f, str, len))
			ok = Fail(cx, path, "is not %s", FormatName(f));
	}
	return ok;
}

/*
 * dependencies (draft 4), dependentRequired and dependentSchemas (2019-09):
 * for each property of deps that obj has, an array names the properties it
 * then requires, and a schema applies to the whole object.  (The
 * define-time check keeps arrays to dependentRequired and schemas to
 * dependentSchemas.)
 */
static bool
CheckDependencies(SchemaCtx *cx, JsonbValue *deps, JsonbContainer *obj, StringInfo path)
{
	JsonbIterator *it = JsonbIteratorInit(deps->val.binary.data);
	JsonbIteratorToken r;
	JsonbValue	k,
				val;
	bool		ok = true;
	int			saved;

	while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (r != WJB_KEY)
			continue;
		r = JsonbIteratorNext(&it, &val, true);
		if (getKeyJsonValueFromContainer(obj, k.val.string.val, k.val.string.len, NULL) == NULL)
			continue;
		if (IsArray(&val))
		{
			JsonbIterator *dit = JsonbIteratorInit(val.val.binary.data);
			JsonbIteratorToken dr;
			JsonbValue	d;

			while ((dr = JsonbIteratorNext(&dit, &d, true)) != WJB_DONE)
				if (dr == WJB_ELEM && d.type == jbvString &&
					getKeyJsonValueFromContainer(obj, d.val.string.val, d.val.string.len, NULL) == NULL)
				{
					saved = PathPushKey(path, d.val.string.val, d.val.string.len);
					ok = Fail(cx, path, "is required when \"%.*s\" is present",
							  k.val.string.len, k.val.string.val);
					PathPop(path, saved);
					GIVE_UP_IF_PROBING();
				}
		}
		else
		{
			JsonbValue	whole;

			whole.type = jbvBinary;
			whole.val.binary.data = obj;
			whole.val.binary.len = 0;
			if (!Validate(cx, &val, &whole, path))
				ok = false;
			GIVE_UP_IF_PROBING();
		}
	}
	return ok;
}

static bool
CheckObject(SchemaCtx *cx, JsonbContainer *s, JsonbContainer *obj, StringInfo path)
{
	JsonbValue	pbuf, ppbuf, abuf, buf;
	JsonbValue *props = Field(s, "properties", &pbuf);
	JsonbValue *patterns = Field(s, "patternProperties", &ppbuf);
	JsonbValue *additional = Field(s, "additionalProperties", &abuf);
	JsonbValue *v;
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	k, val;
	bool		ok = true;
	int			saved;

	if ((v = Field(s, "required", &buf)) && IsArray(v))
	{
		it = JsonbIteratorInit(v->val.binary.data);
		while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (r != WJB_ELEM || k.type != jbvString)
				continue;
			if (getKeyJsonValueFromContainer(obj, k.val.string.val, k.val.string.len, NULL) == NULL)
			{
				saved = PathPushKey(path, k.val.string.val, k.val.string.len);
				ok = Fail(cx, path, "is required");
				PathPop(path, saved);
				GIVE_UP_IF_PROBING();
			}
		}
	}
	if ((v = Field(s, "minProperties", &buf)) && v->type == jbvNumeric &&
		JsonContainerSize(obj) < CountLimit(v->val.numeric))
	{
		ok = Fail(cx, path, "must have at least %s propert%s", ValueJson(v), IsOne(v) ? "y" : "ies");
		GIVE_UP_IF_PROBING();
	}
	if ((v = Field(s, "maxProperties", &buf)) && v->type == jbvNumeric &&
		JsonContainerSize(obj) > CountLimit(v->val.numeric))
	{
		ok = Fail(cx, path, "must have at most %s propert%s", ValueJson(v), IsOne(v) ? "y" : "ies");
		GIVE_UP_IF_PROBING();
	}

	/* each property of the instance, against properties / patterns / additional */
	if (props || patterns || additional)
	{
		it = JsonbIteratorInit(obj);
		while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			JsonbValue *sub;
			bool		declared = false;

			if (r != WJB_KEY)
				continue;
			r = JsonbIteratorNext(&it, &val, true);
			saved = PathPushKey(path, k.val.string.val, k.val.string.len);
			if (props && IsObject(props) &&
				(sub = getKeyJsonValueFromContainer(props->val.binary.data, k.val.string.val,
													k.val.string.len, NULL)) != NULL)
			{
				declared = true;
				if (!Validate(cx, sub, &val, path))
					ok = false;
			}
			if (patterns && IsObject(patterns))
			{
				JsonbIterator *pit = JsonbIteratorInit(patterns->val.binary.data);
				JsonbIteratorToken pr;
				JsonbValue	pk, ps;

				while ((pr = JsonbIteratorNext(&pit, &pk, true)) != WJB_DONE)
				{
					if (pr != WJB_KEY)
						continue;
					pr = JsonbIteratorNext(&pit, &ps, true);
					if (PatternMatches(&pk, k.val.string.val, k.val.string.len))
					{
						declared = true;
						if (!Validate(cx, &ps, &val, path))
							ok = false;
					}
				}
			}
			if (!declared && additional)
			{
				if (additional->type == jbvBool)
				{
					if (!additional->val.boolean)
						ok = Fail(cx, path, "is not allowed (no such property in the schema)");
				}
				else if (!Validate(cx, additional, &val, path))
					ok = false;
			}
			PathPop(path, saved);
			if (!ok && cx->errors == NULL)
				return false;
		}
	}

	if ((v = Field(s, "propertyNames", &buf)) != NULL)
	{
		StringInfo	saved_errors = cx->errors;

		it = JsonbIteratorInit(obj);
		while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			bool		good;

			if (r != WJB_KEY)
				continue;
			saved = PathPushKey(path, k.val.string.val, k.val.string.len);
			cx->errors = NULL;
			good = Validate(cx, v, &k, path);
			cx->errors = saved_errors;
			if (!good)
				ok = Fail(cx, path, "is not an allowed property name (it does not match the schema in propertyNames)");
			PathPop(path, saved);
			GIVE_UP_IF_PROBING();
		}
	}
	if ((v = Field(s, "dependencies", &buf)) && IsObject(v) &&
		!CheckDependencies(cx, v, obj, path))
	{
		ok = false;
		GIVE_UP_IF_PROBING();
	}
	if ((v = Field(s, "dependentRequired", &buf)) && IsObject(v) &&
		!CheckDependencies(cx, v, obj, path))
	{
		ok = false;
		GIVE_UP_IF_PROBING();
	}
	if ((v = Field(s, "dependentSchemas", &buf)) && IsObject(v) &&
		!CheckDependencies(cx, v, obj, path))
	{
		ok = false;
		GIVE_UP_IF_PROBING();
	}
	return ok;
}

/* an item of an array and its position, for uniqueItems */
typedef struct UniqueItem
{
	JsonbValue *v;
	int			index;
} UniqueItem;

static int
ItemRank(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return 0;
		case jbvBool:
			return 1;
		case jbvNumeric:
			return 2;
		case jbvString:
			return 3;
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? 5 : 4;
		default:
			return 6;
	}
}

/*
 * A total order of JSON values in which JsonbValueEqual's equal values are
 * next to each other (numbers by value, containers as jsonb orders them),
 * then by position.
 */
static int
CompareItems(const void *pa, const void *pb)
{
	const UniqueItem *ia = pa;
	const UniqueItem *ib = pb;
	JsonbValue *a = ia->v;
	JsonbValue *b = ib->v;
	int			c = ItemRank(a) - ItemRank(b);

	if (c == 0)
	{
		switch (a->type)
		{
			case jbvBool:
				c = (int) a->val.boolean - (int) b->val.boolean;
				break;
			case jbvNumeric:
				c = NumCmp(a->val.numeric, b->val.numeric);
				break;
			case jbvString:
				c = a->val.string.len != b->val.string.len ?
					(a->val.string.len < b->val.string.len ? -1 : 1) :
					memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
				break;
			case jbvBinary:
				c = compareJsonbContainers(a->val.binary.data, b->val.binary.data);
				break;
			default:
				break;
		}
	}
	if (c == 0)
		c = ia->index - ib->index;
	return c < 0 ? -1 : c > 0 ? 1 : 0;
}

static bool
CheckArray(SchemaCtx *cx, JsonbContainer *s, JsonbContainer *arr, StringInfo path)
{
	JsonbValue	ibuf, abuf, pbuf, cbuf, buf;
	JsonbValue *items = Field(s, "items", &ibuf);
	JsonbValue *prefix = Field(s, "prefixItems", &pbuf);
	JsonbValue *v;
	int			n = JsonContainerSize(arr);
	bool		ok = true;
	int			i;

	if ((v = Field(s, "minItems", &buf)) && v->type == jbvNumeric &&
		n < CountLimit(v->val.numeric))
	{
		ok = Fail(cx, path, "must have at least %s item%s", ValueJson(v),
				  IsOne(v) ? "" : "s");
		GIVE_UP_IF_PROBING();
	}
	if ((v = Field(s, "maxItems", &buf)) && v->type == jbvNumeric &&
		n > CountLimit(v->val.numeric))
	{
		ok = Fail(cx, path, "must have at most %s item%s", ValueJson(v),
				  IsOne(v) ? "" : "s");
		GIVE_UP_IF_PROBING();
	}
	if (prefix && IsArray(prefix))
	{
		/*
		 * 2020-12: prefixItems position by position, then items (a schema;
		 * the define-time check refuses an array there) for the rest;
		 * additionalItems does not apply.
		 */
		int			positional = JsonContainerSize(prefix->val.binary.data);
		JsonbValue *rest = items && !IsArray(items) ? items : NULL;

		for (i = 0; i < n; i++)
		{
			JsonbValue *sub = NULL;
			int			saved = PathPushIndex(path, i);

			if (i < positional)
				sub = getIthJsonbValueFromContainer(prefix->val.binary.data, i);
			else if (rest && rest->type == jbvBool && !rest->val.boolean)
				ok = Fail(cx, path, "is not allowed (the array takes at most %d item%s)",
						  positional, positional == 1 ? "" : "s");
			else
				sub = rest;
			if (sub && !Validate(cx, sub, getIthJsonbValueFromContainer(arr, i), path))
				ok = false;
			PathPop(path, saved);
			GIVE_UP_IF_PROBING();
		}
	}
	else if (items)
	{
		JsonbValue *additional = Field(s, "additionalItems", &abuf);
		int			positional = IsArray(items) ? JsonContainerSize(items->val.binary.data) : -1;

		for (i = 0; i < n; i++)
		{
			JsonbValue *elem = getIthJsonbValueFromContainer(arr, i);
			JsonbValue *sub = NULL;
			int			saved = PathPushIndex(path, i);

			if (positional < 0)
				sub = items;
			else if (i < positional)
				sub = getIthJsonbValueFromContainer(items->val.binary.data, i);
			else if (additional && additional->type == jbvBool && !additional->val.boolean)
				ok = Fail(cx, path, "is not allowed (the array takes at most %d item%s)",
						  positional, positional == 1 ? "" : "s");
			else
				sub = additional;
			if (sub && !Validate(cx, sub, elem, path))
				ok = false;
			PathPop(path, saved);
			GIVE_UP_IF_PROBING();
		}
	}
	if ((v = Field(s, "contains", &cbuf)) != NULL)
	{
		/* how many items match: at least minContains (1), at most maxContains */
		StringInfo	saved_errors = cx->errors;
		JsonbValue *m;
		int64		min = 1;
		int64		max = -1;
		int			matched = 0;

		if ((m = Field(s, "minContains", &buf)) && m->type == jbvNumeric)
			min = CountLimit(m->val.numeric);
		if ((m = Field(s, "maxContains", &buf)) && m->type == jbvNumeric)
			max = CountLimit(m->val.numeric);
		cx->errors = NULL;
		for (i = 0; i < n && (max >= 0 || matched < min); i++)
		{
			int			saved = PathPushIndex(path, i);

			if (Validate(cx, v, getIthJsonbValueFromContainer(arr, i), path))
				matched++;
			PathPop(path, saved);
		}
		cx->errors = saved_errors;
		if (matched < min)
		{
			if (min == 1)
				ok = Fail(cx, path, "must have an item that matches the schema in contains");
			else
				ok = Fail(cx, path, "must have at least " INT64_FORMAT " items that match the schema in contains (it has %d)",
						  min, matched);
			GIVE_UP_IF_PROBING();
		}
		else if (max >= 0 && matched > max)
		{
			ok = Fail(cx, path, "must have at most " INT64_FORMAT " item%s that match%s the schema in contains (it has %d)",
					  max, max == 1 ? "" : "s", max == 1 ? "es" : "", matched);
			GIVE_UP_IF_PROBING();
		}
	}
	if ((v = Field(s, "uniqueItems", &buf)) && v->type == jbvBool && v->val.boolean && n > 1)
	{
		/*
		 * Sorted, so that equal items are next to each other: n log n
		 * comparisons, where comparing every pair took minutes (and could
		 * not be cancelled) for an input of 100,000 items.  Among equal
		 * items the first two by position are reported, for the first
		 * item that has an equal.
		 */
		UniqueItem *sorted = palloc(sizeof(UniqueItem) * n);
		int			first = -1,
					second = -1;

		for (i = 0; i < n; i++)
		{
			sorted[i].v = getIthJsonbValueFromContainer(arr, i);
			sorted[i].index = i;
		}
		qsort(sorted, n, sizeof(UniqueItem), CompareItems);
		for (i = 0; i < n;)
		{
			int			j = i + 1;

			CHECK_FOR_INTERRUPTS();
			/* sorted[i .. j - 1]: equal items, by position */
			while (j < n && JsonbValueEqual(sorted[i].v, sorted[j].v))
				j++;
			if (j - i > 1 && (first < 0 || sorted[i].index < first))
			{
				first = sorted[i].index;
				second = sorted[i + 1].index;
			}
			i = j;
		}
		pfree(sorted);
		if (first >= 0)
		{
			ok = Fail(cx, path, "items %d and %d are equal (items must be unique)", first, second);
			GIVE_UP_IF_PROBING();
		}
	}
	return ok;
}

/* allOf, anyOf, oneOf, not, if/then/else */
static bool
CheckCombinators(SchemaCtx *cx, JsonbContainer *s, JsonbValue *inst, StringInfo path)
{
	JsonbValue	buf;
	JsonbValue *v;
	bool		ok = true;
	StringInfo	saved_errors = cx->errors;

	if ((v = Field(s, "allOf", &buf)) && IsArray(v))
	{
		int			n = JsonContainerSize(v->val.binary.data);
		int			i;

		for (i = 0; i < n; i++)
			if (!Validate(cx, getIthJsonbValueFromContainer(v->val.binary.data, i), inst, path))
			{
				ok = false;
				GIVE_UP_IF_PROBING();
			}
	}
	if ((v = Field(s, "anyOf", &buf)) && IsArray(v))
	{
		int			n = JsonContainerSize(v->val.binary.data);
		int			i;
		bool		any = false;

		cx->errors = NULL;
		for (i = 0; i < n && !any; i++)
			any = Validate(cx, getIthJsonbValueFromContainer(v->val.binary.data, i), inst, path);
		cx->errors = saved_errors;
		if (!any)
		{
			ok = Fail(cx, path, "must match at least one of the %d schemas in anyOf", n);
			GIVE_UP_IF_PROBING();
		}
	}
	if ((v = Field(s, "oneOf", &buf)) && IsArray(v))
	{
		int			n = JsonContainerSize(v->val.binary.data);
		int			i;
		int			matched = 0;

		cx->errors = NULL;
		for (i = 0; i < n && matched < 2; i++)
			if (Validate(cx, getIthJsonbValueFromContainer(v->val.binary.data, i), inst, path))
				matched++;
		cx->errors = saved_errors;
		if (matched != 1)
		{
			ok = Fail(cx, path, "must match exactly one of the %d schemas in oneOf (it matches %s)",
					  n, matched == 0 ? "none" : "more than one");
			GIVE_UP_IF_PROBING();
		}
	}
	if ((v = Field(s, "not", &buf)) != NULL)
	{
		bool		matches;

		cx->errors = NULL;
		matches = Validate(cx, v, inst, path);
		cx->errors = saved_errors;
		if (matches)
		{
			ok = Fail(cx, path, "must not match the schema in \"not\"");
			GIVE_UP_IF_PROBING();
		}
	}
	if ((v = Field(s, "if", &buf)) != NULL)
	{
		/* then when it matches, else when not; either may be missing */
		JsonbValue	bbuf;
		JsonbValue *branch;
		bool		matches;

		cx->errors = NULL;
		matches = Validate(cx, v, inst, path);
		cx->errors = saved_errors;
		branch = Field(s, matches ? "then" : "else", &bbuf);
		if (branch && !Validate(cx, branch, inst, path))
			ok = false;
	}
	return ok;
}

/* ---- the validator ---- */

static bool ValidateOne(SchemaCtx *cx, JsonbValue *schema, JsonbValue *inst, StringInfo path);

/* One more schema applied inside the others (cx->depth-- when done). */
static void
EnterSchema(SchemaCtx *cx, StringInfo path)
{
	if (cx->depth >= SCHEMA_MAX_APPLY)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("the value nests too deeply to validate against the schema"),
				 errdetail("Validating %s applies more than %d schemas inside one another.",
						   JsonPointerShort(path), SCHEMA_MAX_APPLY),
				 errhint("Send a value that nests less deeply, or a schema that does not refer to itself at each level.")));
	cx->depth++;
}

/*
 * Which properties of obj does schema evaluate, when it applies (the
 * annotations of 2020-12)?  Those its properties and patternProperties
 * name; all of them when it has additionalProperties, or (unless own: the
 * schema whose unevaluatedProperties asks) unevaluatedProperties; and those
 * of the in-place subschemas that obj passes: $ref (its siblings ignored,
 * as the validator does), allOf, anyOf, oneOf, if and then or else,
 * dependentSchemas and schema-valued dependencies.  seen[i] is set for the
 * i-th property of obj.
 */
static void
Evaluated(SchemaCtx *cx, JsonbValue *schema, JsonbContainer *obj, StringInfo path,
		  bool *seen, bool own, int hops)
{
	static const char *const lists[] = {"allOf", "anyOf", "oneOf"};
	static const char *const maps[] = {"dependentSchemas", "dependencies"};
	StringInfo	saved_errors = cx->errors;
	JsonbContainer *s;
	JsonbValue	buf,
				pbuf,
				ppbuf;
	JsonbValue *v,
			   *props,
			   *patterns;
	JsonbValue	whole;
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	k,
				val;
	int			n = JsonContainerSize(obj);
	int			i;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (!IsObject(schema))
		return;					/* true evaluates nothing; false never passes */
	s = schema->val.binary.data;
	EnterSchema(cx, path);
	whole.type = jbvBinary;
	whole.val.binary.data = obj;
	whole.val.binary.len = 0;

	if ((v = Field(s, "$ref", &buf)) && v->type == jbvString)
	{
		const char *why;
		JsonbValue *target = ResolveRef(cx->root, v->val.string.val, v->val.string.len, &why);

		if (target != NULL && hops < MAX_REF_HOPS)
			Evaluated(cx, target, obj, path, seen, false, hops + 1);
		cx->depth--;
		return;
	}
	if (Field(s, "additionalProperties", &buf) != NULL ||
		(!own && Field(s, "unevaluatedProperties", &buf) != NULL))
	{
		for (i = 0; i < n; i++)
			seen[i] = true;
		cx->depth--;
		return;
	}
	props = Field(s, "properties", &pbuf);
	patterns = Field(s, "patternProperties", &ppbuf);
	if ((props && IsObject(props)) || (patterns && IsObject(patterns)))
	{
		i = 0;
		it = JsonbIteratorInit(obj);
		while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (r != WJB_KEY)
				continue;
			if (props && IsObject(props) &&
				getKeyJsonValueFromContainer(props->val.binary.data, k.val.string.val,
											 k.val.string.len, NULL) != NULL)
				seen[i] = true;
			else if (patterns && IsObject(patterns))
			{
				JsonbIterator *pit = JsonbIteratorInit(patterns->val.binary.data);
				JsonbIteratorToken pr;
				JsonbValue	pk;

				while ((pr = JsonbIteratorNext(&pit, &pk, true)) != WJB_DONE)
					if (pr == WJB_KEY && !seen[i] &&
						PatternMatches(&pk, k.val.string.val, k.val.string.len))
						seen[i] = true;
			}
			i++;
		}
	}

	/* the in-place subschemas obj passes (probes: no messages) */
	cx->errors = NULL;
	for (i = 0; i < lengthof(lists); i++)
		if ((v = Field(s, lists[i], &buf)) != NULL && IsArray(v))
		{
			int			j;

			for (j = 0; j < JsonContainerSize(v->val.binary.data); j++)
			{
				JsonbValue *sub = getIthJsonbValueFromContainer(v->val.binary.data, j);

				if (Validate(cx, sub, &whole, path))
					Evaluated(cx, sub, obj, path, seen, false, 0);
			}
		}
	if ((v = Field(s, "if", &buf)) != NULL)
	{
		JsonbValue	bbuf;
		JsonbValue *branch;

		if (Validate(cx, v, &whole, path))
		{
			Evaluated(cx, v, obj, path, seen, false, 0);
			branch = Field(s, "then", &bbuf);
		}
		else
			branch = Field(s, "else", &bbuf);
		if (branch && Validate(cx, branch, &whole, path))
			Evaluated(cx, branch, obj, path, seen, false, 0);
	}
	for (i = 0; i < lengthof(maps); i++)
		if ((v = Field(s, maps[i], &buf)) != NULL && IsObject(v))
		{
			it = JsonbIteratorInit(v->val.binary.data);
			while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
			{
				if (r != WJB_KEY)
					continue;
				(void) JsonbIteratorNext(&it, &val, true);
				if (IsArray(&val) ||
					getKeyJsonValueFromContainer(obj, k.val.string.val, k.val.string.len, NULL) == NULL)
					continue;
				if (Validate(cx, &val, &whole, path))
					Evaluated(cx, &val, obj, path, seen, false, 0);
			}
		}
	cx->errors = saved_errors;
	cx->depth--;
}

/*
 * unevaluatedProperties: the properties of obj that schema (which holds
 * it) does not evaluate are checked against uneval.
 */
static bool
CheckUnevaluated(SchemaCtx *cx, JsonbValue *schema, JsonbValue *uneval,
				 JsonbContainer *obj, StringInfo path)
{
	int			n = JsonContainerSize(obj);
	bool	   *seen;
	bool		ok = true;
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	k,
				val;
	int			i = 0;

	if (n == 0 || (uneval->type == jbvBool && uneval->val.boolean))
		return true;
	seen = palloc0(sizeof(bool) * n);
	Evaluated(cx, schema, obj, path, seen, true, 0);
	it = JsonbIteratorInit(obj);
	while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			saved;

		if (r != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		if (seen[i++])
			continue;
		saved = PathPushKey(path, k.val.string.val, k.val.string.len);
		if (uneval->type == jbvBool)
			ok = Fail(cx, path, "is not allowed (no part of the schema that the object matches declares it)");
		else if (!Validate(cx, uneval, &val, path))
			ok = false;
		PathPop(path, saved);
		if (!ok && cx->errors == NULL)
			break;
	}
	pfree(seen);
	return ok;
}

/*
 * Apply one schema to one value: ValidateOne, within the limits on steps
 * and on nesting.
 */
static bool
Validate(SchemaCtx *cx, JsonbValue *schema, JsonbValue *inst, StringInfo path)
{
	bool		ok;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (++cx->steps > MAX_VALIDATE_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the schema needs more than %d steps to validate this value",
						MAX_VALIDATE_STEPS),
				 errdetail("Its $refs inside allOf, anyOf or oneOf apply the same schemas over and over."),
				 errhint("Refer to each shared definition once per level.")));
	EnterSchema(cx, path);
	ok = ValidateOne(cx, schema, inst, path);
	cx->depth--;
	return ok;
}

static bool
ValidateOne(SchemaCtx *cx, JsonbValue *schema, JsonbValue *inst, StringInfo path)
{
	JsonbContainer *s;
	JsonbValue	buf, buf2;
	JsonbValue *v;
	bool		ok = true;
	bool		nullable;

	if (schema->type == jbvBool)
		return schema->val.boolean ? true : Fail(cx, path, "no value is allowed here");
	if (!IsObject(schema))
		return true;			/* the define-time check refuses these */
	s = schema->val.binary.data;

	/* $ref: the referenced schema replaces this one */
	if ((v = Field(s, "$ref", &buf)) && v->type == jbvString)
	{
		const char *why = NULL;
		JsonbValue *target = ResolveRef(cx->root, v->val.string.val, v->val.string.len, &why);

		if (target == NULL)
			return Fail(cx, path, "cannot resolve $ref %s: %s", ValueJson(v), why);
		if (++cx->hops > MAX_REF_HOPS)
		{
			cx->hops--;
			return Fail(cx, path, "$ref %s is circular", ValueJson(v));
		}
		ok = Validate(cx, target, inst, path);
		cx->hops--;
		return ok;
	}

	v = Field(s, "nullable", &buf2);
	nullable = v && v->type == jbvBool && v->val.boolean;
	if ((v = Field(s, "type", &buf)) != NULL && !CheckType(cx, v, inst, nullable, path))
		return false;			/* the other keywords would only repeat it */

	if ((v = Field(s, "enum", &buf)) && IsArray(v))
	{
		int			n = JsonContainerSize(v->val.binary.data);
		int			i;
		bool		found = nullable && inst->type == jbvNull;

		for (i = 0; i < n && !found; i++)
			found = JsonbValueEqual(getIthJsonbValueFromContainer(v->val.binary.data, i), inst);
		if (!found)
		{
			ok = Fail(cx, path, "must be one of %s", ValueJson(v));
			GIVE_UP_IF_PROBING();
		}
	}
	if ((v = Field(s, "const", &buf)) != NULL && !JsonbValueEqual(v, inst))
	{
		ok = Fail(cx, path, "must be %s", ValueJson(v));
		GIVE_UP_IF_PROBING();
	}

	{
		int			hops = cx->hops;

		/* descending into the instance: a $ref there is not a cycle */
		cx->hops = 0;
		switch (inst->type)
		{
			case jbvNumeric:
				if (!CheckNumber(cx, s, inst->val.numeric, path))
					ok = false;
				break;
			case jbvString:
				if (!CheckString(cx, s, inst, path))
					ok = false;
				break;
			case jbvBinary:
				if (JsonContainerIsObject(inst->val.binary.data))
				{
					if (!CheckObject(cx, s, inst->val.binary.data, path))
						ok = false;
				}
				else if (!CheckArray(cx, s, inst->val.binary.data, path))
					ok = false;
				break;
			default:
				break;
		}
		cx->hops = hops;
	}
	GIVE_UP_IF_PROBING();
	if (!CheckCombinators(cx, s, inst, path))
		ok = false;
	GIVE_UP_IF_PROBING();
	/* last: it looks at what the other keywords evaluated */
	if ((v = Field(s, "unevaluatedProperties", &buf)) != NULL &&
		inst->type == jbvBinary && JsonContainerIsObject(inst->val.binary.data) &&
		!CheckUnevaluated(cx, schema, v, inst->val.binary.data, path))
		ok = false;
	return ok;
}

/*
 * Validate instance against schema; violations are appended to errors
 * (one "/pointer: reason" per line) unless errors is NULL.
 */
bool
SchemaValidate(Jsonb *schema, JsonbValue *instance, StringInfo errors)
{
	SchemaCtx	cx;
	JsonbValue	root;
	StringInfoData path;
	bool		ok;

	cx.root = &schema->root;
	cx.errors = errors;
	cx.nerrors = 0;
	cx.hops = 0;
	cx.steps = 0;
	cx.depth = 0;
	if (JB_ROOT_IS_SCALAR(schema))
		JsonbExtractScalar(&schema->root, &root);
	else
	{
		root.type = jbvBinary;
		root.val.binary.data = &schema->root;
		root.val.binary.len = VARSIZE(schema) - VARHDRSZ;
	}
	initStringInfo(&path);
	ok = Validate(&cx, &root, instance, &path);
	if (errors && cx.nerrors > MAX_VIOLATIONS)
		appendStringInfo(errors, "\n... and %d more", cx.nerrors - MAX_VIOLATIONS);
	return ok;
}

/* Is "section:" a placement prefix of key?  Returns the name after it. */
static const char *
AfterPrefix(const char *key, int len, int *rest)
{
	static const char *const prefixes[] = {"body:", "query:", "params:", "headers:"};
	int			i;

	for (i = 0; i < lengthof(prefixes); i++)
	{
		int			n = strlen(prefixes[i]);

		if (len > n && strncmp(key, prefixes[i], n) == 0)
		{
			*rest = len - n;
			return key + n;
		}
	}
	return NULL;
}

/*
 * The flat input as its schema sees it: "body:amount" is the property
 * "amount" (unless "body:amount" itself is declared).  Returns the input
 * unchanged when no key has a placement prefix.
 */
static Jsonb *
FlatInputView(Jsonb *schema, Jsonb *input)
{
	JsonbValue	pbuf;
	JsonbValue *props = JB_ROOT_IS_OBJECT(schema) ? Field(&schema->root, "properties", &pbuf) : NULL;
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	v;
	JsonbParseState *state = NULL;
	JsonbValue *res = NULL;
	bool		prefixed = false;
	int			rest;

	it = JsonbIteratorInit(&input->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (r == WJB_KEY && AfterPrefix(v.val.string.val, v.val.string.len, &rest) != NULL)
			prefixed = true;
	if (!prefixed)
		return input;

	it = JsonbIteratorInit(&input->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
		{
			const char *name = AfterPrefix(v.val.string.val, v.val.string.len, &rest);

			if (name != NULL &&
				!(props && IsObject(props) &&
				  getKeyJsonValueFromContainer(props->val.binary.data, v.val.string.val,
											   v.val.string.len, NULL) != NULL))
			{
				v.val.string.val = (char *) name;
				v.val.string.len = rest;
			}
		}
		res = pushJsonbValue(&state, r, (r == WJB_BEGIN_OBJECT || r == WJB_END_OBJECT) ? NULL : &v);
	}
	return JsonbValueToJsonb(res);
}

/*
 * The check run, run_response, dispatch, triggers and workflow steps make
 * before anything is written or sent: 22023 listing every violation.
 */
void
SchemaValidateInput(const char *app, const char *action, Jsonb *schema, Jsonb *input)
{
	StringInfoData errors;
	JsonbValue	inst;

	if (schema == NULL)
		return;
	JsonbRootValue(FlatInputView(schema, input), &inst);
	if (SchemaValidate(schema, &inst, NULL))
		return;
	initStringInfo(&errors);
	(void) SchemaValidate(schema, &inst, &errors);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("input of %s.%s does not match the action's input schema", app, action),
			 errdetail("%s", errors.data),
			 errhint("Call ductape.describe('%s', '%s') to see what the action takes.", app, action)));
}

/* ---- define-time check of a schema ---- */

/* the state of one define-time check (SchemaCheck) */
typedef struct CheckCtx
{
	JsonbContainer *root;		/* the whole schema, for "$ref" */
	List	  **problems;
	List	  **bad_patterns;	/* BadPattern, for _schema_bad_patterns; or NULL */
	HTAB	   *loop_free;		/* schemas known not to come back to themselves */
	bool		loop_reported;	/* a loop was reported (once is enough) */
	bool		depth_reported; /* so was nesting too deep */
} CheckCtx;

static void CheckSchema(CheckCtx *cx, JsonbValue *s, StringInfo path, int depth);

static void
Problem(List **problems, StringInfo path, const char *fmt,...) pg_attribute_printf(3, 4);

static void
Problem(List **problems, StringInfo path, const char *fmt,...)
{
	va_list		args;
	char		buf[512];

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	*problems = lappend(*problems, psprintf("%s: %s", path->data, buf));
}

static bool
IsNonNegativeInteger(JsonbValue *v)
{
	return v->type == jbvNumeric && IsIntegral(v->val.numeric) &&
		NumCmp(v->val.numeric, Zero()) >= 0;
}

static bool
PatternCompiles(JsonbValue *v, char **why)
{
	regex_t		re;
	pg_wchar   *w = palloc((v->val.string.len + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(v->val.string.val, w, v->val.string.len);
	int			rc = pg_regcomp(&re, w, wlen, REG_ADVANCED, C_COLLATION_OID);

	if (rc != REG_OKAY)
	{
		char		msg[100];

		pg_regerror(rc, &re, msg, sizeof(msg));
		*why = pstrdup(msg);
		return false;
	}
	pg_regfree(&re);
	return true;
}

/* a pattern PostgreSQL cannot compile: where it is, and the problem said */
typedef struct BadPattern
{
	char	   *pointer;		/* JSON pointer to "pattern", or to a key of
								 * "patternProperties" */
	char	   *problem;		/* as _schema_check says it */
} BadPattern;

/*
 * A pattern that does not compile: a problem, and, when the caller collects
 * them (_schema_bad_patterns), where it is -- so that nobody has to find it
 * again in the problem's text.
 */
static void
InvalidPattern(CheckCtx *cx, StringInfo path, const char *why)
{
	Problem(cx->problems, path, "invalid regular expression: %s", why);
	if (cx->bad_patterns != NULL)
	{
		BadPattern *b = palloc(sizeof(BadPattern));

		b->pointer = pstrdup(path->data);
		b->problem = llast(*cx->problems);
		*cx->bad_patterns = lappend(*cx->bad_patterns, b);
	}
}

static void
CheckSchemaMap(CheckCtx *cx, JsonbValue *map, StringInfo path, int depth, bool keys_are_patterns)
{
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	k, v;
	char	   *why;

	if (!IsObject(map))
	{
		Problem(cx->problems, path, "must be an object of schemas");
		return;
	}
	it = JsonbIteratorInit(map->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			saved;

		if (r != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		saved = PathPushKey(path, k.val.string.val, k.val.string.len);
		if (keys_are_patterns && !PatternCompiles(&k, &why))
			InvalidPattern(cx, path, why);
		CheckSchema(cx, &v, path, depth + 1);
		PathPop(path, saved);
	}
}

static void
CheckSchemaList(CheckCtx *cx, JsonbValue *list, StringInfo path, int depth)
{
	int			n,
				i;

	if (!IsArray(list) || JsonContainerSize(list->val.binary.data) == 0)
	{
		Problem(cx->problems, path, "must be a non-empty array of schemas");
		return;
	}
	n = JsonContainerSize(list->val.binary.data);
	for (i = 0; i < n; i++)
	{
		int			saved = PathPushIndex(path, i);

		CheckSchema(cx, getIthJsonbValueFromContainer(list->val.binary.data, i), path, depth + 1);
		PathPop(path, saved);
	}
}

/*
 * dependencies (schemas_too: draft 4, each value an array of property
 * names or a schema) and dependentRequired (arrays only).
 */
static void
CheckDependencyMap(CheckCtx *cx, JsonbValue *map, StringInfo path, int depth, bool schemas_too)
{
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	k,
				v;

	if (!IsObject(map))
	{
		Problem(cx->problems, path, "must be an object");
		return;
	}
	it = JsonbIteratorInit(map->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			saved;

		if (r != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		saved = PathPushKey(path, k.val.string.val, k.val.string.len);
		if (IsArray(&v))
		{
			JsonbIterator *ait = JsonbIteratorInit(v.val.binary.data);
			JsonbValue	e;
			JsonbIteratorToken ar;
			bool		good = true;

			while ((ar = JsonbIteratorNext(&ait, &e, true)) != WJB_DONE)
				if (ar == WJB_ELEM && e.type != jbvString)
					good = false;
			if (!good)
				Problem(cx->problems, path, "must be an array of property names");
		}
		else if (schemas_too)
			CheckSchema(cx, &v, path, depth + 1);
		else
			Problem(cx->problems, path, "must be an array of property names");
		PathPop(path, saved);
	}
}

typedef enum LoopResult
{
	LOOP_NONE,					/* validating never comes back here */
	LOOP_FOUND,					/* it comes back to a schema on the way */
	LOOP_TOO_LONG				/* more than SCHEMA_MAX_APPLY on the way */
} LoopResult;

/*
 * Does this schema come back to itself through keywords that apply to the
 * same value ($ref, allOf, anyOf, oneOf, not, if/then/else, schema-valued
 * dependencies, dependentSchemas)?  Validating would then never descend into the value and
 * never finish, so such a schema is refused when defined; so is a chain of
 * more than SCHEMA_MAX_APPLY of them, which validation would refuse (and
 * which would take this check as deep).  on_path holds the schemas (their
 * containers) being followed, depth how many.
 */
static LoopResult
LoopsBack(CheckCtx *cx, JsonbValue *schema, List **on_path, int depth)
{
	static const char *const lists[] = {"allOf", "anyOf", "oneOf"};
	static const char *const single[] = {"not", "if", "then", "else"};
	static const char *const maps[] = {"dependencies", "dependentSchemas"};
	JsonbContainer *c;
	JsonbValue	buf;
	JsonbValue *v;
	LoopResult	found = LOOP_NONE;
	bool		known;
	int			i;

	if (!IsObject(schema))
		return LOOP_NONE;
	c = schema->val.binary.data;
	if (list_member_ptr(*on_path, c))
		return LOOP_FOUND;
	(void) hash_search(cx->loop_free, &c, HASH_FIND, &known);
	if (known)
		return LOOP_NONE;
	check_stack_depth();
	if (depth > SCHEMA_MAX_APPLY)
		return LOOP_TOO_LONG;
	*on_path = lappend(*on_path, c);
	if ((v = Field(c, "$ref", &buf)) != NULL)
	{
		/* the validator follows $ref alone */
		const char *why;
		JsonbValue *target = v->type == jbvString ?
			ResolveRef(cx->root, v->val.string.val, v->val.string.len, &why) : NULL;

		if (target != NULL)
			found = LoopsBack(cx, target, on_path, depth + 1);
	}
	else
	{
		for (i = 0; i < lengthof(lists) && found == LOOP_NONE; i++)
			if ((v = Field(c, lists[i], &buf)) != NULL && IsArray(v))
			{
				JsonbContainer *arr = v->val.binary.data;
				int			j;

				for (j = 0; j < JsonContainerSize(arr) && found == LOOP_NONE; j++)
					found = LoopsBack(cx, getIthJsonbValueFromContainer(arr, j), on_path, depth + 1);
			}
		for (i = 0; i < lengthof(single) && found == LOOP_NONE; i++)
			if ((v = Field(c, single[i], &buf)) != NULL)
				found = LoopsBack(cx, v, on_path, depth + 1);
		for (i = 0; i < lengthof(maps) && found == LOOP_NONE; i++)
			if ((v = Field(c, maps[i], &buf)) != NULL && IsObject(v))
			{
				JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
				JsonbIteratorToken r;
				JsonbValue	dv;

				while (found == LOOP_NONE && (r = JsonbIteratorNext(&it, &dv, true)) != WJB_DONE)
					if (r == WJB_VALUE)
						found = LoopsBack(cx, &dv, on_path, depth + 1);
			}
	}
	*on_path = list_delete_last(*on_path);
	if (found == LOOP_NONE)
		(void) hash_search(cx->loop_free, &c, HASH_ENTER, NULL);
	return found;
}

static void
CheckSchema(CheckCtx *cx, JsonbValue *schema, StringInfo path, int depth)
{
	static const char *const types[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
	JsonbIterator *it;
	JsonbIteratorToken r;
	JsonbValue	k, v, pbuf;
	bool		has_prefix;
	bool		has_ref;

	check_stack_depth();
	if (depth > SCHEMA_MAX_NESTING)
	{
		/* (the pointer is shortened: it is hundreds of bytes by now) */
		if (!cx->depth_reported)
			*cx->problems = lappend(*cx->problems,
									psprintf("%s: schemas nest more than %d levels deep here (a schema inside another, and so on)",
											 JsonPointerShort(path), SCHEMA_MAX_NESTING));
		cx->depth_reported = true;
		return;
	}
	if (schema->type == jbvBool)
		return;
	if (!IsObject(schema))
	{
		Problem(cx->problems, path, "must be a schema (an object or a boolean)");
		return;
	}
	if (!cx->loop_reported)
	{
		List	   *on_path = NIL;

		switch (LoopsBack(cx, schema, &on_path, 1))
		{
			case LOOP_FOUND:
				Problem(cx->problems, path, "applies itself to the same value again (through $ref), so validating would never end");
				cx->loop_reported = true;
				break;
			case LOOP_TOO_LONG:
				Problem(cx->problems, path, "applies more than %d schemas to the same value, one inside another (through $ref, allOf, anyOf, oneOf, not, ...), more than validating allows",
						SCHEMA_MAX_APPLY);
				cx->loop_reported = true;
				break;
			case LOOP_NONE:
				break;
		}
	}
	has_prefix = Field(schema->val.binary.data, "prefixItems", &pbuf) != NULL;
	has_ref = Field(schema->val.binary.data, "$ref", &pbuf) != NULL;
	it = JsonbIteratorInit(schema->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		int			saved;
		char	   *why;

		if (r != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		key = pnstrdup(k.val.string.val, k.val.string.len);
		saved = PathPushKey(path, k.val.string.val, k.val.string.len);
		if (strcmp(key, "type") == 0)
		{
			bool		good = v.type == jbvString || (IsArray(&v) && JsonContainerSize(v.val.binary.data) > 0);

			if (good)
			{
				JsonbIterator *tit;
				JsonbValue	t;
				JsonbIteratorToken tr;
				int			i;

				if (v.type == jbvString)
				{
					good = false;
					for (i = 0; i < lengthof(types); i++)
						if ((int) strlen(types[i]) == v.val.string.len &&
							strncmp(types[i], v.val.string.val, v.val.string.len) == 0)
							good = true;
				}
				else
				{
					tit = JsonbIteratorInit(v.val.binary.data);
					while ((tr = JsonbIteratorNext(&tit, &t, true)) != WJB_DONE)
					{
						bool		one = false;

						if (tr != WJB_ELEM)
							continue;
						for (i = 0; i < lengthof(types) && t.type == jbvString; i++)
							if ((int) strlen(types[i]) == t.val.string.len &&
								strncmp(types[i], t.val.string.val, t.val.string.len) == 0)
								one = true;
						good = good && one;
					}
				}
			}
			if (!good)
				Problem(cx->problems, path, "must be a type name (null, boolean, integer, number, string, array, object) or an array of them");
		}
		else if (strcmp(key, "properties") == 0 || strcmp(key, "definitions") == 0 ||
				 strcmp(key, "$defs") == 0)
			CheckSchemaMap(cx, &v, path, depth, false);
		else if (strcmp(key, "patternProperties") == 0)
			CheckSchemaMap(cx, &v, path, depth, true);
		else if (strcmp(key, "dependentSchemas") == 0)
			CheckSchemaMap(cx, &v, path, depth, false);
		else if (strcmp(key, "additionalItems") == 0 && has_prefix)
			Problem(cx->problems, path, "does not apply next to prefixItems: use items for the items after the listed ones");
		else if (strcmp(key, "additionalProperties") == 0 || strcmp(key, "additionalItems") == 0 ||
				 strcmp(key, "not") == 0 || strcmp(key, "if") == 0 || strcmp(key, "then") == 0 ||
				 strcmp(key, "else") == 0 || strcmp(key, "contains") == 0 ||
				 strcmp(key, "propertyNames") == 0)
			CheckSchema(cx, &v, path, depth + 1);
		else if (strcmp(key, "items") == 0)
		{
			if (IsArray(&v) && has_prefix)
				Problem(cx->problems, path, "must be a schema next to prefixItems (prefixItems lists the items by position, items is for the rest)");
			else if (IsArray(&v))
				CheckSchemaList(cx, &v, path, depth);
			else
				CheckSchema(cx, &v, path, depth + 1);
		}
		else if (strcmp(key, "prefixItems") == 0)
			CheckSchemaList(cx, &v, path, depth);
		else if (strcmp(key, "unevaluatedProperties") == 0 && has_ref)
			Problem(cx->problems, path, "is next to $ref, whose siblings are not applied (draft 4 and OpenAPI 3.0): put the $ref in allOf");
		else if (strcmp(key, "unevaluatedProperties") == 0)
			CheckSchema(cx, &v, path, depth + 1);
		else if (strcmp(key, "unevaluatedItems") == 0)
			Problem(cx->problems, path, "is not supported: ductape does not track which items other keywords evaluated (use items, or prefixItems and items, where it means the same)");
		else if (strcmp(key, "$dynamicRef") == 0 || strcmp(key, "$recursiveRef") == 0)
			Problem(cx->problems, path, "is not supported (use $ref with a local JSON pointer)");
		else if (strcmp(key, "allOf") == 0 || strcmp(key, "anyOf") == 0 || strcmp(key, "oneOf") == 0)
			CheckSchemaList(cx, &v, path, depth);
		else if (strcmp(key, "required") == 0)
		{
			JsonbIterator *rit;
			JsonbValue	e;
			JsonbIteratorToken rr;
			bool		good = IsArray(&v);

			if (good)
			{
				rit = JsonbIteratorInit(v.val.binary.data);
				while ((rr = JsonbIteratorNext(&rit, &e, true)) != WJB_DONE)
					if (rr == WJB_ELEM && e.type != jbvString)
						good = false;
			}
			if (!good)
				Problem(cx->problems, path, "must be an array of property names");
		}
		else if (strcmp(key, "minLength") == 0 || strcmp(key, "maxLength") == 0 ||
				 strcmp(key, "minItems") == 0 || strcmp(key, "maxItems") == 0 ||
				 strcmp(key, "minProperties") == 0 || strcmp(key, "maxProperties") == 0 ||
				 strcmp(key, "minContains") == 0 || strcmp(key, "maxContains") == 0)
		{
			if (!IsNonNegativeInteger(&v))
				Problem(cx->problems, path, "must be a non-negative integer");
		}
		else if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0)
		{
			if (v.type != jbvNumeric)
				Problem(cx->problems, path, "must be a number");
		}
		else if (strcmp(key, "exclusiveMinimum") == 0 || strcmp(key, "exclusiveMaximum") == 0)
		{
			if (v.type != jbvNumeric && v.type != jbvBool)
				Problem(cx->problems, path, "must be a number (or a boolean, as in draft 4)");
		}
		else if (strcmp(key, "multipleOf") == 0)
		{
			if (v.type != jbvNumeric ||
				NumCmp(v.val.numeric, Zero()) <= 0)
				Problem(cx->problems, path, "must be a number greater than 0");
		}
		else if (strcmp(key, "uniqueItems") == 0 || strcmp(key, "nullable") == 0)
		{
			if (v.type != jbvBool)
				Problem(cx->problems, path, "must be a boolean");
		}
		else if (strcmp(key, "enum") == 0)
		{
			if (!IsArray(&v))
				Problem(cx->problems, path, "must be an array");
		}
		else if (strcmp(key, "pattern") == 0)
		{
			if (v.type != jbvString)
				Problem(cx->problems, path, "must be a string");
			else if (!PatternCompiles(&v, &why))
				InvalidPattern(cx, path, why);
		}
		else if (strcmp(key, "format") == 0)
		{
			if (v.type != jbvString)
				Problem(cx->problems, path, "must be a string");
		}
		else if (strcmp(key, "dependencies") == 0 || strcmp(key, "dependentRequired") == 0)
			CheckDependencyMap(cx, &v, path, depth, strcmp(key, "dependencies") == 0);
		else if (strcmp(key, "$ref") == 0)
		{
			if (v.type != jbvString)
				Problem(cx->problems, path, "must be a string");
			else
			{
				JsonbValue *target = ResolveRef(cx->root, v.val.string.val, v.val.string.len, (const char **) &why);
				int			hops = 0;

				/* a chain of bare $refs that comes back to itself never ends */
				while (target && IsObject(target) && hops++ <= MAX_REF_HOPS)
				{
					JsonbValue	rbuf;
					JsonbValue *next = Field(target->val.binary.data, "$ref", &rbuf);

					if (next == NULL || next->type != jbvString)
						break;
					target = ResolveRef(cx->root, next->val.string.val, next->val.string.len, (const char **) &why);
				}
				/* (a chain that comes back is a loop: LoopsBack reports it) */
				if (target == NULL)
					Problem(cx->problems, path, "cannot resolve %s: %s", ValueJson(&v), why);
			}
		}
		PathPop(path, saved);
		pfree(key);
	}
}

/*
 * Problems with a schema, as "path/to/keyword: reason" strings; with
 * bad_patterns, also the patterns that do not compile (BadPattern).
 */
static List *
SchemaCheckCollect(Jsonb *schema, const char *path, List **bad_patterns)
{
	List	   *problems = NIL;
	StringInfoData p;
	JsonbValue	root;
	CheckCtx	cx;
	HASHCTL		hctl;

	initStringInfo(&p);
	appendStringInfoString(&p, path);
	JsonbRootValue(schema, &root);
	hctl.keysize = sizeof(JsonbContainer *);
	hctl.entrysize = sizeof(JsonbContainer *);
	hctl.hcxt = CurrentMemoryContext;
	cx.root = &schema->root;
	cx.problems = &problems;
	cx.bad_patterns = bad_patterns;
	cx.loop_free = hash_create("ductape schema check", 64, &hctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	cx.loop_reported = false;
	cx.depth_reported = false;
	CheckSchema(&cx, &root, &p, 1);
	hash_destroy(cx.loop_free);
	return problems;
}

/* Problems with a schema, as "path/to/keyword: reason" strings. */
List *
SchemaCheck(Jsonb *schema, const char *path)
{
	return SchemaCheckCollect(schema, path, NULL);
}

/* _schema_check(schema jsonb, path text) -> text[] of problems */
PG_FUNCTION_INFO_V1(dt_schema_check);
Datum
dt_schema_check(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	char	   *path = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_DATUM(CStringListToTextArray(SchemaCheck(schema, path)));
}

static void
PushString(JsonbParseState **st, JsonbIteratorToken token, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	(void) pushJsonbValue(st, token, &v);
}

/*
 * _schema_bad_patterns(schema jsonb) -> jsonb: the patterns of schema that
 * PostgreSQL cannot compile, as [{"path": [key, ...], "problem": text}]:
 * the path (for #-) of each "pattern", or key of "patternProperties", and
 * the problem _schema_check reports for it.  (The import leaves them out.)
 */
PG_FUNCTION_INFO_V1(dt_schema_bad_patterns);
Datum
dt_schema_bad_patterns(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	List	   *bad = NIL;
	JsonbParseState *st = NULL;
	JsonbValue *res;
	ListCell   *lc;

	(void) SchemaCheckCollect(schema, "", &bad);
	(void) pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	foreach(lc, bad)
	{
		BadPattern *b = lfirst(lc);
		const char *p = b->pointer;

		(void) pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		PushString(&st, WJB_KEY, "path");
		(void) pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
		/* the pointer's segments, unescaped (~1 is "/", ~0 is "~") */
		while (*p == '/')
		{
			StringInfoData seg;

			initStringInfo(&seg);
			for (p++; *p != '\0' && *p != '/'; p++)
			{
				if (p[0] == '~' && (p[1] == '0' || p[1] == '1'))
					appendStringInfoChar(&seg, *++p == '1' ? '/' : '~');
				else
					appendStringInfoChar(&seg, *p);
			}
			PushString(&st, WJB_ELEM, seg.data);
		}
		(void) pushJsonbValue(&st, WJB_END_ARRAY, NULL);
		PushString(&st, WJB_KEY, "problem");
		PushString(&st, WJB_VALUE, b->problem);
		(void) pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	}
	res = pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

/* _schema_validate(schema jsonb, instance jsonb) -> text[] of violations */
PG_FUNCTION_INFO_V1(dt_schema_validate);
Datum
dt_schema_validate(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	Jsonb	   *instance = PG_GETARG_JSONB_P(1);
	JsonbValue	inst;
	StringInfoData errors;
	List	   *list = NIL;
	char	   *line;

	JsonbRootValue(instance, &inst);
	initStringInfo(&errors);
	if (SchemaValidate(schema, &inst, &errors))
		PG_RETURN_DATUM(CStringListToTextArray(NIL));
	for (line = strtok(errors.data, "\n"); line; line = strtok(NULL, "\n"))
		list = lappend(list, line);
	PG_RETURN_DATUM(CStringListToTextArray(list));
}

/* _ref_target(doc jsonb, ref text) -> jsonb: what a local $ref points to, or NULL */
PG_FUNCTION_INFO_V1(dt_ref_target);
Datum
dt_ref_target(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_GETARG_JSONB_P(0);
	text	   *ref = PG_GETARG_TEXT_PP(1);
	const char *why;
	JsonbValue *target;

	if (JB_ROOT_IS_SCALAR(doc))
		PG_RETURN_NULL();
	target = ResolveRef(&doc->root, VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref), &why);
	if (target == NULL)
		PG_RETURN_NULL();
	/* "#" is the whole document (ResolveRef's root value has no length) */
	if (target->type == jbvBinary && target->val.binary.data == &doc->root)
		PG_RETURN_JSONB_P(doc);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(target));
}

/* _ref_path(ref text) -> text[]: the decoded segments of a local $ref, or NULL */
PG_FUNCTION_INFO_V1(dt_ref_path);
Datum
dt_ref_path(PG_FUNCTION_ARGS)
{
	text	   *ref = PG_GETARG_TEXT_PP(0);
	const char *why;
	List	   *segs = RefSegments(VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref), &why);
	List	   *names = NIL;
	ListCell   *lc;

	if (why != NULL)
		PG_RETURN_NULL();
	foreach(lc, segs)
		names = lappend(names, ((StringInfo) lfirst(lc))->data);
	PG_RETURN_DATUM(CStringListToTextArray(names));
}
