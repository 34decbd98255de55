/*
 * query.c
 *	  From a request in PostgREST's dialect to one statement: the state of
 *	  the statement being built (errors, bound parameters) and the dispatch
 *	  by kind.  The kinds: read.c (GET, HEAD), write.c (POST, PATCH, DELETE),
 *	  rpc.c (/rpc/); their parts: parse.c (syntax), filter.c (WHERE),
 *	  select.c (select lists, embedding), order.c (ORDER BY, paging).
 *
 * Invariants: an identifier reaches the SQL text only after it was found in
 * the schema cache (or it is an alias, which is quoted); a cast reaches it
 * only as a quoted name or one of SQL's spellings, digits for its modifier
 * (parse.c); every value of the request goes as
 * a parameter ($n).  Any input the front does not understand is a 4xx with
 * a message naming what was wrong, never a statement sent on a guess.
 *
 * Aliases in the generated SQL: _t is the target relation, _t1 an embedded
 * one, _r the rows the answer is made of, _b the request body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "query_shared.h"
#include "rpc.h"

typedef VnQueryCtx Ctx;

bool
vn_query_fail(VnQuery *q, int status, const char *code, const char *details, const char *hint, const char *fmt, ...)
{
	va_list ap;

	if (q->status)
		return false; /* keep the first error */
	q->status = status;
	snprintf(q->code, sizeof(q->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(q->message, sizeof(q->message), fmt, ap);
	va_end(ap);
	q->details = details ? vn_strdup(details) : NULL;
	q->hint = hint ? vn_strdup(hint) : NULL;
	return false;
}

void
vn_query_init(VnQuery *q)
{
	memset(q, 0, sizeof(*q));
	vn_buf_init(&q->sql);
	q->shape = VN_SHAPE_ROWS;
	q->returns_body = true;
}

void
vn_query_free(VnQuery *q)
{
	vn_buf_free(&q->sql);
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->details);
	free(q->hint);
}

/* adds a parameter and its placeholder; false when there are too many */
bool
vn_query_param(VnQuery *q, const char *value, size_t len)
{
	if (q->nparams >= VN_MAX_PARAMS)
		return vn_query_fail(q, 400, "PGRST100", NULL, NULL, "too many values in the request (at most %d)", VN_MAX_PARAMS);
	q->params[q->nparams++] = vn_strndup(value, len);
	vn_buf_addf(&q->sql, "$%d", q->nparams);
	return true;
}

bool
vn_query_param_s(VnQuery *q, const char *value)
{
	return vn_query_param(q, value, strlen(value));
}

/* "schema"."relation" */
void
vn_query_relation_ref(VnQueryCtx *c, VnBuf *b, const VnRelation *r)
{
	vn_buf_ident(b, c->in->schema->name);
	vn_buf_addc(b, '.');
	vn_buf_ident(b, r->name);
}

bool
vn_query_build(const VnQueryInput *in, VnQuery *q)
{
	Ctx	 c = {in, q, 0, NULL};
	int	 rel;
	bool ok;

	c.consumed = vn_alloc(sizeof(bool) * (in->args->n + 1));
	vn_buf_init(&c.inner);
	vn_buf_init(&c.lateral);
	if (in->rpc)
		ok = vn_rpc_build(&c) && q->status == 0;
	else if ((rel = vn_schema_relation_index(in->schema, in->target)) < 0)
		ok = vn_query_fail(q, 400, "PGRST205", NULL, "Relations are listed at GET /.",
						   "could not find the table api.%.64s", in->target);
	else if (strcmp(in->method, "GET") == 0 || strcmp(in->method, "HEAD") == 0)
		ok = vn_query_build_read(&c, rel) && q->status == 0;
	else if (strcmp(in->method, "POST") == 0)
		ok = vn_query_build_insert(&c, rel);
	else if (strcmp(in->method, "PATCH") == 0)
		ok = vn_query_build_update(&c, rel);
	else if (strcmp(in->method, "DELETE") == 0)
		ok = vn_query_build_delete(&c, rel);
	else if (strcmp(in->method, "PUT") == 0)
		ok = vn_query_build_put(&c, rel);
	else
		ok = vn_query_fail(q, 405, "PGRST105", NULL, NULL, "method %s is not supported", in->method);
	free(c.consumed);
	vn_buf_free(&c.inner);
	vn_buf_free(&c.lateral);
	free(c.group);
	vn_query_embed_forget(&c);
	return ok;
}
