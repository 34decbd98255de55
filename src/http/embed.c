/*
 * embed.c
 *	  Resource embedding in select= (PostgREST 12): rel(...), alias:rel(...),
 *	  rel!hint(...), rel!inner(...), ...rel(...), through the relationships
 *	  of the schema cache (relations.c) as embed_rel.c resolves them:
 *	  many-to-one, one-to-many, one-to-one, many-to-many through a junction,
 *	  computed (a function of the parent's row).  Each embedding is a subquery of the one statement:
 *	  row_to_json of the row for a to-one relationship, json_agg of the rows
 *	  (or []) for a to-many one, with the embedding's own filters, order
 *	  and paging (<path>.<column>=, <path>.order=, <path>.limit=).  !inner
 *	  keeps the parent rows that have an embedded row: an EXISTS of the same
 *	  join in the parent's WHERE, at any depth.  A spread is a lateral join
 *	  whose columns join the parent's, at any depth (each level's spreads
 *	  join that level's FROM).  rel=is.null / rel=not.is.null filter the
 *	  parents by whether they have an embedded row; order=rel(col) orders
 *	  them by a column of a to-one one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

typedef VnEmbedRel Rel;

/* the filters of <path>.<key>=; false on error */
static bool
embed_filter(Ctx *c, const VnRelation *r, const char *sub_al, const char *k, const char *rest, const char *v)
{
	VnBuf *b = &c->q->sql;
	bool   ok;

	vn_buf_add(b, " AND (");
	if (strcmp(rest, "or") == 0 || strcmp(rest, "and") == 0)
		ok = vn_query_logic(c, r, sub_al, rest[0] == 'o' ? "OR" : "AND", false, v, 1);
	else if (strcmp(rest, "not.or") == 0 || strcmp(rest, "not.and") == 0)
		ok = vn_query_logic(c, r, sub_al, rest[4] == 'o' ? "OR" : "AND", true, v, 1);
	else if (vn_query_is_reserved(rest))
		ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "%.64s is not supported on embedded resources", k);
	else
		ok = vn_query_condition(c, r, sub_al, rest, v);
	vn_buf_addc(b, ')');
	return ok;
}

/* " LIMIT $n OFFSET $m" of an embedding */
static bool
embed_paging(Ctx *c, const char *limit, const char *offset)
{
	VnBuf *b = &c->q->sql;
	long   l = -1,
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
	return true;
}

/* an embedding below the level of path is labelled label */
static bool
child_label(const Ctx *c, const char *path, const char *label)
{
	for (int i = 0; i < c->nseen; i++)
		if (strcmp(c->seen[i].prefix, path) == 0 && strcmp(c->seen[i].label, label) == 0)
			return true;
	return false;
}

/*
 * Filters, order, limit and offset of an embedded resource: query arguments
 * named <path>.<column|or|and|not.or|not.and|order|limit|offset>, where path
 * is the resource's label (alias or name) below its parents'.  Appended to
 * the embedded subquery's WHERE, with inner (the EXISTS of its own !inner
 * embeddings), then unless filters_only the GROUP BY of its select list (if
 * it aggregates), ORDER BY and LIMIT.
 */
