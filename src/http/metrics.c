/*
 * metrics.c
 *	  GET /metrics in Prometheus' text exposition format (version 0.0.4).
 *
 * Two sources:
 *	- the front's own counters, kept in this process: requests by route class
 *	  and status, a latency histogram per route class, the connection pool's
 *	  gauges.  They are plain C11 atomics updated with relaxed order: the hot
 *	  path takes no lock, and a scrape may see one request counted in the
 *	  total and not yet in its bucket, which a scraper never notices.
 *	- the database's figures, from one call of ventros.metrics() per scrape
 *	  (sql/93_operator.sql: queues, workers, broker, dead letters, events
 *	  published, dispatcher attempts, pauses, enrichment spend), run as the
 *	  front's own login with a connection of the pool.  When it fails the
 *	  front's series are still answered, with ventros_http_database_up 0.
 *
 * Access (docs/operations.md): with VENTROS_HTTP_METRICS_TOKEN set, a scrape
 * must send "Authorization: Bearer <token>" (compared in constant time);
 * without it only loopback clients are answered.  Neither a tenant's token
 * nor anything else opens it: the figures are the platform's, not a tenant's.
 *
 * Route classes are a closed list (rpc, relation, openapi, health, webhooks,
 * metrics, events, other) and statuses are HTTP's 100..599, so the series
 * cannot grow with what clients send.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <sys/socket.h>

#include "buf.h"
#include "metrics.h"
#include "pg.h"

typedef enum RouteClass
{
	RC_RPC,
	RC_RELATION,
	RC_OPENAPI,
	RC_HEALTH,
	RC_WEBHOOKS,
	RC_METRICS,
	RC_EVENTS,
	RC_OTHER,
	RC_COUNT
} RouteClass;

static const char *const class_names[RC_COUNT] = {"rpc", "relation", "openapi", "health",
												  "webhooks", "metrics", "events", "other"};

/* seconds; the +Inf bucket is the count */
static const double bucket_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define VN_NBUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))
#define VN_MIN_STATUS 100
#define VN_NSTATUS 500

static atomic_ulong requests[RC_COUNT][VN_NSTATUS];
static atomic_ulong buckets[RC_COUNT][VN_NBUCKETS]; /* not cumulative: summed when written */
static atomic_ulong duration_count[RC_COUNT];
static atomic_ulong duration_sum_us[RC_COUNT];
static atomic_long	pool_size;
static atomic_long	pool_busy;
static atomic_long	pool_waiting;
static atomic_ulong pool_timeouts;
static time_t		started_at;
static const char  *metrics_token;

static const char *db_sql =
	"SELECT m.metric, m.kind, m.help, m.labels, m.value"
	"  FROM ventros.metrics() WITH ORDINALITY m(metric, kind, help, labels, value, n)"
	" ORDER BY m.metric, m.n";

void
vn_metrics_configure(void)
{
	const char *t = getenv("VENTROS_HTTP_METRICS_TOKEN");

	metrics_token = t && *t ? t : NULL;
	started_at = time(NULL);
}

bool
vn_metrics_path(const char *path)
{
	return path != NULL && strcmp(path, "/metrics") == 0;
}

static RouteClass
route_class(const char *path)
{
	if (path == NULL || path[0] != '/')
		return RC_OTHER;
	if (strcmp(path, "/") == 0)
		return RC_OPENAPI;
	if (strncmp(path, "/rpc/", 5) == 0)
		return RC_RPC;
	if (strcmp(path, "/webhooks") == 0 || strncmp(path, "/webhooks/", 10) == 0)
		return RC_WEBHOOKS;
	if (strcmp(path, "/events") == 0 || strncmp(path, "/events/", 8) == 0)
		return RC_EVENTS;
	if (strcmp(path, "/health") == 0)
		return RC_HEALTH;
	if (strcmp(path, "/metrics") == 0)
		return RC_METRICS;
	/* /<relation>: one segment */
	return strchr(path + 1, '/') == NULL ? RC_RELATION : RC_OTHER;
}

