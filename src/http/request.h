/*
 * request.h
 *	  The request parser's headers: Accept (the answer's media type),
 *	  Prefer (count, return, resolution, params, max-affected, tx) and Range,
 *	  read into a statement's input.
 */
#ifndef VN_HTTP_REQUEST_H
#define VN_HTTP_REQUEST_H

#include "query.h"
#include "response.h"
#include "router.h"

/* true when token is one of the comma, space or semicolon separated items of list */
extern bool vn_request_has_token(const char *list, const char *token);
/* in's format, preferences and range from req's headers; false with resp an error */
extern bool vn_request_input(const VnRequest *req, VnQueryInput *in, VnResponse *resp);

#endif