static bool
embed_clauses(Ctx *c, int child, const char *sub_al, const char *path, const VnBuf *inner, bool filters_only)
{
	const VnArgs	 *a = c->in->args;
	const VnRelation *r = &c->in->schema->rels[child];
	size_t			  n = strlen(path);
	const char		 *order = NULL,
			   *limit = NULL,
			   *offset = NULL;

	for (int i = 0; i < a->n; i++)
	{
		const char *k = a->items[i].key;
		const char *rest;

		if (strncmp(k, path, n) != 0)
			continue;
		rest = k + n;
		if (strchr(rest, '.') && strcmp(rest, "not.or") != 0 && strcmp(rest, "not.and") != 0)
			continue; /* a deeper resource's */
		if (child_label(c, path, rest))
			continue; /* <path>.<child>=is.null: the child's (embed_null_filter) */
		c->consumed[i] = true;
		if (strcmp(rest, "order") == 0)
			order = a->items[i].value;
		else if (strcmp(rest, "limit") == 0)
			limit = a->items[i].value;
		else if (strcmp(rest, "offset") == 0)
			offset = a->items[i].value;
		else if (!embed_filter(c, r, sub_al, k, rest, a->items[i].value))
			return false;
	}
	vn_buf_add(&c->q->sql, inner->data);
	if (filters_only)
		return true;
	vn_query_take_group(c, &c->q->sql);
	if (order && !vn_query_order_at(c, r, sub_al, order, path))
		return false;
	if (limit || offset)
		return embed_paging(c, limit, offset);
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

/* "a.x = b.y AND ..." over the key's columns */
static void
join_cols(VnBuf *b, const char *a, char **acols, const char *bl, char **bcols, int n)
{
	for (int j = 0; j < n; j++)
	{
		if (j)
			vn_buf_add(b, " AND ");
		vn_query_col_ref(b, a, acols[j]);
		vn_buf_add(b, " = ");
		vn_query_col_ref(b, bl, bcols[j]);
	}
}

/*
 * " FROM <the embedded rows> sub_al <lateral> WHERE <they are the
 * parent's>"; lateral: the joins of the spreads of the embedded select list
 * (NULL: none)
 */
static void
embed_from(Ctx *c, VnBuf *b, const Rel *r, const char *sub_al, const char *al, int depth, const char *lateral)
{
	const VnSchema *s = c->in->schema;
	char			j_al[16];

	vn_buf_add(b, " FROM ");
	if (r->fn)
	{
		/* a computed relationship: the function of the parent's row */
		vn_buf_ident(b, s->name);
		vn_buf_addc(b, '.');
		vn_buf_ident(b, r->fn->name);
		vn_buf_addf(b, "(%s) %s%s WHERE true", al, sub_al, lateral ? lateral : "");
		return;
	}
	vn_query_relation_ref(c, b, &s->rels[r->child]);
	vn_buf_addf(b, " %s%s", sub_al, lateral ? lateral : "");
	if (r->jn)
	{
		const VnForeignKey *left = &s->fks[r->jn->left],
						   *right = &s->fks[r->jn->right];

		snprintf(j_al, sizeof(j_al), "_j%d", depth + 1);
		vn_buf_add(b, " JOIN ");
		vn_query_relation_ref(c, b, &s->rels[r->jn->junction]);
		vn_buf_addf(b, " %s ON ", j_al);
		join_cols(b, j_al, right->from_cols, sub_al, right->to_cols, right->ncols);
		vn_buf_add(b, " WHERE ");
		join_cols(b, j_al, left->from_cols, al, left->to_cols, left->ncols);
		return;
	}
	vn_buf_add(b, " WHERE ");
	if (r->parent_refs)
		join_cols(b, sub_al, r->fk->to_cols, al, r->fk->from_cols, r->fk->ncols);
	else
		join_cols(b, sub_al, r->fk->from_cols, al, r->fk->to_cols, r->fk->ncols);
}

/*
 * The select list of an embedded resource, with the EXISTS of its own
 * !inner embeddings collected apart (*inner, for its WHERE) and the lateral
 * joins of its spreads (*lateral, for its FROM); its GROUP BY stays in
 * c->group for embed_clauses.
 */
static bool
embed_list(Ctx *c, int child, const char *sub_al, const char *spec, int depth, const char *path, VnBuf *inner,
		   VnBuf *lateral)
{
	VnBuf saved = c->inner,
		  saved_lateral = c->lateral;
	bool ok;

	vn_buf_init(&c->inner);
	vn_buf_init(&c->lateral);
	ok = vn_query_select_list(c, child, sub_al, spec, depth + 1, path);
	*inner = c->inner;
	*lateral = c->lateral;
	c->inner = saved;
	c->lateral = saved_lateral;
	return ok;
}

/*
 * Spread (...rel(cols)): the to-one row's columns become the parent's,
 * through a lateral join after the parent's FROM (c->lateral).  Beside
 * aggregates (group), its columns group the rows, as PostgREST 12 does:
 * their names are collected while its select list is built (c->names).
 */
static bool
embed_spread(Ctx *c, const Rel *r, const char *al, const char *sub_al, const char *spec, int depth,
			 const char *path, VnBuf *group, int seen_index)
{
	VnBuf saved = c->q->sql;
	VnBuf inner,
		lateral,
		names;
	VnBuf *outer_names = c->names;
	char   sp_al[16];
	int	   naggregates;
	bool   ok;

	snprintf(sp_al, sizeof(sp_al), "_sp%d", ++c->nspreads);
	vn_buf_init(&c->q->sql);
	vn_buf_add(&c->q->sql, " LEFT JOIN LATERAL (SELECT ");
	vn_buf_init(&names);
	c->names = &names;
	naggregates = c->naggregates;
	ok = embed_list(c, r->child, sub_al, spec, depth, path, &inner, &lateral);
	c->names = outer_names;
	if (ok && c->naggregates > naggregates)
		ok = vn_query_fail(c->q, 400, "PGRST100", NULL, "Aggregate beside the spread instead: col.sum(),...rel(cols).",
						   "aggregate functions inside a spread are not supported");
	if (ok)
	{
		embed_from(c, &c->q->sql, r, sub_al, al, depth, lateral.data);
		ok = embed_clauses(c, r->child, sub_al, path, &inner, false);
	}
	vn_buf_free(&lateral);
	if (ok)
	{
		vn_buf_addf(&c->q->sql, ") %s ON true", sp_al);
		vn_buf_add(&c->lateral, c->q->sql.data);
	}
	vn_buf_free(&inner);
	vn_buf_free(&c->q->sql);
	c->q->sql = saved;
	if (ok)
		vn_buf_addf(&c->q->sql, "%s.*", sp_al);
	if (ok)
	{
		/* for order=rel(col) beside aggregates: its grouped columns */
		VnEmbedSeen *e = &c->seen[seen_index];

		snprintf(e->sp_al, sizeof(e->sp_al), "%s", sp_al);
		e->names = vn_alloc(names.len + 1);
		memcpy(e->names, names.data, names.len);
		e->names_len = names.len;
	}
	/* its columns are the parent's: an outer spread's too, the GROUP BY's beside aggregates */
	for (const char *n = names.data; ok && n < names.data + names.len; n += strlen(n) + 1)
	{
		if (outer_names)
			vn_buf_addn(outer_names, n, strlen(n) + 1);
		if (group)
		{
			vn_buf_add(group, group->len ? ", " : " GROUP BY ");
			vn_query_col_ref(group, sp_al, n);
		}
	}
	vn_buf_free(&names);
	return ok;
}

/*
 * !inner: the parent keeps only rows with a matching embedded row: the
 * same join, filters and inner conditions, as EXISTS in the parent's WHERE
 * (c->inner; parameters are numbered, so the text may go anywhere).
 * negate: NOT EXISTS, the parents without one (rel=is.null).
 */
static bool
embed_inner(Ctx *c, const Rel *r, const char *al, const char *sub_al, const char *path, const VnBuf *inner,
			int depth, bool negate)
{
	VnBuf saved = c->q->sql;
	bool  ok;

	vn_buf_init(&c->q->sql);
	vn_buf_add(&c->q->sql, negate ? " AND NOT EXISTS (SELECT 1" : " AND EXISTS (SELECT 1");
	embed_from(c, &c->q->sql, r, sub_al, al, depth, NULL);
	ok = embed_clauses(c, r->child, sub_al, path, inner, true);
	if (ok)
	{
		vn_buf_addc(&c->q->sql, ')');
		vn_buf_add(&c->inner, c->q->sql.data);
	}
	vn_buf_free(&c->q->sql);
	c->q->sql = saved;
	return ok;
}

/*
 * <prefix><label>=not.is.null keeps the parents with an embedded row (as
 * !inner), =is.null those without (an anti-join), as PostgREST 12; any
 * other operator on an embedded resource is 400 PGRST120.  *mode: 1 not
 * null, -1 null, 0 no such filter.
 */
static bool
embed_null_filter(Ctx *c, const char *prefix, const char *label, int *mode)
{
	const VnArgs *a = c->in->args;
	size_t		  n = strlen(prefix);

	*mode = 0;
	for (int i = 0; i < a->n; i++)
	{
		const char *k = a->items[i].key,
				   *v = a->items[i].value;

		if (strncmp(k, prefix, n) != 0 || strcmp(k + n, label) != 0)
			continue;
		c->consumed[i] = true;
		if (strcasecmp(v, "is.null") == 0)
			*mode = -1;
		else if (strcasecmp(v, "not.is.null") == 0 || strcasecmp(v, "is.not_null") == 0)
			*mode = 1;
		else
			return vn_query_fail(c->q, 400, "PGRST120", "Only is null or not is null filters are allowed on embedded resources",
								 NULL, "Bad operator on the '%.64s' embedded resource", label);
	}
	return true;
}

/* the subquery of an embedding, AS its label; null_filter: embed_null_filter's mode */
static bool
embed_subquery(Ctx *c, const Rel *r, const char *al, const char *label, const char *spec, int depth,
			   const char *path, bool inner_join, int null_filter)
{
	VnBuf *b = &c->q->sql;
	VnBuf  inner,
		lateral;
	VnBuf *outer_names = c->names;
	char   sub_al[16];
	bool   ok;

	snprintf(sub_al, sizeof(sub_al), "_t%d", depth + 1);
	vn_buf_add(b, r->to_one ? "(SELECT pg_catalog.row_to_json(_e) FROM (SELECT " : "coalesce((SELECT pg_catalog.json_agg(_e) FROM (SELECT ");
	c->names = NULL; /* its columns are its own, not a spread's */
	ok = embed_list(c, r->child, sub_al, spec, depth, path, &inner, &lateral);
	c->names = outer_names;
	if (ok)
		embed_from(c, b, r, sub_al, al, depth, lateral.data);
	vn_buf_free(&lateral);
	if (!ok)
	{
		vn_buf_free(&inner);
		return false;
	}
	ok = embed_clauses(c, r->child, sub_al, path, &inner, false) &&
		 (!inner_join || embed_inner(c, r, al, sub_al, path, &inner, depth, false)) &&
		 (null_filter == 0 || embed_inner(c, r, al, sub_al, path, &inner, depth, null_filter < 0));
	vn_buf_free(&inner);
	if (!ok)
		return false;
	/* a to-one function may answer several rows: the first */
	vn_buf_add(b, r->to_one ? ") _e LIMIT 1) AS " : ") _e), '[]') AS ");
	vn_buf_ident(b, label);
	return true;
}

/*
 * A to-one embedding through a key beside aggregates: the parent's columns
 * of its key join the GROUP BY, so the groups are the embedded rows
 * (PostgREST groups by the embedded row's value: two parents pointing to
 * equal-looking rows make one group there, two here).
 */
static bool
embed_grouped(Ctx *c, const Rel *r, const char *al, VnBuf *group)
{
	char **cols;

	if (!r->to_one || r->fn || r->jn)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, "Aggregate inside the embedded resource instead: rel(col.sum()).",
							 "only a to-one embedding through a foreign key may stand beside aggregate functions here");
	cols = r->parent_refs ? r->fk->from_cols : r->fk->to_cols;
	for (int j = 0; j < r->fk->ncols; j++)
	{
		vn_buf_add(group, group->len ? ", " : " GROUP BY ");
		vn_query_col_ref(group, al, cols[j]);
	}
	return true;
}

