/*
 * metrics.h
 *	  GET /metrics: the front's own counters (requests by route class and
 *	  status, latency histograms, the connection pool) and the database's
 *	  figures (ventros.metrics(): queues, workers, broker, dead letters,
 *	  events published, enrichment spend), in Prometheus' text format.
 */
#ifndef VN_HTTP_METRICS_H
#define VN_HTTP_METRICS_H

#include <stdbool.h>
#include <time.h>

#include <microhttpd.h>

#include "response.h"
#include "router.h"

/* reads VENTROS_HTTP_METRICS_TOKEN; call once before serving */
extern void vn_metrics_configure(void);
/* true when the decoded path is /metrics */
extern bool vn_metrics_path(const char *path);
/* answers GET /metrics (access: the token, else loopback clients only) */
extern void vn_metrics_handle(const VnRouterConfig *cfg, struct MHD_Connection *con, const char *method,
							  VnResponse *resp);
/* counts one answered request (path NULL: malformed); lock-free */
extern void vn_metrics_request(const char *path, int status, const struct timespec *start);
/* the pool's gauges: connections opened, busy, and requests waiting for one */
extern void vn_metrics_pool(int size_delta, int busy_delta, int waiting_delta);
/* a request gave up waiting for a connection (503) */
extern void vn_metrics_pool_timeout(void);

#endif
