/*
 * query.c
 *	  PostgREST's dialect to SQL: filters, logic trees, select with renames,
 *	  casts and embedding, order, paging and writes; rpc.c builds the calls
 *	  of /rpc/ with the parts it borrows from here (query_shared.h).
 *
 * Invariants: an identifier reaches the SQL text only after it was found in
 * the schema cache (or it is an alias, which is quoted); a cast reaches it
 * only from a fixed list of type names; every value of the request goes as
 * a parameter ($n).  Any input this file does not understand is a 4xx with a
 * message naming what was wrong, never a statement sent on a guess.
 *
 * Aliases in the generated SQL: _t is the target relation, _t1 an embedded
 * one, _r the rows the answer is made of, _b the request body.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "query.h"
#include "query_shared.h"
#include "rpc.h"

typedef VnQueryCtx Ctx;

static bool
fail(VnQuery *q, int status, const char *code, const char *details, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static bool
fail(VnQuery *q, int status, const char *code, const char *details, const char *hint, const char *fmt, ...)
{
	va_list ap;

	if (q->status)
		return false; /* keep the first error */
	q->status = status;
	snprintf(q->code, sizeof(q->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(q->message, sizeof(q->message), fmt, ap);
	va_end(ap);
	q->details = details ? vn_strdup(details) : NULL;
	q->hint = hint ? vn_strdup(hint) : NULL;
	return false;
}

void
vn_query_init(VnQuery *q)
{
	memset(q, 0, sizeof(*q));
	vn_buf_init(&q->sql);
	q->shape = VN_SHAPE_ROWS;
	q->returns_body = true;
}

void
vn_query_free(VnQuery *q)
{
	vn_buf_free(&q->sql);
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->details);
	free(q->hint);
}

/* adds a parameter and its placeholder; false when there are too many */
static bool
param(VnQuery *q, const char *value, size_t len)
{
	if (q->nparams >= VN_MAX_PARAMS)
		return fail(q, 400, "PGRST100", NULL, NULL, "too many values in the request (at most %d)", VN_MAX_PARAMS);
	q->params[q->nparams++] = vn_strndup(value, len);
	vn_buf_addf(&q->sql, "$%d", q->nparams);
	return true;
}

static bool
param_s(VnQuery *q, const char *value)
{
	return param(q, value, strlen(value));
}

/* ---- small parsing helpers ------------------------------------------------ */

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ')
		s++;
	e = s + strlen(s);
	while (e > s && e[-1] == ' ')
		*--e = '\0';
	return s;
}

