/*-------------------------------------------------------------------------
 *
 * automation_conditions.c
 *	  The automation executor's condition evaluation, in C: which of an
 *	  event's rules hold, in priority order (docs/automation.md).
 *
 * The reference is the PL/pgSQL evaluator of sql/84_automation_conditions.sql
 * (ventros.automation_conditions_hold, automation_condition_holds,
 * automation_compare, automation_field); the dry run still uses it.  Here
 * the common shapes are evaluated without a PL/pgSQL call per condition:
 * the list with its "logic": "OR" elements, all / any / not, and a field
 * compared with a value by one of the operators.  Everything else (keyword,
 * regex, tag, time windows, weekdays, sentiment, topic, an unknown operator,
 * a field that is not a string, a node that is not an object) is handed to
 * the PL/pgSQL function for that node, so the result is the same by
 * construction, errors included.  SQL's three-valued logic is kept: a
 * comparison with a missing value is NULL, and the list, all, any and not
 * treat NULL as the PL/pgSQL statements do (all: NOT EXISTS (... WHERE NOT
 * x), any: EXISTS (... WHERE x), the list: AND / OR, evaluated left to
 * right and stopping as the executor does).  test/pgtap/271 runs both on
 * the same cases.
 *
 * Every comparison of text uses the database's default collation, as the
 * PL/pgSQL functions' own expressions do, through the same built-in
 * functions (lower, textpos, text_gt ...).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(vn_automation_conditions_hold);
PG_FUNCTION_INFO_V1(vn_automation_rules_holding);

/* Three-valued: SQL's true, false and NULL. */
typedef enum VnTri
{
	VN_FALSE,
	VN_TRUE,
	VN_NULL
} VnTri;

/* The PL/pgSQL reference functions, looked up once per call site. */
typedef struct VnCondCache
{
	FmgrInfo	  list;	   /* automation_conditions_hold */
	FmgrInfo	  node;	   /* automation_condition_holds */
	FmgrInfo	  compare; /* automation_compare */
	MemoryContext mcxt;	   /* where they live */
} VnCondCache;

/* What every node of one evaluation needs. */
typedef struct VnCondEval
{
	VnCondCache *cache;
	Jsonb		*ctx;
	Datum		 tz;
	Datum		 at;
} VnCondEval;

static const char *const other_kinds[] = {
	"all", "any", "not", "keyword", "regex", "tag", "time_window", "weekdays",
	"sentiment", "sentiment_below", "topic"};

static const char *const context_roots[] = {
	"payload", "event", "contact", "message", "session", "channel", "pipeline"};

static void
lookup_reference(FmgrInfo *flinfo, const char *signature, MemoryContext mcxt)
{
	Oid fn;

	fn = DatumGetObjectId(DirectFunctionCall1(regprocedurein, CStringGetDatum(signature)));
	fmgr_info_cxt(fn, flinfo, mcxt);
}

/*
 * The cache of a call site; the reference functions are looked up only when
 * a node needs one (rare: most rules use the shapes evaluated here).
 */
static VnCondCache *
cond_cache(FunctionCallInfo fcinfo)
{
	if (fcinfo->flinfo->fn_extra == NULL)
	{
		VnCondCache *cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(VnCondCache));

		cache->mcxt = fcinfo->flinfo->fn_mcxt;
		fcinfo->flinfo->fn_extra = cache;
	}
	return (VnCondCache *) fcinfo->flinfo->fn_extra;
}

static FmgrInfo *
reference(VnCondCache *cache, FmgrInfo *flinfo, const char *signature)
{
	if (flinfo->fn_oid == InvalidOid)
		lookup_reference(flinfo, signature, cache->mcxt);
	return flinfo;
}

#define REF_LIST(cache) reference((cache), &(cache)->list, "ventros.automation_conditions_hold(jsonb,jsonb,text,timestamptz)")
#define REF_NODE(cache) reference((cache), &(cache)->node, "ventros.automation_condition_holds(jsonb,jsonb,text,timestamptz)")
#define REF_COMPARE(cache) reference((cache), &(cache)->compare, "ventros.automation_compare(jsonb,text,jsonb)")