void
vn_metrics_request(const char *path, int status, const struct timespec *start)
{
	RouteClass		rc = route_class(path);
	struct timespec now;
	double			seconds;
	unsigned long	us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	seconds = (double) (now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
	if (seconds < 0)
		seconds = 0;
	us = (unsigned long) (seconds * 1e6);
	if (status >= VN_MIN_STATUS && status < VN_MIN_STATUS + VN_NSTATUS)
		atomic_fetch_add_explicit(&requests[rc][status - VN_MIN_STATUS], 1, memory_order_relaxed);
	for (size_t b = 0; b < VN_NBUCKETS; b++)
		if (seconds <= bucket_bounds[b])
		{
			atomic_fetch_add_explicit(&buckets[rc][b], 1, memory_order_relaxed);
			break;
		}
	atomic_fetch_add_explicit(&duration_count[rc], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&duration_sum_us[rc], us, memory_order_relaxed);
}

void
vn_metrics_pool(int size_delta, int busy_delta, int waiting_delta)
{
	if (size_delta)
		atomic_fetch_add_explicit(&pool_size, size_delta, memory_order_relaxed);
	if (busy_delta)
		atomic_fetch_add_explicit(&pool_busy, busy_delta, memory_order_relaxed);
	if (waiting_delta)
		atomic_fetch_add_explicit(&pool_waiting, waiting_delta, memory_order_relaxed);
}

void
vn_metrics_pool_timeout(void)
{
	atomic_fetch_add_explicit(&pool_timeouts, 1, memory_order_relaxed);
}

static void
family(VnBuf *b, const char *name, const char *type, const char *help)
{
	vn_buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* the front's own series */
static void
write_front(VnBuf *b)
{
	long busy = atomic_load_explicit(&pool_busy, memory_order_relaxed);
	long size = atomic_load_explicit(&pool_size, memory_order_relaxed);

	family(b, "ventros_http_requests_total", "counter", "Requests answered by ventros-http, by route class and status");
	for (int rc = 0; rc < RC_COUNT; rc++)
		for (int s = 0; s < VN_NSTATUS; s++)
		{
			unsigned long n = atomic_load_explicit(&requests[rc][s], memory_order_relaxed);

			if (n)
				vn_buf_addf(b, "ventros_http_requests_total{route=\"%s\",status=\"%d\"} %lu\n", class_names[rc],
							s + VN_MIN_STATUS, n);
		}
	family(b, "ventros_http_request_duration_seconds", "histogram",
		   "Time from the first byte of a request to its answer being queued, by route class");
	for (int rc = 0; rc < RC_COUNT; rc++)
	{
		unsigned long cumulative = 0;
		unsigned long count = atomic_load_explicit(&duration_count[rc], memory_order_relaxed);

		for (size_t i = 0; i < VN_NBUCKETS; i++)
		{
			cumulative += atomic_load_explicit(&buckets[rc][i], memory_order_relaxed);
			vn_buf_addf(b, "ventros_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lu\n",
						class_names[rc], bucket_bounds[i], cumulative);
		}
		/* +Inf is the count, never below the finite buckets */
		vn_buf_addf(b, "ventros_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lu\n",
					class_names[rc], count > cumulative ? count : cumulative);
		vn_buf_addf(b, "ventros_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", class_names[rc],
					atomic_load_explicit(&duration_sum_us[rc], memory_order_relaxed) / 1e6);
		vn_buf_addf(b, "ventros_http_request_duration_seconds_count{route=\"%s\"} %lu\n", class_names[rc],
					count > cumulative ? count : cumulative);
	}
	family(b, "ventros_http_pool_connections", "gauge", "Connections of the front's pool to PostgreSQL, by state");
	vn_buf_addf(b, "ventros_http_pool_connections{state=\"busy\"} %ld\n", busy);
	vn_buf_addf(b, "ventros_http_pool_connections{state=\"idle\"} %ld\n", size > busy ? size - busy : 0);
	family(b, "ventros_http_pool_waiting", "gauge", "Requests waiting for a free connection of the pool");
	vn_buf_addf(b, "ventros_http_pool_waiting %ld\n", atomic_load_explicit(&pool_waiting, memory_order_relaxed));
	family(b, "ventros_http_pool_timeouts_total", "counter",
		   "Requests answered 503 after waiting VENTROS_HTTP_POOL_WAIT_MS for a connection");
	vn_buf_addf(b, "ventros_http_pool_timeouts_total %lu\n", atomic_load_explicit(&pool_timeouts, memory_order_relaxed));
	family(b, "ventros_http_start_time_seconds", "gauge", "When this ventros-http process started (Unix time)");
	vn_buf_addf(b, "ventros_http_start_time_seconds %ld\n", (long) started_at);
}

/* the database's series: one call of ventros.metrics(); false when it failed */
static bool
write_database(const VnRouterConfig *cfg, VnBuf *b)
{
	PGconn	   *conn = vn_pg_acquire(cfg->pool_wait_ms);
	PGresult   *res;
	const char *last = "";
	bool		ok;

	if (conn == NULL)
		return false;
	res = vn_pg_exec(conn, db_sql);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	for (int i = 0; ok && i < PQntuples(res); i++)
	{
		const char *metric = PQgetvalue(res, i, 0);
		const char *labels = PQgetvalue(res, i, 3);

		if (strcmp(metric, last) != 0)
			family(b, metric, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
		last = metric;
		vn_buf_addf(b, "%s%s%s%s %s\n", metric, *labels ? "{" : "", labels, *labels ? "}" : "",
					PQgetisnull(res, i, 4) ? "NaN" : PQgetvalue(res, i, 4));
	}
	if (!ok && getenv("VENTROS_HTTP_DEBUG"))
		fprintf(stderr, "ventros-http: metrics: %s", PQerrorMessage(conn));
	/* the rows' strings live in res: everything is written, now it may go */
	PQclear(res);
	vn_pg_release(conn);
	return ok;
}

static bool
loopback(struct MHD_Connection *con)
{
	const union MHD_ConnectionInfo *ca = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr		   *sa = ca ? ca->client_addr : NULL;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* the token, compared in constant time (its length is not a secret) */
static bool
token_ok(struct MHD_Connection *con)
{
	const char *a = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
	size_t		n = strlen(metrics_token);

	if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0)
		return false;
	a += 7;
	return strlen(a) == n && CRYPTO_memcmp(a, metrics_token, n) == 0;
}

void
vn_metrics_handle(const VnRouterConfig *cfg, struct MHD_Connection *con, const char *method, VnResponse *resp)
{
	bool up;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
	{
		vn_response_error(resp, 405, "PGRST101", "only GET is served at /metrics", NULL, NULL);
		vn_response_header(resp, "Allow", "GET, HEAD");
		return;
	}
	if (metrics_token != NULL && !token_ok(con))
	{
		vn_response_error(resp, 401, "PGRST301", "the metrics token is missing or wrong", NULL,
						  "Send Authorization: Bearer <VENTROS_HTTP_METRICS_TOKEN>.");
		vn_response_header(resp, "WWW-Authenticate", "Bearer");
		return;
	}
	if (metrics_token == NULL && !loopback(con))
	{
		vn_response_error(resp, 403, "42501", "metrics are served to loopback clients only", NULL,
						  "Set VENTROS_HTTP_METRICS_TOKEN to scrape from elsewhere.");
		return;
	}
	resp->status = 200;
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
	write_front(&resp->body);
	up = write_database(cfg, &resp->body);
	family(&resp->body, "ventros_http_database_up", "gauge",
		   "The database's figures were read for this scrape (1) or not (0)");
	vn_buf_addf(&resp->body, "ventros_http_database_up %d\n", up ? 1 : 0);
}
