/*
 * schema.c
 *	  Reads one exposed schema from the catalog into a VnSchema (schema.h).
 *
 * Only pg_catalog is read (and ventros.http_rpc_functions, a view over it),
 * so the front's login needs no privilege on Ventros' own tables.  A view's
 * table is found through its rewrite rule's dependencies; its columns'
 * lineage and the relationships between relations (foreign keys, junctions,
 * computed ones) are relations.c's.  A relation whose table carries the engine's
 * trigger is one of Ventros' aggregates, with its rules (version, soft
 * delete); a column is part of the primary key when its table's key has a
 * column of that name.  catalog.c loads every exposed schema and reloads.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "schema.h"

static const char *columns_sql =
	"WITH rels AS ("
	"  SELECT c.oid, c.relname, coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '') AS description,"
	"         coalesce((SELECT d.refobjid FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d"
	"                     ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid"
	"                    WHERE r.ev_class = c.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass"
	"                      AND d.refobjid <> c.oid LIMIT 1), c.oid) AS base, c.relkind"
	"    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE n.nspname = $1 AND c.relkind IN ('v', 'r', 'm', 'p', 'f'))"
	"SELECT r.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory,"
	"       t.typname = 'tsvector', r.description, r.base, r.oid,"
	"       coalesce((SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d"
	"                  WHERE d.adrelid = r.oid AND d.adnum = a.attnum),"
	"                (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d"
	"                   JOIN pg_catalog.pg_attribute ba ON ba.attrelid = d.adrelid AND ba.attnum = d.adnum"
	"                  WHERE d.adrelid = r.base AND ba.attname = a.attname), 'NULL'),"
	"       EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute ba"
	"                 ON ba.attrelid = i.indrelid AND ba.attnum = ANY (i.indkey)"
	"                WHERE i.indrelid = r.base AND i.indisprimary AND ba.attname = a.attname),"
	"       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g"
	"                WHERE g.tgrelid = r.base AND g.tgname = 'ventros_engine_before'),"
	"       a.attnum, r.relkind IN ('v', 'm')"
	"  FROM rels r"
	"  JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped"
	"  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
	" ORDER BY r.relname, a.attnum";

/*
 * The functions served under /rpc/: ventros.http_rpc_functions decides which
 * (sql/96_http_rpc.sql), the same view the OpenAPI document reads.  Lists
 * are joined with chr(31); the result's columns (OUT/TABLE arguments or a
 * composite's attributes) come with their type categories.
 */
static const char *funcs_sql =
	"SELECT f.name, f.schema_name, pg_catalog.cardinality(f.arg_names), f.required_args,"
	"       pg_catalog.array_to_string(f.arg_names, chr(31)), pg_catalog.array_to_string(f.arg_types, chr(31)),"
	"       f.arg_categories, f.result_type, f.result_kind, f.returns_set, f.read_only, f.description,"
	"       f.result_relid, coalesce(f.result_media_type, ''), f.result_columns IS NOT NULL,"
	"       coalesce((SELECT pg_catalog.string_agg(c.value->>'name', chr(31) ORDER BY c.n)"
	"                   FROM pg_catalog.json_array_elements(f.result_columns) WITH ORDINALITY c(value, n)), ''),"
	"       coalesce((SELECT pg_catalog.string_agg(c.value->>'type', chr(31) ORDER BY c.n)"
	"                   FROM pg_catalog.json_array_elements(f.result_columns) WITH ORDINALITY c(value, n)), ''),"
	"       coalesce((SELECT pg_catalog.string_agg(coalesce(t.typcategory::text, 'X'), '' ORDER BY c.n)"
	"                   FROM pg_catalog.json_array_elements(f.result_columns) WITH ORDINALITY c(value, n)"
	"                   LEFT JOIN pg_catalog.pg_type t ON t.oid = pg_catalog.to_regtype(c.value->>'type')), ''),"
	"       f.platform_only, false"
	"  FROM ventros.http_rpc_functions f"
	" ORDER BY f.name, f.schema_name, pg_catalog.cardinality(f.arg_names), f.function::pg_catalog.text";