/*
 * A to-many or computed embedding beside aggregates in a read: PostgREST
 * groups by the embedded value, so it is computed once per row in a lateral
 * join (c->lateral) and the rows are grouped by its text; equal embedded
 * arrays make one group.
 */
static bool
embed_grouped_value(Ctx *c, const Rel *r, const char *al, const char *label, const char *spec, int depth,
					const char *path, bool inner_join, int null_filter, VnBuf *group)
{
	VnBuf saved = c->q->sql;
	char  g_al[16];
	bool  ok;

	snprintf(g_al, sizeof(g_al), "_g%d", ++c->nspreads);
	vn_buf_init(&c->q->sql);
	vn_buf_add(&c->q->sql, " LEFT JOIN LATERAL (SELECT ");
	ok = embed_subquery(c, r, al, "v", spec, depth, path, inner_join, null_filter);
	if (ok)
	{
		vn_buf_addf(&c->q->sql, ") %s ON true", g_al);
		vn_buf_add(&c->lateral, c->q->sql.data);
	}
	vn_buf_free(&c->q->sql);
	c->q->sql = saved;
	if (!ok)
		return false;
	vn_buf_addf(&c->q->sql, "(%s.v::text)::json AS ", g_al);
	vn_buf_ident(&c->q->sql, label);
	vn_buf_addf(group, "%s%s.v::text", group->len ? ", " : " GROUP BY ", g_al);
	return true;
}

