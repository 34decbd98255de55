/*
 * query_shared.h
 *	  The statement builder's own interface, between query.c, its parts
 *	  (parse.c, filter.c, select.c, order.c) and its kinds (read.c, write.c,
 *	  rpc.c): the state of one statement being built and the pieces of
 *	  PostgREST's dialect.  Not for other files.
 */
#ifndef VN_HTTP_QUERY_SHARED_H
#define VN_HTTP_QUERY_SHARED_H

#include "query.h"

/* a relationship from a parent to an embedded relation (embed.c) */
typedef struct VnEmbedRel
{
	int					child;
	bool				to_one;
	const VnForeignKey *fk;
	bool				parent_refs; /* the parent holds fk's referencing columns */
	const VnJunction   *jn;
	const VnComputed   *fn;
	const char		   *kind; /* for PGRST201: many-to-one, ... */
} VnEmbedRel;

/* an embedding of the request, for order=rel(col) of its parent's level */
typedef struct VnEmbedSeen
{
	char	  *prefix; /* the parent's path: "" at the top, "orders." below */
	char	  *label;  /* alias or name */
	char	  *name;   /* as the request names it, hints aside */
	char	   al[16]; /* the parent's alias */
	int		   parent;
	int		   depth;
	VnEmbedRel r;
	char	   sp_al[16]; /* a spread's lateral join, "" for an embedding */
	char	  *names;	  /* a spread's columns, '\0' after each */
	size_t	   names_len;
} VnEmbedSeen;

typedef struct VnQueryCtx
{
	const VnQueryInput *in;
	VnQuery			   *q;
	int					nconds;
	bool			   *consumed;  /* query arguments taken by an embedded resource */
	VnBuf				inner;	   /* " AND EXISTS (...)" of !inner embeddings, for the WHERE of their parent */
	const VnFunction   *rpc_get;   /* /rpc/f with arguments in the query string: they are not filters */
	bool				spread_ok; /* a read's top select list may spread (...rel(cols)) */
	VnBuf				lateral;   /* " LEFT JOIN LATERAL (...) _spN ON true" of spreads */
	int					nspreads;
	int					nembeds;	 /* embedded resources so far, at every level */
	int					nselect;	 /* select-list items so far, at every level */
	char			   *group;		 /* " GROUP BY ..." of the last select list with aggregates, or NULL */
	int					naggregates; /* aggregate functions so far, at every level */
	VnBuf			   *names;		 /* the output names of the spread being built ('\0' after each), or NULL */
	VnEmbedSeen		   *seen;		 /* the embeddings so far (embed.c), for order=rel(col) */
	int					nseen;
} VnQueryCtx;

/* An operand of a filter, select item or order term (filter.c) */
typedef struct Operand
{
	const VnColumn *col;
	const char	   *type; /* for casts: the column's, or text after ->>, jsonb after -> */
	char			category;
	bool			is_tsvector;
	char			label[64]; /* PostgREST's name for it: the last key, or the column */
} Operand;

