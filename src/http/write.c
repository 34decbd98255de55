/*
 * write.c
 *	  The statements of writes: POST (insert and upsert), PATCH and DELETE of
 *	  a relation, each a data-modifying WITH _w whose rows make the answer.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

static bool
check_keys(Ctx *c, const VnRelation *r, char **keys, int nkeys)
{
	for (int i = 0; i < nkeys; i++)
		if (!vn_schema_column(r, keys[i]))
		{
			char msg[200];

			snprintf(msg, sizeof(msg), "Could not find the '%.64s' column of '%s'", keys[i], r->name);
			return vn_query_fail(c->q, 400, "PGRST204", NULL, "Columns are listed at GET /.", "%s", msg);
		}
	return true;
}

static void
returning(Ctx *c, int rel, bool *ok)
{
	VnBuf *b = &c->q->sql;

	vn_buf_add(b, " RETURNING ");
	if (c->in->ret == VN_RETURN_REPRESENTATION)
		*ok = vn_query_select_list(c, rel, "_t", vn_query_arg(c->in->args, "select"), 0, "");
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
	vn_query_body_expr(c);
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
		vn_query_param_s(c->q, num);
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

bool
vn_query_build_insert(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	char			**keys = NULL;
	int				  nkeys = 0;
	bool			  is_array = false;
	bool			  ok = true;
	const char		 *columns = vn_query_arg(c->in->args, "columns");
	const char		 *on_conflict = vn_query_arg(c->in->args, "on_conflict");

	if (!vn_query_scan_body(c, &keys, &nkeys, &is_array))
		return false;
	if (columns)
	{
		vn_query_free_list(keys, nkeys);
		if (!vn_query_split(columns, &keys, &nkeys))
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed columns");
		for (int i = 0; i < nkeys; i++)
		{
			char *t = vn_strdup(vn_query_trim(keys[i]));

			free(keys[i]);
			keys[i] = t;
		}
	}
	if (!check_keys(c, r, keys, nkeys) ||
		(nkeys == 0 && !vn_query_fail(c->q, 400, "PGRST102", NULL, NULL, "the request body names no column")))
	{
		vn_query_free_list(keys, nkeys);
		return false;
	}
	vn_buf_add(b, "WITH _w AS (INSERT INTO ");
	vn_query_relation_ref(c, b, r);
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
			vn_query_col_ref(b, "_b", keys[i]);
		else
		{
			vn_buf_add(b, "CASE WHEN (_j.o -> ");
			vn_buf_literal(b, keys[i]);
			vn_buf_add(b, ") IS NULL THEN ");
			vn_buf_add(b, col->default_expr);
			vn_buf_add(b, " ELSE ");
			vn_query_col_ref(b, "_b", keys[i]);
			vn_buf_add(b, " END");
		}
	}
	if (!is_array && columns == NULL)
	{
		vn_buf_add(b, " FROM pg_catalog.json_to_record(");
		if (!vn_query_param(c->q, c->in->body, c->in->body_len))
			goto out;
		vn_buf_add(b, "::json)");
	}
	else
	{
		vn_buf_add(b, " FROM pg_catalog.json_array_elements(");
		if (!is_array)
			vn_buf_add(b, "pg_catalog.json_build_array(");
		if (!vn_query_param(c->q, c->in->body, c->in->body_len))
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
			if (!vn_query_split(on_conflict, &target, &nt))
			{
				ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed on_conflict");
				goto out;
			}
			for (int i = 0; i < nt; i++)
			{
				char *t = vn_strdup(vn_query_trim(target[i]));

				free(target[i]);
				target[i] = t;
			}
			if (!check_keys(c, r, target, nt))
			{
				vn_query_free_list(target, nt);
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
			ok = vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "upsert needs on_conflict");
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
		vn_query_free_list(target, nt);
	}
	returning(c, rel, &ok);
	if (ok)
		write_tail(c, r->has_id);
out:
	vn_query_free_list(keys, nkeys);
	return ok && c->q->status == 0;
}

bool
vn_query_build_update(Ctx *c, int rel)
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

	if (!vn_query_scan_body(c, &keys, &nkeys, &is_array))
		return false;
	if (is_array)
	{
		vn_query_free_list(keys, nkeys);
		return vn_query_fail(c->q, 400, "PGRST102", NULL, NULL, "PATCH takes one JSON object");
	}
	if (!check_keys(c, r, keys, nkeys))
	{
		vn_query_free_list(keys, nkeys);
		return false;
	}
	if (nkeys == 0)
	{
		vn_query_free_list(keys, nkeys);
		return vn_query_fail(c->q, 400, "PGRST102", NULL, NULL, "the request body names no column");
	}
	vn_buf_add(b, "WITH _w AS (UPDATE ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " AS _t SET ");
	for (int i = 0; i < nkeys; i++)
	{
		if (i)
			vn_buf_add(b, ", ");
		vn_buf_ident(b, keys[i]);
		vn_buf_add(b, " = ");
		vn_query_col_ref(b, "_b", keys[i]);
		if (strcmp(keys[i], "version") == 0)
			has_version = true;
	}
	set_end = b->len;
	vn_buf_add(b, " FROM pg_catalog.json_to_record(");
	if (!vn_query_param(c->q, c->in->body, c->in->body_len))
		goto out;
	vn_buf_add(b, "::json)");
	record_def(b, r, keys, nkeys);
	vn_buf_add(b, " WHERE ");
	if (!vn_query_where(c, r, "_t", true, r->has_id ? &version_param : NULL))
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
	vn_query_free_list(keys, nkeys);
	return ok && c->q->status == 0;
}

bool
vn_query_build_delete(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	int				  version_param = 0;

	if (!r->has_id)
		return vn_query_fail(c->q, 405, "PGRST105", NULL, NULL, "%s cannot be deleted over HTTP", r->name);
	/* the engine turns a DELETE into a soft delete and returns no row: keep the rows selected */
	vn_buf_add(b, "WITH _s AS (SELECT _t.* FROM ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " _t WHERE ");
	if (!vn_query_where(c, r, "_t", true, &version_param))
		return false;
	vn_buf_add(b, " FOR UPDATE), _d AS (DELETE FROM ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " _t USING _s WHERE _t.tenant_id = _s.tenant_id AND _t.id = _s.id), _w AS (SELECT ");
	c->q->returns_body = c->in->ret == VN_RETURN_REPRESENTATION;
	if (!vn_query_select_list(c, rel, "_t", vn_query_arg(c->in->args, "select"), 0, ""))
		return false;
	vn_buf_add(b, " FROM _s _t");
	write_tail(c, false);
	return c->q->status == 0;
}
