/*
 * openapi.c
 *	  GET / for an exposed schema other than api: the OpenAPI 3 document of
 *	  what the request's role may use there, read from the catalog by the
 *	  request itself (so privileges are the role's, as PostgREST's default
 *	  openapi-mode follow-privileges).  Ventros' api keeps its own
 *	  ventros.http_openapi(), which knows the commands of schema ventros.
 *
 *	  Tables and views the role holds a privilege on: GET with SELECT, POST
 *	  with INSERT, PATCH with UPDATE, DELETE with DELETE; their columns as
 *	  components, NOT NULL columns without a default as required, each with
 *	  its comment and PostgREST's notes of its keys ("Note:\nThis is a
 *	  Primary Key.<pk/>", "This is a Foreign Key to `t.c`.<fk table='t'
 *	  column='c'/>"), from the relationships of the schema cache, so a
 *	  view's columns note the keys of the table columns they are.  Functions
 *	  it may execute: POST with the named arguments as the body, and GET for
 *	  STABLE or IMMUTABLE ones; of overloads, the one with the fewest
 *	  arguments.  The statement is constant text; the schema and the notes
 *	  are its parameters, in the first CTE.
 */
#include <string.h>

#include "query.h"
#include "query_shared.h"

/* the JSON Schema of a value of type t (a pg_type row, b its base type) */
#define VN_OAS_TYPE(t, b) \
	"CASE WHEN " t ".typname IN ('json', 'jsonb') THEN jsonb_build_object('format', format_type(" t ".oid, NULL))" \
	" ELSE jsonb_build_object('type', CASE WHEN " t ".typcategory = 'A' THEN 'array'" \
	" WHEN " b ".typname IN ('int2', 'int4', 'int8') THEN 'integer'" \
	" WHEN " b ".typname IN ('numeric', 'float4', 'float8') THEN 'number' WHEN " b ".typname = 'bool' THEN 'boolean'" \
	" WHEN " b ".typtype = 'c' THEN 'object' ELSE 'string' END, 'format', format_type(" t ".oid, NULL)) END"