static void
free_list(char **items, int n)
{
	for (int i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/*
 * Splits s at top-level commas (outside parentheses and double quotes) into
 * malloc'd pieces.  False on unbalanced input, with nothing left allocated
 * (*out NULL, *n 0), so that a caller's early return leaks nothing.
 */
static bool
split_top(const char *s, char ***out, int *n)
{
	int			depth = 0;
	bool		quoted = false;
	const char *start = s;
	int			cap = 8;

	*n = 0;
	*out = vn_alloc(sizeof(char *) * cap);
	for (const char *p = s;; p++)
	{
		if (*p == '\0' || (*p == ',' && depth == 0 && !quoted))
		{
			if (*n == cap)
			{
				cap *= 2;
				*out = realloc(*out, sizeof(char *) * cap);
				if (*out == NULL)
					abort();
			}
			(*out)[(*n)++] = vn_strndup(start, p - start);
			if (*p == '\0')
				break;
			start = p + 1;
			continue;
		}
		if (*p == '\\' && quoted && p[1])
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '(')
			depth++;
		else if (!quoted && *p == ')')
		{
			if (--depth < 0)
				break;
		}
	}
	if (depth == 0 && !quoted)
		return true;
	free_list(*out, *n);
	*out = NULL;
	*n = 0;
	return false;
}

/* a value in double quotes loses them (and its backslash escapes) */
static char *
unquote(const char *s)
{
	size_t n = strlen(s);
	char  *out;
	size_t k = 0;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return vn_strdup(s);
	out = vn_alloc(n);
	for (size_t i = 1; i < n - 1; i++)
	{
		if (s[i] == '\\' && i + 1 < n - 1)
			i++;
		out[k++] = s[i];
	}
	out[k] = '\0';
	return out;
}

static const VnColumn *
need_column(Ctx *c, const VnRelation *r, const char *name)
{
	const VnColumn *col = vn_schema_column(r, name);

	if (col == NULL)
	{
		char hint[256];

		snprintf(hint, sizeof(hint), "Columns of %s are listed at GET /.", r->name);
		fail(c->q, 400, "42703", NULL, hint, "column %s.%.64s does not exist", r->name, name);
	}
	return col;
}

static void
col_ref(VnBuf *b, const char *alias, const char *name)
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
		return fail(c->q, 400, "PGRST100", NULL, "Write in.(a,b,c).", "malformed in list \"%.64s\"", value);
	inner = vn_strndup(value + 1, n - 2);
	if (!split_top(inner, &items, &nitems))
	{
		free(inner);
		return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed in list \"%.64s\"", value);
	}
	vn_buf_addc(lit, '{');
	for (int i = 0; i < nitems && inner[0]; i++)
	{
		char *v = unquote(trim(items[i]));

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
	free_list(items, nitems);
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

/*
 * An operand of a filter, select item or order term: a column, or a column
 * with a JSON path (data->a->>b; keys are bound parameters, digits index
 * arrays).  Resolves it (emit false) or appends its SQL (emit true).
 */
typedef struct Operand
{
	const VnColumn *col;
	const char	   *type; /* for casts: the column's, or text after ->>, jsonb after -> */
	char			category;
	bool			is_tsvector;
	char			label[64]; /* PostgREST's name for it: the last key, or the column */
} Operand;

static bool
operand(Ctx *c, const VnRelation *r, const char *al, const char *spec, Operand *o, bool emit)
{
	const char *arrow = strstr(spec, "->");
	char	   *name;
	const char *p;
	bool		text = false;
	VnBuf	   *b = &c->q->sql;

	memset(o, 0, sizeof(*o));
	name = arrow ? vn_strndup(spec, arrow - spec) : vn_strdup(spec);
	o->col = need_column(c, r, name);
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
			col_ref(b, al, o->col->name);
		return true;
	}
	if (strcmp(o->col->type, "json") != 0 && strcmp(o->col->type, "jsonb") != 0)
		return fail(c->q, 400, "PGRST100", NULL, NULL, "JSON paths need a json or jsonb column, and %s is %s",
					o->col->name, o->col->type);
	if (emit)
	{
		vn_buf_addc(b, '(');
		col_ref(b, al, o->col->name);
	}
	for (p = arrow; *p;)
	{
		const char *key;
		const char *end;
		char	   *k;
		bool		digits = true;

		if (text)
			return fail(c->q, 400, "PGRST100", NULL, NULL, "->> ends a JSON path");
		if (strncmp(p, "->>", 3) == 0)
		{
			text = true;
			p += 3;
		}
		else if (strncmp(p, "->", 2) == 0)
			p += 2;
		else
			return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed JSON path \"%.64s\"", spec);
		key = p;
		end = strstr(p, "->");
		if (end == NULL)
			end = p + strlen(p);
		if (end == key || end - key > 63)
			return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed JSON path \"%.64s\"", spec);
		k = vn_strndup(key, end - key);
		for (const char *d = k; *d; d++)
			if (!isdigit((unsigned char) *d))
				digits = false;
		snprintf(o->label, sizeof(o->label), "%s", k);
		if (emit)
		{
			vn_buf_add(b, text ? " ->> " : " -> ");
			if (!param_s(c->q, k))
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

/*
 * One condition "op.value" or "not.op.value" on column col of relation r
 * (alias al), appended to the statement.
 */
static bool
condition(Ctx *c, const VnRelation *r, const char *al, const char *colname, const char *expr)
{
	VnBuf		  *b = &c->q->sql;
	Operand		   o;
	const Operand *col = &o;
	bool		   negate = false;
	const char	  *dot;
	char		   op[32];
	const char	  *value;

	if (++c->nconds > 100)
		return fail(c->q, 400, "PGRST100", NULL, NULL, "too many conditions in the request (at most 100)");
	if (!operand(c, r, al, colname, &o, false))
		return false;
	if (strncmp(expr, "not.", 4) == 0)
	{
		negate = true;
		expr += 4;
	}
	dot = strchr(expr, '.');
	if (dot == NULL || dot - expr >= (long) sizeof(op))
		return fail(c->q, 400, "PGRST100", NULL, "Filters are column=operator.value, e.g. name=eq.Ann.",
					"malformed filter on %.64s: \"%.64s\"", colname, expr);
	memcpy(op, expr, dot - expr);
	op[dot - expr] = '\0';
	value = dot + 1;
	if (negate)
		vn_buf_add(b, "NOT (");

	/* full-text search: fts, plfts, phfts, wfts, with an optional (config) */
	if (strncmp(op, "fts", 3) == 0 || strncmp(op, "plfts", 5) == 0 || strncmp(op, "phfts", 5) == 0 ||
		strncmp(op, "wfts", 4) == 0)
	{
		const char *fn;
		char	   *lang = NULL;
		char	   *paren = strchr(op, '(');
		bool		ok = true;

		if (paren)
		{
			size_t ln = strlen(paren);

			if (ln < 3 || paren[ln - 1] != ')')
				return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed text search configuration in \"%s\"", op);
			lang = vn_strndup(paren + 1, ln - 2);
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
		{
			free(lang);
			return fail(c->q, 400, "PGRST100", NULL, NULL, "unknown operator \"%.32s\"", op);
		}
		/* ok rather than early returns, so that lang is freed on every way out */
		if (col->is_tsvector)
			ok = operand(c, r, al, colname, &o, true);
		else
		{
			vn_buf_add(b, "pg_catalog.to_tsvector(");
			if (lang)
			{
				ok = param_s(c->q, lang);
				vn_buf_add(b, "::pg_catalog.regconfig, ");
			}
			ok = ok && operand(c, r, al, colname, &o, true);
			vn_buf_add(b, "::text)");
		}
		vn_buf_addf(b, " @@ pg_catalog.%s(", fn);
		if (lang && ok)
		{
			ok = param_s(c->q, lang);
			vn_buf_add(b, "::pg_catalog.regconfig, ");
		}
		free(lang);
		if (!ok || !param_s(c->q, value))
			return false;
		vn_buf_addc(b, ')');
	}
	else if (strcmp(op, "is") == 0)
	{
		const char *kw;

		if (strcmp(value, "null") == 0)
			kw = "IS NULL";
		else if (strcmp(value, "not_null") == 0)
			kw = "IS NOT NULL";
		else if (strcmp(value, "true") == 0)
			kw = "IS TRUE";
		else if (strcmp(value, "false") == 0)
			kw = "IS FALSE";
		else if (strcmp(value, "unknown") == 0)
			kw = "IS UNKNOWN";
		else
			return fail(c->q, 400, "PGRST100", NULL, "Use is.null, is.not_null, is.true, is.false or is.unknown.",
						"unknown value for is: \"%.32s\"", value);
		if (!operand(c, r, al, colname, &o, true))
			return false;
		vn_buf_addc(b, ' ');
		vn_buf_add(b, kw);
	}
	else if (strcmp(op, "in") == 0)
	{
		VnBuf lit;

		vn_buf_init(&lit);
		if (!in_list_literal(c, value, &lit))
		{
			vn_buf_free(&lit);
			return false;
		}
		if (!operand(c, r, al, colname, &o, true))
			return false;
		vn_buf_add(b, " = ANY (");
		if (!param(c->q, lit.data, lit.len))
		{
			vn_buf_free(&lit);
			return false;
		}
		vn_buf_free(&lit);
		if (col->category != 'A')
			vn_buf_addf(b, "::%s[]", col->type);
		vn_buf_addc(b, ')');
	}
	else
	{
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
				return fail(c->q, 400, "PGRST100", NULL, NULL, "operator %.32s takes no (any)/(all)", op);
		}
		for (int i = 0; ops[i].name; i++)
			if (strcmp(ops[i].name, op) == 0)
				d = &ops[i];
		if (d == NULL)
			return fail(c->q, 400, "PGRST100", NULL,
						"Operators: eq neq gt gte lt lte like ilike match imatch in is isdistinct cs cd ov sl sr nxr nxl adj fts plfts phfts wfts, each optionally after not.",
						"unknown operator \"%.32s\"", op);
		if (!operand(c, r, al, colname, &o, true))
			return false;
		if (d->text_only)
			vn_buf_add(b, "::text");
		vn_buf_addf(b, " %s ", d->sql);
		if (quantifier)
		{
			/* the value is an array literal {a,b}, bound whole */
			char *v = vn_strdup(value);

			if (strcmp(op, "like") == 0 || strcmp(op, "ilike") == 0)
				for (char *p = v; *p; p++)
					if (*p == '*')
						*p = '%';
			vn_buf_addf(b, "%s (", quantifier);
			if (!param_s(c->q, v))
			{
				free(v);
				return false;
			}
			free(v);
			vn_buf_addf(b, "::%s[])", d->text_only ? "text" : col->type);
			if (negate)
				vn_buf_addc(b, ')');
			return true;
		}
		if (strcmp(op, "like") == 0 || strcmp(op, "ilike") == 0)
		{
			char *v = vn_strdup(value);

			for (char *p = v; *p; p++)
				if (*p == '*')
					*p = '%';
			if (!param_s(c->q, v))
			{
				free(v);
				return false;
			}
			free(v);
		}
		else if (!param_s(c->q, value))
			return false;
		if (!d->text_only && strcmp(d->sql, "@>") != 0 && strcmp(d->sql, "<@") != 0 && strcmp(d->sql, "&&") != 0)
			vn_buf_addf(b, "::%s", col->type);
	}
	if (negate)
		vn_buf_addc(b, ')');
	return true;
}