/*
 * The functions of any other exposed schema, PostgREST's rule: every
 * function of the schema (PostgreSQL checks EXECUTE at the call), the same
 * columns as funcs_sql plus whether the last argument is VARIADIC.  Left
 * out, as no call could name their arguments or take their result:
 * trigger functions, polymorphic (pseudo-type) arguments, unnamed
 * arguments except a function's single one (the body goes to it), and a
 * record without OUT columns.  Procedures are not functions (PostgREST
 * serves none either).  unnest() of several arrays is syntax (ROWS FROM):
 * it takes no schema.
 */
static const char *schema_funcs_sql =
	"SELECT p.proname, n.nspname, pg_catalog.cardinality(a.names), p.pronargs - p.pronargdefaults,"
	"       pg_catalog.array_to_string(a.names, chr(31)), pg_catalog.array_to_string(a.types, chr(31)),"
	"       a.categories, pg_catalog.format_type(p.prorettype, NULL), rt.typtype, p.proretset,"
	"       p.provolatile <> 'v', coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), ''),"
	"       rt.typrelid, CASE WHEN rt.typtype = 'd' AND rt.typname ~ '^[a-z]+/[-+.a-z0-9]+$'"
	"                         THEN rt.typname::text ELSE '' END,"
	"       coalesce(o.names, c.names) IS NOT NULL, coalesce(o.names, c.names, ''),"
	"       coalesce(o.types, c.types, ''), coalesce(o.cats, c.cats, ''), false, p.provariadic <> 0"
	"  FROM pg_catalog.pg_proc p"
	"  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
	"  JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype"
	"  CROSS JOIN LATERAL ("
	"    SELECT coalesce(pg_catalog.array_agg(coalesce(x.name, '') ORDER BY x.k), '{}') AS names,"
	"           coalesce(pg_catalog.array_agg(pg_catalog.format_type(x.type, NULL) ORDER BY x.k), '{}') AS types,"
	"           coalesce(pg_catalog.string_agg(t.typcategory::text, '' ORDER BY x.k), '') AS categories,"
	"           coalesce(pg_catalog.bool_or(t.typtype = 'p'), false) AS pseudo,"
	"           pg_catalog.count(*) FILTER (WHERE coalesce(x.name, '') = '') AS unnamed, pg_catalog.count(*) AS n"
	"      FROM unnest(coalesce(p.proallargtypes, p.proargtypes::pg_catalog.oid[]),"
	"                             coalesce(p.proargnames, '{}'), coalesce(p.proargmodes, '{}'))"
	"           WITH ORDINALITY AS x(type, name, mode, k)"
	"      JOIN pg_catalog.pg_type t ON t.oid = x.type"
	"     WHERE coalesce(x.mode, 'i') IN ('i', 'b', 'v')) a"
	"  LEFT JOIN LATERAL ("
	"    SELECT pg_catalog.string_agg(x.name, chr(31) ORDER BY x.k) AS names,"
	"           pg_catalog.string_agg(pg_catalog.format_type(x.type, NULL), chr(31) ORDER BY x.k) AS types,"
	"           pg_catalog.string_agg(t.typcategory::text, '' ORDER BY x.k) AS cats"
	"      FROM unnest(p.proallargtypes, p.proargnames, p.proargmodes) WITH ORDINALITY AS x(type, name, mode, k)"
	"      JOIN pg_catalog.pg_type t ON t.oid = x.type"
	"     WHERE x.mode IN ('o', 'b', 't')) o ON o.names IS NOT NULL"
	"  LEFT JOIN LATERAL ("
	"    SELECT pg_catalog.string_agg(att.attname, chr(31) ORDER BY att.attnum) AS names,"
	"           pg_catalog.string_agg(pg_catalog.format_type(att.atttypid, att.atttypmod), chr(31)"
	"                                 ORDER BY att.attnum) AS types,"
	"           pg_catalog.string_agg(t.typcategory::text, '' ORDER BY att.attnum) AS cats"
	"      FROM pg_catalog.pg_attribute att JOIN pg_catalog.pg_type t ON t.oid = att.atttypid"
	"     WHERE att.attrelid = rt.typrelid AND att.attnum > 0 AND NOT att.attisdropped) c ON rt.typtype = 'c'"
	" WHERE n.nspname = $1 AND p.prokind = 'f' AND NOT a.pseudo"
	"   AND p.prorettype NOT IN ('pg_catalog.trigger'::pg_catalog.regtype,"
	"                            'pg_catalog.event_trigger'::pg_catalog.regtype)"
	"   AND (a.unnamed = 0 OR (a.unnamed = 1 AND a.n = 1))"
	"   AND NOT (p.prorettype = 'pg_catalog.record'::pg_catalog.regtype AND o.names IS NULL)"
	" ORDER BY p.proname, pg_catalog.cardinality(a.names), p.oid::pg_catalog.regprocedure::pg_catalog.text";