/* PGRST118 (order) or PGRST119 (spread) on a to-many relationship, PostgREST 12's words */
static bool
not_to_one(Ctx *c, const char *code, const char *fmt, int rel, const char *name)
{
	char details[256];

	snprintf(details, sizeof(details), "'%s' and '%.64s' do not form a many-to-one or one-to-one relationship",
			 c->in->schema->rels[rel].name, name);
	return vn_query_fail(c->q, 400, code, details, NULL, fmt, name);
}

/* remembers an embedding for order=label(col) of its parent's level */
static void
seen(Ctx *c, const char *prefix, const char *label, const char *name, const char *al, int rel, int depth,
	 const Rel *r)
{
	VnEmbedSeen *e;

	if ((c->nseen & (c->nseen - 1)) == 0) /* 0, 1, 2, 4 ...: grow to twice */
	{
		VnEmbedSeen *more = vn_alloc(sizeof(VnEmbedSeen) * (c->nseen ? 2 * c->nseen : 1));

		if (c->nseen)
			memcpy(more, c->seen, sizeof(VnEmbedSeen) * c->nseen);
		free(c->seen);
		c->seen = more;
	}
	e = &c->seen[c->nseen++];
	e->prefix = vn_strdup(prefix);
	e->label = vn_strdup(label);
	e->name = vn_strdup(name);
	snprintf(e->al, sizeof(e->al), "%s", al);
	e->parent = rel;
	e->depth = depth;
	e->r = *r;
	e->sp_al[0] = '\0';
	e->names = NULL;
	e->names_len = 0;
}

