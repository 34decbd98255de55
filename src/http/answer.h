/*
 * answer.h
 *	  The response of a statement that ran: status, Content-Range,
 *	  Preference-Applied, Location, the media type, and the body.
 */
#ifndef VN_HTTP_ANSWER_H
#define VN_HTTP_ANSWER_H

#include "query.h"
#include "response.h"
#include "router.h"

/* what a request asked and what its statement is */
typedef struct VnAnswerInput
{
	const VnRouterConfig *cfg;
	const VnRequest		 *req;
	const VnQueryInput	 *in;
	const VnQuery		 *q;
	bool				  openapi; /* GET /: the OpenAPI document */
	bool				  head;
} VnAnswerInput;

/* resp from res, the one row the statement answered (body, n, total, ...) */
extern void vn_answer(const VnAnswerInput *a, PGresult *res, VnResponse *resp);

#endif