static bool logic(Ctx *c, const VnRelation *r, const char *al, const char *op, bool negate,
				  const char *list, int depth);

/* one item of a logic list: col.op.value, col.not.op.value, or(...), and(...), not.or(...) */
static bool
logic_item(Ctx *c, const VnRelation *r, const char *al, char *item, int depth)
{
	bool  negate = false;
	char *dot;

	item = trim(item);
	if (strncmp(item, "not.", 4) == 0 && (strncmp(item + 4, "or(", 3) == 0 || strncmp(item + 4, "and(", 4) == 0))
	{
		negate = true;
		item += 4;
	}
	if (strncmp(item, "or(", 3) == 0)
		return logic(c, r, al, "OR", negate, item + 2, depth + 1);
	if (strncmp(item, "and(", 4) == 0)
		return logic(c, r, al, "AND", negate, item + 3, depth + 1);
	dot = strchr(item, '.');
	if (dot == NULL)
		return fail(c->q, 400, "PGRST100", NULL, "Items are column.operator.value.",
					"malformed logic item \"%.64s\"", item);
	*dot = '\0';
	{
		char *v = unquote(dot + 1);
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
				char *uv = unquote(op_end + 1);

				vn_buf_addn(&e, dot + 1, op_end + 1 - (dot + 1));
				vn_buf_add(&e, uv);
				free(uv);
			}
			else
				vn_buf_add(&e, dot + 1);
			ok = condition(c, r, al, item, e.data);
			vn_buf_free(&e);
		}
		else
			ok = condition(c, r, al, item, dot + 1);
		free(v);
		return ok;
	}
}

/* list is "(a,b,...)"; appends (a OP b ...) */
static bool
logic(Ctx *c, const VnRelation *r, const char *al, const char *op, bool negate, const char *list, int depth)
{
	size_t n = strlen(list);
	char  *inner;
	char **items;
	int	   nitems;
	bool   ok = true;

	if (depth > VN_MAX_DEPTH)
		return fail(c->q, 400, "PGRST100", NULL, NULL, "logic trees nest at most %d levels", VN_MAX_DEPTH);
	if (n < 2 || list[0] != '(' || list[n - 1] != ')')
		return fail(c->q, 400, "PGRST100", NULL, "Write or=(a.eq.1,b.gt.2).", "malformed logic tree \"%.64s\"", list);
	inner = vn_strndup(list + 1, n - 2);
	if (!split_top(inner, &items, &nitems) || inner[0] == '\0')
	{
		free(inner);
		free_list(items, nitems);
		return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed logic tree \"%.64s\"", list);
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
	free_list(items, nitems);
	free(inner);
	return ok;
}

static bool
is_reserved(const char *key)
{
	static const char *reserved[] = {"select", "order", "limit", "offset", "columns", "on_conflict", NULL};

	for (int i = 0; reserved[i]; i++)
		if (strcmp(key, reserved[i]) == 0)
			return true;
	return false;
}

/*
 * The WHERE clause from the query string's filters: "TRUE AND (...) ...".
 * expect_version: for writes, a version=eq.N filter becomes a check that
 * raises VN001 on a stale version instead of silently matching nothing; its
 * parameter number is stored in *version_param.
 */
static bool
where(Ctx *c, const VnRelation *r, const char *al, bool writes, int *version_param)
{
	const VnArgs *a = c->in->args;
	VnBuf		 *b = &c->q->sql;

	vn_buf_add(b, "TRUE");
	for (int i = 0; i < a->n; i++)
	{
		const char *k = a->items[i].key;
		const char *v = a->items[i].value;

		if (is_reserved(k))
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
		if (strcmp(k, "or") == 0 || strcmp(k, "and") == 0)
		{
			if (!logic(c, r, al, k[0] == 'o' ? "OR" : "AND", false, v, 1))
				return false;
		}
		else if (strcmp(k, "not.or") == 0 || strcmp(k, "not.and") == 0)
		{
			if (!logic(c, r, al, k[4] == 'o' ? "OR" : "AND", true, v, 1))
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
			return fail(c->q, 400, "PGRST108", NULL, "Filters on embedded resources name a resource of select=, as projects.name=eq.x with select=*,projects(*); writes take none.",
						"no embedded resource for %.64s", k);
		}
		else if (writes && strcmp(k, "version") == 0 && strncmp(v, "eq.", 3) == 0 && version_param)
		{
			vn_buf_add(b, "ventros.http_expect_version(");
			col_ref(b, al, "version");
			vn_buf_add(b, ", ");
			if (!param_s(c->q, v + 3))
				return false;
			*version_param = c->q->nparams;
			vn_buf_add(b, "::integer, ");
			col_ref(b, al, "id");
			vn_buf_addc(b, ')');
		}
		else if (!condition(c, r, al, k, v))
			return false;
		vn_buf_addc(b, ')');
	}
	return true;
}

/* ---- select ---------------------------------------------------------------- */

static const char *casts[] = {
	"text", "integer", "int", "int4", "bigint", "int8", "smallint", "int2", "numeric", "real", "float4",
	"double precision", "float8", "boolean", "bool", "date", "time", "timestamp", "timestamptz",
	"timestamp with time zone", "interval", "uuid", "json", "jsonb", "varchar", "char", "text[]", NULL};

static bool select_list(Ctx *c, int rel, const char *al, const char *spec, int depth, const char *prefix);
static bool number(const char *s, long *out);
static bool order_spec(Ctx *c, const VnRelation *r, const char *al, const char *spec);
static bool logic(Ctx *c, const VnRelation *r, const char *al, const char *op, bool negate,
				  const char *list, int depth);

/*
 * Filters, order, limit and offset of an embedded resource: query arguments
 * named <path>.<column|or|and|not.or|not.and|order|limit|offset>, where path
 * is the resource's label (alias or name) below its parents'.  Appended to
 * the embedded subquery's WHERE, then ORDER BY / LIMIT.
 */
static bool embed_clauses_mode(Ctx *c, int child, const char *sub_al, const char *path, bool filters_only);

static bool
embed_clauses(Ctx *c, int child, const char *sub_al, const char *path)
{
	return embed_clauses_mode(c, child, sub_al, path, false);
}

static bool
embed_clauses_filters_only(Ctx *c, int child, const char *sub_al, const char *path)
{
	return embed_clauses_mode(c, child, sub_al, path, true);
}

