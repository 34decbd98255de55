/*
 * schema.c
 *	  Reads schema api from the catalog into a VnSchema (see schema.h).
 *
 * Only pg_catalog is read, so the front's login needs no privilege on
 * Ventros' own tables.  A view's table is found through its rewrite rule's
 * dependencies; foreign keys between two tables are offered for embedding
 * when every column of the key is exposed by both views.  The cache is
 * loaded once at start: restart the front after changing schema api.
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
	"                      AND d.refobjid <> c.oid LIMIT 1), c.oid) AS base"
	"    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE n.nspname = 'api' AND c.relkind IN ('v', 'r', 'm', 'p', 'f'))"
	"SELECT r.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory,"
	"       t.typname = 'tsvector', r.description, r.base,"
	"       coalesce((SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d"
	"                  WHERE d.adrelid = r.oid AND d.adnum = a.attnum),"
	"                (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d"
	"                   JOIN pg_catalog.pg_attribute ba ON ba.attrelid = d.adrelid AND ba.attnum = d.adnum"
	"                  WHERE d.adrelid = r.base AND ba.attname = a.attname), 'NULL')"
	"  FROM rels r"
	"  JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped"
	"  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
	" ORDER BY r.relname, a.attnum";

static const char *fks_sql =
	"SELECT k.conname, k.conrelid, k.confrelid,"
	"       (SELECT pg_catalog.array_to_string(pg_catalog.array_agg(a.attname ORDER BY i.n), chr(31))"
	"          FROM pg_catalog.unnest(k.conkey) WITH ORDINALITY i(att, n)"
	"          JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = i.att),"
	"       (SELECT pg_catalog.array_to_string(pg_catalog.array_agg(a.attname ORDER BY i.n), chr(31))"
	"          FROM pg_catalog.unnest(k.confkey) WITH ORDINALITY i(att, n)"
	"          JOIN pg_catalog.pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = i.att)"
	"  FROM pg_catalog.pg_constraint k WHERE k.contype = 'f' ORDER BY k.conname";

static const char *funcs_sql =
	"SELECT p.proname, p.pronargs, p.pronargdefaults,"
	"       coalesce(pg_catalog.array_to_string(p.proargnames[1:p.pronargs], chr(31)), ''),"
	"       coalesce((SELECT pg_catalog.array_to_string(pg_catalog.array_agg(pg_catalog.format_type(x.t, NULL) ORDER BY x.n), chr(31))"
	"          FROM pg_catalog.unnest(p.proargtypes) WITH ORDINALITY x(t, n)), ''),"
	"       coalesce((SELECT pg_catalog.string_agg(ty.typcategory::text, '' ORDER BY x.n)"
	"          FROM pg_catalog.unnest(p.proargtypes) WITH ORDINALITY x(t, n) JOIN pg_catalog.pg_type ty ON ty.oid = x.t), ''),"
	"       pg_catalog.format_type(p.prorettype, NULL), rt.typtype, p.proretset, p.provolatile <> 'v',"
	"       coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')"
	"  FROM pg_catalog.pg_proc p"
	"  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
	"  JOIN pg_catalog.pg_type rt ON rt.oid = p.prorettype"
	" WHERE n.nspname = 'api' AND p.prokind = 'f'"
	"   AND (p.proargmodes IS NULL OR NOT ('o' = ANY (p.proargmodes) OR 'b' = ANY (p.proargmodes) OR 't' = ANY (p.proargmodes)))"
	" ORDER BY p.proname, p.pronargs";

static char **
split(const char *s, int *n)
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

static PGresult *
run(PGconn *conn, const char *sql, char **error)
{
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		*error = vn_strdup(PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

static int
rel_by_base(VnSchema *s, Oid base)
{
	for (int i = 0; i < s->nrels; i++)
		if (s->rels[i].base == base)
			return i;
	return -1;
}

VnSchema *
vn_schema_load(PGconn *conn, char **error)
{
	VnSchema *s = vn_alloc(sizeof(VnSchema));
	PGresult *res;
	int		  n;

	/* relations and columns */
	if ((res = run(conn, columns_sql, error)) == NULL)
		return NULL;
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
		c->default_expr = vn_strdup(PQgetvalue(res, i, 7));
	}
	PQclear(res);
	for (int i = 0; i < s->nrels; i++)
		s->rels[i].has_id = vn_schema_column(&s->rels[i], "tenant_id") && vn_schema_column(&s->rels[i], "id");

	/* foreign keys between exposed tables, all of whose columns are exposed */
	if ((res = run(conn, fks_sql, error)) == NULL)
		return NULL;
	n = PQntuples(res);
	s->fks = vn_alloc(sizeof(VnForeignKey) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		int			 from = rel_by_base(s, (Oid) strtoul(PQgetvalue(res, i, 1), NULL, 10));
		int			 to = rel_by_base(s, (Oid) strtoul(PQgetvalue(res, i, 2), NULL, 10));
		VnForeignKey fk;
		int			 n2;
		bool		 ok = true;

		if (from < 0 || to < 0)
			continue;
		fk.name = vn_strdup(PQgetvalue(res, i, 0));
		fk.from = from;
		fk.to = to;
		fk.from_cols = split(PQgetvalue(res, i, 3), &fk.ncols);
		fk.to_cols = split(PQgetvalue(res, i, 4), &n2);
		if (n2 != fk.ncols || fk.ncols == 0)
			continue;
		for (int k = 0; k < fk.ncols; k++)
			if (!vn_schema_column(&s->rels[from], fk.from_cols[k]) ||
				!vn_schema_column(&s->rels[to], fk.to_cols[k]))
				ok = false;
		if (ok)
			s->fks[s->nfks++] = fk;
	}
	PQclear(res);

	/* functions */
	if ((res = run(conn, funcs_sql, error)) == NULL)
		return NULL;
	n = PQntuples(res);
	s->funcs = vn_alloc(sizeof(VnFunction) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		VnFunction *f = &s->funcs[s->nfuncs];
		int			nn,
			nt;

		if (s->nfuncs > 0 && strcmp(s->funcs[s->nfuncs - 1].name, PQgetvalue(res, i, 0)) == 0)
			continue; /* overloads: the one with the fewest arguments */
		f->name = vn_strdup(PQgetvalue(res, i, 0));
		f->nargs = atoi(PQgetvalue(res, i, 1));
		f->nrequired = f->nargs - atoi(PQgetvalue(res, i, 2));
		f->argnames = split(PQgetvalue(res, i, 3), &nn);
		f->argtypes = split(PQgetvalue(res, i, 4), &nt);
		f->argcategories = vn_strdup(PQgetvalue(res, i, 5));
		f->rettype = vn_strdup(PQgetvalue(res, i, 6));
		f->rettypekind = PQgetvalue(res, i, 7)[0];
		f->retset = PQgetvalue(res, i, 8)[0] == 't';
		f->stable = PQgetvalue(res, i, 9)[0] == 't';
		f->description = vn_strdup(PQgetvalue(res, i, 10));
		f->returns_void = strcmp(f->rettype, "void") == 0;
		f->returns_grant = strcmp(f->rettype, "api.auth_grant") == 0;
		/* unnamed arguments cannot be passed by name: leave such functions out */
		if (nn != f->nargs || nt != f->nargs)
			continue;
		s->nfuncs++;
	}
	PQclear(res);
	return s;
}

int
vn_schema_relation_index(const VnSchema *s, const char *name)
{
	for (int i = 0; i < s->nrels; i++)
		if (strcmp(s->rels[i].name, name) == 0)
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

const VnFunction *
vn_schema_function(const VnSchema *s, const char *name)
{
	for (int i = 0; i < s->nfuncs; i++)
		if (strcmp(s->funcs[i].name, name) == 0)
			return &s->funcs[i];
	return NULL;
}