/* query.c: the statement's state */
/* records the first error in q (status, PostgREST code, message); false */
extern bool vn_query_fail(VnQuery *q, int status, const char *code, const char *details, const char *hint,
						  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* appends $n for value to q's statement; false when there are too many */
extern bool vn_query_param(VnQuery *q, const char *value, size_t len);
extern bool vn_query_param_s(VnQuery *q, const char *value);
/* "schema"."relation" of the request's schema */
extern void vn_query_relation_ref(VnQueryCtx *c, VnBuf *b, const VnRelation *r);

/* parse.c: syntax */
extern char *vn_query_trim(char *s);
/* splits at top-level commas into malloc'd items (vn_query_free_list) */
extern bool		   vn_query_split(const char *s, char ***out, int *n);
extern void		   vn_query_free_list(char **items, int n);
extern char		  *vn_query_unquote(const char *s);
extern const char *vn_query_arg(const VnArgs *a, const char *key);
extern bool		   vn_query_is_reserved(const char *key);
extern bool		   vn_query_number(const char *s, long *out);
/* the top-level keys of the JSON body (malloc'd, vn_query_free_list); uniform: all objects' keys must match */
extern bool vn_query_scan_body(VnQueryCtx *c, char ***keys, int *nkeys, bool *is_array, bool uniform);
/* Content-Type is type, its parameters aside */
extern bool vn_query_content_type_is(const char *content_type, const char *type);
/* body.c: a text/csv body as the JSON array of its lines' objects (PostgREST's bulk insert); false: error in c->q */
extern bool vn_query_csv_json(VnQueryCtx *c, VnBuf *json);
/* a form body (not one opening with { or [: curl -d's JSON) */
extern bool vn_query_is_form(const VnQueryInput *in);
/* a form body as the JSON object of its strings (PostgREST's, for tables); false: 400 in c->q */
extern bool vn_query_form_json(VnQueryCtx *c, VnBuf *json);
/* "::type" of a cast's type name, modifiers and [] included, to out (may be NULL); false when malformed */
extern bool vn_query_cast_type(const char *cast, VnBuf *out);
/* the first '(' of a select item that is not a cast's type modifier, or NULL */
extern char *vn_query_item_paren(const char *item);

/* filter.c: operands and WHERE */
extern const VnColumn *vn_query_need_column(VnQueryCtx *c, const VnRelation *r, const char *name);
extern void			   vn_query_col_ref(VnBuf *b, const char *alias, const char *name);
extern bool			   vn_query_operand(VnQueryCtx *c, const VnRelation *r, const char *al, const char *spec, Operand *o,
										bool emit);
extern bool			   vn_query_condition(VnQueryCtx *c, const VnRelation *r, const char *al, const char *colname,
										  const char *expr);
extern bool			   vn_query_logic(VnQueryCtx *c, const VnRelation *r, const char *al, const char *op, bool negate,
									  const char *list, int depth);
/* "TRUE AND (...)": writes turn version=eq.N into a version check */
extern bool vn_query_where(VnQueryCtx *c, const VnRelation *r, const char *al, bool writes, int *version_param);

/* select.c */
extern bool vn_query_select_list(VnQueryCtx *c, int rel, const char *al, const char *spec, int depth,
								 const char *prefix);
/* appends the GROUP BY of the last select list (if it aggregates) to b, and forgets it */
extern void vn_query_take_group(VnQueryCtx *c, VnBuf *b);

/* embed_rel.c: the one relationship from rel to the resource named (with its hint, or NULL) */
extern bool vn_query_embed_relationship(VnQueryCtx *c, int rel, const char *name, const char *hint, VnEmbedRel *out);

/* embed.c: rel(...), alias:rel(...), ...rel(...) of a select list, paren at its '(';
 * group: the list's GROUP BY when it has aggregates, else NULL */
extern bool vn_query_embed(VnQueryCtx *c, int rel, const char *al, const char *alias, char *item, char *paren,
						   int depth, const char *prefix, VnBuf *group);

/*
 * order=rel(col)[.desc]: the to-one embedding labelled rel of the level
 * whose path is prefix, its column col as an expression of the parent's row
 * (al); 400 PGRST108 when not embedded there, PGRST118 when to-many
 */
extern bool vn_query_embed_order(VnQueryCtx *c, const char *prefix, const char *al, const char *term);
/* forgets the embeddings seen (query.c, when the statement is built) */
extern void vn_query_embed_forget(VnQueryCtx *c);

/* order.c */
extern bool vn_query_order_by(VnQueryCtx *c, const VnRelation *r, const char *al);
extern bool vn_query_order_spec(VnQueryCtx *c, const VnRelation *r, const char *al, const char *spec);
/* order= of an embedded resource whose path is prefix ("orders.") */
extern bool vn_query_order_at(VnQueryCtx *c, const VnRelation *r, const char *al, const char *spec,
							  const char *prefix);
extern bool vn_query_paging(VnQueryCtx *c);

/* read.c */
/* the answer's text from the rows _r: JSON array, object or CSV */
extern void vn_query_body_expr(VnQueryCtx *c);
/* "<select list> FROM <from> WHERE <filters> ORDER BY ...": rows aliased _t */
/* where: when not NULL, a copy of the WHERE clause's conditions (malloc'd) */
extern bool vn_query_rows(VnQueryCtx *c, int rel, const char *from, char **where);
extern bool vn_query_build_read(VnQueryCtx *c, int rel);

/* write.c */
extern bool vn_query_build_insert(VnQueryCtx *c, int rel);
extern bool vn_query_build_update(VnQueryCtx *c, int rel);
extern bool vn_query_build_delete(VnQueryCtx *c, int rel);
/* put.c: PUT of one row by its primary key */
extern bool vn_query_build_put(VnQueryCtx *c, int rel);
/* write.c's pieces for put.c */
extern bool vn_query_body_keys(VnQueryCtx *c, const VnRelation *r, char ***keys, int *nkeys, bool *is_array);
extern bool vn_query_insert_rows(VnQueryCtx *c, const VnRelation *r, char **keys, int nkeys, bool is_array);
extern bool vn_query_upsert_clause(VnQueryCtx *c, const VnRelation *r, char **keys, int nkeys);
extern bool vn_query_write_end(VnQueryCtx *c, int rel);

#endif
