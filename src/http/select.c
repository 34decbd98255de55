/*
 * select.c
 *	  select= to a SQL select list: columns, JSON paths, renames, casts to
 *	  any type by name, aggregates (avg, count, max, min, sum) grouped by the
 *	  list's other columns; embedded resources are embed.c's.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

/*
 * A cast of select=: SQL's spellings or any type by its catalog name, with
 * a type modifier and [] (parse.c's grammar); 400 for anything else.
 */
static bool
cast_known(Ctx *c, const char *cast)
{
	if (vn_query_cast_type(cast, NULL))
		return true;
	return vn_query_fail(c->q, 400, "PGRST100", NULL,
						 "A cast names a type: integer, text, int8[], numeric(10,2), a_schema.a_type.",
						 "unsupported cast \"%.32s\"", cast);
}

/* "::type" of a cast cast_known() took */
static void
cast_add(VnBuf *b, const char *cast)
{
	vn_query_cast_type(cast, b);
}

/* the output name of an item of a spread's list (c->names, embed.c) */
static void
spread_name(Ctx *c, const char *name)
{
	if (c->names)
		vn_buf_addn(c->names, name, strlen(name) + 1);
}

/*
 * A column or JSON path of a select list, with its cast (from casts[]) and
 * alias; its expression also goes to group (when not NULL), the GROUP BY of
 * a list with aggregates.
 */
static bool
select_column(Ctx *c, int rel, const char *al, const char *alias, char *item, VnBuf *group)
{
	VnBuf  *b = &c->q->sql;
	char   *cast = strstr(item, "::");
	size_t	start = b->len;
	Operand o;

	if (cast)
	{
		*cast = '\0';
		cast += 2;
		if (!cast_known(c, cast))
			return false;
	}
	if (!vn_query_operand(c, &c->in->schema->rels[rel], al, item, &o, true))
		return false;
	if (cast)
		cast_add(b, cast);
	if (group)
	{
		vn_buf_add(group, group->len ? ", " : " GROUP BY ");
		vn_buf_addn(group, b->data + start, b->len - start);
	}
	if (alias || cast || strstr(item, "->"))
	{
		vn_buf_add(b, " AS ");
		vn_buf_ident(b, alias ? alias : o.label);
	}
	spread_name(c, alias ? alias : o.label);
	return true;
}

/*
 * An aggregate of select= (PostgREST 12): [alias:][column[::cast].]fn()[::cast]
 * with fn avg, count, max, min or sum; count() alone counts rows.  Parsed in
 * place: *expr ("" for count()), *fn, *cast (NULL: none).  False when item
 * is no aggregate.
 */
static bool
parse_aggregate(char *item, char **expr, char **fn, char **cast)
{
	static const char *fns[] = {"avg", "count", "max", "min", "sum", NULL};
	char			  *open = NULL;
	char			  *dot;
	bool			   known = false;

	/* the last "()" (a cast after it may have a modifier's parentheses) */
	for (char *p = strstr(item, "()"); p; p = strstr(p + 1, "()"))
		open = p;
	if (open == NULL || open[1] != ')' || (open[2] && strncmp(open + 2, "::", 2) != 0))
		return false;
	*cast = open[2] ? open + 4 : NULL;
	*open = '\0';
	dot = strrchr(item, '.');
	*fn = dot ? dot + 1 : item;
	*expr = dot ? item : "";
	for (int k = 0; fns[k]; k++)
		known |= strcmp(fns[k], *fn) == 0;
	if (!known || (dot == NULL && strcmp(*fn, "count") != 0))
	{
		*open = '(';
		return false;
	}
	if (dot)
		*dot = '\0';
	return true;
}

static bool
is_aggregate(const char *item)
{
	char *copy = vn_strdup(item);
	char *expr,
		*fn,
		*cast;
	bool yes = parse_aggregate(copy, &expr, &fn, &cast);

	free(copy);
	return yes;
}

/* pg_catalog.fn(column[::cast])[::cast] AS alias-or-fn; 400 PGRST123 unless enabled */
static bool
select_aggregate(Ctx *c, int rel, const char *al, const char *alias, char *item)
{
	VnBuf *b = &c->q->sql;
	char  *expr,
		*fn,
		*cast,
		*inner_cast;
	Operand o;

	if (!c->in->aggregates)
		return vn_query_fail(c->q, 400, "PGRST123", NULL, "Set VENTROS_HTTP_DB_AGGREGATES_ENABLED=true.",
							 "Use of aggregate functions is not allowed");
	c->naggregates++;
	parse_aggregate(item, &expr, &fn, &cast);
	if ((cast && !cast_known(c, cast)))
		return false;
	vn_buf_addf(b, "pg_catalog.%s(", fn);
	if (*expr == '\0')
		vn_buf_addc(b, '*');
	else
	{
		if ((inner_cast = strstr(expr, "::")) != NULL)
		{
			*inner_cast = '\0';
			inner_cast += 2;
			if (!cast_known(c, inner_cast))
				return false;
		}
		if (!vn_query_operand(c, &c->in->schema->rels[rel], al, expr, &o, true))
			return false;
		if (inner_cast)
			cast_add(b, inner_cast);
	}
	vn_buf_addc(b, ')');
	if (cast)
		cast_add(b, cast);
	vn_buf_add(b, " AS ");
	vn_buf_ident(b, alias ? alias : fn);
	spread_name(c, alias ? alias : fn);
	return true;
}