char **
vn_schema_split(const char *s, int *n)
{
	char	  **out;
	int			count = 1;
	const char *p;
	int			i = 0;

	if (*s == '\0')
	{
		*n = 0;
		return NULL;
	}
	for (p = s; *p; p++)
		if (*p == 31)
			count++;
	out = vn_alloc(sizeof(char *) * count);
	for (p = s;; p++)
	{
		const char *end = strchr(p, 31);

		if (end == NULL)
		{
			out[i++] = vn_strdup(p);
			break;
		}
		out[i++] = vn_strndup(p, end - p);
		p = end;
	}
	*n = count;
	return out;
}

PGresult *
vn_schema_run(PGconn *conn, const char *sql, const char *schema, char **error)
{
	const char *values[1] = {schema};
	PGresult   *res = PQexecParams(conn, sql, schema ? 1 : 0, NULL, values, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		*error = vn_strdup(PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * The relation rows of a function's result are answered as.  Rows of a view
 * of schema api, or of the table under one (an aggregate's row), take that
 * view's columns, so the aggregate's redacted columns (secrets, hashes) stay
 * out of rpc answers as they stay out of GET /<view>.  Any other row (OUT
 * and TABLE arguments, other composite types) gets a hidden relation of its
 * own columns, so select=, filters and order apply to it as well.
 */
static int
result_relation(VnSchema *s, PGresult *res, int row, const char *fname)
{
	Oid			relid = (Oid) strtoul(PQgetvalue(res, row, 12), NULL, 10);
	VnRelation *r;
	char	  **names;
	char	  **types;
	const char *cats = PQgetvalue(res, row, 17);
	int			nn,
		nt;

	for (int i = 0; relid != InvalidOid && i < s->nrels; i++)
		if (!s->rels[i].hidden && (s->rels[i].oid == relid || s->rels[i].base == relid))
			return i;
	names = vn_schema_split(PQgetvalue(res, row, 15), &nn);
	types = vn_schema_split(PQgetvalue(res, row, 16), &nt);
	if (nn == 0 || nn != nt || (int) strlen(cats) != nn)
		return -1;
	r = &s->rels[s->nrels];
	r->name = vn_strdup(fname);
	r->description = vn_strdup("");
	r->base = InvalidOid; /* no foreign key names it: nothing embeds */
	r->hidden = true;
	r->ncols = nn;
	r->cols = vn_alloc(sizeof(VnColumn) * nn);
	for (int k = 0; k < nn; k++)
	{
		r->cols[k].name = names[k];
		r->cols[k].type = types[k];
		r->cols[k].category = cats[k];
		r->cols[k].is_tsvector = strcmp(types[k], "tsvector") == 0;
		r->cols[k].default_expr = vn_strdup("NULL");
	}
	free(names);
	free(types);
	return s->nrels++;
}

/* the relations of the schema and their columns */
static bool
load_relations(VnSchema *s, PGconn *conn, char **error)
{
	PGresult *res;
	int		  n;

	if ((res = vn_schema_run(conn, columns_sql, s->name, error)) == NULL)
		return false;
	n = PQntuples(res);
	s->rels = vn_alloc(sizeof(VnRelation) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		const char *relname = PQgetvalue(res, i, 0);
		VnRelation *r;
		VnColumn   *c;

		if (s->nrels == 0 || strcmp(s->rels[s->nrels - 1].name, relname) != 0)
		{
			int k = i;

			r = &s->rels[s->nrels++];
			r->name = vn_strdup(relname);
			r->description = vn_strdup(PQgetvalue(res, i, 5));
			r->base = (Oid) strtoul(PQgetvalue(res, i, 6), NULL, 10);
			r->oid = (Oid) strtoul(PQgetvalue(res, i, 7), NULL, 10);
			r->aggregate = PQgetvalue(res, i, 10)[0] == 't';
			while (k < n && strcmp(PQgetvalue(res, k, 0), relname) == 0)
				k++;
			r->cols = vn_alloc(sizeof(VnColumn) * (k - i));
		}
		r = &s->rels[s->nrels - 1];
		c = &r->cols[r->ncols++];
		c->name = vn_strdup(PQgetvalue(res, i, 1));
		c->type = vn_strdup(PQgetvalue(res, i, 2));
		c->category = PQgetvalue(res, i, 3)[0];
		c->is_tsvector = PQgetvalue(res, i, 4)[0] == 't';
		c->default_expr = vn_strdup(PQgetvalue(res, i, 8));
		c->is_pk = PQgetvalue(res, i, 9)[0] == 't';
		c->attnum = atoi(PQgetvalue(res, i, 11));
		/* a table's column is itself; a view's is found by relations.c */
		c->src_rel = PQgetvalue(res, i, 12)[0] == 't' ? InvalidOid : r->oid;
		c->src_att = c->attnum;
		r->npk += c->is_pk;
	}
	PQclear(res);
	for (int i = 0; i < s->nrels; i++)
		s->rels[i].has_id = s->rels[i].aggregate && vn_schema_column(&s->rels[i], "tenant_id") &&
							vn_schema_column(&s->rels[i], "id");
	return true;
}

/* one row of funcs_sql into s->funcs[s->nfuncs]; false when it cannot be served */
static bool
load_function(VnSchema *s, PGresult *res, int i)
{
	VnFunction *f = &s->funcs[s->nfuncs];
	int			nn,
		nt;

	f->name = vn_strdup(PQgetvalue(res, i, 0));
	f->schema = vn_strdup(PQgetvalue(res, i, 1));
	f->nargs = atoi(PQgetvalue(res, i, 2));
	f->nrequired = atoi(PQgetvalue(res, i, 3));
	f->argnames = vn_schema_split(PQgetvalue(res, i, 4), &nn);
	if (f->nargs == 1 && nn == 0)
	{
		/* a single unnamed argument: its name is "" (rpc.c gives it the body) */
		f->argnames = vn_alloc(sizeof(char *));
		f->argnames[0] = vn_strdup("");
		nn = 1;
	}
	f->argtypes = vn_schema_split(PQgetvalue(res, i, 5), &nt);
	f->argcategories = vn_strdup(PQgetvalue(res, i, 6));
	f->rettype = vn_strdup(PQgetvalue(res, i, 7));
	f->rettypekind = PQgetvalue(res, i, 8)[0];
	f->retset = PQgetvalue(res, i, 9)[0] == 't';
	f->stable = PQgetvalue(res, i, 10)[0] == 't';
	f->description = vn_strdup(PQgetvalue(res, i, 11));
	f->returns_void = strcmp(f->rettype, "void") == 0;
	f->returns_grant = strcmp(f->rettype, "api.auth_grant") == 0;
	f->media_type = *PQgetvalue(res, i, 13) ? vn_strdup(PQgetvalue(res, i, 13)) : NULL;
	f->platform_only = PQgetvalue(res, i, 18)[0] == 't';
	f->variadic = PQgetvalue(res, i, 19)[0] == 't';
	f->result_rel = -1;
	if (nn != f->nargs || nt != f->nargs || (int) strlen(f->argcategories) != f->nargs)
		return false; /* cannot happen: the view names every argument */
	if (PQgetvalue(res, i, 14)[0] == 't' && !f->returns_grant)
		f->result_rel = result_relation(s, res, i, f->name);
	return true;
}

/*
 * Functions, and the relations their rows are answered as: those of
 * ventros.http_rpc_functions are Ventros' api's; another schema's are all
 * of its own (schema_funcs_sql).
 */
static bool
load_functions(VnSchema *s, PGconn *conn, char **error)
{
	PGresult   *res;
	int			n;
	VnRelation *all;

	if ((res = vn_schema_run(conn, s->ventros ? funcs_sql : schema_funcs_sql, s->ventros ? NULL : s->name, error)) ==
		NULL)
		return false;
	n = PQntuples(res);
	s->funcs = vn_alloc(sizeof(VnFunction) * (n + 1));
	/* room for the hidden relations of results */
	all = vn_alloc(sizeof(VnRelation) * (s->nrels + n + 1));
	memcpy(all, s->rels, sizeof(VnRelation) * s->nrels);
	free(s->rels);
	s->rels = all;
	for (int i = 0; i < n; i++)
		if (load_function(s, res, i))
			s->nfuncs++;
	PQclear(res);
	return true;
}

VnSchema *
vn_schema_load(PGconn *conn, const char *name, char **error)
{
	VnSchema *s = vn_alloc(sizeof(VnSchema));

	s->name = vn_strdup(name);
	s->ventros = strcmp(name, "api") == 0;
	if (!load_relations(s, conn, error) || !vn_relations_lineage(s, conn, error) ||
		!vn_relations_load(s, conn, error) || !load_functions(s, conn, error))
		return NULL;
	return s;
}

int
vn_schema_relation_index(const VnSchema *s, const char *name)
{
	for (int i = 0; i < s->nrels; i++)
		if (!s->rels[i].hidden && strcmp(s->rels[i].name, name) == 0)
			return i;
	return -1;
}

const VnRelation *
vn_schema_relation(const VnSchema *s, const char *name)
{
	int i = vn_schema_relation_index(s, name);

	return i < 0 ? NULL : &s->rels[i];
}

const VnColumn *
vn_schema_column(const VnRelation *r, const char *name)
{
	for (int i = 0; i < r->ncols; i++)
		if (strcmp(r->cols[i].name, name) == 0)
			return &r->cols[i];
	return NULL;
}

const VnColumn *
vn_schema_field(const VnRelation *r, const char *name)
{
	for (int i = 0; i < r->nfields; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			return &r->fields[i];
	return NULL;
}

const VnFunction *
vn_schema_function(const VnSchema *s, const char *name)
{
	for (int i = 0; i < s->nfuncs; i++)
		if (strcmp(s->funcs[i].name, name) == 0)
			return &s->funcs[i];
	return NULL;
}

const VnFunction *
vn_schema_functions(const VnSchema *s, const char *name, int *n)
{
	*n = 0;
	for (int i = 0; i < s->nfuncs; i++)
		if (strcmp(s->funcs[i].name, name) == 0)
		{
			while (i + *n < s->nfuncs && strcmp(s->funcs[i + *n].name, name) == 0)
				(*n)++;
			return &s->funcs[i];
		}
	return NULL;
}
