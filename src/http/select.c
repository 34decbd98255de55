/*
 * select.c
 *	  select= to a SQL select list: columns, JSON paths, renames, casts from a
 *	  fixed list, and embedded resources (to-one and to-many subqueries,
 *	  spreads, !inner), with their own filters, order and paging.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

static const char *casts[] = {
	"text", "integer", "int", "int4", "bigint", "int8", "smallint", "int2", "numeric", "real", "float4",
	"double precision", "float8", "boolean", "bool", "date", "time", "timestamp", "timestamptz",
	"timestamp with time zone", "interval", "uuid", "json", "jsonb", "varchar", "char", "text[]", NULL};


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
				ok = vn_query_logic(c, r, sub_al, rest[0] == 'o' ? "OR" : "AND", false, v, 1);
			else if (strcmp(rest, "not.or") == 0 || strcmp(rest, "not.and") == 0)
				ok = vn_query_logic(c, r, sub_al, rest[4] == 'o' ? "OR" : "AND", true, v, 1);
			else if (vn_query_is_reserved(rest))
				ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "%.64s is not supported on embedded resources", k);
			else
				ok = vn_query_condition(c, r, sub_al, rest, v);
			if (!ok)
				return false;
			vn_buf_addc(b, ')');
		}
	}
	if (filters_only)
		return true;
	if (order && !vn_query_order_spec(c, r, sub_al, order))
		return false;
	if (limit || offset)
	{
		long l = -1,
			 o = 0;
		char num[32];

		if ((limit && !vn_query_number(limit, &l)) || (offset && !vn_query_number(offset, &o)))
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "limit and offset are non-negative integers");
		if (l < 0 || l > c->in->max_rows)
			l = c->in->max_rows;
		vn_buf_add(b, " LIMIT ");
		snprintf(num, sizeof(num), "%ld", l);
		if (!vn_query_param_s(c->q, num))
			return false;
		vn_buf_add(b, "::bigint OFFSET ");
		snprintf(num, sizeof(num), "%ld", o);
		if (!vn_query_param_s(c->q, num))
			return false;
		vn_buf_add(b, "::bigint");
	}
	return true;
}

/* name!hint!inner, name!inner, name!left: *hint (NULL: none) and *inner_join */
static bool
embed_hint(Ctx *c, char *name, char **hint, bool *inner_join)
{
	char *bang;

	*hint = strchr(name, '!');
	*inner_join = false;
	if (*hint == NULL)
		return true;
	*(*hint)++ = '\0';
	/* rel!inner, rel!left, rel!fk, rel!fk!inner */
	if ((bang = strchr(*hint, '!')) != NULL)
	{
		*bang++ = '\0';
		if (strcmp(bang, "inner") == 0)
			*inner_join = true;
		else if (strcmp(bang, "left") != 0)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "unknown embedding hint \"%.32s\"", bang);
	}
	if (strcmp(*hint, "inner") == 0)
	{
		*inner_join = true;
		*hint = NULL;
	}
	else if (strcmp(*hint, "left") == 0)
		*hint = NULL;
	return true;
}

/*
 * The one foreign key between rel and child (either way), the hint naming
 * it or its referencing column; 400 PGRST200 for none, 300 PGRST201 for
 * several.
 */
static bool
embed_key(Ctx *c, int rel, int child, const char *name, const char *hint, const VnForeignKey **fk, bool *to_one)
{
	const VnSchema *s = c->in->schema;
	int				matches = 0;

	for (int i = 0; i < s->nfks; i++)
	{
		const VnForeignKey *k = &s->fks[i];
		bool				one;
		bool				named = hint == NULL || strcmp(hint, k->name) == 0;

		if (k->from == rel && k->to == child)
			one = true;
		else if (k->from == child && k->to == rel)
			one = false;
		else
			continue;
		/* the hint may name the referencing column instead of the key */
		for (int j = 0; j < k->ncols && !named; j++)
			named = strcmp(k->from_cols[j], hint) == 0 && strcmp(k->from_cols[j], "tenant_id") != 0;
		if (!named)
			continue;
		*fk = k;
		*to_one = one;
		matches++;
	}
	if (matches == 0)
		return vn_query_fail(c->q, 400, "PGRST200", NULL, NULL, "could not find a relationship between %s and %.64s",
							 s->rels[rel].name, name);
	if (matches > 1)
		return vn_query_fail(c->q, 300, "PGRST201", NULL, "Name the foreign key: resource!fk_name(...).",
							 "more than one relationship was found for %s and %.64s", s->rels[rel].name, name);
	return true;
}

