/*
 * embed_rel.c
 *	  Which relationship an embedding names (PostgREST 12's relationship
 *	  resolution): rel(...), rel!hint(...), column(...), through the schema
 *	  cache's keys (either way), junctions and computed relationships; none
 *	  found is 400 PGRST200, several 300 PGRST201 with PostgREST's details.
 *	  embed.c builds the embedding's SQL from the one found.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_shared.h"
#include "response.h"

typedef VnQueryCtx Ctx;
typedef VnEmbedRel Rel;

#define MAX_CANDIDATES 8

/* the hint names the key, or one of its referencing columns (not tenant_id) */
static bool
hint_names_key(const VnForeignKey *k, const char *hint)
{
	if (hint == NULL || strcmp(hint, k->name) == 0)
		return true;
	for (int j = 0; j < k->ncols; j++)
		if (strcmp(k->from_cols[j], hint) == 0 && strcmp(hint, "tenant_id") != 0)
			return true;
	return false;
}

/* the one referencing column of k besides tenant_id, or NULL */
static const char *
key_column(const VnForeignKey *k)
{
	const char *col = NULL;

	for (int j = 0; j < k->ncols; j++)
		if (strcmp(k->from_cols[j], "tenant_id") != 0)
		{
			if (col)
				return NULL;
			col = k->from_cols[j];
		}
	return col;
}

static void
candidate(Rel *out, int *n, Rel r)
{
	if (*n < MAX_CANDIDATES)
		out[*n] = r;
	(*n)++;
}

/*
 * The relationships from rel to the relation named, or through a key whose
 * referencing column of rel is named (parent_id(*)): keys either way (a
 * self-reference named by its table embeds the children, as PostgREST
 * does), junctions (the hint may name the junction or either key).
 */
static void
table_candidates(Ctx *c, int rel, const char *name, const char *hint, Rel *out, int *n)
{
	const VnSchema *s = c->in->schema;
	int				child = vn_schema_relation_index(s, name);

	for (int i = 0; i < s->nfks; i++)
	{
		const VnForeignKey *k = &s->fks[i];
		const char		   *col = key_column(k);

		if (child >= 0 && k->to == rel && k->from == child && hint_names_key(k, hint))
			candidate(out, n,
					  (Rel){child, k->unique, k, false, NULL, NULL, k->unique ? "one-to-one" : "one-to-many"});
		else if (child >= 0 && k->from == rel && k->to == child && rel != child && hint_names_key(k, hint))
			candidate(out, n,
					  (Rel){child, true, k, true, NULL, NULL, k->unique ? "one-to-one" : "many-to-one"});
		else if (child < 0 && k->from == rel && col && strcmp(col, name) == 0 &&
				 (hint == NULL || strcmp(hint, s->rels[k->to].name) == 0 || strcmp(hint, k->name) == 0))
			candidate(out, n, (Rel){k->to, true, k, true, NULL, NULL, "many-to-one"});
	}
	for (int i = 0; child >= 0 && i < s->njunctions; i++)
	{
		const VnJunction *j = &s->junctions[i];

		if (j->from != rel || j->to != child)
			continue;
		if (hint && strcmp(hint, s->rels[j->junction].name) != 0 && strcmp(hint, s->fks[j->left].name) != 0 &&
			strcmp(hint, s->fks[j->right].name) != 0)
			continue;
		candidate(out, n, (Rel){child, false, NULL, false, j, NULL, "many-to-many"});
	}
}

/* "name using rel(cols) and rel(cols)" of a key */
static void
key_text(VnBuf *b, const VnSchema *s, const VnForeignKey *k)
{
	vn_buf_addf(b, "%s using %s(", k->name, s->rels[k->from].name);
	for (int j = 0; j < k->ncols; j++)
		vn_buf_addf(b, "%s%s", j ? ", " : "", k->from_cols[j]);
	vn_buf_addf(b, ") and %s(", s->rels[k->to].name);
	for (int j = 0; j < k->ncols; j++)
		vn_buf_addf(b, "%s%s", j ? ", " : "", k->to_cols[j]);
	vn_buf_addc(b, ')');
}

