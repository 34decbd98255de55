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
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "embedding nests at most three levels deep");
	/*
	 * Each embedding is a subquery: a request with a thousand of them is a
	 * statement the planner and executor take a long time over, for rows
	 * no client reads that way.
	 */
	if (++c->nembeds > c->in->max_embeds)
		return vn_query_fail(c->q, 400, "54000", NULL, "Split the request, or embed through a view.",
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
				return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "unknown embedding hint \"%.32s\"", bang);
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
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "!inner is supported on the first level only");
	child = vn_schema_relation_index(s, name);
	if (child < 0)
		return vn_query_fail(c->q, 400, "PGRST200", NULL, NULL, "could not find a relationship between %s and %.64s",
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
		return vn_query_fail(c->q, 400, "PGRST200", NULL, NULL, "could not find a relationship between %s and %.64s",
							 s->rels[rel].name, name);
	if (matches > 1)
		return vn_query_fail(c->q, 300, "PGRST201", NULL, "Name the foreign key: resource!fk_name(...).",
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
			return vn_query_fail(c->q, 400, "PGRST100", NULL, "Spread a to-one relationship (the row a foreign key points to).",
								 "cannot spread the to-many relationship %s -> %.64s", s->rels[rel].name, name);
		if (inner_join || alias)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "a spread embedding takes no alias nor !inner");
		snprintf(sp_al, sizeof(sp_al), "_sp%d", ++c->nspreads);
		snprintf(path, sizeof(path), "%s%s.", prefix, name);
		vn_buf_init(&c->q->sql);
		vn_buf_add(&c->q->sql, " LEFT JOIN LATERAL (SELECT ");
		ok = vn_query_select_list(c, child, sub_al, inner, depth + 1, path);
		if (ok)
		{
			vn_buf_add(&c->q->sql, " FROM ");
			vn_query_relation_ref(c, &c->q->sql, &s->rels[child]);
			vn_buf_addf(&c->q->sql, " %s WHERE ", sub_al);
			for (int j = 0; j < fk->ncols; j++)
			{
				if (j)
					vn_buf_add(&c->q->sql, " AND ");
				vn_query_col_ref(&c->q->sql, sub_al, fk->to_cols[j]);
				vn_buf_add(&c->q->sql, " = ");
				vn_query_col_ref(&c->q->sql, al, fk->from_cols[j]);
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
		if (!vn_query_select_list(c, child, sub_al, inner, depth + 1, path))
			return false;
		vn_buf_add(b, " FROM ");
		vn_query_relation_ref(c, b, &s->rels[child]);
		vn_buf_addf(b, " %s WHERE ", sub_al);
		for (int j = 0; j < fk->ncols; j++)
		{
			if (j)
				vn_buf_add(b, " AND ");
			vn_query_col_ref(b, sub_al, to_one ? fk->to_cols[j] : fk->from_cols[j]);
			vn_buf_add(b, " = ");
			vn_query_col_ref(b, al, to_one ? fk->from_cols[j] : fk->to_cols[j]);
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
			vn_buf_add(&c->q->sql, " AND EXISTS (SELECT 1 FROM ");
			vn_query_relation_ref(c, &c->q->sql, &s->rels[child]);
			vn_buf_addf(&c->q->sql, " %s WHERE ", sub_al);
			for (int j = 0; j < fk->ncols; j++)
			{
				if (j)
					vn_buf_add(&c->q->sql, " AND ");
				vn_query_col_ref(&c->q->sql, sub_al, to_one ? fk->to_cols[j] : fk->from_cols[j]);
				vn_buf_add(&c->q->sql, " = ");
				vn_query_col_ref(&c->q->sql, al, to_one ? fk->from_cols[j] : fk->to_cols[j]);
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

bool
vn_query_select_list(Ctx *c, int rel, const char *al, const char *spec, int depth, const char *prefix)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	char			**items;
	int				  n;
	bool			  ok = true;
	VnBuf			 *b = &c->q->sql;

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
		char *item = vn_query_trim(items[i]);
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
			alias = vn_query_trim(item);
			item = vn_query_trim(colon + 1);
			if (*alias == '\0' || strlen(alias) > 63)
			{
				ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed alias in select");
				break;
			}
		}
		if (paren)
		{
			size_t len = strlen(paren);
			char  *inner;

			if (paren[len - 1] != ')')
			{
				ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed embedding \"%.64s\"", item);
				break;
			}
			*paren = '\0';
			inner = vn_strndup(paren + 1, len - 2);
			if (strncmp(item, "...", 3) == 0)
			{
				if (!c->spread_ok || depth > 0)
					ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL,
									   "spread embeddings (...rel(cols)) are supported at the top of a read only");
				else
					ok = embed(c, rel, al, alias, vn_query_trim(item + 3), inner, depth, prefix, true);
			}
			else
				ok = embed(c, rel, al, alias, vn_query_trim(item), inner, depth, prefix, false);
			free(inner);
			continue;
		}
		if (strcmp(item, "*") == 0)
		{
			if (alias)
			{
				ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "* cannot be renamed");
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
				ok = vn_query_fail(c->q, 400, "PGRST100", NULL, "Casts: text, integer, bigint, numeric, boolean, date, timestamptz, uuid, json, jsonb and a few more.",
								   "unsupported cast \"%.32s\"", cast);
				break;
			}
		}
		{
			Operand o;

			if (!vn_query_operand(c, r, al, item, &o, true))
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
	vn_query_free_list(items, n);
	return ok;
}
