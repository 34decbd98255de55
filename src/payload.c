/*-------------------------------------------------------------------------
 *
 * payload.c
 *	  SQL values to jsonb for event payloads.
 *
 * PostgreSQL 15 keeps its datum-to-jsonb conversion static, and calling
 * to_jsonb() through fmgr needs an expression tree to know the argument's
 * type.  The engine converts every written row, so it classifies each
 * column's type once (vn_json_type_for, cached by the caller) and then
 * pushes values straight into a JsonbParseState.  The output matches
 * to_jsonb(): numbers as numbers, booleans, timestamps in ISO 8601, json and
 * jsonb embedded, arrays as arrays, everything else as its text form.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "payload.h"

/*
 * vn_json_type_for
 *		Classify typid for JSON output; allocate the result in cxt.
 */
VnJsonType *
vn_json_type_for(Oid typid, MemoryContext cxt)
{
	VnJsonType *t = MemoryContextAllocZero(cxt, sizeof(VnJsonType));
	Oid			base = getBaseType(typid);
	Oid			element = get_element_type(base);
	Oid			outfunc;
	bool		isvarlena;

	t->typid = base;
	if (OidIsValid(element))
	{
		t->kind = VN_JSON_ARRAY;
		get_typlenbyvalalign(element, &t->elmlen, &t->elmbyval, &t->elmalign);
		t->element = vn_json_type_for(element, cxt);
		return t;
	}

	switch (base)
	{
		case BOOLOID:
			t->kind = VN_JSON_BOOL;
			break;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			t->kind = VN_JSON_INTEGER;
			break;
		case FLOAT4OID:
		case FLOAT8OID:
			t->kind = VN_JSON_FLOAT;
			break;
		case NUMERICOID:
			t->kind = VN_JSON_NUMERIC;
			break;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case TIMEOID:
		case TIMETZOID:
			t->kind = VN_JSON_DATETIME;
			break;
		case JSONBOID:
			t->kind = VN_JSON_JSONB;
			break;
		case JSONOID:
			t->kind = VN_JSON_JSON;
			break;
		default:
			t->kind = VN_JSON_TEXT;
			break;
	}
	getTypeOutputInfo(base, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &t->output, cxt);
	return t;
}

static void
push_string(JsonbParseState **state, JsonbIteratorToken token, const char *s)
{
	JsonbValue v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	pushJsonbValue(state, token, &v);
}

void
vn_json_push_key(JsonbParseState **state, const char *key)
{
	push_string(state, WJB_KEY, key);
}

static void
push_numeric(JsonbParseState **state, JsonbIteratorToken token, Numeric n)
{
	JsonbValue v;

	/* jsonb has no NaN or infinity: to_jsonb() writes them as strings */
	if (numeric_is_nan(n) || numeric_is_inf(n))
	{
		push_string(state, token,
					DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n))));
		return;
	}
	v.type = jbvNumeric;
	v.val.numeric = n;
	pushJsonbValue(state, token, &v);
}

/*
 * vn_json_push_datum
 *		Push one value as token (WJB_VALUE inside an object, WJB_ELEM inside an
 *		array).  Allocates in the current memory context.
 */
void
vn_json_push_datum(JsonbParseState **state, JsonbIteratorToken token,
				   Datum value, bool isnull, const VnJsonType *type)
{
	JsonbValue v;

	if (isnull)
	{
		v.type = jbvNull;
		pushJsonbValue(state, token, &v);
		return;
	}

	switch (type->kind)
	{
		case VN_JSON_BOOL:
			v.type = jbvBool;
			v.val.boolean = DatumGetBool(value);
			pushJsonbValue(state, token, &v);
			break;
		case VN_JSON_INTEGER:
			{
				int64 i;

				if (type->typid == INT2OID)
					i = DatumGetInt16(value);
				else if (type->typid == INT4OID)
					i = DatumGetInt32(value);
				else
					i = DatumGetInt64(value);
				push_numeric(state, token, int64_to_numeric(i));
				break;
			}
		case VN_JSON_FLOAT:
			{
				char *text = OutputFunctionCall((FmgrInfo *) &type->output, value);

				if (strcmp(text, "NaN") == 0 || strcmp(text, "Infinity") == 0 ||
					strcmp(text, "-Infinity") == 0)
					push_string(state, token, text);
				else
					push_numeric(state, token,
								 DatumGetNumeric(DirectFunctionCall3(numeric_in,
																	 CStringGetDatum(text),
																	 ObjectIdGetDatum(InvalidOid),
																	 Int32GetDatum(-1))));
				break;
			}
		case VN_JSON_NUMERIC:
			push_numeric(state, token, DatumGetNumeric(value));
			break;
		case VN_JSON_DATETIME:
			/* palloc'd: the parse state keeps the pointer until it is serialized */
			push_string(state, token, JsonEncodeDateTime(NULL, value, type->typid, NULL));
			break;
		case VN_JSON_JSONB:
		case VN_JSON_JSON:
			{
				Jsonb *jb;

				if (type->kind == VN_JSON_JSONB)
					jb = DatumGetJsonbP(value);
				else
					jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															CStringGetDatum(TextDatumGetCString(value))));
				if (JB_ROOT_IS_SCALAR(jb))
				{
					JsonbValue scalar;

					JsonbExtractScalar(&jb->root, &scalar);
					pushJsonbValue(state, token, &scalar);
				}
				else
				{
					/* a binary container is unpacked by pushJsonbValue */
					v.type = jbvBinary;
					v.val.binary.data = &jb->root;
					v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
					pushJsonbValue(state, token, &v);
				}
				break;
			}
		case VN_JSON_ARRAY:
			{
				ArrayType *array = DatumGetArrayTypeP(value);
				Datum	  *elems;
				bool	  *nulls;
				int		   n;

				deconstruct_array(array, ARR_ELEMTYPE(array), type->elmlen,
								  type->elmbyval, type->elmalign, &elems, &nulls, &n);
				pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
				for (int i = 0; i < n; i++)
					vn_json_push_datum(state, WJB_ELEM, elems[i], nulls[i], type->element);
				pushJsonbValue(state, WJB_END_ARRAY, NULL);
				break;
			}
		case VN_JSON_TEXT:
			push_string(state, token, OutputFunctionCall((FmgrInfo *) &type->output, value));
			break;
	}
}
