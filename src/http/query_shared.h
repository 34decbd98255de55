/*
 * query_shared.h
 *	  What query.c lends to rpc.c: the state of one statement being built,
 *	  and the parts of PostgREST's dialect a call's rows go through (select=,
 *	  filters, order, paging, the answer's format).  Not for other files.
 */
#ifndef VN_HTTP_QUERY_SHARED_H
#define VN_HTTP_QUERY_SHARED_H

#include "query.h"

typedef struct VnQueryCtx
{
	const VnQueryInput *in;
	VnQuery			   *q;
	int					nconds;
	bool			   *consumed;  /* query arguments taken by an embedded resource */
	VnBuf				inner;	   /* " AND EXISTS (...)" of !inner embeddings, for the top WHERE */
	const VnFunction   *rpc_get;   /* /rpc/f with arguments in the query string: they are not filters */
	bool				spread_ok; /* a read's top select list may spread (...rel(cols)) */
	VnBuf				lateral;   /* " LEFT JOIN LATERAL (...) _spN ON true" of spreads */
	int					nspreads;
	int					nembeds; /* embedded resources so far, at every level */
	int					nselect; /* select-list items so far, at every level */
} VnQueryCtx;

/* records the first error in q (status, PostgREST code, message); false */
extern bool vn_query_fail(VnQuery *q, int status, const char *code, const char *details, const char *hint,
						  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* appends $n for value to q's statement; false when there are too many */
extern bool vn_query_param(VnQuery *q, const char *value, size_t len);
/* the top-level keys of the JSON body (malloc'd, vn_query_free_list) */
extern bool		   vn_query_scan_body(VnQueryCtx *c, char ***keys, int *nkeys, bool *is_array);
extern void		   vn_query_free_list(char **items, int n);
extern const char *vn_query_arg(const VnArgs *a, const char *key);
extern bool		   vn_query_is_reserved(const char *key);
/* "<select list> FROM <from> WHERE <filters> ORDER BY ...": rows aliased _t */
extern bool vn_query_rows(VnQueryCtx *c, int rel, const char *from);
extern bool vn_query_paging(VnQueryCtx *c);
/* the answer's text from the rows _r: JSON array, object or CSV */
extern void vn_query_body_expr(VnQueryCtx *c);

#endif
