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

/*
 * RETURNING of a write: the representation's select list, or what the
 * Location header needs (an aggregate's id, a table's primary key), or 1.
 */
static void
returning(Ctx *c, int rel, bool *ok)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	bool			  first = true;

	vn_buf_add(b, " RETURNING ");
	if (c->in->ret == VN_RETURN_REPRESENTATION)
	{
		*ok = vn_query_select_list(c, rel, "_t", vn_query_arg(c->in->args, "select"), 0, "");
		return;
	}
	if (r->has_id)
	{
		vn_buf_add(b, "_t.id");
		return;
	}
	for (int i = 0; i < r->ncols; i++)
		if (r->cols[i].is_pk)
		{
			vn_buf_add(b, first ? "" : ", ");
			vn_query_col_ref(b, "_t", r->cols[i].name);
			first = false;
		}
	if (first)
		vn_buf_add(b, "1 AS one");
}

/*
 * The query string of a single created row's Location: id=eq.N for an
 * aggregate (its tenant is the caller's), every primary key column's
 * col=eq.value for a table, as PostgREST.
 */
static void
location_expr(Ctx *c, const VnRelation *r)
{
	VnBuf *b = &c->q->sql;

	if (r->has_id)
	{
		vn_buf_add(b, ", 'id=eq.' || pg_catalog.min(_r.id::text)");
		return;
	}
	vn_buf_add(b, ", CASE WHEN pg_catalog.count(*) = 1 THEN pg_catalog.concat_ws('&'");
	for (int i = 0; i < r->ncols; i++)
		if (r->cols[i].is_pk)
		{
			vn_buf_add(b, ", ");
			vn_buf_literal(b, r->cols[i].name);
			vn_buf_add(b, " || '=eq.' || pg_catalog.min(");
			vn_query_col_ref(b, "_r", r->cols[i].name);
			vn_buf_add(b, "::text)");
		}
	vn_buf_add(b, ") END");
}

/*
 * The answer of a write from its rows _w: the body (ordered by order= as
 * PostgREST orders a representation), the count, and for a POST without a
 * representation the Location of the one row created.
 */
static void
write_tail(Ctx *c, int rel, bool location)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	const char		 *order = vn_query_arg(c->in->args, "order");

	c->q->returns_body = c->in->ret == VN_RETURN_REPRESENTATION;
	vn_buf_add(b, ") SELECT ");
	vn_query_body_expr(c);
	vn_buf_add(b, ", pg_catalog.count(*), NULL::bigint");
	if (location && !c->q->returns_body && (r->has_id || r->npk > 0))
		location_expr(c, r);
	if (c->q->returns_body && order)
	{
		vn_buf_add(b, " FROM (SELECT * FROM _w _t");
		if (!vn_query_order_spec(c, r, "_t", order))
			return;
		vn_buf_add(b, ") _r");
	}
	else
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

/*
 * A list of column names (columns=, on_conflict=): trimmed, and unquoted
 * when double-quoted, as PostgREST's clients send them ("a","b c").
 */
static bool
column_list(Ctx *c, const VnRelation *r, const char *list, const char *what, char ***out, int *n)
{
	if (!vn_query_split(list, out, n))
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed %s", what);
	for (int i = 0; i < *n; i++)
	{
		char *t = vn_query_unquote(vn_query_trim((*out)[i]));

		free((*out)[i]);
		(*out)[i] = t;
	}
	if (*n == 1 && (*out)[0][0] == '\0')
	{
		vn_query_free_list(*out, *n);
		*out = NULL;
		*n = 0;
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed %s", what);
	}
	if (!check_keys(c, r, *out, *n))
	{
		/* nothing left allocated for the caller to free on the way out */
		vn_query_free_list(*out, *n);
		*out = NULL;
		*n = 0;
		return false;
	}
	return true;
}

/*
 * The rows of an insert: "SELECT <values> FROM <the body>".  A column the
 * insert names that an object leaves out (a key of columns=, or of another
 * object of an aggregate's array) is NULL, which json_to_record gives for an
 * absent key, or the column's default: PostgREST's rule is NULL unless
 * Prefer: missing=default; an aggregate of Ventros keeps its default unless
 * Prefer: missing=null, which Ventros' own clients rely on.  An explicit
 * null stays null.  One object without columns= has every key it names: no
 * test needed, and the columns it leaves out are not in the insert (their
 * defaults, as PostgREST).  No key at all ({} or [{}, ...]): a SELECT of no
 * column, which PostgreSQL fills with every column's default, one row per
 * object ([] inserts none).
 */