static const char *openapi_sql =
	", rels AS ("
	" SELECT c.oid, c.relname, c.relkind, coalesce(obj_description(c.oid, 'pg_class'), '') AS description,"
	"  has_table_privilege(c.oid, 'SELECT') AS can_select, has_table_privilege(c.oid, 'INSERT') AS can_insert,"
	"  has_table_privilege(c.oid, 'UPDATE') AS can_update, has_table_privilege(c.oid, 'DELETE') AS can_delete"
	" FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	" WHERE n.nspname = (SELECT name FROM nsp) AND c.relkind IN ('r', 'v', 'm', 'f', 'p')"
	"  AND has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE')"
	"), cols AS ("
	" SELECT r.relname, jsonb_object_agg(a.attname, jsonb_strip_nulls(" VN_OAS_TYPE("t", "b") " || jsonb_build_object('description',"
																							  "   CASE WHEN d.note IS NULL THEN col_description(r.oid, a.attnum) WHEN col_description(r.oid, a.attnum) IS NULL"
																							  "   THEN d.note ELSE col_description(r.oid, a.attnum) || E'\\n\\n' || d.note END))) AS props,"
																							  "  coalesce(jsonb_agg(a.attname ORDER BY a.attnum) FILTER (WHERE a.attnotnull AND NOT a.atthasdef"
																							  "   AND a.attidentity = '' AND r.relkind <> 'v'), '[]') AS required"
																							  " FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped"
																							  " CROSS JOIN LATERAL (SELECT (SELECT notes FROM nsp) -> r.relname::text ->> a.attname::text AS note) d"
																							  " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
																							  " JOIN pg_catalog.pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END"
																							  " GROUP BY r.relname"
																							  "), rel_paths AS ("
																							  " SELECT '/' || r.relname AS path, jsonb_strip_nulls(jsonb_build_object("
																							  "  'get', CASE WHEN r.can_select THEN jsonb_build_object('summary', r.description, 'tags', jsonb_build_array(r.relname),"
																							  "   'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK', 'content',"
																							  "    jsonb_build_object('application/json', jsonb_build_object('schema', jsonb_build_object('type', 'array',"
																							  "     'items', jsonb_build_object('$ref', '#/components/schemas/' || r.relname))))))) END,"
																							  "  'post', CASE WHEN r.can_insert THEN jsonb_build_object('tags', jsonb_build_array(r.relname),"
																							  "   'responses', jsonb_build_object('201', jsonb_build_object('description', 'Created'))) END,"
																							  "  'patch', CASE WHEN r.can_update THEN jsonb_build_object('tags', jsonb_build_array(r.relname),"
																							  "   'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK'))) END,"
																							  "  'delete', CASE WHEN r.can_delete THEN jsonb_build_object('tags', jsonb_build_array(r.relname),"
																							  "   'responses', jsonb_build_object('200', jsonb_build_object('description', 'OK'))) END)) AS item"
																							  " FROM rels r"
																							  "), funcs AS ("
																							  " SELECT DISTINCT ON (p.proname) p.oid, p.proname, p.provolatile IN ('s', 'i') AS read_only, p.proretset,"
																							  "  p.prorettype, p.pronargs - p.pronargdefaults AS nrequired,"
																							  "  split_part(coalesce(obj_description(p.oid, 'pg_proc'), ''), E'\\n', 1) AS summary,"
																							  "  coalesce(obj_description(p.oid, 'pg_proc'), '') AS description"
																							  " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
																							  " WHERE n.nspname = (SELECT name FROM nsp) AND p.prokind = 'f' AND has_function_privilege(p.oid, 'EXECUTE')"
																							  " ORDER BY p.proname, p.pronargs"
																							  "), args AS ("
																							  " SELECT f.oid, x.name, x.n, " VN_OAS_TYPE("t", "b") " AS schema"
																																				   " FROM funcs f, pg_catalog.pg_proc p,"
																																				   "  unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargnames,"
																																				   "   coalesce(p.proargmodes, array_fill('i'::\"char\", ARRAY[p.pronargs]))) WITH ORDINALITY AS x(type, name, mode, n),"
																																				   "  pg_catalog.pg_type t, pg_catalog.pg_type b"
																																				   " WHERE p.oid = f.oid AND x.mode IN ('i', 'b', 'v') AND coalesce(x.name, '') <> '' AND t.oid = x.type"
																																				   "  AND b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END"
																																				   "), ops AS ("
																																				   " SELECT f.*, jsonb_build_object('summary', f.summary, 'description', f.description,"
																																				   "   'tags', jsonb_build_array('(rpc) ' || f.proname), 'responses', CASE WHEN f.prorettype = 'void'::regtype"
																																				   "    THEN jsonb_build_object('204', jsonb_build_object('description', 'No Content'))"
																																				   "    ELSE jsonb_build_object('200', jsonb_build_object('description', 'OK')) END) AS common,"
																																				   "  (SELECT jsonb_object_agg(a.name, a.schema) FROM args a WHERE a.oid = f.oid) AS props,"
																																				   "  (SELECT coalesce(jsonb_agg(a.name ORDER BY a.n) FILTER (WHERE a.n <= f.nrequired), '[]') FROM args a"
																																				   "    WHERE a.oid = f.oid) AS required,"
																																				   "  (SELECT coalesce(jsonb_agg(jsonb_build_object('name', a.name, 'in', 'query', 'required', a.n <= f.nrequired,"
																																				   "    'schema', a.schema) ORDER BY a.n), '[]') FROM args a WHERE a.oid = f.oid) AS parameters"
																																				   " FROM funcs f"
																																				   "), rpc_paths AS ("
																																				   " SELECT '/rpc/' || o.proname AS path, jsonb_build_object('post', o.common || jsonb_build_object('requestBody',"
																																				   "   jsonb_build_object('required', o.nrequired > 0, 'content', jsonb_build_object('application/json',"
																																				   "    jsonb_build_object('schema', jsonb_build_object('type', 'object', 'properties', coalesce(o.props, '{}'),"
																																				   "     'required', o.required))))))"
																																				   "  || CASE WHEN o.read_only THEN jsonb_build_object('get', o.common || jsonb_build_object('parameters', o.parameters))"
																																				   "     ELSE '{}'::jsonb END AS item"
																																				   " FROM ops o"
																																				   ")"
																																				   " SELECT json_build_object('openapi', '3.0.3',"
																																				   "  'info', json_build_object('title', (SELECT name::text FROM nsp), 'version', '', 'description',"
																																				   "   coalesce(obj_description((SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = (SELECT name FROM nsp)), 'pg_namespace'), '')),"
																																				   "  'paths', coalesce((SELECT jsonb_object_agg(path, item) FROM (SELECT * FROM rel_paths UNION ALL"
																																				   "   SELECT * FROM rpc_paths) p), '{}'::jsonb),"
																																				   "  'components', json_build_object('schemas', coalesce((SELECT jsonb_object_agg(c.relname,"
																																				   "   jsonb_build_object('type', 'object', 'properties', c.props, 'required', c.required)) FROM cols c),"
																																				   "   '{}'::jsonb)))::text, 1::bigint, NULL::bigint";

