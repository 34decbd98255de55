/*
 * put.c
 *	  PUT /<table>?<every primary key column>=eq.<value>: PostgREST's upsert
 *	  of one row named by its key (references/api/tables_views, "PUT").  The
 *	  body (one object, or an array of one) is inserted, or merged into the
 *	  row of that key; its key must be the URL's, else 400 PGRST115.  The
 *	  filters must be eq on every primary key column and nothing else (405
 *	  PGRST105); limit and offset are refused (400 PGRST114).  A Ventros
 *	  aggregate has no PUT (its key is the tenant's and the engine's): POST
 *	  with resolution=merge-duplicates, or PATCH with the version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

static bool
invalid(Ctx *c)
{
	return vn_query_fail(c->q, 405, "PGRST105", NULL, "Name the row: ?<key column>=eq.<value> for each one.",
						 "Filters must include all and only primary key columns with 'eq' operators");
}

/*
 * " WHERE _b.k = $n::type AND ..." from the filters, after the body's
 * SELECT: a body whose key is not the URL's gives no row (PGRST115, answer.c).
 */
static bool
key_filters(Ctx *c, const VnRelation *r, char **keys, int nkeys)
{
	const VnArgs *a = c->in->args;
	VnBuf		 *b = &c->q->sql;
	int			  found = 0;

	for (int i = 0; i < a->n; i++)
	{
		const char	   *key = a->items[i].key;
		const VnColumn *col = vn_schema_column(r, key);

		if (strcmp(key, "limit") == 0 || strcmp(key, "offset") == 0)
			return vn_query_fail(c->q, 400, "PGRST114", NULL, NULL,
								 "limit/offset querystring parameters are not allowed for PUT");
		if (strcmp(key, "select") == 0 || strcmp(key, "columns") == 0)
			continue;
		if (col == NULL || !col->is_pk || strncmp(a->items[i].value, "eq.", 3) != 0)
			return invalid(c);
		for (int j = 0; j < i; j++)
			if (strcmp(a->items[j].key, key) == 0)
				return invalid(c);
		vn_buf_add(b, found++ ? " AND " : " WHERE ");
		vn_query_col_ref(b, "_b", key);
		vn_buf_add(b, " = ");
		if (!vn_query_param_s(c->q, a->items[i].value + 3))
			return false;
		vn_buf_addf(b, "::%s", col->type);
	}
	if (found != r->npk)
		return invalid(c);
	for (int i = 0; i < r->ncols; i++)
	{
		bool given = false;

		for (int k = 0; k < nkeys; k++)
			given |= strcmp(keys[k], r->cols[i].name) == 0;
		if (r->cols[i].is_pk && !given)
			return vn_query_fail(c->q, 400, "PGRST115", NULL, "The body names every key column, as the URL does.",
								 "Payload values do not match URL in primary key column(s)");
	}
	return true;
}

bool
vn_query_build_put(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	char			**keys = NULL;
	int				  nkeys = 0;
	bool			  is_array = false;
	bool			  ok;

	if (r->aggregate || r->npk == 0)
		return invalid(c);
	if (!vn_query_body_keys(c, r, &keys, &nkeys, &is_array))
		return false;
	vn_buf_add(b, "WITH _w AS (INSERT INTO ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " AS _t");
	for (int i = 0; i < nkeys; i++)
	{
		vn_buf_add(b, i ? ", " : " (");
		vn_buf_ident(b, keys[i]);
	}
	vn_buf_add(b, nkeys ? ")" : "");
	ok = nkeys > 0 && vn_query_insert_rows(c, r, keys, nkeys, is_array) && key_filters(c, r, keys, nkeys) &&
		 vn_query_upsert_clause(c, r, keys, nkeys);
	if (nkeys == 0)
		ok = vn_query_fail(c->q, 400, "PGRST115", NULL, "The body names every key column, as the URL does.",
						   "Payload values do not match URL in primary key column(s)");
	c->q->put = true;
	if (ok)
		ok = vn_query_write_end(c, rel);
	vn_query_free_list(keys, nkeys);
	return ok && c->q->status == 0;
}
