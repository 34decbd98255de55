/*
 * relations.c
 *	  The relationship catalog of one exposed schema, built once per schema
 *	  cache load (schema.c): which table column each relation's column is,
 *	  and from that every relationship PostgREST 12 embeds through.
 *
 * Lineage: a view's column is the table column its top-level target entry
 * names (resorigtbl, resorigcol of the view's _RETURN rule, read from
 * pg_rewrite.ev_action as text), followed through views over views; a
 * computed column has none.  A table's column is itself.
 *
 * Relationships:
 * - a foreign key between two tables gives one VnForeignKey per pair of
 *   exposed relations whose columns are both ends of it, as each names
 *   them: a view takes the keys of the tables its columns come from,
 *   renamed columns included, and a table and every view over it each have
 *   their own;
 * - a key whose columns are unique in their table is one-to-one;
 * - an exposed table whose primary key holds two foreign keys, or a view
 *   exposing such a table's keys, is a junction: many-to-many between the
 *   two relations they reference;
 * - a function of the schema taking one argument, the row type of an
 *   exposed relation, and returning rows of another is a computed
 *   relationship named like the function (to-one unless SETOF, or ROWS 1);
 *   returning one value, a computed field of the relation, read as a
 *   column (PostgreSQL takes _t.f for f(_t)).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "schema.h"

/* the views the schema's views are built on, transitively, and their rules */
static const char *rules_sql =
	"WITH RECURSIVE v(oid) AS ("
	"  SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE n.nspname = $1 AND c.relkind IN ('v', 'm')"
	"  UNION"
	"  SELECT d.refobjid FROM v JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid"
	"    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid"
	"     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> v.oid"
	"    JOIN pg_catalog.pg_class c ON c.oid = d.refobjid AND c.relkind IN ('v', 'm'))"
	"SELECT r.ev_class, r.ev_action::pg_catalog.text FROM v"
	"  JOIN pg_catalog.pg_rewrite r ON r.ev_class = v.oid AND r.rulename = '_RETURN'";

static const char *fks_sql =
	"SELECT k.conname, k.conrelid, k.confrelid,"
	"       pg_catalog.array_to_string(k.conkey, ','), pg_catalog.array_to_string(k.confkey, ','),"
	"       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = k.conrelid AND i.indisunique"
	"                  AND i.indpred IS NULL AND i.indkey::pg_catalog.int2[] OPERATOR(pg_catalog.@>) k.conkey"
	"                  AND i.indkey::pg_catalog.int2[] OPERATOR(pg_catalog.<@) k.conkey),"
	"       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = k.conrelid AND i.indisprimary"
	"                  AND i.indkey::pg_catalog.int2[] OPERATOR(pg_catalog.@>) k.conkey)"
	"  FROM pg_catalog.pg_constraint k WHERE k.contype = 'f' ORDER BY k.conname";

static const char *computed_sql =
	"SELECT p.proname, a.typrelid, r.typrelid, p.proretset, p.prorows = 1"
	"  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
	"  JOIN pg_catalog.pg_type a ON a.oid = p.proargtypes[0]"
	"  JOIN pg_catalog.pg_type r ON r.oid = p.prorettype"
	" WHERE n.nspname = $1 AND p.pronargs = 1 AND p.prokind = 'f' AND a.typrelid <> 0 AND r.typrelid <> 0"
	" ORDER BY p.proname, p.oid";

/* computed fields: functions of one row type returning one value of a base, domain, enum or range type */
static const char *fields_sql =
	"SELECT a.typrelid, p.proname, pg_catalog.format_type(p.prorettype, NULL), r.typcategory, r.typname = 'tsvector'"
	"  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
	"  JOIN pg_catalog.pg_type a ON a.oid = p.proargtypes[0]"
	"  JOIN pg_catalog.pg_type r ON r.oid = p.prorettype"
	" WHERE n.nspname = $1 AND p.pronargs = 1 AND p.prokind = 'f' AND NOT p.proretset AND a.typrelid <> 0"
	"   AND r.typtype IN ('b', 'd', 'e', 'r')"
	" ORDER BY a.typrelid, p.proname, p.oid";

typedef struct Origin
{
	Oid view;
	int att;
	Oid tbl; /* InvalidOid: an expression */
	int col;
} Origin;

typedef struct Origins
{
	int		n;
	int		cap;
	Origin *items;
} Origins;

static void
origin_add(Origins *o, Oid view, int att, Oid tbl, int col)
{
	if (o->n == o->cap)
	{
		Origin *grown = vn_alloc(sizeof(Origin) * (o->cap * 2 + 16));

		if (o->n)
			memcpy(grown, o->items, sizeof(Origin) * o->n);
		free(o->items);
		o->items = grown;
		o->cap = o->cap * 2 + 16;
	}
	o->items[o->n].view = view;
	o->items[o->n].att = att;
	o->items[o->n].tbl = tbl;
	o->items[o->n++].col = col;
}

/*
 * The top-level target list of a rule's query tree (its text form: the
 * Query node at brace depth 1, its TargetEntry nodes at depth 2).  Tokens
 * of the text escape braces and white space with a backslash, so a column
 * name cannot pass for a field.
 */