static bool
embed_clauses_mode(Ctx *c, int child, const char *sub_al, const char *path, bool filters_only)
{
	const VnArgs	 *a = c->in->args;
	const VnRelation *r = &c->in->schema->rels[child];
	VnBuf			 *b = &c->q->sql;
	size_t			  n = strlen(path);
	const char		 *order = NULL,
			   *limit = NULL,
			   *offset = NULL;

	for (int i = 0; i < a->n; i++)
	{
		const char *k = a->items[i].key;
		const char *v = a->items[i].value;
		const char *rest;

		if (strncmp(k, path, n) != 0)
			continue;
		rest = k + n;
		if (strchr(rest, '.') && strcmp(rest, "not.or") != 0 && strcmp(rest, "not.and") != 0)
			continue; /* a deeper resource's */
		c->consumed[i] = true;
		if (strcmp(rest, "order") == 0)
			order = v;
		else if (strcmp(rest, "limit") == 0)
			limit = v;
		else if (strcmp(rest, "offset") == 0)
			offset = v;
		else
		{
			bool ok;

			vn_buf_add(b, " AND (");
			if (strcmp(rest, "or") == 0 || strcmp(rest, "and") == 0)
				ok = logic(c, r, sub_al, rest[0] == 'o' ? "OR" : "AND", false, v, 1);
			else if (strcmp(rest, "not.or") == 0 || strcmp(rest, "not.and") == 0)
				ok = logic(c, r, sub_al, rest[4] == 'o' ? "OR" : "AND", true, v, 1);
			else if (is_reserved(rest))
				ok = fail(c->q, 400, "PGRST100", NULL, NULL, "%.64s is not supported on embedded resources", k);
			else
				ok = condition(c, r, sub_al, rest, v);
			if (!ok)
				return false;
			vn_buf_addc(b, ')');
		}
	}
	if (filters_only)
		return true;
	if (order && !order_spec(c, r, sub_al, order))
		return false;
	if (limit || offset)
	{
		long l = -1,
			 o = 0;
		char num[32];

		if ((limit && !number(limit, &l)) || (offset && !number(offset, &o)))
			return fail(c->q, 400, "PGRST100", NULL, NULL, "limit and offset are non-negative integers");
		if (l < 0 || l > c->in->max_rows)
			l = c->in->max_rows;
		vn_buf_add(b, " LIMIT ");
		snprintf(num, sizeof(num), "%ld", l);
		if (!param_s(c->q, num))
			return false;
		vn_buf_add(b, "::bigint OFFSET ");
		snprintf(num, sizeof(num), "%ld", o);
		if (!param_s(c->q, num))
			return false;
		vn_buf_add(b, "::bigint");
	}
	return true;
}

static bool
embed(Ctx *c, int rel, const char *al, const char *alias, char *name, const char *inner, int depth,
	  const char *prefix, bool spread)
{
	const VnSchema	   *s = c->in->schema;
	char			   *hint = strchr(name, '!');
	int					child;
	const VnForeignKey *fk = NULL;
	bool				to_one = false;
	int					matches = 0;
	char				sub_al[16];
	VnBuf			   *b = &c->q->sql;

	if (depth >= 3)
		return fail(c->q, 400, "PGRST100", NULL, NULL, "embedding nests at most three levels deep");
	/*
	 * Each embedding is a subquery: a request with a thousand of them is a
	 * statement the planner and executor take a long time over, for rows
	 * no client reads that way.
	 */
	if (++c->nembeds > c->in->max_embeds)
		return fail(c->q, 400, "54000", NULL, "Split the request, or embed through a view.",
					"a request embeds at most %d resources", c->in->max_embeds);
	bool inner_join = false;

	if (hint)
	{
		char *bang;

		*hint++ = '\0';
		/* rel!inner, rel!left, rel!fk, rel!fk!inner */
		if ((bang = strchr(hint, '!')) != NULL)
		{
			*bang++ = '\0';
			if (strcmp(bang, "inner") == 0)
				inner_join = true;
			else if (strcmp(bang, "left") != 0)
				return fail(c->q, 400, "PGRST100", NULL, NULL, "unknown embedding hint \"%.32s\"", bang);
		}
		if (strcmp(hint, "inner") == 0)
		{
			inner_join = true;
			hint = NULL;
		}
		else if (strcmp(hint, "left") == 0)
			hint = NULL;
	}
	if (inner_join && depth > 0)
		return fail(c->q, 400, "PGRST100", NULL, NULL, "!inner is supported on the first level only");
	child = vn_schema_relation_index(s, name);
	if (child < 0)
		return fail(c->q, 400, "PGRST200", NULL, NULL, "could not find a relationship between %s and %.64s",
					s->rels[rel].name, name);
	for (int i = 0; i < s->nfks; i++)
	{
		const VnForeignKey *k = &s->fks[i];
		bool				one;

		if (k->from == rel && k->to == child)
			one = true;
		else if (k->from == child && k->to == rel)
			one = false;
		else
			continue;
		if (hint && strcmp(hint, k->name) != 0)
		{
			/* the hint may name the referencing column instead of the key */
			bool named = false;

			for (int j = 0; j < k->ncols; j++)
				if (strcmp(k->from_cols[j], hint) == 0 && strcmp(k->from_cols[j], "tenant_id") != 0)
					named = true;
			if (!named)
				continue;
		}
		fk = k;
		to_one = one;
		matches++;
	}
	if (matches == 0)
		return fail(c->q, 400, "PGRST200", NULL, NULL, "could not find a relationship between %s and %.64s",
					s->rels[rel].name, name);
	if (matches > 1)
		return fail(c->q, 300, "PGRST201", NULL, "Name the foreign key: resource!fk_name(...).",
					"more than one relationship was found for %s and %.64s", s->rels[rel].name, name);
	snprintf(sub_al, sizeof(sub_al), "_t%d", depth + 1);
	if (spread)
	{
		/*
		 * Spread (...rel(cols)): the to-one row's columns become the
		 * parent's, through a lateral join after the parent's FROM.
		 */
		VnBuf saved = c->q->sql;
		char  path[256];
		char  sp_al[16];
		bool  ok;

		if (!to_one)
			return fail(c->q, 400, "PGRST100", NULL, "Spread a to-one relationship (the row a foreign key points to).",
						"cannot spread the to-many relationship %s -> %.64s", s->rels[rel].name, name);
		if (inner_join || alias)
			return fail(c->q, 400, "PGRST100", NULL, NULL, "a spread embedding takes no alias nor !inner");
		snprintf(sp_al, sizeof(sp_al), "_sp%d", ++c->nspreads);
		snprintf(path, sizeof(path), "%s%s.", prefix, name);
		vn_buf_init(&c->q->sql);
		vn_buf_add(&c->q->sql, " LEFT JOIN LATERAL (SELECT ");
		ok = select_list(c, child, sub_al, inner, depth + 1, path);
		if (ok)
		{
			vn_buf_add(&c->q->sql, " FROM api.");
			vn_buf_ident(&c->q->sql, s->rels[child].name);
			vn_buf_addf(&c->q->sql, " %s WHERE ", sub_al);
			for (int j = 0; j < fk->ncols; j++)
			{
				if (j)
					vn_buf_add(&c->q->sql, " AND ");
				col_ref(&c->q->sql, sub_al, fk->to_cols[j]);
				vn_buf_add(&c->q->sql, " = ");
				col_ref(&c->q->sql, al, fk->from_cols[j]);
			}
			ok = embed_clauses(c, child, sub_al, path);
		}
		if (ok)
		{
			vn_buf_addf(&c->q->sql, ") %s ON true", sp_al);
			vn_buf_add(&c->lateral, c->q->sql.data);
		}
		vn_buf_free(&c->q->sql);
		c->q->sql = saved;
		if (ok)
			vn_buf_addf(&c->q->sql, "%s.*", sp_al);
		return ok;
	}
	if (to_one)
		vn_buf_add(b, "(SELECT pg_catalog.row_to_json(_e) FROM (SELECT ");
	else
		vn_buf_add(b, "coalesce((SELECT pg_catalog.json_agg(_e) FROM (SELECT ");
	{
		char path[256];

		snprintf(path, sizeof(path), "%s%s.", prefix, alias ? alias : name);
		if (!select_list(c, child, sub_al, inner, depth + 1, path))
			return false;
		vn_buf_add(b, " FROM api.");
		vn_buf_ident(b, s->rels[child].name);
		vn_buf_addf(b, " %s WHERE ", sub_al);
		for (int j = 0; j < fk->ncols; j++)
		{
			if (j)
				vn_buf_add(b, " AND ");
			col_ref(b, sub_al, to_one ? fk->to_cols[j] : fk->from_cols[j]);
			vn_buf_add(b, " = ");
			col_ref(b, al, to_one ? fk->from_cols[j] : fk->to_cols[j]);
		}
		if (!embed_clauses(c, child, sub_al, path))
			return false;
		if (inner_join)
		{
			/*
			 * The parent keeps only rows with a matching embedded row: the
			 * same join and clauses, as EXISTS in the top WHERE (parameters
			 * are numbered, so the text may go anywhere).
			 */
			VnBuf saved = c->q->sql;

			vn_buf_init(&c->q->sql);
			vn_buf_add(&c->q->sql, " AND EXISTS (SELECT 1 FROM api.");
			vn_buf_ident(&c->q->sql, s->rels[child].name);
			vn_buf_addf(&c->q->sql, " %s WHERE ", sub_al);
			for (int j = 0; j < fk->ncols; j++)
			{
				if (j)
					vn_buf_add(&c->q->sql, " AND ");
				col_ref(&c->q->sql, sub_al, to_one ? fk->to_cols[j] : fk->from_cols[j]);
				vn_buf_add(&c->q->sql, " = ");
				col_ref(&c->q->sql, al, to_one ? fk->from_cols[j] : fk->to_cols[j]);
			}
			if (!embed_clauses_filters_only(c, child, sub_al, path))
			{
				vn_buf_free(&c->q->sql);
				c->q->sql = saved;
				return false;
			}
			vn_buf_addc(&c->q->sql, ')');
			vn_buf_add(&c->inner, c->q->sql.data);
			vn_buf_free(&c->q->sql);
			c->q->sql = saved;
			b = &c->q->sql;
		}
	}
	if (to_one)
		vn_buf_add(b, ") _e) AS ");
	else
		vn_buf_add(b, ") _e), '[]') AS ");
	vn_buf_ident(b, alias ? alias : name);
	return true;
}