/* one entry of PGRST201's details: {cardinality, embedding, relationship} */
static void
candidate_json(VnBuf *d, const VnSchema *s, int rel, const Rel *r)
{
	VnBuf t;

	vn_buf_init(&t);
	vn_buf_add(d, "{\"cardinality\":");
	vn_buf_json_string(d, r->kind);
	vn_buf_addf(&t, "%s with %s", s->rels[rel].name, s->rels[r->child].name);
	vn_buf_add(d, ",\"embedding\":");
	vn_buf_json_string(d, t.data);
	vn_buf_reset(&t);
	if (r->jn)
	{
		vn_buf_addf(&t, "%s using ", s->rels[r->jn->junction].name);
		key_text(&t, s, &s->fks[r->jn->left]);
		vn_buf_add(&t, ", ");
		key_text(&t, s, &s->fks[r->jn->right]);
	}
	else
		key_text(&t, s, r->fk);
	vn_buf_add(d, ",\"relationship\":");
	vn_buf_json_string(d, t.data);
	vn_buf_addc(d, '}');
	vn_buf_free(&t);
}

/* PGRST201: details list every candidate (JSON, as PostgREST), the hint how to name each */
static bool
ambiguous(Ctx *c, int rel, const char *name, const Rel *cands, int n)
{
	const VnSchema *s = c->in->schema;
	VnBuf			details,
		hint;
	bool ok;

	vn_buf_init(&details);
	vn_buf_init(&hint);
	vn_buf_addc(&details, VN_DETAILS_JSON);
	vn_buf_addc(&details, '[');
	vn_buf_addf(&hint, "Try changing '%.64s' to one of the following: ", name);
	for (int i = 0; i < n && i < MAX_CANDIDATES; i++)
	{
		const char *target = s->rels[cands[i].child].name;
		/* a column named as the target: the relations tell the candidates apart */
		const char *key = strcmp(target, name) != 0 ? target : cands[i].jn ? s->rels[cands[i].jn->junction].name :
																			 cands[i].fk->name;

		if (i)
			vn_buf_addc(&details, ',');
		candidate_json(&details, s, rel, &cands[i]);
		vn_buf_addf(&hint, "%s'%.64s!%s'", i ? ", " : "", name, key);
	}
	vn_buf_addc(&details, ']');
	vn_buf_add(&hint, ". Find the desired relationship in the 'details' key.");
	ok = vn_query_fail(c->q, 300, "PGRST201", details.data, hint.data,
					   "Could not embed because more than one relationship was found for '%s' and '%.64s'",
					   s->rels[rel].name, name);
	vn_buf_free(&details);
	vn_buf_free(&hint);
	return ok;
}

/*
 * The one relationship between rel and the resource named: a computed
 * relationship of that name first (the schema's author defined it), then
 * the tables'; 400 PGRST200 for none, 300 PGRST201 for several.
 */
bool
vn_query_embed_relationship(Ctx *c, int rel, const char *name, const char *hint, Rel *out)
{
	const VnSchema *s = c->in->schema;
	Rel				cands[MAX_CANDIDATES];
	int				n = 0;
	char			details[512];

	for (int i = 0; i < s->ncomputed && hint == NULL; i++)
		if (s->computed[i].from == rel && strcmp(s->computed[i].name, name) == 0)
			candidate(cands, &n, (Rel){s->computed[i].to, s->computed[i].to_one, NULL, false, NULL, &s->computed[i], "computed"});
	if (n == 0)
		table_candidates(c, rel, name, hint, cands, &n);
	if (n == 1)
	{
		*out = cands[0];
		return true;
	}
	if (n > 1)
		return ambiguous(c, rel, name, cands, n);
	snprintf(details, sizeof(details),
			 "Searched for a foreign key relationship between '%s' and '%.64s'%s%.64s%s in the schema '%s', but no matches were found.",
			 s->rels[rel].name, name, hint ? " using the hint '" : "", hint ? hint : "", hint ? "'" : "", s->name);
	return vn_query_fail(c->q, 400, "PGRST200", details, NULL,
						 "Could not find a relationship between '%s' and '%.64s' in the schema cache",
						 s->rels[rel].name, name);
}