static void
parse_action(Origins *o, Oid view, const char *p)
{
	int depth = 0,
		resno = 0,
		col = 0;
	Oid	 tbl = InvalidOid;
	bool in_list = false,
		 junk = false;

	for (; *p; p++)
	{
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '{')
		{
			if (++depth == 2 && in_list)
			{
				resno = col = 0;
				tbl = InvalidOid;
				junk = false;
			}
		}
		else if (*p == '}')
		{
			if (depth-- == 2 && in_list && !junk && resno > 0)
				origin_add(o, view, resno, tbl, col);
		}
		else if (*p != ':')
			continue;
		else if (depth == 1 && in_list)
			return; /* the field after targetList */
		else if (depth == 1)
			in_list = strncmp(p, ":targetList ", 12) == 0;
		else if (depth == 2 && in_list)
		{
			if (strncmp(p, ":resno ", 7) == 0)
				resno = atoi(p + 7);
			else if (strncmp(p, ":resorigtbl ", 12) == 0)
				tbl = (Oid) strtoul(p + 12, NULL, 10);
			else if (strncmp(p, ":resorigcol ", 12) == 0)
				col = atoi(p + 12);
			else if (strncmp(p, ":resjunk true", 13) == 0)
				junk = true;
		}
	}
}

static const Origin *
origin_find(const Origins *o, Oid view, int att)
{
	for (int i = 0; i < o->n; i++)
		if (o->items[i].view == view && o->items[i].att == att)
			return &o->items[i];
	return NULL;
}

/* a view column's table column, through views over views (16 at most) */
static void
resolve(const Origins *o, VnColumn *c, Oid view)
{
	Oid rel = view;
	int att = c->attnum;

	for (int hop = 0; hop < 16; hop++)
	{
		const Origin *x = origin_find(o, rel, att);

		if (x == NULL)
		{
			/* no rule: a table's column */
			if (hop > 0)
			{
				c->src_rel = rel;
				c->src_att = att;
			}
			return;
		}
		if (x->tbl == InvalidOid)
			return;
		rel = x->tbl;
		att = x->col;
	}
}

bool
vn_relations_lineage(VnSchema *s, PGconn *conn, char **error)
{
	PGresult *res;
	Origins	  o = {0, 0, NULL};

	if ((res = vn_schema_run(conn, rules_sql, s->name, error)) == NULL)
		return false;
	for (int i = 0; i < PQntuples(res); i++)
		parse_action(&o, (Oid) strtoul(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1));
	PQclear(res);
	for (int r = 0; r < s->nrels; r++)
		for (int k = 0; k < s->rels[r].ncols; k++)
			if (s->rels[r].cols[k].src_rel == InvalidOid)
				resolve(&o, &s->rels[r].cols[k], s->rels[r].oid);
	free(o.items);
	return true;
}

/* attnums "1,2" into out (at most 32); their count */
static int
attnums(const char *s, int *out)
{
	int n = 0;

	while (*s && n < 32)
	{
		out[n++] = atoi(s);
		s = strchr(s, ',');
		if (s == NULL)
			break;
		s++;
	}
	return n;
}

/* the names r gives the columns tbl.att[0..n-1], or false when r lacks one */
static bool
names_in(const VnRelation *r, Oid tbl, const int *att, int n, char **out)
{
	if (r->hidden)
		return false;
	for (int i = 0; i < n; i++)
	{
		out[i] = NULL;
		for (int k = 0; k < r->ncols && out[i] == NULL; k++)
			if (r->cols[k].src_rel == tbl && r->cols[k].src_att == att[i])
				out[i] = r->cols[k].name;
		if (out[i] == NULL)
			return false;
	}
	return true;
}

static VnForeignKey *
fk_add(VnSchema *s, int *cap)
{
	if (s->nfks == *cap)
	{
		VnForeignKey *grown = vn_alloc(sizeof(VnForeignKey) * (*cap * 2 + 16));

		if (s->nfks)
			memcpy(grown, s->fks, sizeof(VnForeignKey) * s->nfks);
		free(s->fks);
		s->fks = grown;
		*cap = *cap * 2 + 16;
	}
	return &s->fks[s->nfks++];
}

/* one foreign key row of fks_sql: an entry per pair of relations exposing it */
static void
key_pairs(VnSchema *s, PGresult *res, int row, int *cap)
{
	Oid from = (Oid) strtoul(PQgetvalue(res, row, 1), NULL, 10);
	Oid to = (Oid) strtoul(PQgetvalue(res, row, 2), NULL, 10);
	int fatt[32],
		tatt[32];
	int	  n = attnums(PQgetvalue(res, row, 3), fatt);
	char *fnames[32],
		*tnames[32];

	if (n == 0 || attnums(PQgetvalue(res, row, 4), tatt) != n)
		return;
	for (int a = 0; a < s->nrels; a++)
	{
		if (!names_in(&s->rels[a], from, fatt, n, fnames))
			continue;
		for (int b = 0; b < s->nrels; b++)
		{
			VnForeignKey *k;

			if (!names_in(&s->rels[b], to, tatt, n, tnames))
				continue;
			k = fk_add(s, cap);
			k->name = vn_strdup(PQgetvalue(res, row, 0));
			k->from = a;
			k->to = b;
			k->ncols = n;
			k->from_cols = vn_alloc(sizeof(char *) * n);
			k->to_cols = vn_alloc(sizeof(char *) * n);
			memcpy(k->from_cols, fnames, sizeof(char *) * n);
			memcpy(k->to_cols, tnames, sizeof(char *) * n);
			k->unique = PQgetvalue(res, row, 5)[0] == 't';
			k->in_pk = PQgetvalue(res, row, 6)[0] == 't';
		}
	}
}