/* "FROM "schema"."child" sub_al WHERE <the key's columns match the parent's>" */
static void
embed_from(Ctx *c, VnBuf *b, int child, const char *sub_al, const char *al, const VnForeignKey *fk, bool to_one)
{
	vn_buf_add(b, " FROM ");
	vn_query_relation_ref(c, b, &c->in->schema->rels[child]);
	vn_buf_addf(b, " %s WHERE ", sub_al);
	for (int j = 0; j < fk->ncols; j++)
	{
		if (j)
			vn_buf_add(b, " AND ");
		vn_query_col_ref(b, sub_al, to_one ? fk->to_cols[j] : fk->from_cols[j]);
		vn_buf_add(b, " = ");
		vn_query_col_ref(b, al, to_one ? fk->from_cols[j] : fk->to_cols[j]);
	}
}

/*
 * Spread (...rel(cols)): the to-one row's columns become the parent's,
 * through a lateral join after the parent's FROM (c->lateral).
 */
static bool
embed_spread(Ctx *c, int child, const char *al, const char *sub_al, const char *inner, int depth, const char *path,
			 const VnForeignKey *fk)
{
	VnBuf saved = c->q->sql;
	char  sp_al[16];
	bool  ok;

	snprintf(sp_al, sizeof(sp_al), "_sp%d", ++c->nspreads);
	vn_buf_init(&c->q->sql);
	vn_buf_add(&c->q->sql, " LEFT JOIN LATERAL (SELECT ");
	ok = vn_query_select_list(c, child, sub_al, inner, depth + 1, path);
	if (ok)
	{
		embed_from(c, &c->q->sql, child, sub_al, al, fk, true);
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

/*
 * !inner: the parent keeps only rows with a matching embedded row: the
 * same join and clauses, as EXISTS in the top WHERE (c->inner; parameters
 * are numbered, so the text may go anywhere).
 */
static bool
embed_inner(Ctx *c, int child, const char *al, const char *sub_al, const char *path, const VnForeignKey *fk,
			bool to_one)
{
	VnBuf saved = c->q->sql;
	bool  ok;

	vn_buf_init(&c->q->sql);
	vn_buf_add(&c->q->sql, " AND EXISTS (SELECT 1");
	embed_from(c, &c->q->sql, child, sub_al, al, fk, to_one);
	ok = embed_clauses_filters_only(c, child, sub_al, path);
	if (ok)
	{
		vn_buf_addc(&c->q->sql, ')');
		vn_buf_add(&c->inner, c->q->sql.data);
	}
	vn_buf_free(&c->q->sql);
	c->q->sql = saved;
	return ok;
}

static bool
embed(Ctx *c, int rel, const char *al, const char *alias, char *name, const char *inner, int depth,
	  const char *prefix, bool spread)
{
	const VnSchema	   *s = c->in->schema;
	char			   *hint;
	int					child;
	const VnForeignKey *fk = NULL;
	bool				to_one = false;
	bool				inner_join;
	char				sub_al[16];
	char				path[256];

	if (depth >= 3)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "embedding nests at most three levels deep");
	/*
	 * Each embedding is a subquery: a request with a thousand of them is a
	 * statement the planner and executor take a long time over, for rows
	 * no client reads that way.
	 */
	if (++c->nembeds > c->in->max_embeds)
		return vn_query_fail(c->q, 400, "54000", NULL, "Split the request, or embed through a view.",
							 "a request embeds at most %d resources", c->in->max_embeds);
	if (!embed_hint(c, name, &hint, &inner_join))
		return false;
	if (inner_join && depth > 0)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "!inner is supported on the first level only");
	child = vn_schema_relation_index(s, name);
	if (child < 0)
		return vn_query_fail(c->q, 400, "PGRST200", NULL, NULL, "could not find a relationship between %s and %.64s",
							 s->rels[rel].name, name);
	if (!embed_key(c, rel, child, name, hint, &fk, &to_one))
		return false;
	snprintf(sub_al, sizeof(sub_al), "_t%d", depth + 1);
	if (spread)
	{
		if (!to_one)
			return vn_query_fail(c->q, 400, "PGRST100", NULL,
								 "Spread a to-one relationship (the row a foreign key points to).",
								 "cannot spread the to-many relationship %s -> %.64s", s->rels[rel].name, name);
		if (inner_join || alias)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "a spread embedding takes no alias nor !inner");
		snprintf(path, sizeof(path), "%s%s.", prefix, name);
		return embed_spread(c, child, al, sub_al, inner, depth, path, fk);
	}
	vn_buf_add(&c->q->sql, to_one ? "(SELECT pg_catalog.row_to_json(_e) FROM (SELECT " : "coalesce((SELECT pg_catalog.json_agg(_e) FROM (SELECT ");
	snprintf(path, sizeof(path), "%s%s.", prefix, alias ? alias : name);
	if (!vn_query_select_list(c, child, sub_al, inner, depth + 1, path))
		return false;
	embed_from(c, &c->q->sql, child, sub_al, al, fk, to_one);
	if (!embed_clauses(c, child, sub_al, path))
		return false;
	if (inner_join && !embed_inner(c, child, al, sub_al, path, fk, to_one))
		return false;
	vn_buf_add(&c->q->sql, to_one ? ") _e) AS " : ") _e), '[]') AS ");
	vn_buf_ident(&c->q->sql, alias ? alias : name);
	return true;
}

