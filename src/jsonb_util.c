/*-------------------------------------------------------------------------
 *
 * jsonb_util.c
 *	  Small jsonb and array helpers used by every subsystem: read a field of
 *	  an object as a string, a container or an int, turn a list of C strings
 *	  into a text[], and shorten a JSON pointer for a message.
 *
 * Layer 1 (utilities): calls nothing of ductape's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "ductape.h"


JsonbValue *
JsonbGetField(Jsonb *j, const char *key)
{
	JsonbValue	k;

	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&j->root, JB_FOBJECT, &k);
}

char *
JsonbGetString(Jsonb *j, const char *key)
{
	JsonbValue *v = JsonbGetField(j, key);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A container-valued field as its own Jsonb (copied), or NULL. */
Jsonb *
JsonbGetJsonb(Jsonb *j, const char *key)
{
	JsonbValue *v = JsonbGetField(j, key);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	return JsonbValueToJsonb(v);
}

/*
 * An integer field, clamped to the int range (a stored 1e20 must not fail
 * whoever reads it with 22003), or dflt when absent or not a number.
 */
int
JsonbGetInt(Jsonb *j, const char *key, int dflt)
{
	JsonbValue *v = JsonbGetField(j, key);
	Datum		n;

	if (v == NULL || v->type != jbvNumeric || numeric_is_nan(v->val.numeric))
		return dflt;
	n = NumericGetDatum(v->val.numeric);
	if (DatumGetBool(DirectFunctionCall2(numeric_gt, n, NumericGetDatum(int64_to_numeric(INT_MAX)))))
		return INT_MAX;
	if (DatumGetBool(DirectFunctionCall2(numeric_lt, n, NumericGetDatum(int64_to_numeric(INT_MIN)))))
		return INT_MIN;
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, n));
}

/*
 * A text[] of a list of C strings (problem lists returned to SQL); a NULL
 * string is a NULL element.
 */
Datum
CStringListToTextArray(List *list)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(list) + 1));
	bool	   *nulls = palloc(sizeof(bool) * (list_length(list) + 1));
	ListCell   *lc;
	int			i = 0;
	int			dims[1];
	int			lbs[1] = {1};

	foreach(lc, list)
	{
		nulls[i] = lfirst(lc) == NULL;
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum((char *) lfirst(lc));
		i++;
	}
	dims[0] = i;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1, false,
											  TYPALIGN_INT));
}

/* A JSON pointer for a message: at most about 60 bytes, "/..." when cut. */
char *
JsonPointerShort(StringInfo path)
{
	int			cut;

	if (path->len == 0)
		return "/";
	if (path->len <= 60)
		return pstrdup(path->data);
	for (cut = 56; cut > 0 && path->data[cut] != '/'; cut--)
		;
	return psprintf("%.*s/...", cut, path->data);
}

/* The whole of a jsonb as one value: a scalar, or its root container. */
void
JsonbRootValue(Jsonb *j, JsonbValue *v)
{
	if (JB_ROOT_IS_SCALAR(j))
		JsonbExtractScalar(&j->root, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &j->root;
		v->val.binary.len = VARSIZE(j) - VARHDRSZ;
	}
}
