/*
 * stream.h
 *	  GET /events/stream: the tenant's committed events as Server-Sent
 *	  Events, and GET /events/ws, the same over a WebSocket (stream_ws.c;
 *	  docs/realtime.md).  One feed per front (stream_feed.c, a
 *	  RabbitMQ consumer thread) fanned out to every subscriber, each with a
 *	  bounded buffer; a resumed subscription reads only its gap from the
 *	  outbox (ventros.stream_gap).
 */
#ifndef VN_HTTP_STREAM_H
#define VN_HTTP_STREAM_H

#include <stdbool.h>

#include <microhttpd.h>

#include "auth.h"
#include "response.h"
#include "router.h"

/*
 * The settings (VENTROS_HTTP_AMQP_URL, VENTROS_HTTP_STREAM_*) and, when a
 * broker is configured, the feed thread.  False with *error (malloc'd).
 */
extern bool vn_stream_start(char **error);
/*
 * On the request's task: checks the subscription (filters, Last-Event-ID,
 * the role's visibility), registers it, writes its gap; resp is then 200
 * with resp->stream set, or an error.
 */
extern void vn_stream_open(const VnRouterConfig *cfg, VnRequest *req, const VnIdentity *id, const char *api_key,
						   VnResponse *resp);
/* main.c: on each loop thread, every round (starts the loop's waker task) */
extern void vn_stream_loop_tick(void);
/* main.c: queues the streaming answer of resp->stream on con and takes it over */
extern enum MHD_Result vn_stream_queue(struct MHD_Connection *con, VnResponse *resp);

#endif