/*
 * The foreign key PostgREST's OpenAPI notes on column col of relation rel:
 * one of a single column (a key of several columns is no column's), to a
 * table rather than a view over it when both are exposed; NULL for none.
 */
static const VnForeignKey *
column_key(const VnSchema *s, int rel, const char *col)
{
	const VnForeignKey *found = NULL;

	for (int i = 0; i < s->nfks; i++)
	{
		const VnForeignKey *k = &s->fks[i];

		if (k->from != rel || k->ncols != 1 || strcmp(k->from_cols[0], col) != 0)
			continue;
		if (found == NULL || (s->rels[found->to].base != s->rels[found->to].oid &&
							  s->rels[k->to].base == s->rels[k->to].oid))
			found = k;
	}
	return found;
}

/*
 * A column of the primary key: a table's, or a view column that is one by
 * its lineage (relations.c), when the table is exposed in the schema too
 */
static bool
column_pk(const VnSchema *s, const VnRelation *r, const VnColumn *col)
{
	if (col->is_pk)
		return true;
	if (col->src_rel == InvalidOid || col->src_rel == r->oid)
		return false;
	for (int i = 0; i < s->nrels; i++)
		if (s->rels[i].oid == col->src_rel)
			for (int j = 0; j < s->rels[i].ncols; j++)
				if (s->rels[i].cols[j].attnum == col->src_att)
					return s->rels[i].cols[j].is_pk;
	return false;
}

/* {"relation": {"column": "Note:\n...", ...}, ...} of every column with a key */
static void
key_notes(const VnSchema *s, VnBuf *out)
{
	VnBuf note;
	bool  first_rel = true;

	vn_buf_init(&note);
	vn_buf_addc(out, '{');
	for (int i = 0; i < s->nrels; i++)
	{
		const VnRelation *r = &s->rels[i];
		bool			  first_col = true;

		if (r->hidden)
			continue;
		for (int j = 0; j < r->ncols; j++)
		{
			const VnForeignKey *k = column_key(s, i, r->cols[j].name);
			bool				pk = column_pk(s, r, &r->cols[j]);

			if (!pk && k == NULL)
				continue;
			vn_buf_reset(&note);
			vn_buf_add(&note, "Note:");
			if (pk)
				vn_buf_add(&note, "\nThis is a Primary Key.<pk/>");
			if (k)
				vn_buf_addf(&note, "\nThis is a Foreign Key to `%s.%s`.<fk table='%s' column='%s'/>", s->rels[k->to].name,
							k->to_cols[0], s->rels[k->to].name, k->to_cols[0]);
			if (first_col)
			{
				vn_buf_add(out, first_rel ? "" : ",");
				vn_buf_json_string(out, r->name);
				vn_buf_add(out, ":{");
				first_rel = false;
			}
			vn_buf_add(out, first_col ? "" : ",");
			vn_buf_json_string(out, r->cols[j].name);
			vn_buf_addc(out, ':');
			vn_buf_json_string(out, note.data);
			first_col = false;
		}
		if (!first_col)
			vn_buf_addc(out, '}');
	}
	vn_buf_addc(out, '}');
	vn_buf_free(&note);
}

bool
vn_openapi_statement(const VnQueryInput *in, VnQuery *q)
{
	VnBuf notes;
	bool  ok;

	vn_buf_add(&q->sql, "WITH nsp AS (SELECT ");
	if (!vn_query_param_s(q, in->schema->name))
		return false;
	vn_buf_add(&q->sql, "::pg_catalog.name AS name, ");
	vn_buf_init(&notes);
	key_notes(in->schema, &notes);
	ok = vn_query_param_s(q, notes.data);
	vn_buf_free(&notes);
	if (!ok)
		return false;
	vn_buf_add(&q->sql, "::pg_catalog.jsonb AS notes)");
	vn_buf_add(&q->sql, openapi_sql);
	return true;
}