/* Calls a (non-strict) reference function; NULL arguments are NULL pointers. */
static VnTri
call_reference(FmgrInfo *flinfo, int nargs, Datum *args, bool *nulls)
{
	LOCAL_FCINFO(fc, 4);
	Datum result;

	InitFunctionCallInfoData(*fc, flinfo, nargs, InvalidOid, NULL, NULL);
	for (int i = 0; i < nargs; i++)
	{
		fc->args[i].value = args[i];
		fc->args[i].isnull = nulls[i];
	}
	result = FunctionCallInvoke(fc);
	if (fc->isnull)
		return VN_NULL;
	return DatumGetBool(result) ? VN_TRUE : VN_FALSE;
}

static VnTri
reference_holds(VnCondEval *ev, FmgrInfo *flinfo, Jsonb *c)
{
	Datum args[4] = {PointerGetDatum(c), PointerGetDatum(ev->ctx), ev->tz, ev->at};
	bool  nulls[4] = {c == NULL, false, false, false};

	return call_reference(flinfo, 4, args, nulls);
}

static VnTri
tri_bool(bool b)
{
	return b ? VN_TRUE : VN_FALSE;
}

static VnTri
tri_not(VnTri x)
{
	return x == VN_NULL ? VN_NULL : tri_bool(x == VN_FALSE);
}

/* ---- JSON helpers ----------------------------------------------------------- */

/* The value of key in an object, as a Jsonb of its own; NULL when absent. */
static Jsonb *
object_get(Jsonb *obj, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (obj == NULL || !JB_ROOT_IS_OBJECT(obj))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &k);
	return v == NULL ? NULL : JsonbValueToJsonb(v);
}

static bool
object_has(Jsonb *obj, const char *key)
{
	JsonbValue k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &k) != NULL;
}

/* jsonb_typeof, NULL for SQL NULL. */
static const char *
json_type(Jsonb *j)
{
	JsonbValue v;

	if (j == NULL)
		return NULL;
	if (JB_ROOT_IS_SCALAR(j))
	{
		JsonbExtractScalar(&j->root, &v);
		switch (v.type)
		{
			case jbvNull:
				return "null";
			case jbvString:
				return "string";
			case jbvNumeric:
				return "number";
			case jbvBool:
				return "boolean";
			default:
				return "unknown";
		}
	}
	return JB_ROOT_IS_OBJECT(j) ? "object" : "array";
}

/* j #>> '{}': the text of a value (a string unquoted; NULL for null). */
static text *
json_text(Jsonb *j)
{
	bool  isnull = false;
	Datum d;

	if (j == NULL)
		return NULL;
	d = jsonb_get_element(j, NULL, 0, &isnull, true);
	return isnull ? NULL : DatumGetTextPP(d);
}

/* jsonb_build_array(j): [j], [null] for SQL NULL. */
static Jsonb *
json_wrap(Jsonb *j)
{
	JsonbParseState *state = NULL;
	JsonbValue		 v;
	JsonbValue		*res;

	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	if (j == NULL)
	{
		v.type = jbvNull;
		pushJsonbValue(&state, WJB_ELEM, &v);
	}
	else if (JB_ROOT_IS_SCALAR(j))
	{
		JsonbExtractScalar(&j->root, &v);
		pushJsonbValue(&state, WJB_ELEM, &v);
	}
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &j->root;
		v.val.binary.len = VARSIZE(j) - VARHDRSZ;
		pushJsonbValue(&state, WJB_ELEM, &v);
	}
	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(res);
}

/* An element's text, as jsonb_array_elements_text gives it (not null). */
static text *
element_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return cstring_to_text_with_len(v->val.string.val, v->val.string.len);
		case jbvBool:
			return cstring_to_text(v->val.boolean ? "true" : "false");
		case jbvNumeric:
			return cstring_to_text(DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric))));
		default:
			return cstring_to_text(JsonbToCString(NULL, v->val.binary.data, v->val.binary.len));
	}
}

static bool
json_contains(Jsonb *a, Jsonb *b)
{
	return DatumGetBool(DirectFunctionCall2(jsonb_contains, PointerGetDatum(a), PointerGetDatum(b)));
}

