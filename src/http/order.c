/*
 * order.c
 *	  order= to ORDER BY (columns, JSON paths, computed fields, and columns
 *	  of to-one embeddings: order=rel(col).desc), and limit=, offset= and
 *	  the Range header to LIMIT and OFFSET (the limit written into the text,
 *	  a later page's offset bound; capped at the maximum page size).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

bool
vn_query_order_by(Ctx *c, const VnRelation *r, const char *al)
{
	return vn_query_order_spec(c, r, al, vn_query_arg(c->in->args, "order"));
}

bool
vn_query_order_spec(Ctx *c, const VnRelation *r, const char *al, const char *spec)
{
	return vn_query_order_at(c, r, al, spec, "");
}

/*
 * column[.asc|.desc][.nullsfirst|.nullslast], or rel(column)... naming a
 * to-one embedding of this level (embed.c), whose path is prefix
 */
bool
vn_query_order_at(Ctx *c, const VnRelation *r, const char *al, const char *spec, const char *prefix)
{
	char **items;
	int	   n;
	bool   ok = true;
	VnBuf *b = &c->q->sql;

	if (spec == NULL)
		return true;
	if (!vn_query_split(spec, &items, &n))
	{
		vn_query_free_list(items, n);
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed order \"%.64s\"", spec);
	}
	vn_buf_add(b, " ORDER BY ");
	for (int i = 0; i < n && ok; i++)
	{
		char *term = vn_query_trim(items[i]);
		char *parts[4] = {NULL};
		int	  np = 0;
		char *save = NULL;

		for (char *t = strtok_r(term, ".", &save); t && np < 4; t = strtok_r(NULL, ".", &save))
			parts[np++] = t;
		if (np == 0 || np > 3)
		{
			ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed order term");
			break;
		}
		if (i)
			vn_buf_add(b, ", ");
		if (strchr(parts[0], '(') != NULL)
		{
			if (!vn_query_embed_order(c, prefix, al, parts[0]))
			{
				ok = false;
				break;
			}
		}
		else
		{
			Operand o;

			if (!vn_query_operand(c, r, al, parts[0], &o, true))
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
				ok = vn_query_fail(c->q, 400, "PGRST100", NULL, "Order terms are column[.asc|.desc][.nullsfirst|.nullslast].",
								   "unknown order modifier \"%.32s\"", parts[k]);
		}
	}
	vn_query_free_list(items, n);
	return ok;
}

bool
vn_query_paging(Ctx *c)
{
	const VnQueryInput *in = c->in;
	long				limit = -1,
		 offset = 0;
	const char *l = vn_query_arg(in->args, "limit");
	const char *o = vn_query_arg(in->args, "offset");

	if (l && !vn_query_number(l, &limit))
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "limit must be a non-negative integer");
	if (o && !vn_query_number(o, &offset))
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "offset must be a non-negative integer");
	if (limit > in->max_rows)
	{
		char hint[128];

		snprintf(hint, sizeof(hint), "Page through the rows with offset or Range; at most %ld per page.", in->max_rows);
		return vn_query_fail(c->q, 400, "54000", NULL, hint, "limit %ld is over the maximum page size of %ld", limit, in->max_rows);
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

		/*
		 * The limit is written into the text, not bound: with LIMIT $n the
		 * planner prices a generic plan for 10 % of the table, so the plan
		 * cache never trusts one and plans the statement again on every
		 * execution (three times the read's cost in the backend, bench/http).
		 * A literal limit lets a statement without other parameters keep one
		 * plan.  Clients use a few page sizes, so the statements stay few.
		 * The first page has no OFFSET; later pages bind theirs, so paging
		 * through a table does not prepare one statement per page.
		 */
		snprintf(num, sizeof(num), " LIMIT %ld", limit);
		vn_buf_add(&c->q->sql, num);
		if (offset > 0)
		{
			vn_buf_add(&c->q->sql, " OFFSET ");
			snprintf(num, sizeof(num), "%ld", offset);
			if (!vn_query_param_s(c->q, num))
				return false;
			vn_buf_add(&c->q->sql, "::bigint");
		}
	}
	return true;
}
