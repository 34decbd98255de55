/*
 * filter.c
 *	  Filters of PostgREST's dialect to SQL: columns and JSON paths
 *	  (operands), one condition "op.value", logic trees (or=, and=, not.),
 *	  and the WHERE clause of a request's query arguments.  Every value is a
 *	  bound parameter; a column is quoted only once found in the schema cache.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

const VnColumn *
vn_query_need_column(Ctx *c, const VnRelation *r, const char *name)
{
	const VnColumn *col = vn_schema_column(r, name);

	/* a computed field reads as a column: _t."f" is f(_t) to PostgreSQL */
	if (col == NULL)
		col = vn_schema_field(r, name);
	if (col == NULL)
	{
		char hint[256];

		snprintf(hint, sizeof(hint), "Columns of %s are listed at GET /.", r->name);
		vn_query_fail(c->q, 400, "42703", NULL, hint, "column %s.%.64s does not exist", r->name, name);
	}
	return col;
}

void
vn_query_col_ref(VnBuf *b, const char *alias, const char *name)
{
	vn_buf_add(b, alias);
	vn_buf_addc(b, '.');
	vn_buf_ident(b, name);
}

/* ---- filters ------------------------------------------------------------- */

/* builds {a,b,"c d"} from (a,b,"c d") */
static bool
in_list_literal(Ctx *c, const char *value, VnBuf *lit)
{
	size_t n = strlen(value);
	char  *inner;
	char **items;
	int	   nitems;

	if (n < 2 || value[0] != '(' || value[n - 1] != ')')
		return vn_query_fail(c->q, 400, "PGRST100", NULL, "Write in.(a,b,c).", "malformed in list \"%.64s\"", value);
	inner = vn_strndup(value + 1, n - 2);
	if (!vn_query_split(inner, &items, &nitems))
	{
		free(inner);
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed in list \"%.64s\"", value);
	}
	vn_buf_addc(lit, '{');
	for (int i = 0; i < nitems && inner[0]; i++)
	{
		char *v = vn_query_unquote(vn_query_trim(items[i]));

		if (i)
			vn_buf_addc(lit, ',');
		vn_buf_addc(lit, '"');
		for (char *p = v; *p; p++)
		{
			if (*p == '"' || *p == '\\')
				vn_buf_addc(lit, '\\');
			vn_buf_addc(lit, *p);
		}
		vn_buf_addc(lit, '"');
		free(v);
	}
	vn_buf_addc(lit, '}');
	vn_query_free_list(items, nitems);
	free(inner);
	return true;
}

typedef struct OpDef
{
	const char *name;
	const char *sql;
	bool		text_only; /* compare the column as text */
} OpDef;

static const OpDef ops[] = {
	{"eq", "=", false}, {"neq", "<>", false}, {"gt", ">", false}, {"gte", ">=", false}, {"lt", "<", false}, {"lte", "<=", false}, {"like", "LIKE", true}, {"ilike", "ILIKE", true}, {"match", "~", true}, {"imatch", "~*", true}, {"cs", "@>", false}, {"cd", "<@", false}, {"ov", "&&", false}, {"sl", "<<", false}, {"sr", ">>", false}, {"nxr", "&<", false}, {"nxl", "&>", false}, {"adj", "-|-", false}, {"isdistinct", "IS DISTINCT FROM", false}, {NULL, NULL, false}};