static text *
lower_text(text *t)
{
	return DatumGetTextPP(DirectFunctionCall1Coll(lower, DEFAULT_COLLATION_OID, PointerGetDatum(t)));
}

static bool
text_call(PGFunction fn, text *a, text *b)
{
	return DatumGetBool(DirectFunctionCall2Coll(fn, DEFAULT_COLLATION_OID, PointerGetDatum(a), PointerGetDatum(b)));
}

/*
 * ventros.automation_field(ctx, field): a path into the context, a bare
 * name being a payload field.  string_to_array(field, '.'): '' has no
 * element.
 */
static Jsonb *
context_field(Jsonb *ctx, const char *field)
{
	int			len = strlen(field);
	int			n = 0;
	Datum	   *path = palloc(sizeof(Datum) * (len + 2));
	const char *start = field;
	bool		rooted = false;
	bool		isnull = false;
	Datum		d;

	if (len > 0)
	{
		size_t first = strcspn(field, ".");

		for (const char *p = field;; p++)
		{
			if (*p == '.' || *p == '\0')
			{
				path[n++] = PointerGetDatum(cstring_to_text_with_len(start, p - start));
				if (*p == '\0')
					break;
				start = p + 1;
			}
		}
		for (int i = 0; i < (int) lengthof(context_roots); i++)
			if (strncmp(field, context_roots[i], first) == 0 && context_roots[i][first] == '\0')
				rooted = true;
	}
	if (!rooted)
	{
		memmove(path + 1, path, sizeof(Datum) * n);
		path[0] = PointerGetDatum(cstring_to_text("payload"));
		n++;
	}
	d = jsonb_get_element(ctx, path, n, &isnull, false);
	return isnull ? NULL : DatumGetJsonbP(d);
}

/* ---- ventros.automation_compare ----------------------------------------------- */