static bool
select_list(Ctx *c, int rel, const char *al, const char *spec, int depth, const char *prefix)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	char			**items;
	int				  n;
	bool			  ok = true;
	VnBuf			 *b = &c->q->sql;

	if (spec == NULL || *spec == '\0')
		spec = "*";
	if (!split_top(spec, &items, &n))
	{
		free_list(items, n);
		return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed select \"%.64s\"", spec);
	}
	/* columns here; embedded resources are counted by embed() */
	for (int i = 0; i < n; i++)
		if (strchr(items[i], '(') == NULL)
			c->nselect++;
	if (c->nselect > c->in->max_select)
	{
		free_list(items, n);
		return fail(c->q, 400, "54000", NULL, "Select fewer columns, or split the request.",
					"a request selects at most %d columns (embedded resources' included)", c->in->max_select);
	}
	for (int i = 0; i < n && ok; i++)
	{
		char *item = trim(items[i]);
		char *alias = NULL;
		char *colon = NULL;
		char *paren = strchr(item, '(');
		char *cast = NULL;

		if (i)
			vn_buf_add(b, ", ");
		/* alias:... (but not the :: of a cast) */
		for (char *p = item; *p && (paren == NULL || p < paren); p++)
			if (*p == ':' && p[1] != ':' && (p == item || p[-1] != ':'))
			{
				colon = p;
				break;
			}
		if (colon)
		{
			*colon = '\0';
			alias = trim(item);
			item = trim(colon + 1);
			if (*alias == '\0' || strlen(alias) > 63)
			{
				ok = fail(c->q, 400, "PGRST100", NULL, NULL, "malformed alias in select");
				break;
			}
		}
		if (paren)
		{
			size_t len = strlen(paren);
			char  *inner;

			if (paren[len - 1] != ')')
			{
				ok = fail(c->q, 400, "PGRST100", NULL, NULL, "malformed embedding \"%.64s\"", item);
				break;
			}
			*paren = '\0';
			inner = vn_strndup(paren + 1, len - 2);
			if (strncmp(item, "...", 3) == 0)
			{
				if (!c->spread_ok || depth > 0)
					ok = fail(c->q, 400, "PGRST100", NULL, NULL,
							  "spread embeddings (...rel(cols)) are supported at the top of a read only");
				else
					ok = embed(c, rel, al, alias, trim(item + 3), inner, depth, prefix, true);
			}
			else
				ok = embed(c, rel, al, alias, trim(item), inner, depth, prefix, false);
			free(inner);
			continue;
		}
		if (strcmp(item, "*") == 0)
		{
			if (alias)
			{
				ok = fail(c->q, 400, "PGRST100", NULL, NULL, "* cannot be renamed");
				break;
			}
			vn_buf_addf(b, "%s.*", al);
			continue;
		}
		if ((cast = strstr(item, "::")) != NULL)
		{
			bool known = false;

			*cast = '\0';
			cast += 2;
			for (int k = 0; casts[k]; k++)
				if (strcmp(casts[k], cast) == 0)
					known = true;
			if (!known)
			{
				ok = fail(c->q, 400, "PGRST100", NULL, "Casts: text, integer, bigint, numeric, boolean, date, timestamptz, uuid, json, jsonb and a few more.",
						  "unsupported cast \"%.32s\"", cast);
				break;
			}
		}
		{
			Operand o;

			if (!operand(c, r, al, item, &o, true))
			{
				ok = false;
				break;
			}
			if (cast)
				vn_buf_addf(b, "::%s", cast);
			if (alias || cast || strstr(item, "->"))
			{
				vn_buf_add(b, " AS ");
				vn_buf_ident(b, alias ? alias : o.label);
			}
		}
	}
	free_list(items, n);
	return ok;
}

static const char *
arg(const VnArgs *a, const char *key)
{
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->items[i].key, key) == 0)
			return a->items[i].value;
	return NULL;
}

static bool order_spec(Ctx *c, const VnRelation *r, const char *al, const char *spec);

static bool
order_by(Ctx *c, const VnRelation *r, const char *al)
{
	return order_spec(c, r, al, arg(c->in->args, "order"));
}

