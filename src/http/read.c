/*
 * read.c
 *	  The statement of a read (GET and HEAD of a relation): the rows of the
 *	  answer, its text (JSON, object, CSV), and the total of Prefer: count.
 *	  rpc.c shapes a call's rows with the same pieces (vn_query_rows).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

void
vn_query_body_expr(Ctx *c)
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

bool
vn_query_build_read(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	size_t			  where_start,
		where_end;
	char *cond;

	c->q->is_read = true;
	vn_buf_add(b, "SELECT ");
	vn_query_body_expr(c);
	vn_buf_add(b, ", pg_catalog.count(*), ");
	/* the total is filled in below, once the WHERE clause is known */
	vn_buf_add(b, "@TOTAL@ FROM (SELECT ");
	c->spread_ok = true;
	if (!vn_query_select_list(c, rel, "_t", vn_query_arg(c->in->args, "select"), 0, ""))
		return false;
	c->spread_ok = false;
	vn_buf_add(b, " FROM ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " _t");
	vn_buf_add(b, c->lateral.data);
	vn_buf_add(b, " WHERE ");
	where_start = b->len;
	if (!vn_query_where(c, r, "_t", false, NULL))
		return false;
	vn_buf_add(b, c->inner.data);
	where_end = b->len;
	vn_query_take_group(c, b);
	if (!vn_query_order_by(c, r, "_t") || !vn_query_paging(c))
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
			vn_buf_add(&total, "(SELECT pg_catalog.count(*) FROM ");
			vn_query_relation_ref(c, &total, r);
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

bool
vn_query_rows(VnQueryCtx *c, int rel, const char *from, char **where)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	size_t			  where_start;

	if (!vn_query_select_list(c, rel, "_t", vn_query_arg(c->in->args, "select"), 0, ""))
		return false;
	vn_buf_add(b, " FROM ");
	vn_buf_add(b, from);
	vn_buf_add(b, " WHERE ");
	where_start = b->len;
	if (!vn_query_where(c, r, "_t", false, NULL))
		return false;
	if (where)
		*where = vn_strndup(b->data + where_start, b->len - where_start);
	vn_query_take_group(c, b);
	return vn_query_order_by(c, r, "_t");
}