static bool
insert_rows(Ctx *c, const VnRelation *r, char **keys, int nkeys, bool is_array, bool columns)
{
	VnBuf *b = &c->q->sql;
	bool   one = !is_array && !columns && nkeys > 0;
	bool   defaults = r->aggregate ? !c->in->missing_null : c->in->missing_default;

	vn_buf_add(b, " SELECT ");
	for (int i = 0; i < nkeys; i++)
	{
		const VnColumn *col = vn_schema_column(r, keys[i]);

		if (i)
			vn_buf_add(b, ", ");
		if (strcmp(col->default_expr, "NULL") == 0 || one || !defaults)
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
	if (one)
	{
		vn_buf_add(b, " FROM pg_catalog.json_to_record(");
		if (!vn_query_param(c->q, c->in->body, c->in->body_len))
			return false;
		vn_buf_add(b, "::json)");
		record_def(b, r, keys, nkeys);
		return true;
	}
	vn_buf_add(b, " FROM pg_catalog.json_array_elements(");
	if (!is_array)
		vn_buf_add(b, "pg_catalog.json_build_array(");
	if (!vn_query_param(c->q, c->in->body, c->in->body_len))
		return false;
	vn_buf_add(b, is_array ? "::json) _j(o)" : "::json)) _j(o)");
	if (nkeys > 0)
	{
		vn_buf_add(b, " CROSS JOIN LATERAL pg_catalog.json_to_record(_j.o)");
		record_def(b, r, keys, nkeys);
	}
	return true;
}

/*
 * The conflict target of an upsert: on_conflict=, else an aggregate's
 * (tenant_id, id), else the primary key (PostgREST's default).
 */
static bool
conflict_target(Ctx *c, const VnRelation *r, char ***target, int *nt)
{
	const char *on_conflict = vn_query_arg(c->in->args, "on_conflict");

	*target = NULL;
	*nt = 0;
	if (on_conflict)
		return column_list(c, r, on_conflict, "on_conflict", target, nt);
	if (r->has_id)
	{
		*target = vn_alloc(sizeof(char *) * 2);
		(*target)[(*nt)++] = vn_strdup("tenant_id");
		(*target)[(*nt)++] = vn_strdup("id");
		return true;
	}
	if (r->npk == 0)
		return vn_query_fail(c->q, 400, "PGRST100", NULL, "Name the unique columns: on_conflict=a,b.",
							 "upsert needs on_conflict: %s has no primary key", r->name);
	*target = vn_alloc(sizeof(char *) * r->npk);
	for (int i = 0; i < r->ncols; i++)
		if (r->cols[i].is_pk)
			(*target)[(*nt)++] = vn_strdup(r->cols[i].name);
	return true;
}

/*
 * ON CONFLICT (target) DO NOTHING | DO UPDATE SET col = EXCLUDED.col for
 * each column of the body.  A body of only the target's columns sets them
 * to themselves, so the row is still returned.  An aggregate's engine
 * wants every UPDATE to state the version: an upsert merges into whatever
 * version is current.
 */
static bool
on_conflict_clause(Ctx *c, const VnRelation *r, char **keys, int nkeys)
{
	VnBuf *b = &c->q->sql;
	char **target;
	int	   nt;
	bool   first = true;
	bool   versioned = r->aggregate && vn_schema_column(r, "version") != NULL;

	if (!conflict_target(c, r, &target, &nt))
		return false;
	vn_buf_add(b, " ON CONFLICT (");
	for (int i = 0; i < nt; i++)
	{
		vn_buf_add(b, i ? ", " : "");
		vn_buf_ident(b, target[i]);
	}
	vn_buf_add(b, c->in->ignore_duplicates ? ") DO NOTHING" : ") DO UPDATE SET ");
	for (int i = 0; i < nkeys && !c->in->ignore_duplicates; i++)
	{
		bool in_target = false;

		for (int k = 0; k < nt; k++)
			in_target |= strcmp(keys[i], target[k]) == 0;
		if ((in_target && (versioned || nkeys > nt)) || (versioned && strcmp(keys[i], "version") == 0))
			continue;
		vn_buf_add(b, first ? "" : ", ");
		first = false;
		vn_buf_ident(b, keys[i]);
		vn_buf_add(b, " = EXCLUDED.");
		vn_buf_ident(b, keys[i]);
	}
	if (!c->in->ignore_duplicates && versioned)
		vn_buf_addf(b, "%sversion = _t.version", first ? "" : ", ");
	else if (!c->in->ignore_duplicates && first)
	{
		/* no column to merge (an empty body): the target's first column to itself */
		vn_buf_ident(b, target[0]);
		vn_buf_add(b, " = EXCLUDED.");
		vn_buf_ident(b, target[0]);
	}
	vn_query_free_list(target, nt);
	return true;
}

/*
 * An application/x-www-form-urlencoded body, or a text/csv one to insert
 * (PostgREST's, for tables): the write goes on as if the request had sent
 * the JSON of its strings (parse.c, body.c), in *in, which c->in points to
 * until the caller restores it.
 */
static bool
form_body(Ctx *c, VnQueryInput *in, VnBuf *json, bool csv)
{
	vn_buf_init(json);
	if (csv && vn_query_content_type_is(c->in->content_type, "text/csv"))
	{
		if (!vn_query_csv_json(c, json))
			return false;
	}
	else if (!vn_query_is_form(c->in))
		return true;
	else if (!vn_query_form_json(c, json))
		return false;
	*in = *c->in;
	in->body = json->data;
	in->body_len = json->len;
	c->in = in;
	return true;
}

static bool build_insert(Ctx *c, int rel);
static bool build_update(Ctx *c, int rel);

bool
vn_query_build_insert(Ctx *c, int rel)
{
	const VnQueryInput *given = c->in;
	VnQueryInput		form;
	VnBuf				json;
	bool				ok = form_body(c, &form, &json, true) && build_insert(c, rel);

	c->in = given;
	vn_buf_free(&json);
	return ok;
}

bool
vn_query_build_update(Ctx *c, int rel)
{
	const VnQueryInput *given = c->in;
	VnQueryInput		form;
	VnBuf				json;
	bool				ok = form_body(c, &form, &json, false) && build_update(c, rel);

	c->in = given;
	vn_buf_free(&json);
	return ok;
}

static bool
build_insert(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	char			**keys = NULL;
	int				  nkeys = 0;
	bool			  is_array = false;
	bool			  ok;
	const char		 *columns = vn_query_arg(c->in->args, "columns");

	/*
	 * The objects of an array without columns= name the same keys
	 * (PostgREST's rule: 400 otherwise); an aggregate's may differ, each
	 * absent key taking its default (insert_rows()).
	 */
	if (!vn_query_scan_body(c, &keys, &nkeys, &is_array, !columns && !r->aggregate))
		return false;
	if (columns)
	{
		vn_query_free_list(keys, nkeys);
		if (!column_list(c, r, columns, "columns", &keys, &nkeys))
			return false;
	}
	if (!check_keys(c, r, keys, nkeys))
	{
		vn_query_free_list(keys, nkeys);
		return false;
	}
	vn_buf_add(b, "WITH _w AS (INSERT INTO ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " AS _t");
	for (int i = 0; i < nkeys; i++)
	{
		vn_buf_add(b, i ? ", " : " (");
		vn_buf_ident(b, keys[i]);
	}
	vn_buf_add(b, nkeys ? ")" : "");
	ok = insert_rows(c, r, keys, nkeys, is_array, columns != NULL);
	if (ok && (c->in->merge_duplicates || c->in->ignore_duplicates))
		ok = on_conflict_clause(c, r, keys, nkeys);
	if (ok)
		returning(c, rel, &ok);
	if (ok)
		write_tail(c, rel, true);
	vn_query_free_list(keys, nkeys);
	return ok && c->q->status == 0;
}

/* "col = _b.col, ...": keys from the body, or columns= (PostgREST's rule on PATCH too) */
static void
update_set(VnBuf *b, char **keys, int nkeys, bool *has_version)
{
	for (int i = 0; i < nkeys; i++)
	{
		if (i)
			vn_buf_add(b, ", ");
		vn_buf_ident(b, keys[i]);
		vn_buf_add(b, " = ");
		vn_query_col_ref(b, "_b", keys[i]);
		if (strcmp(keys[i], "version") == 0)
			*has_version = true;
	}
}

/*
 * PATCH with no column ({}, or columns= naming none of the body's): nothing
 * changes and nothing is returned, as PostgREST (204, or [] with a
 * representation).
 */
static bool
update_nothing(Ctx *c, int rel)
{
	VnBuf *b = &c->q->sql;
	bool   ok = true;

	vn_buf_add(b, "WITH _w AS (SELECT ");
	if (c->in->ret == VN_RETURN_REPRESENTATION)
		ok = vn_query_select_list(c, rel, "_t", vn_query_arg(c->in->args, "select"), 0, "");
	else
		vn_buf_add(b, "1 AS one");
	vn_buf_add(b, " FROM ");
	vn_query_relation_ref(c, b, &c->in->schema->rels[rel]);
	vn_buf_add(b, " _t WHERE false");
	if (ok)
		write_tail(c, rel, false);
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
	const char		 *columns = vn_query_arg(c->in->args, "columns");

	if (!vn_query_scan_body(c, &keys, &nkeys, &is_array, false))
		return false;
	if (is_array)
	{
		vn_query_free_list(keys, nkeys);
		return vn_query_fail(c->q, 400, "PGRST102", NULL, NULL, "PATCH takes one JSON object");
	}
	if (columns)
	{
		vn_query_free_list(keys, nkeys);
		if (!column_list(c, r, columns, "columns", &keys, &nkeys))
			return false;
	}
	if (!check_keys(c, r, keys, nkeys))
	{
		vn_query_free_list(keys, nkeys);
		return false;
	}
	if (nkeys == 0)
		return update_nothing(c, rel);
	vn_buf_add(b, "WITH _w AS (UPDATE ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " AS _t SET ");
	update_set(b, keys, nkeys, &has_version);
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
	write_tail(c, rel, false);
	/* a version=eq.N filter states the version when the body does not */
	if (version_param && !has_version)
	{
		VnBuf tail;

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

/*
 * DELETE of an aggregate: the engine turns it into a soft delete and
 * returns no row, so the rows are selected first and answered from there.
 */
static bool
delete_aggregate(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	int				  version_param = 0;

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
	write_tail(c, rel, false);
	return c->q->status == 0;
}

bool
vn_query_build_delete(Ctx *c, int rel)
{
	const VnRelation *r = &c->in->schema->rels[rel];
	VnBuf			 *b = &c->q->sql;
	bool			  ok = true;

	if (r->has_id)
		return delete_aggregate(c, rel);
	vn_buf_add(b, "WITH _w AS (DELETE FROM ");
	vn_query_relation_ref(c, b, r);
	vn_buf_add(b, " AS _t WHERE ");
	if (!vn_query_where(c, r, "_t", true, NULL))
		return false;
	returning(c, rel, &ok);
	if (ok)
		write_tail(c, rel, false);
	return ok && c->q->status == 0;
}

/* put.c's pieces of an insert: the body's keys (checked, uniform), its rows, the upsert, the tail */
bool
vn_query_body_keys(Ctx *c, const VnRelation *r, char ***keys, int *nkeys, bool *is_array)
{
	if (!vn_query_scan_body(c, keys, nkeys, is_array, true))
		return false;
	if (check_keys(c, r, *keys, *nkeys))
		return true;
	vn_query_free_list(*keys, *nkeys);
	*keys = NULL;
	*nkeys = 0;
	return false;
}

bool
vn_query_insert_rows(Ctx *c, const VnRelation *r, char **keys, int nkeys, bool is_array)
{
	return insert_rows(c, r, keys, nkeys, is_array, false);
}

bool
vn_query_upsert_clause(Ctx *c, const VnRelation *r, char **keys, int nkeys)
{
	return on_conflict_clause(c, r, keys, nkeys);
}

bool
vn_query_write_end(Ctx *c, int rel)
{
	bool ok = true;

	returning(c, rel, &ok);
	if (ok)
		write_tail(c, rel, false);
	return ok && c->q->status == 0;
}