static bool
order_spec(Ctx *c, const VnRelation *r, const char *al, const char *spec)
{
	char **items;
	int	   n;
	bool   ok = true;
	VnBuf *b = &c->q->sql;

	if (spec == NULL)
		return true;
	if (!split_top(spec, &items, &n))
	{
		free_list(items, n);
		return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed order \"%.64s\"", spec);
	}
	vn_buf_add(b, " ORDER BY ");
	for (int i = 0; i < n && ok; i++)
	{
		char *term = trim(items[i]);
		char *parts[4] = {NULL};
		int	  np = 0;
		char *save = NULL;

		for (char *t = strtok_r(term, ".", &save); t && np < 4; t = strtok_r(NULL, ".", &save))
			parts[np++] = t;
		if (np == 0 || np > 3)
		{
			ok = fail(c->q, 400, "PGRST100", NULL, NULL, "malformed order term");
			break;
		}
		if (i)
			vn_buf_add(b, ", ");
		{
			Operand o;

			if (!operand(c, r, al, parts[0], &o, true))
			{
				ok = false;
				break;
			}
		}
		for (int k = 1; k < np && ok; k++)
		{
			if (strcmp(parts[k], "asc") == 0)
				vn_buf_add(b, " ASC");
			else if (strcmp(parts[k], "desc") == 0)
				vn_buf_add(b, " DESC");
			else if (strcmp(parts[k], "nullsfirst") == 0)
				vn_buf_add(b, " NULLS FIRST");
			else if (strcmp(parts[k], "nullslast") == 0)
				vn_buf_add(b, " NULLS LAST");
			else
				ok = fail(c->q, 400, "PGRST100", NULL, "Order terms are column[.asc|.desc][.nullsfirst|.nullslast].",
						  "unknown order modifier \"%.32s\"", parts[k]);
		}
	}
	free_list(items, n);
	return ok;
}

static bool
number(const char *s, long *out)
{
	char *end;

	if (s == NULL || !isdigit((unsigned char) s[0]) || strlen(s) > 12)
		return false;
	*out = strtol(s, &end, 10);
	return *end == '\0';
}

/* LIMIT/OFFSET from limit=, offset= and Range, capped at max_rows */
static bool
paging(Ctx *c)
{
	const VnQueryInput *in = c->in;
	long				limit = -1,
		 offset = 0;
	const char *l = arg(in->args, "limit");
	const char *o = arg(in->args, "offset");

	if (l && !number(l, &limit))
		return fail(c->q, 400, "PGRST100", NULL, NULL, "limit must be a non-negative integer");
	if (o && !number(o, &offset))
		return fail(c->q, 400, "PGRST100", NULL, NULL, "offset must be a non-negative integer");
	if (limit > in->max_rows)
	{
		char hint[128];

		snprintf(hint, sizeof(hint), "Page through the rows with offset or Range; at most %ld per page.", in->max_rows);
		return fail(c->q, 400, "54000", NULL, hint, "limit %ld is over the maximum page size of %ld", limit, in->max_rows);
	}
	if (in->range_offset >= 0)
	{
		/* Range narrows what limit/offset chose */
		offset += in->range_offset;
		if (in->range_limit >= 0 && (limit < 0 || in->range_limit < limit))
			limit = in->range_limit;
	}
	if (limit < 0 || limit > in->max_rows)
		limit = in->max_rows; /* an open range is capped silently; Content-Range tells */
	c->q->offset = offset;
	{
		char num[32];

		/* bound too: the statement's text stays the same for every page */
		vn_buf_add(&c->q->sql, " LIMIT ");
		snprintf(num, sizeof(num), "%ld", limit);
		if (!param_s(c->q, num))
			return false;
		vn_buf_add(&c->q->sql, "::bigint OFFSET ");
		snprintf(num, sizeof(num), "%ld", offset);
		if (!param_s(c->q, num))
			return false;
		vn_buf_add(&c->q->sql, "::bigint");
	}
	return true;
}

static void
body_expr(Ctx *c)
{
	VnBuf *b = &c->q->sql;

	if (!c->q->returns_body)
		vn_buf_add(b, "''");
	else if (c->in->format == VN_FORMAT_OBJECT)
		vn_buf_add(b, "coalesce((pg_catalog.json_agg(_r) -> 0)::text, '')");
	else if (c->in->format == VN_FORMAT_CSV)
		vn_buf_add(b, "ventros.http_csv(pg_catalog.json_agg(_r))");
	else
		vn_buf_add(b, "coalesce(pg_catalog.json_agg(_r)::text, '[]')");
}

/* ---- statements -------------------------------------------------------------- */

static bool
build_read(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	size_t			  where_start,
		where_end;
	char *cond;

	c->q->is_read = true;
	vn_buf_add(b, "SELECT ");
	body_expr(c);
	vn_buf_add(b, ", pg_catalog.count(*), ");
	/* the total is filled in below, once the WHERE clause is known */
	vn_buf_add(b, "@TOTAL@ FROM (SELECT ");
	c->spread_ok = true;
	if (!select_list(c, rel, "_t", arg(c->in->args, "select"), 0, ""))
		return false;
	c->spread_ok = false;
	vn_buf_add(b, " FROM api.");
	vn_buf_ident(b, r->name);
	vn_buf_add(b, " _t");
	vn_buf_add(b, c->lateral.data);
	vn_buf_add(b, " WHERE ");
	where_start = b->len;
	if (!where(c, r, "_t", false, NULL))
		return false;
	vn_buf_add(b, c->inner.data);
	where_end = b->len;
	if (!order_by(c, r, "_t") || !paging(c))
		return false;
	vn_buf_add(b, ") _r");

	/* splice the total in */
	cond = vn_strndup(b->data + where_start, where_end - where_start);
	{
		VnBuf total;
		char *at = strstr(b->data, "@TOTAL@");
		VnBuf out;

		vn_buf_init(&total);
		if (c->in->count == VN_COUNT_EXACT)
		{
			vn_buf_add(&total, "(SELECT pg_catalog.count(*) FROM api.");
			vn_buf_ident(&total, r->name);
			vn_buf_addf(&total, " _t WHERE %s)", cond);
		}
		else
			vn_buf_add(&total, "NULL::bigint");
		vn_buf_init(&out);
		vn_buf_addn(&out, b->data, at - b->data);
		vn_buf_add(&out, total.data);
		vn_buf_add(&out, at + 7);
		vn_buf_free(b);
		*b = out;
		vn_buf_free(&total);
	}
	free(cond);
	return true;
}

static bool
check_keys(Ctx *c, const VnRelation *r, char **keys, int nkeys)
{
	for (int i = 0; i < nkeys; i++)
		if (!vn_schema_column(r, keys[i]))
		{
			char msg[200];

			snprintf(msg, sizeof(msg), "Could not find the '%.64s' column of '%s'", keys[i], r->name);
			return fail(c->q, 400, "PGRST204", NULL, "Columns are listed at GET /.", "%s", msg);
		}
	return true;
}