bool
vn_query_operand(Ctx *c, const VnRelation *r, const char *al, const char *spec, Operand *o, bool emit)
{
	const char *arrow = strstr(spec, "->");
	char	   *name;
	const char *p;
	bool		text = false;
	VnBuf	   *b = &c->q->sql;

	memset(o, 0, sizeof(*o));
	name = arrow ? vn_strndup(spec, arrow - spec) : vn_strdup(spec);
	{
		/* "Key Part": a double-quoted column name, as PostgREST's clients write one */
		char *unquoted = vn_query_unquote(name);

		o->col = vn_query_need_column(c, r, unquoted);
		free(unquoted);
	}
	free(name);
	if (o->col == NULL)
		return false;
	o->type = o->col->type;
	o->category = o->col->category;
	o->is_tsvector = o->col->is_tsvector;
	snprintf(o->label, sizeof(o->label), "%s", o->col->name);
	if (arrow == NULL)
	{
		if (emit)
			vn_query_col_ref(b, al, o->col->name);
		return true;
	}
	if (strcmp(o->col->type, "json") != 0 && strcmp(o->col->type, "jsonb") != 0)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "JSON paths need a json or jsonb column, and %s is %s",
							 o->col->name, o->col->type);
	if (emit)
	{
		vn_buf_addc(b, '(');
		vn_query_col_ref(b, al, o->col->name);
	}
	for (p = arrow; *p;)
	{
		const char *key;
		const char *end;
		char	   *k;
		bool		digits = true;

		if (text)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "->> ends a JSON path");
		if (strncmp(p, "->>", 3) == 0)
		{
			text = true;
			p += 3;
		}
		else if (strncmp(p, "->", 2) == 0)
			p += 2;
		else
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed JSON path \"%.64s\"", spec);
		key = p;
		end = strstr(p, "->");
		if (end == NULL)
			end = p + strlen(p);
		if (end == key || end - key > 63)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed JSON path \"%.64s\"", spec);
		k = vn_strndup(key, end - key);
		for (const char *d = k; *d; d++)
			if (!isdigit((unsigned char) *d))
				digits = false;
		snprintf(o->label, sizeof(o->label), "%s", k);
		if (emit)
		{
			vn_buf_add(b, text ? " ->> " : " -> ");
			if (!vn_query_param_s(c->q, k))
			{
				free(k);
				return false;
			}
			vn_buf_add(b, digits ? "::integer" : "::text");
		}
		free(k);
		p = end;
	}
	if (emit)
		vn_buf_add(b, text ? ")" : ")::jsonb");
	o->type = text ? "text" : "jsonb";
	o->category = text ? 'S' : 'U';
	o->is_tsvector = false;
	return true;
}

/* full-text search: fts, plfts, phfts, wfts, with an optional (config) */
static bool
cond_fts(Ctx *c, const VnRelation *r, const char *al, const char *colname, char *op, const char *value)
{
	VnBuf	   *b = &c->q->sql;
	Operand		o;
	const char *fn;
	char	   *lang = NULL;
	char	   *paren = strchr(op, '(');
	bool		ok;

	if (!vn_query_operand(c, r, al, colname, &o, false))
		return false;
	if (paren)
	{
		size_t ln = strlen(paren);

		if (ln < 3 || paren[ln - 1] != ')')
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed text search configuration in \"%s\"", op);
		*paren = '\0';
	}
	if (strcmp(op, "fts") == 0)
		fn = "to_tsquery";
	else if (strcmp(op, "plfts") == 0)
		fn = "plainto_tsquery";
	else if (strcmp(op, "phfts") == 0)
		fn = "phraseto_tsquery";
	else if (strcmp(op, "wfts") == 0)
		fn = "websearch_to_tsquery";
	else
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "unknown operator \"%.32s\"", op);
	if (paren)
		lang = vn_strndup(paren + 1, strlen(paren + 1) - 1);
	/* ok rather than early returns, so that lang is freed on every way out */
	if (o.is_tsvector)
		ok = vn_query_operand(c, r, al, colname, &o, true);
	else
	{
		vn_buf_add(b, "pg_catalog.to_tsvector(");
		ok = lang == NULL || vn_query_param_s(c->q, lang);
		vn_buf_add(b, lang ? "::pg_catalog.regconfig, " : "");
		ok = ok && vn_query_operand(c, r, al, colname, &o, true);
		vn_buf_add(b, "::text)");
	}
	vn_buf_addf(b, " @@ pg_catalog.%s(", fn);
	if (lang && ok)
	{
		ok = vn_query_param_s(c->q, lang);
		vn_buf_add(b, "::pg_catalog.regconfig, ");
	}
	free(lang);
	if (!ok || !vn_query_param_s(c->q, value))
		return false;
	vn_buf_addc(b, ')');
	return true;
}