/*
 * junctions: an exposed relation with two keys in its primary key: a table,
 * or a view whose columns are those of such a table (its keys are the
 * table's, relations.c's lineage), as PostgREST takes views for junctions
 */
static void
junctions(VnSchema *s)
{
	int cap = 0;

	for (int i = 0; i < s->nfks; i++)
		for (int j = 0; j < s->nfks; j++)
		{
			const VnForeignKey *l = &s->fks[i],
							   *r = &s->fks[j];
			const VnRelation *jr = &s->rels[l->from];
			VnJunction		 *x;

			if (i == j || l->from != r->from || !l->in_pk || !r->in_pk || strcmp(l->name, r->name) == 0 ||
				jr->ncols == 0)
				continue;
			if (s->njunctions == cap)
			{
				VnJunction *grown = vn_alloc(sizeof(VnJunction) * (cap * 2 + 8));

				if (s->njunctions)
					memcpy(grown, s->junctions, sizeof(VnJunction) * s->njunctions);
				free(s->junctions);
				s->junctions = grown;
				cap = cap * 2 + 8;
			}
			x = &s->junctions[s->njunctions++];
			x->from = l->to;
			x->to = r->to;
			x->junction = l->from;
			x->left = i;
			x->right = j;
		}
}

static int
rel_by_oid(const VnSchema *s, Oid oid)
{
	for (int i = 0; i < s->nrels; i++)
		if (!s->rels[i].hidden && s->rels[i].oid == oid)
			return i;
	return -1;
}

static bool
computed(VnSchema *s, PGconn *conn, char **error)
{
	PGresult *res;

	if ((res = vn_schema_run(conn, computed_sql, s->name, error)) == NULL)
		return false;
	s->computed = vn_alloc(sizeof(VnComputed) * (PQntuples(res) + 1));
	for (int i = 0; i < PQntuples(res); i++)
	{
		int from = rel_by_oid(s, (Oid) strtoul(PQgetvalue(res, i, 1), NULL, 10));
		int to = rel_by_oid(s, (Oid) strtoul(PQgetvalue(res, i, 2), NULL, 10));

		if (from < 0 || to < 0)
			continue;
		s->computed[s->ncomputed].name = vn_strdup(PQgetvalue(res, i, 0));
		s->computed[s->ncomputed].from = from;
		s->computed[s->ncomputed].to = to;
		s->computed[s->ncomputed++].to_one = PQgetvalue(res, i, 3)[0] == 'f' || PQgetvalue(res, i, 4)[0] == 't';
	}
	PQclear(res);
	return true;
}

/* computed fields, each on the relation of its argument unless a column has its name */
static bool
fields(VnSchema *s, PGconn *conn, char **error)
{
	PGresult *res;
	int		  n;

	if ((res = vn_schema_run(conn, fields_sql, s->name, error)) == NULL)
		return false;
	n = PQntuples(res);
	for (int i = 0; i < n; i++)
	{
		int			rel = rel_by_oid(s, (Oid) strtoul(PQgetvalue(res, i, 0), NULL, 10));
		VnRelation *r;
		VnColumn   *f;

		if (rel < 0 || vn_schema_column(&s->rels[rel], PQgetvalue(res, i, 1)) ||
			vn_schema_field(&s->rels[rel], PQgetvalue(res, i, 1)))
			continue;
		r = &s->rels[rel];
		if (r->fields == NULL)
			r->fields = vn_alloc(sizeof(VnColumn) * n);
		f = &r->fields[r->nfields++];
		f->name = vn_strdup(PQgetvalue(res, i, 1));
		f->type = vn_strdup(PQgetvalue(res, i, 2));
		f->category = PQgetvalue(res, i, 3)[0];
		f->is_tsvector = PQgetvalue(res, i, 4)[0] == 't';
		f->default_expr = vn_strdup("NULL");
	}
	PQclear(res);
	return true;
}

bool
vn_relations_load(VnSchema *s, PGconn *conn, char **error)
{
	PGresult *res;
	int		  cap = 0;

	if ((res = vn_schema_run(conn, fks_sql, NULL, error)) == NULL)
		return false;
	for (int i = 0; i < PQntuples(res); i++)
		key_pairs(s, res, i, &cap);
	PQclear(res);
	junctions(s);
	return computed(s, conn, error) && fields(s, conn, error);
}