static bool
scan_body(Ctx *c, char ***keys, int *nkeys, bool *is_array)
{
	const char *err = NULL;

	if (c->in->body_len == 0)
		return fail(c->q, 400, "PGRST102", NULL, NULL, "empty request body");
	if (!vn_json_scan(c->in->body, c->in->body_len, keys, nkeys, is_array, &err))
		return fail(c->q, 400, "PGRST102", err, NULL, "invalid JSON in the request body");
	return true;
}

static void
returning(Ctx *c, int rel, bool *ok)
{
	VnBuf *b = &c->q->sql;

	vn_buf_add(b, " RETURNING ");
	if (c->in->ret == VN_RETURN_REPRESENTATION)
		*ok = select_list(c, rel, "_t", arg(c->in->args, "select"), 0, "");
	else if (c->in->schema->rels[rel].has_id)
		vn_buf_add(b, "_t.id");
	else
		vn_buf_add(b, "1 AS one");
}

static void
write_tail(Ctx *c, bool location)
{
	VnBuf *b = &c->q->sql;

	c->q->returns_body = c->in->ret == VN_RETURN_REPRESENTATION;
	vn_buf_add(b, ") SELECT ");
	body_expr(c);
	vn_buf_add(b, ", pg_catalog.count(*), NULL::bigint");
	/* the id of a single created row, for the Location header */
	if (location && !c->q->returns_body)
		vn_buf_add(b, ", pg_catalog.min(_r.id::text)");
	vn_buf_add(b, " FROM _w _r");
	if (c->in->max_affected >= 0 && strcmp(c->in->method, "POST") != 0)
	{
		char num[32];

		vn_buf_add(b, " HAVING ventros.http_check_affected(pg_catalog.count(*), ");
		snprintf(num, sizeof(num), "%ld", c->in->max_affected);
		param_s(c->q, num);
		vn_buf_add(b, "::bigint)");
	}
}

/*
 * " AS _b(col type, ...)": the body's record with the named columns only,
 * typed from the catalog (cheaper than populating the view's whole row type).
 */
static void
record_def(VnBuf *b, const VnRelation *r, char **keys, int nkeys)
{
	vn_buf_add(b, " AS _b(");
	for (int i = 0; i < nkeys; i++)
	{
		if (i)
			vn_buf_add(b, ", ");
		vn_buf_ident(b, keys[i]);
		vn_buf_addc(b, ' ');
		vn_buf_add(b, vn_schema_column(r, keys[i])->type);
	}
	vn_buf_addc(b, ')');
}

static bool
build_insert(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	char			**keys = NULL;
	int				  nkeys = 0;
	bool			  is_array = false;
	bool			  ok = true;
	const char		 *columns = arg(c->in->args, "columns");
	const char		 *on_conflict = arg(c->in->args, "on_conflict");

	if (!scan_body(c, &keys, &nkeys, &is_array))
		return false;
	if (columns)
	{
		free_list(keys, nkeys);
		if (!split_top(columns, &keys, &nkeys))
			return fail(c->q, 400, "PGRST100", NULL, NULL, "malformed columns");
		for (int i = 0; i < nkeys; i++)
		{
			char *t = vn_strdup(trim(keys[i]));

			free(keys[i]);
			keys[i] = t;
		}
	}
	if (!check_keys(c, r, keys, nkeys) ||
		(nkeys == 0 && !fail(c->q, 400, "PGRST102", NULL, NULL, "the request body names no column")))
	{
		free_list(keys, nkeys);
		return false;
	}
	vn_buf_add(b, "WITH _w AS (INSERT INTO api.");
	vn_buf_ident(b, r->name);
	vn_buf_add(b, " AS _t (");
	for (int i = 0; i < nkeys; i++)
	{
		if (i)
			vn_buf_add(b, ", ");
		vn_buf_ident(b, keys[i]);
	}
	/*
	 * A key missing from an object takes the column's default (PostgREST's
	 * Prefer: missing=default); an explicit null stays null.  One object
	 * without columns= has every key it names: no test needed.
	 */
	vn_buf_add(b, ") SELECT ");
	for (int i = 0; i < nkeys; i++)
	{
		const VnColumn *col = vn_schema_column(r, keys[i]);

		if (i)
			vn_buf_add(b, ", ");
		if (strcmp(col->default_expr, "NULL") == 0 || (!is_array && columns == NULL))
			col_ref(b, "_b", keys[i]);
		else
		{
			vn_buf_add(b, "CASE WHEN (_j.o -> ");
			vn_buf_literal(b, keys[i]);
			vn_buf_add(b, ") IS NULL THEN ");
			vn_buf_add(b, col->default_expr);
			vn_buf_add(b, " ELSE ");
			col_ref(b, "_b", keys[i]);
			vn_buf_add(b, " END");
		}
	}
	if (!is_array && columns == NULL)
	{
		vn_buf_add(b, " FROM pg_catalog.json_to_record(");
		if (!param(c->q, c->in->body, c->in->body_len))
			goto out;
		vn_buf_add(b, "::json)");
	}
	else
	{
		vn_buf_add(b, " FROM pg_catalog.json_array_elements(");
		if (!is_array)
			vn_buf_add(b, "pg_catalog.json_build_array(");
		if (!param(c->q, c->in->body, c->in->body_len))
			goto out;
		vn_buf_add(b, is_array ? "::json) _j(o)" : "::json)) _j(o)");
		vn_buf_add(b, " CROSS JOIN LATERAL pg_catalog.json_to_record(_j.o)");
	}
	record_def(b, r, keys, nkeys);
	if (c->in->merge_duplicates || c->in->ignore_duplicates)
	{
		char **target = NULL;
		int	   nt = 0;

		if (on_conflict)
		{
			if (!split_top(on_conflict, &target, &nt))
			{
				ok = fail(c->q, 400, "PGRST100", NULL, NULL, "malformed on_conflict");
				goto out;
			}
			for (int i = 0; i < nt; i++)
			{
				char *t = vn_strdup(trim(target[i]));

				free(target[i]);
				target[i] = t;
			}
			if (!check_keys(c, r, target, nt))
			{
				free_list(target, nt);
				ok = false;
				goto out;
			}
		}
		else if (r->has_id)
		{
			nt = 2;
			target = vn_alloc(sizeof(char *) * 2);
			target[0] = vn_strdup("tenant_id");
			target[1] = vn_strdup("id");
		}
		else
		{
			ok = fail(c->q, 400, "PGRST100", NULL, NULL, "upsert needs on_conflict");
			goto out;
		}
		vn_buf_add(b, " ON CONFLICT (");
		for (int i = 0; i < nt; i++)
		{
			if (i)
				vn_buf_add(b, ", ");
			vn_buf_ident(b, target[i]);
		}
		vn_buf_add(b, ")");
		if (c->in->ignore_duplicates)
			vn_buf_add(b, " DO NOTHING");
		else
		{
			bool first = true;

			/*
			 * The engine wants every UPDATE to state the version: an upsert
			 * merges into whatever version is current.
			 */
			vn_buf_add(b, " DO UPDATE SET ");
			for (int i = 0; i < nkeys; i++)
			{
				bool in_target = false;

				for (int k = 0; k < nt; k++)
					if (strcmp(keys[i], target[k]) == 0)
						in_target = true;
				if (in_target || strcmp(keys[i], "version") == 0)
					continue;
				if (!first)
					vn_buf_add(b, ", ");
				first = false;
				vn_buf_ident(b, keys[i]);
				vn_buf_add(b, " = EXCLUDED.");
				vn_buf_ident(b, keys[i]);
			}
			if (vn_schema_column(r, "version"))
				vn_buf_addf(b, "%sversion = _t.version", first ? "" : ", ");
			else if (first)
				vn_buf_add(b, "1 = 1"); /* unreachable for aggregates */
		}
		free_list(target, nt);
	}
	returning(c, rel, &ok);
	if (ok)
		write_tail(c, r->has_id);
out:
	free_list(keys, nkeys);
	return ok && c->q->status == 0;
}