/* is.null, is.not_null, is.true, is.false, is.unknown */
static bool
cond_is(Ctx *c, const VnRelation *r, const char *al, const char *colname, const char *value)
{
	static const char *const kws[][2] = {{"null", "IS NULL"}, {"not_null", "IS NOT NULL"}, {"true", "IS TRUE"}, {"false", "IS FALSE"}, {"unknown", "IS UNKNOWN"}, {NULL, NULL}};
	Operand					 o;

	/* case-insensitive, as PostgREST: is.NULL, is.True */
	for (int i = 0; kws[i][0]; i++)
		if (strcasecmp(value, kws[i][0]) == 0)
		{
			if (!vn_query_operand(c, r, al, colname, &o, true))
				return false;
			vn_buf_addc(&c->q->sql, ' ');
			vn_buf_add(&c->q->sql, kws[i][1]);
			return true;
		}
	return vn_query_fail(c->q, 400, "PGRST100", NULL, "Use is.null, is.not_null, is.true, is.false or is.unknown.",
						 "unknown value for is: \"%.32s\"", value);
}

/* in.(a,b,"c d"): = ANY of one bound array */
static bool
cond_in(Ctx *c, const VnRelation *r, const char *al, const char *colname, const char *value)
{
	VnBuf  *b = &c->q->sql;
	VnBuf	lit;
	Operand o;
	bool	ok;

	vn_buf_init(&lit);
	ok = in_list_literal(c, value, &lit) && vn_query_operand(c, r, al, colname, &o, true);
	if (ok)
	{
		vn_buf_add(b, " = ANY (");
		ok = vn_query_param(c->q, lit.data, lit.len);
		if (o.category != 'A')
			vn_buf_addf(b, "::%s[]", o.type);
		vn_buf_addc(b, ')');
	}
	vn_buf_free(&lit);
	return ok;
}

/* a value bound as a parameter; like and ilike take * for % */
static bool
bind_value(Ctx *c, const char *op, const char *value)
{
	char *v = vn_strdup(value);
	bool  ok;

	if (strcmp(op, "like") == 0 || strcmp(op, "ilike") == 0)
		for (char *p = v; *p; p++)
			if (*p == '*')
				*p = '%';
	ok = vn_query_param_s(c->q, v);
	free(v);
	return ok;
}

/* the operators of ops[], with an optional (any)/(all) quantifier */
static bool
cond_op(Ctx *c, const VnRelation *r, const char *al, const char *colname, char *op, const char *value)
{
	VnBuf		*b = &c->q->sql;
	Operand		 o;
	const OpDef *d = NULL;
	const char	*quantifier = NULL; /* eq(any).{a,b}, like(all).{a*,b*} */
	char		*paren = strchr(op, '(');

	if (paren && (strcmp(paren, "(any)") == 0 || strcmp(paren, "(all)") == 0))
	{
		quantifier = paren[1] == 'a' && paren[2] == 'n' ? "ANY" : "ALL";
		*paren = '\0';
		if (strcmp(op, "eq") && strcmp(op, "neq") && strcmp(op, "gt") && strcmp(op, "gte") && strcmp(op, "lt") &&
			strcmp(op, "lte") && strcmp(op, "like") && strcmp(op, "ilike") && strcmp(op, "match") &&
			strcmp(op, "imatch"))
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "operator %.32s takes no (any)/(all)", op);
	}
	for (int i = 0; ops[i].name; i++)
		if (strcmp(ops[i].name, op) == 0)
			d = &ops[i];
	if (d == NULL)
		return vn_query_fail(c->q, 400, "PGRST100", NULL,
							 "Operators: eq neq gt gte lt lte like ilike match imatch in is isdistinct cs cd ov sl sr nxr nxl adj fts plfts phfts wfts, each optionally after not.",
							 "unknown operator \"%.32s\"", op);
	if (!vn_query_operand(c, r, al, colname, &o, true))
		return false;
	if (d->text_only)
		vn_buf_add(b, "::text");
	vn_buf_addf(b, " %s ", d->sql);
	if (quantifier)
	{
		/* the value is an array literal {a,b}, bound whole */
		vn_buf_addf(b, "%s (", quantifier);
		if (!bind_value(c, op, value))
			return false;
		vn_buf_addf(b, "::%s[])", d->text_only ? "text" : o.type);
		return true;
	}
	if (!bind_value(c, op, value))
		return false;
	if (!d->text_only && strcmp(d->sql, "@>") != 0 && strcmp(d->sql, "<@") != 0 && strcmp(d->sql, "&&") != 0)
		vn_buf_addf(b, "::%s", o.type);
	return true;
}