/* The comparison of two present values; false when the operator is unknown. */
static bool
compare_known(Jsonb *actual, const char *op, Jsonb *expected, VnTri *result)
{
	const char *ta = json_type(actual);
	const char *te = json_type(expected);
	text	   *a;
	text	   *e;

	/* two numbers compared: no text needed */
	if ((op[0] != 'g' && op[0] != 'l') || strcmp(ta, "number") != 0 || te == NULL || strcmp(te, "number") != 0)
	{
		a = json_text(actual);
		e = json_text(expected);
	}
	else
		a = e = NULL;

	if (strcmp(op, "eq") == 0)
	{
		VnTri same = expected == NULL ? VN_NULL : tri_bool(DatumGetBool(DirectFunctionCall2(jsonb_eq, PointerGetDatum(actual), PointerGetDatum(expected))));
		VnTri same_text = e == NULL ? VN_NULL : tri_bool(text_call(texteq, a, e));

		*result = (same == VN_TRUE || same_text == VN_TRUE) ? VN_TRUE : (same == VN_NULL || same_text == VN_NULL) ? VN_NULL :
																													VN_FALSE;
	}
	else if (strcmp(op, "gt") == 0 || strcmp(op, "lt") == 0 || strcmp(op, "gte") == 0 || strcmp(op, "lte") == 0)
	{
		int cmp;

		if (te == NULL || strcmp(te, "null") == 0)
		{
			*result = VN_NULL;
			return true;
		}
		if (strcmp(ta, "number") == 0 && strcmp(te, "number") == 0)
		{
			JsonbValue va,
				ve;

			JsonbExtractScalar(&actual->root, &va);
			JsonbExtractScalar(&expected->root, &ve);
			cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(va.val.numeric),
													NumericGetDatum(ve.val.numeric)));
		}
		else
			cmp = DatumGetInt32(DirectFunctionCall2Coll(bttextcmp, DEFAULT_COLLATION_OID, PointerGetDatum(a),
														PointerGetDatum(e)));
		*result = tri_bool(op[0] == 'g' ? (op[2] == 'e' ? cmp >= 0 : cmp > 0) : (op[2] == 'e' ? cmp <= 0 : cmp < 0));
	}
	else if (strcmp(op, "contains") == 0)
	{
		if (strcmp(ta, "array") == 0)
			*result = tri_bool(json_contains(actual, (te != NULL && strcmp(te, "array") == 0) ? expected : json_wrap(expected)));
		else if (e == NULL)
			*result = VN_NULL;
		else
			*result = tri_bool(DatumGetInt32(DirectFunctionCall2Coll(textpos, DEFAULT_COLLATION_OID,
																	 PointerGetDatum(lower_text(a)),
																	 PointerGetDatum(lower_text(e)))) > 0);
	}
	else if (strcmp(op, "starts_with") == 0)
		*result = e == NULL ? VN_NULL : tri_bool(text_call(text_starts_with, lower_text(a), lower_text(e)));
	else if (strcmp(op, "ends_with") == 0)
	{
		if (e == NULL)
			*result = VN_NULL;
		else
		{
			Datum tail = DirectFunctionCall2(text_right, PointerGetDatum(lower_text(a)),
											 DirectFunctionCall1(textlen, PointerGetDatum(e)));

			*result = tri_bool(text_call(texteq, DatumGetTextPP(tail), lower_text(e)));
		}
	}
	else if (strcmp(op, "in") == 0)
	{
		if (te == NULL)
			*result = VN_NULL;
		else if (strcmp(te, "array") != 0)
			*result = VN_FALSE;
		else if (json_contains(expected, json_wrap(actual)))
			*result = VN_TRUE;
		else
		{
			/* EXISTS (SELECT 1 FROM jsonb_array_elements_text(expected) x WHERE x = a) */
			JsonbIterator	  *it = JsonbIteratorInit(&expected->root);
			JsonbValue		   v;
			JsonbIteratorToken tok;
			bool			   found = false;

			while (!found && (tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
			{
				if (tok == WJB_ELEM && v.type != jbvNull)
					found = text_call(texteq, element_text(&v), a);
			}
			*result = tri_bool(found);
		}
	}
	else if (strcmp(op, "matches") == 0)
		*result = e == NULL ? VN_NULL : tri_bool(text_call(texticregexeq, a, e));
	else
		return false;
	return true;
}

/*
 * ventros.automation_compare(actual, op, expected): a missing value (SQL or
 * JSON null) answers is_null, is_not_null and the negations; an unknown
 * operator goes to the reference (its error).
 */
static VnTri
compare(VnCondEval *ev, Jsonb *actual, text *op_text, Jsonb *expected)
{
	char *op = op_text == NULL ? NULL : text_to_cstring(op_text);
	bool  missing = actual == NULL || strcmp(json_type(actual), "null") == 0;
	VnTri result;

	if (op != NULL)
	{
		if (strcmp(op, "is_null") == 0)
			return tri_bool(missing);
		if (strcmp(op, "is_not_null") == 0)
			return tri_bool(!missing);
		if (strcmp(op, "ne") == 0 || strcmp(op, "not_in") == 0 || strcmp(op, "not_contains") == 0)
		{
			if (missing)
				return VN_TRUE;
			if (compare_known(actual, op[0] == 'n' && op[1] == 'e' ? "eq" : op + 4, expected, &result))
				return tri_not(result);
		}
		else if (missing)
			return VN_FALSE;
		else if (compare_known(actual, op, expected, &result))
			return result;
	}
	{
		Datum args[3] = {PointerGetDatum(actual), PointerGetDatum(op_text), PointerGetDatum(expected)};
		bool  nulls[3] = {actual == NULL, op_text == NULL, expected == NULL};

		return call_reference(REF_COMPARE(ev->cache), 3, args, nulls);
	}
}

/* ---- ventros.automation_condition_holds ------------------------------------- */

static VnTri node_holds(VnCondEval *ev, Jsonb *c);

/* all: NOT EXISTS (... WHERE NOT x); any: EXISTS (... WHERE x). */
static VnTri
group_holds(VnCondEval *ev, Jsonb *c, Jsonb *list, bool all)
{
	int n;

	if (list == NULL || !JB_ROOT_IS_ARRAY(list) || JB_ROOT_IS_SCALAR(list))
		return reference_holds(ev, REF_NODE(ev->cache), c);
	n = JB_ROOT_COUNT(list);
	for (int i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(&list->root, i);
		VnTri		x = node_holds(ev, JsonbValueToJsonb(v));

		if (all && x == VN_FALSE)
			return VN_FALSE;
		if (!all && x == VN_TRUE)
			return VN_TRUE;
	}
	return tri_bool(all);
}

static VnTri
node_holds(VnCondEval *ev, Jsonb *c)
{
	bool   other = false;
	Jsonb *field;

	if (c == NULL || !JB_ROOT_IS_OBJECT(c))
		return reference_holds(ev, REF_NODE(ev->cache), c);
	for (int i = 0; i < (int) lengthof(other_kinds); i++)
		other = other || object_has(c, other_kinds[i]);
	if (!other)
	{
		field = object_get(c, "field");
		if (field != NULL && strcmp(json_type(field), "string") == 0)
			return compare(ev, context_field(ev->ctx, text_to_cstring(json_text(field))),
						   json_text(object_get(c, "operator")), object_get(c, "value"));
		return reference_holds(ev, REF_NODE(ev->cache), c);
	}
	if (object_has(c, "all"))
		return group_holds(ev, c, object_get(c, "all"), true);
	if (object_has(c, "any"))
		return group_holds(ev, c, object_get(c, "any"), false);
	if (object_has(c, "not"))
		return tri_not(node_holds(ev, object_get(c, "not")));
	return reference_holds(ev, REF_NODE(ev->cache), c);
}

/* ---- ventros.automation_conditions_hold ------------------------------------- */

/* Whether an element is or-ed: upper(coalesce(c->>'logic', 'AND')) = 'OR'. */
static bool
is_or(Jsonb *c)
{
	Jsonb *logic;
	text  *t;

	if (!JB_ROOT_IS_OBJECT(c) || JB_ROOT_IS_SCALAR(c))
		return false;
	logic = object_get(c, "logic");
	t = json_text(logic);
	if (t == NULL)
		return false;
	t = DatumGetTextPP(DirectFunctionCall1Coll(upper, DEFAULT_COLLATION_OID, PointerGetDatum(t)));
	return text_call(texteq, t, cstring_to_text("OR"));
}

/*
 * The list: the first element, then each AND-ed or OR-ed with the result so
 * far, left to right, an element not evaluated when the result is decided
 * (the PL/pgSQL boolean expression stops there too).
 */
static VnTri
list_holds(VnCondEval *ev, Jsonb *conditions)
{
	VnTri result = VN_TRUE;
	int	  n;

	if (conditions == NULL)
		return VN_TRUE;
	if (!JB_ROOT_IS_ARRAY(conditions) || JB_ROOT_IS_SCALAR(conditions))
		return reference_holds(ev, REF_LIST(ev->cache), conditions);
	n = JB_ROOT_COUNT(conditions);
	for (int i = 0; i < n; i++)
	{
		Jsonb *c = JsonbValueToJsonb(getIthJsonbValueFromContainer(&conditions->root, i));
		VnTri  x;

		if (i == 0)
			result = node_holds(ev, c);
		else if (is_or(c))
		{
			if (result != VN_TRUE)
			{
				x = node_holds(ev, c);
				result = x == VN_TRUE ? VN_TRUE : (result == VN_NULL || x == VN_NULL) ? VN_NULL :
																						VN_FALSE;
			}
		}
		else if (result != VN_FALSE)
		{
			x = node_holds(ev, c);
			result = x == VN_FALSE ? VN_FALSE : (result == VN_NULL || x == VN_NULL) ? VN_NULL :
																					  VN_TRUE;
		}
	}
	return result;
}

/*
 * ventros.automation_conditions_hold_c(conditions, ctx, tz, at): the same
 * answer as ventros.automation_conditions_hold.  A NULL context, zone or
 * instant goes to the reference as a whole.
 */
Datum
vn_automation_conditions_hold(PG_FUNCTION_ARGS)
{
	VnCondEval ev;
	VnTri	   result;

	ev.cache = cond_cache(fcinfo);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
	{
		Datum args[4];
		bool  nulls[4];

		for (int i = 0; i < 4; i++)
		{
			args[i] = PG_GETARG_DATUM(i);
			nulls[i] = PG_ARGISNULL(i);
		}
		result = call_reference(REF_LIST(ev.cache), 4, args, nulls);
	}
	else
	{
		ev.ctx = PG_GETARG_JSONB_P(1);
		ev.tz = PG_GETARG_DATUM(2);
		ev.at = PG_GETARG_DATUM(3);
		result = list_holds(&ev, PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0));
	}
	if (result == VN_NULL)
		PG_RETURN_NULL();
	PG_RETURN_BOOL(result == VN_TRUE);
}