static bool
build_update(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	char			**keys = NULL;
	int				  nkeys = 0;
	bool			  is_array = false;
	bool			  ok = true;
	bool			  has_version = false;
	int				  version_param = 0;
	size_t			  set_end;
	VnBuf			  tail;

	if (!scan_body(c, &keys, &nkeys, &is_array))
		return false;
	if (is_array)
	{
		free_list(keys, nkeys);
		return fail(c->q, 400, "PGRST102", NULL, NULL, "PATCH takes one JSON object");
	}
	if (!check_keys(c, r, keys, nkeys))
	{
		free_list(keys, nkeys);
		return false;
	}
	if (nkeys == 0)
	{
		free_list(keys, nkeys);
		return fail(c->q, 400, "PGRST102", NULL, NULL, "the request body names no column");
	}
	vn_buf_add(b, "WITH _w AS (UPDATE api.");
	vn_buf_ident(b, r->name);
	vn_buf_add(b, " AS _t SET ");
	for (int i = 0; i < nkeys; i++)
	{
		if (i)
			vn_buf_add(b, ", ");
		vn_buf_ident(b, keys[i]);
		vn_buf_add(b, " = ");
		col_ref(b, "_b", keys[i]);
		if (strcmp(keys[i], "version") == 0)
			has_version = true;
	}
	set_end = b->len;
	vn_buf_add(b, " FROM pg_catalog.json_to_record(");
	if (!param(c->q, c->in->body, c->in->body_len))
		goto out;
	vn_buf_add(b, "::json)");
	record_def(b, r, keys, nkeys);
	vn_buf_add(b, " WHERE ");
	if (!where(c, r, "_t", true, r->has_id ? &version_param : NULL))
	{
		ok = false;
		goto out;
	}
	returning(c, rel, &ok);
	if (!ok)
		goto out;
	write_tail(c, false);
	/* a version=eq.N filter states the version when the body does not */
	if (version_param && !has_version)
	{
		vn_buf_init(&tail);
		vn_buf_add(&tail, b->data + set_end);
		b->len = set_end;
		vn_buf_addf(b, ", version = $%d::integer", version_param);
		vn_buf_add(b, tail.data);
		vn_buf_free(&tail);
	}
out:
	free_list(keys, nkeys);
	return ok && c->q->status == 0;
}

static bool
build_delete(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	int				  version_param = 0;

	if (!r->has_id)
		return fail(c->q, 405, "PGRST105", NULL, NULL, "%s cannot be deleted over HTTP", r->name);
	/* the engine turns a DELETE into a soft delete and returns no row: keep the rows selected */
	vn_buf_add(b, "WITH _s AS (SELECT _t.* FROM api.");
	vn_buf_ident(b, r->name);
	vn_buf_add(b, " _t WHERE ");
	if (!where(c, r, "_t", true, &version_param))
		return false;
	vn_buf_add(b, " FOR UPDATE), _d AS (DELETE FROM api.");
	vn_buf_ident(b, r->name);
	vn_buf_add(b, " _t USING _s WHERE _t.tenant_id = _s.tenant_id AND _t.id = _s.id), _w AS (SELECT ");
	c->q->returns_body = c->in->ret == VN_RETURN_REPRESENTATION;
	if (!select_list(c, rel, "_t", arg(c->in->args, "select"), 0, ""))
		return false;
	vn_buf_add(b, " FROM _s _t");
	write_tail(c, false);
	return c->q->status == 0;
}

/* ---- what rpc.c borrows (query_shared.h) ------------------------------------ */

bool
vn_query_fail(VnQuery *q, int status, const char *code, const char *details, const char *hint,
			  const char *fmt, ...)
{
	char	message[sizeof(q->message)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	return fail(q, status, code, details, hint, "%s", message);
}

bool
vn_query_param(VnQuery *q, const char *value, size_t len)
{
	return param(q, value, len);
}

bool
vn_query_scan_body(VnQueryCtx *c, char ***keys, int *nkeys, bool *is_array)
{
	return scan_body(c, keys, nkeys, is_array);
}

void
vn_query_free_list(char **items, int n)
{
	free_list(items, n);
}

const char *
vn_query_arg(const VnArgs *a, const char *key)
{
	return arg(a, key);
}

bool
vn_query_is_reserved(const char *key)
{
	return is_reserved(key);
}

bool
vn_query_rows(VnQueryCtx *c, int rel, const char *from)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;

	if (!select_list(c, rel, "_t", arg(c->in->args, "select"), 0, ""))
		return false;
	vn_buf_add(b, " FROM ");
	vn_buf_add(b, from);
	vn_buf_add(b, " WHERE ");
	return where(c, r, "_t", false, NULL) && order_by(c, r, "_t");
}

bool
vn_query_paging(VnQueryCtx *c)
{
	return paging(c);
}

void
vn_query_body_expr(VnQueryCtx *c)
{
	body_expr(c);
}

bool
vn_query_build(const VnQueryInput *in, VnQuery *q)
{
	Ctx	 c = {in, q, 0, NULL};
	int	 rel;
	bool ok;

	c.consumed = vn_alloc(sizeof(bool) * (in->args->n + 1));
	vn_buf_init(&c.inner);
	vn_buf_init(&c.lateral);
	if (in->rpc)
		ok = vn_rpc_build(&c) && q->status == 0;
	else if ((rel = vn_schema_relation_index(in->schema, in->target)) < 0)
		ok = fail(q, 400, "PGRST205", NULL, "Relations are listed at GET /.",
				  "could not find the table api.%.64s", in->target);
	else if (strcmp(in->method, "GET") == 0 || strcmp(in->method, "HEAD") == 0)
		ok = build_read(&c, rel) && q->status == 0;
	else if (strcmp(in->method, "POST") == 0)
		ok = build_insert(&c, rel);
	else if (strcmp(in->method, "PATCH") == 0)
		ok = build_update(&c, rel);
	else if (strcmp(in->method, "DELETE") == 0)
		ok = build_delete(&c, rel);
	else
		ok = fail(q, 405, "PGRST105", NULL, NULL, "method %s is not supported", in->method);
	free(c.consumed);
	vn_buf_free(&c.inner);
	vn_buf_free(&c.lateral);
	return ok;
}
