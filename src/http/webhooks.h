/*
 * webhooks.h
 *	  Provider webhooks: POST /webhooks/<provider>/<channel_id> (the raw body
 *	  handed to ventros.accept_webhook) and Meta's GET verification handshake
 *	  (ventros.webhook_challenge).
 */
#ifndef VN_HTTP_WEBHOOKS_H
#define VN_HTTP_WEBHOOKS_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "query.h"
#include "response.h"
#include "router.h"

/* true when a raw or decoded request path is under /webhooks/ */
extern bool vn_webhooks_path(const char *path);
/* an answer of the webhook endpoint's own shape: {"error":"<error>"} */
extern void vn_webhooks_error(VnResponse *resp, int status, const char *error);
/*
 * Answers one webhook request.  body is the raw request body (any bytes);
 * args the decoded query string; the request's headers are read from con.
 */
extern void vn_webhooks_handle(const VnRouterConfig *cfg, struct MHD_Connection *con, const char *method,
							   const char *path, const VnArgs *args, const char *body, size_t body_len,
							   VnResponse *resp);

#endif