/*
 * One condition "op.value" or "not.op.value" on column col of relation r
 * (alias al), appended to the statement.
 */
bool
vn_query_condition(Ctx *c, const VnRelation *r, const char *al, const char *colname, const char *expr)
{
	VnBuf	   *b = &c->q->sql;
	Operand		o;
	bool		negate = false;
	const char *dot;
	char		op[32];
	const char *value;
	bool		ok;

	if (++c->nconds > 100)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "too many conditions in the request (at most 100)");
	if (!vn_query_operand(c, r, al, colname, &o, false))
		return false;
	if (strncmp(expr, "not.", 4) == 0)
	{
		negate = true;
		expr += 4;
	}
	dot = strchr(expr, '.');
	if (dot == NULL || dot - expr >= (long) sizeof(op))
		return vn_query_fail(c->q, 400, "PGRST100", NULL, "Filters are column=operator.value, e.g. name=eq.Ann.",
							 "malformed filter on %.64s: \"%.64s\"", colname, expr);
	memcpy(op, expr, dot - expr);
	op[dot - expr] = '\0';
	value = dot + 1;
	if (negate)
		vn_buf_add(b, "NOT (");
	if (strncmp(op, "fts", 3) == 0 || strncmp(op, "plfts", 5) == 0 || strncmp(op, "phfts", 5) == 0 ||
		strncmp(op, "wfts", 4) == 0)
		ok = cond_fts(c, r, al, colname, op, value);
	else if (strcmp(op, "is") == 0)
		ok = cond_is(c, r, al, colname, value);
	else if (strcmp(op, "in") == 0)
		ok = cond_in(c, r, al, colname, value);
	else
		ok = cond_op(c, r, al, colname, op, value);
	if (ok && negate)
		vn_buf_addc(b, ')');
	return ok;
}

static bool
logic_item(Ctx *c, const VnRelation *r, const char *al, char *item, int depth)
{
	bool  negate = false;
	char *dot;

	item = vn_query_trim(item);
	if (strncmp(item, "not.", 4) == 0 && (strncmp(item + 4, "or(", 3) == 0 || strncmp(item + 4, "and(", 4) == 0))
	{
		negate = true;
		item += 4;
	}
	if (strncmp(item, "or(", 3) == 0)
		return vn_query_logic(c, r, al, "OR", negate, item + 2, depth + 1);
	if (strncmp(item, "and(", 4) == 0)
		return vn_query_logic(c, r, al, "AND", negate, item + 3, depth + 1);
	dot = strchr(item, '.');
	if (dot == NULL)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, "Items are column.operator.value.",
							 "malformed logic item \"%.64s\"", item);
	*dot = '\0';
	{
		char *v = vn_query_unquote(dot + 1);
		bool  ok;

		/* a quoted value keeps its operator: op."a,b" -> op.a,b */
		if (strchr(dot + 1, '"'))
		{
			char *op_end = strchr(dot + 1, '.');
			VnBuf e;

			vn_buf_init(&e);
			if (op_end && strncmp(dot + 1, "not.", 4) == 0)
				op_end = strchr(op_end + 1, '.');
			if (op_end)
			{
				char *uv = vn_query_unquote(op_end + 1);

				vn_buf_addn(&e, dot + 1, op_end + 1 - (dot + 1));
				vn_buf_add(&e, uv);
				free(uv);
			}
			else
				vn_buf_add(&e, dot + 1);
			ok = vn_query_condition(c, r, al, item, e.data);
			vn_buf_free(&e);
		}
		else
			ok = vn_query_condition(c, r, al, item, dot + 1);
		free(v);
		return ok;
	}
}