void
vn_query_embed_forget(Ctx *c)
{
	for (int i = 0; i < c->nseen; i++)
	{
		free(c->seen[i].prefix);
		free(c->seen[i].label);
		free(c->seen[i].name);
		free(c->seen[i].names);
	}
	free(c->seen);
	c->seen = NULL;
	c->nseen = 0;
}

/*
 * order=label(col): PostgREST orders the parents by a column of a to-one
 * embedding of the same level (its lateral join's column).  Here it is a
 * scalar subquery of the same join and the embedding's filters, so a
 * parent whose embedded row is absent or filtered out sorts as NULL.
 * term is "label(col)"; the ASC/DESC/NULLS that follow are order.c's.
 */
bool
vn_query_embed_order(Ctx *c, const char *prefix, const char *al, const char *term)
{
	VnBuf	   *b = &c->q->sql;
	const char *open = strchr(term, '(');
	size_t		len = strlen(term);
	char		label[128],
		col[128],
		path[256];
	const VnEmbedSeen *e = NULL;
	VnBuf			   none;
	Operand			   o;
	bool			   ok;

	if (open == NULL || term[len - 1] != ')' || open == term || (size_t) (open - term) >= sizeof(label) ||
		len - (open - term) - 2 >= sizeof(col) || len - (open - term) - 2 == 0)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, "Order by an embedded column as rel(column).desc.",
							 "malformed order term \"%.64s\"", term);
	snprintf(label, sizeof(label), "%.*s", (int) (open - term), term);
	snprintf(col, sizeof(col), "%.*s", (int) (len - (open - term) - 2), open + 1);
	for (int i = 0; i < c->nseen && e == NULL; i++)
		if (strcmp(c->seen[i].prefix, prefix) == 0 && strcmp(c->seen[i].label, label) == 0 &&
			strcmp(c->seen[i].al, al) == 0)
			e = &c->seen[i];
	if (e == NULL)
	{
		char hint[256];

		snprintf(hint, sizeof(hint), "Verify that '%.64s' is included in the 'select' query parameter.", label);
		return vn_query_fail(c->q, 400, "PGRST108", NULL, hint, "'%.64s' is not an embedded resource in this request",
							 label);
	}
	if (!e->r.to_one)
		return not_to_one(c, "PGRST118", "A related order on '%.64s' is not possible", e->parent, e->name);
	/* a column a spread answers: its lateral join's (grouped beside aggregates) */
	for (const char *n = e->names; e->sp_al[0] && n < e->names + e->names_len; n += strlen(n) + 1)
		if (strcmp(n, col) == 0)
		{
			vn_query_col_ref(b, e->sp_al, col);
			return true;
		}
	vn_buf_add(b, "(SELECT ");
	if (!vn_query_operand(c, &c->in->schema->rels[e->r.child], "_ob", col, &o, true))
		return false;
	embed_from(c, b, &e->r, "_ob", al, e->depth, NULL);
	snprintf(path, sizeof(path), "%s%s.", prefix, label);
	vn_buf_init(&none);
	ok = embed_clauses(c, e->r.child, "_ob", path, &none, true);
	vn_buf_free(&none);
	vn_buf_add(b, " LIMIT 1)");
	return ok;
}