/*
 * ventros.automation_rules_holding(rules, ctx, tz, at, OUT acting, OUT
 * skipped): an event's rules (ventros.automations rows, in priority order)
 * at depth 0, where no rule is refused for its depth or a loop: each rule's
 * conditions in turn (coalesce(..., false)); acting has the positions (from
 * 1) of the rules that hold, skipped the ids of those that do not, up to and
 * including the first rule that holds and has stop_processing (the rules
 * after it are not evaluated, as in ventros.automation_run_event).  The
 * columns are read by name.
 */
/* The attribute number of a column of a row type, by name. */
static AttrNumber
column_number(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN), errmsg("automation rules have no column \"%s\"", name)));
	return InvalidAttrNumber;
}

Datum
vn_automation_rules_holding(PG_FUNCTION_ARGS)
{
	ArrayType *rules = PG_GETARG_ARRAYTYPE_P(0);
	VnCondEval ev;
	TupleDesc  desc;
	TupleDesc  rule_desc;
	AttrNumber conditions_att;
	AttrNumber id_att;
	AttrNumber stop_att;
	Datum	  *elems;
	bool	  *elem_nulls;
	int		   n;
	int16	   typlen;
	bool	   typbyval;
	char	   typalign;
	Datum	  *acting;
	Datum	  *skipped;
	int		   nacting = 0;
	int		   nskipped = 0;
	Datum	   values[2];
	bool	   nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("function returning record called in context that cannot accept type record")));
	ev.cache = cond_cache(fcinfo);
	ev.ctx = PG_GETARG_JSONB_P(1);
	ev.tz = PG_GETARG_DATUM(2);
	ev.at = PG_GETARG_DATUM(3);
	/* the columns by name, once (not GetAttributeByName per rule) */
	rule_desc = lookup_rowtype_tupdesc(ARR_ELEMTYPE(rules), -1);
	conditions_att = column_number(rule_desc, "conditions");
	id_att = column_number(rule_desc, "id");
	stop_att = column_number(rule_desc, "stop_processing");
	get_typlenbyvalalign(ARR_ELEMTYPE(rules), &typlen, &typbyval, &typalign);
	deconstruct_array(rules, ARR_ELEMTYPE(rules), typlen, typbyval, typalign, &elems, &elem_nulls, &n);
	acting = palloc(sizeof(Datum) * (n + 1));
	skipped = palloc(sizeof(Datum) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		HeapTupleData rule;
		bool		  isnull;
		Datum		  d;
		Jsonb		 *conditions;

		if (elem_nulls[i])
			continue;
		rule.t_data = DatumGetHeapTupleHeader(elems[i]);
		rule.t_len = HeapTupleHeaderGetDatumLength(rule.t_data);
		ItemPointerSetInvalid(&rule.t_self);
		rule.t_tableOid = InvalidOid;
		d = heap_getattr(&rule, conditions_att, rule_desc, &isnull);
		conditions = isnull ? NULL : DatumGetJsonbP(d);
		if (list_holds(&ev, conditions) != VN_TRUE)
		{
			skipped[nskipped++] = heap_getattr(&rule, id_att, rule_desc, &isnull);
			continue;
		}
		acting[nacting++] = Int32GetDatum(i + 1);
		d = heap_getattr(&rule, stop_att, rule_desc, &isnull);
		if (!isnull && DatumGetBool(d))
			break;
	}
	values[0] = PointerGetDatum(construct_array(acting, nacting, INT4OID, sizeof(int32), true, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(skipped, nskipped, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	ReleaseTupleDesc(rule_desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