/* * beside aggregates: every column, each a key of the GROUP BY */
static void
select_star_grouped(Ctx *c, int rel, const char *al, VnBuf *group)
{
	const VnRelation *r = &c->in->schema->rels[rel];

	for (int k = 0; k < r->ncols; k++)
	{
		size_t start;

		vn_buf_add(&c->q->sql, k ? ", " : "");
		start = c->q->sql.len;
		vn_query_col_ref(&c->q->sql, al, r->cols[k].name);
		vn_buf_add(group, group->len ? ", " : " GROUP BY ");
		vn_buf_addn(group, c->q->sql.data + start, c->q->sql.len - start);
	}
}

static bool embed_label(const char *item, char *out, size_t size);

/*
 * One item of a select list: [alias:]column[::cast], [alias:]rel(...),
 * ...rel(...), *, an aggregate; group: the list's GROUP BY when it has
 * aggregates (NULL otherwise).
 */
static bool
select_item(Ctx *c, int rel, const char *al, char *item, int depth, const char *prefix, VnBuf *group)
{
	char *alias = NULL;
	char *paren = vn_query_item_paren(item);

	/* alias:... (but not the :: of a cast) */
	for (char *p = item; *p && (paren == NULL || p < paren); p++)
		if (*p == ':' && p[1] != ':' && (p == item || p[-1] != ':'))
		{
			*p = '\0';
			alias = vn_query_trim(item);
			item = vn_query_trim(p + 1);
			if (*alias == '\0' || strlen(alias) > 63)
				return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed alias in select");
			break;
		}
	if (paren && is_aggregate(item))
		return select_aggregate(c, rel, al, alias, item);
	if (paren)
	{
		char label[128];

		/* a spread names its own columns (embed.c); an embedding its label */
		if (alias)
			spread_name(c, alias);
		else if (embed_label(item, label, sizeof(label)))
			spread_name(c, label);
		return vn_query_embed(c, rel, al, alias, item, paren, depth, prefix, group);
	}
	if (strcmp(item, "*") == 0)
	{
		if (alias)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "* cannot be renamed");
		for (int k = 0; k < c->in->schema->rels[rel].ncols; k++)
			spread_name(c, c->in->schema->rels[rel].cols[k].name);
		if (group)
			select_star_grouped(c, rel, al, group);
		else
			vn_buf_addf(&c->q->sql, "%s.*", al);
		return true;
	}
	return select_column(c, rel, al, alias, item, group);
}

/* the output name of an embedding item (alias, or name before ! and (), in out; false for others */
static bool
embed_label(const char *item, char *out, size_t size)
{
	const char *paren = vn_query_item_paren(item);
	const char *start = item,
			   *end;

	while (*start == ' ')
		start++;
	if (paren == NULL || strncmp(start, "...", 3) == 0)
		return false;
	end = paren;
	for (const char *p = start; p < paren; p++)
		if (*p == ':' && p[1] != ':' && (p == start || p[-1] != ':'))
		{
			end = p;
			break;
		}
	if (end == paren)
		for (const char *p = start; p < paren; p++)
			if (*p == '!')
			{
				end = p;
				break;
			}
	while (end > start && end[-1] == ' ')
		end--;
	snprintf(out, size, "%.*s", (int) (end - start), start);
	return true;
}

/*
 * Two embeddings of a list answering under one name would be one JSON key
 * twice: 400 42712, PostgreSQL's duplicate alias.
 */
static bool
labels_unique(Ctx *c, char **items, int n)
{
	char a[128],
		b[128];

	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n && embed_label(items[i], a, sizeof(a)); j++)
			if (embed_label(items[j], b, sizeof(b)) && strcmp(a, b) == 0)
				return vn_query_fail(c->q, 400, "42712", NULL, "Rename one of them: alias:resource(...).",
									 "table name \"%.64s\" specified more than once", a);
	return true;
}

bool
vn_query_select_list(Ctx *c, int rel, const char *al, const char *spec, int depth, const char *prefix)
{
	char **items;
	int	   n;
	bool   ok = true;
	bool   has_agg = false;
	VnBuf  group;

	if (spec == NULL || *spec == '\0')
		spec = "*";
	if (!vn_query_split(spec, &items, &n))
	{
		vn_query_free_list(items, n);
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed select \"%.64s\"", spec);
	}
	/* columns and aggregates here; embedded resources are counted by embed() */
	for (int i = 0; i < n; i++)
	{
		bool agg = vn_query_item_paren(items[i]) != NULL && is_aggregate(vn_query_trim(items[i]));

		if (vn_query_item_paren(items[i]) == NULL || agg)
			c->nselect++;
		has_agg |= agg;
	}
	if (c->nselect > c->in->max_select)
	{
		vn_query_free_list(items, n);
		return vn_query_fail(c->q, 400, "54000", NULL, "Select fewer columns, or split the request.",
							 "a request selects at most %d columns (embedded resources' included)", c->in->max_select);
	}
	ok = labels_unique(c, items, n);
	vn_buf_init(&group);
	for (int i = 0; i < n && ok; i++)
	{
		if (i)
			vn_buf_add(&c->q->sql, ", ");
		ok = select_item(c, rel, al, vn_query_trim(items[i]), depth, prefix, has_agg ? &group : NULL);
	}
	vn_query_free_list(items, n);
	/* the caller puts it after its WHERE (vn_query_take_group) */
	free(c->group);
	c->group = group.len ? vn_strdup(group.data) : NULL;
	vn_buf_free(&group);
	return ok;
}

void
vn_query_take_group(Ctx *c, VnBuf *b)
{
	if (c->group)
		vn_buf_add(b, c->group);
	free(c->group);
	c->group = NULL;
}
