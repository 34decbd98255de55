/*
 * select.c
 *	  select= to a SQL select list: columns, JSON paths, renames, casts from a
 *	  fixed list; embedded resources are embed.c's.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"

typedef VnQueryCtx Ctx;

static const char *casts[] = {
	"text", "integer", "int", "int4", "bigint", "int8", "smallint", "int2", "numeric", "real", "float4",
	"double precision", "float8", "boolean", "bool", "date", "time", "timestamp", "timestamptz",
	"timestamp with time zone", "interval", "uuid", "json", "jsonb", "varchar", "char", "text[]", NULL};


/* a column or JSON path of a select list, with its cast (from casts[]) and alias */
static bool
select_column(Ctx *c, int rel, const char *al, const char *alias, char *item)
{
	VnBuf  *b = &c->q->sql;
	char   *cast = strstr(item, "::");
	Operand o;

	if (cast)
	{
		bool known = false;

		*cast = '\0';
		cast += 2;
		for (int k = 0; casts[k]; k++)
			known |= strcmp(casts[k], cast) == 0;
		if (!known)
			return vn_query_fail(c->q, 400, "PGRST100", NULL,
								 "Casts: text, integer, bigint, numeric, boolean, date, timestamptz, uuid, json, jsonb and a few more.",
								 "unsupported cast \"%.32s\"", cast);
	}
	if (!vn_query_operand(c, &c->in->schema->rels[rel], al, item, &o, true))
		return false;
	if (cast)
		vn_buf_addf(b, "::%s", cast);
	if (alias || cast || strstr(item, "->"))
	{
		vn_buf_add(b, " AS ");
		vn_buf_ident(b, alias ? alias : o.label);
	}
	return true;
}

/* one item of a select list: [alias:]column[::cast], [alias:]rel(...), ...rel(...), * */
static bool
select_item(Ctx *c, int rel, const char *al, char *item, int depth, const char *prefix)
{
	char *alias = NULL;
	char *paren = strchr(item, '(');

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
	if (paren)
		return vn_query_embed(c, rel, al, alias, item, paren, depth, prefix);
	if (strcmp(item, "*") == 0)
	{
		if (alias)
			return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "* cannot be renamed");
		vn_buf_addf(&c->q->sql, "%s.*", al);
		return true;
	}
	return select_column(c, rel, al, alias, item);
}

/* the output name of an embedding item (alias, or name before ! and (), in out; false for others */
static bool
embed_label(const char *item, char *out, size_t size)
{
	const char *paren = strchr(item, '(');
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

	if (spec == NULL || *spec == '\0')
		spec = "*";
	if (!vn_query_split(spec, &items, &n))
	{
		vn_query_free_list(items, n);
		return vn_query_fail(c->q, 400, "PGRST100", NULL, NULL, "malformed select \"%.64s\"", spec);
	}
	/* columns here; embedded resources are counted by embed() */
	for (int i = 0; i < n; i++)
		if (strchr(items[i], '(') == NULL)
			c->nselect++;
	if (c->nselect > c->in->max_select)
	{
		vn_query_free_list(items, n);
		return vn_query_fail(c->q, 400, "54000", NULL, "Select fewer columns, or split the request.",
							 "a request selects at most %d columns (embedded resources' included)", c->in->max_select);
	}
	ok = labels_unique(c, items, n);
	for (int i = 0; i < n && ok; i++)
	{
		if (i)
			vn_buf_add(&c->q->sql, ", ");
		ok = select_item(c, rel, al, vn_query_trim(items[i]), depth, prefix);
	}
	vn_query_free_list(items, n);
	return ok;
}