/* list is "(a,b,...)"; appends (a OP b ...) */
bool
vn_query_logic(Ctx *c, const VnRelation *r, const char *al, const char *op, bool negate, const char *list, int depth)
{
	size_t n = strlen(list);
	char  *inner;
	char **items;
	int	   nitems;
	bool   ok = true;

	if (depth > VN_MAX_DEPTH)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "logic trees nest at most %d levels", VN_MAX_DEPTH);
	if (n < 2 || list[0] != '(' || list[n - 1] != ')')
		return vn_query_fail(c->q, 400, "PGRST100", NULL, "Write or=(a.eq.1,b.gt.2).", "malformed logic tree \"%.64s\"", list);
	inner = vn_strndup(list + 1, n - 2);
	if (!vn_query_split(inner, &items, &nitems) || inner[0] == '\0')
	{
		free(inner);
		vn_query_free_list(items, nitems);
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed logic tree \"%.64s\"", list);
	}
	if (negate)
		vn_buf_add(&c->q->sql, "NOT ");
	vn_buf_addc(&c->q->sql, '(');
	for (int i = 0; i < nitems && ok; i++)
	{
		if (i)
			vn_buf_addf(&c->q->sql, " %s ", op);
		vn_buf_addc(&c->q->sql, '(');
		ok = logic_item(c, r, al, items[i], depth);
		vn_buf_addc(&c->q->sql, ')');
	}
	vn_buf_addc(&c->q->sql, ')');
	vn_query_free_list(items, nitems);
	free(inner);
	return ok;
}

bool
vn_query_where(Ctx *c, const VnRelation *r, const char *al, bool writes, int *version_param)
{
	const VnArgs *a = c->in->args;
	VnBuf		 *b = &c->q->sql;

	vn_buf_add(b, "TRUE");
	for (int i = 0; i < a->n; i++)
	{
		const char *k = a->items[i].key;
		const char *v = a->items[i].value;

		if (vn_query_is_reserved(k))
			continue;
		if (c->rpc_get)
		{
			bool is_arg = false;

			for (int j = 0; j < c->rpc_get->nargs; j++)
				if (strcmp(c->rpc_get->argnames[j], k) == 0)
					is_arg = true;
			if (is_arg)
				continue;
		}
		vn_buf_add(b, " AND (");
		if (c->consumed && c->consumed[i] && strchr(k, '.') == NULL)
		{
			/* rel=is.null, rel=not.is.null: the embedding's (embed.c) */
			vn_buf_add(b, "TRUE)");
			continue;
		}
		if (strcmp(k, "or") == 0 || strcmp(k, "and") == 0)
		{
			if (!vn_query_logic(c, r, al, k[0] == 'o' ? "OR" : "AND", false, v, 1))
				return false;
		}
		else if (strcmp(k, "not.or") == 0 || strcmp(k, "not.and") == 0)
		{
			if (!vn_query_logic(c, r, al, k[4] == 'o' ? "OR" : "AND", true, v, 1))
				return false;
		}
		else if (strchr(k, '.') != NULL)
		{
			if (c->consumed && c->consumed[i])
			{
				/* taken by an embedded resource: nothing to add here */
				vn_buf_add(b, "TRUE)");
				continue;
			}
			return vn_query_fail(c->q, 400, "PGRST108", NULL, "Filters on embedded resources name a resource of select=, as projects.name=eq.x with select=*,projects(*); writes take none.",
								 "no embedded resource for %.64s", k);
		}
		else if (writes && strcmp(k, "version") == 0 && strncmp(v, "eq.", 3) == 0 && version_param)
		{
			vn_buf_add(b, "ventros.http_expect_version(");
			vn_query_col_ref(b, al, "version");
			vn_buf_add(b, ", ");
			if (!vn_query_param_s(c->q, v + 3))
				return false;
			*version_param = c->q->nparams;
			vn_buf_add(b, "::integer, ");
			vn_query_col_ref(b, al, "id");
			vn_buf_addc(b, ')');
		}
		else if (!vn_query_condition(c, r, al, k, v))
			return false;
		vn_buf_addc(b, ')');
	}
	return true;
}