static bool
embed(Ctx *c, int rel, const char *al, const char *alias, char *name, const char *spec, int depth,
	  const char *prefix, bool spread, VnBuf *group)
{
	char *hint;
	bool  inner_join;
	Rel	  r;
	char  path[256];
	char  sub_al[16];
	int	  null_filter;

	/*
	 * Each level is a subquery inside its parent's, built by recursion on
	 * the request's own stack (task.c): eight levels are far more than any
	 * schema's chain of keys, and bound the recursion.
	 */
	if (depth >= VN_MAX_EMBED_DEPTH)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "embedding nests at most %d levels deep",
							 VN_MAX_EMBED_DEPTH);
	/*
	 * Each embedding is a subquery: a request with a thousand of them is a
	 * statement the planner and executor take a long time over, for rows
	 * no client reads that way.
	 */
	if (++c->nembeds > c->in->max_embeds)
		return vn_query_fail(c->q, 400, "54000", NULL, "Split the request, or embed through a view.",
							 "a request embeds at most %d resources", c->in->max_embeds);
	if (!embed_hint(c, name, &hint, &inner_join) || !vn_query_embed_relationship(c, rel, name, hint, &r))
		return false;
	snprintf(path, sizeof(path), "%s%s.", prefix, alias ? alias : name);
	seen(c, prefix, alias ? alias : name, name, al, rel, depth, &r);
	if (spread && !r.to_one)
		return not_to_one(c, "PGRST119", "A spread operation on '%.64s' is not possible", rel, name);
	if (group && !spread && c->spread_ok && (!r.to_one || r.fn))
		return embed_null_filter(c, prefix, alias ? alias : name, &null_filter) &&
			   embed_grouped_value(c, &r, al, alias ? alias : name, spec, depth, path, inner_join, null_filter, group);
	if (group && !spread && !embed_grouped(c, &r, al, group))
		return false;
	if (!spread)
		return embed_null_filter(c, prefix, alias ? alias : name, &null_filter) &&
			   embed_subquery(c, &r, al, alias ? alias : name, spec, depth, path, inner_join, null_filter);
	if (inner_join || alias)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "a spread embedding takes no alias nor !inner");
	snprintf(sub_al, sizeof(sub_al), "_t%d", depth + 1);
	return embed_spread(c, &r, al, sub_al, spec, depth, path, group, c->nseen - 1);
}

bool
vn_query_embed(Ctx *c, int rel, const char *al, const char *alias, char *item, char *paren, int depth,
			   const char *prefix, VnBuf *group)
{
	size_t len = strlen(paren);
	char  *spec;
	bool   ok;

	if (paren[len - 1] != ')')
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed embedding \"%.64s\"", item);
	*paren = '\0';
	spec = vn_strndup(paren + 1, len - 2);
	if (strncmp(item, "...", 3) != 0)
		ok = embed(c, rel, al, alias, vn_query_trim(item), spec, depth, prefix, false, group);
	else if (!c->spread_ok)
		ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL,
						   "spread embeddings (...rel(cols)) are supported in reads only");
	else
		ok = embed(c, rel, al, alias, vn_query_trim(item + 3), spec, depth, prefix, true, group);
	free(spec);
	return ok;
}