/* an embedded resource of a select list: rel(...), alias:rel(...), ...rel(...) */
static bool
select_embed(Ctx *c, int rel, const char *al, const char *alias, char *item, char *paren, int depth,
			 const char *prefix)
{
	size_t len = strlen(paren);
	char  *inner;
	bool   ok;

	if (paren[len - 1] != ')')
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed embedding \"%.64s\"", item);
	*paren = '\0';
	inner = vn_strndup(paren + 1, len - 2);
	if (strncmp(item, "...", 3) != 0)
		ok = embed(c, rel, al, alias, vn_query_trim(item), inner, depth, prefix, false);
	else if (!c->spread_ok || depth > 0)
		ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL,
						   "spread embeddings (...rel(cols)) are supported at the top of a read only");
	else
		ok = embed(c, rel, al, alias, vn_query_trim(item + 3), inner, depth, prefix, true);
	free(inner);
	return ok;
}

/* a column or JSON path of a select list, with its cast (from casts[]) and alias */
static bool
select_column(Ctx *c, int rel, const char *al, const char *alias, char *item)
{
	VnBuf  *b = &c->q->sql;
	char   *cast = strstr(item, "::");
	Operand o;

	if (cast)
	{
		bool known = false;

		*cast = '\0';
		cast += 2;
		for (int k = 0; casts[k]; k++)
			known |= strcmp(casts[k], cast) == 0;
		if (!known)
			return vn_query_fail(c->q, 400, "PGRST100", NULL,
								 "Casts: text, integer, bigint, numeric, boolean, date, timestamptz, uuid, json, jsonb and a few more.",
								 "unsupported cast \"%.32s\"", cast);
	}
	if (!vn_query_operand(c, &c->in->schema->rels[rel], al, item, &o, true))
		return false;
	if (cast)
		vn_buf_addf(b, "::%s", cast);
	if (alias || cast || strstr(item, "->"))
	{
		vn_buf_add(b, " AS ");
		vn_buf_ident(b, alias ? alias : o.label);
	}
	return true;
}

/* one item of a select list: [alias:]column[::cast], [alias:]rel(...), ...rel(...), * */
static bool
select_item(Ctx *c, int rel, const char *al, char *item, int depth, const char *prefix)
{
	char *alias = NULL;
	char *paren = strchr(item, '(');

	/* alias:... (but not the :: of a cast) */
	for (char *p = item; *p && (paren == NULL || p < paren); p++)
		if (*p == ':' && p[1] != ':' && (p == item || p[-1] != ':'))
		{
			*p = '\0';
			alias = vn_query_trim(item);
			item = vn_query_trim(p + 1);
			if (*alias == '\0' || strlen(alias) > 63)
				return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed alias in select");
			break;
		}
	if (paren)
		return select_embed(c, rel, al, alias, item, paren, depth, prefix);
	if (strcmp(item, "*") == 0)
	{
		if (alias)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "* cannot be renamed");
		vn_buf_addf(&c->q->sql, "%s.*", al);
		return true;
	}
	return select_column(c, rel, al, alias, item);
}

bool
vn_query_select_list(Ctx *c, int rel, const char *al, const char *spec, int depth, const char *prefix)
{
	char **items;
	int	   n;
	bool   ok = true;

	if (spec == NULL || *spec == '\0')
		spec = "*";
	if (!vn_query_split(spec, &items, &n))
	{
		vn_query_free_list(items, n);
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed select \"%.64s\"", spec);
	}
	/* columns here; embedded resources are counted by embed() */
	for (int i = 0; i < n; i++)
		if (strchr(items[i], '(') == NULL)
			c->nselect++;
	if (c->nselect > c->in->max_select)
	{
		vn_query_free_list(items, n);
		return vn_query_fail(c->q, 400, "54000", NULL, "Select fewer columns, or split the request.",
							 "a request selects at most %d columns (embedded resources' included)", c->in->max_select);
	}
	for (int i = 0; i < n && ok; i++)
	{
		if (i)
			vn_buf_add(&c->q->sql, ", ");
		ok = select_item(c, rel, al, vn_query_trim(items[i]), depth, prefix);
	}
	vn_query_free_list(items, n);
	return ok;
}
