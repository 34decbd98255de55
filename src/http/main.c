/*
 * main.c
 *	  ventros-http: a PostgREST-compatible HTTP front for Ventros.
 *
 * Configuration (environment):
 *	VENTROS_HTTP_DB              libpq connection string of a login that is a
 *	                             member of ventros_authenticator (required)
 *	VENTROS_HTTP_PORT            port (3000); VENTROS_HTTP_HOST (127.0.0.1)
 *	VENTROS_JWT_SECRET_FILE      file holding the HS256 secret, or
 *	VENTROS_JWT_SECRET           the secret itself (>= 32 bytes)
 *	VENTROS_JWT_PUBLIC_KEY_FILE  RS256 instead: the issuer's public key (PEM), or
 *	VENTROS_JWT_JWKS_FILE        its JWK set (keys chosen by kid); and
 *	VENTROS_JWT_PRIVATE_KEY_FILE to sign our own grants RS256 (optional)
 *	VENTROS_JWT_AUD              expected audience (optional)
 *	VENTROS_HTTP_POOL            database connections (8, at most 64)
 *	VENTROS_HTTP_POOL_WAIT_MS    how long a request waits for one (5000)
 *	VENTROS_HTTP_MAX_ROWS        maximum page size (1000)
 *	VENTROS_HTTP_MAX_BODY        maximum request body in bytes (1 MiB)
 *	VENTROS_HTTP_STATEMENT_TIMEOUT  per request (10s)
 *	VENTROS_HTTP_CLIENT_TIMEOUT  seconds a client may stay idle or slow (10)
 *	VENTROS_HTTP_REQUEST_TIMEOUT seconds from a request's first byte to its last,
 *	                             and to send an answer (20)
 *	VENTROS_HTTP_MAX_CLIENTS     concurrent connections (256)
 *	VENTROS_HTTP_PER_IP_LIMIT    connections per client address (half the
 *	                             above; 0: none, e.g. behind a proxy)
 *	VENTROS_HTTP_RESERVE         percent of the connections kept for clients
 *	                             holding fewer than four (20)
 *	VENTROS_HTTP_MAX_EMBEDS      embedded resources per request (20)
 *	VENTROS_HTTP_MAX_SELECT      selected columns per request (200)
 *	VENTROS_HTTP_MAX_PLAN_COST   planner cost a request's statement may have
 *	                             (1000000; 0: no ceiling)
 *	VENTROS_HTTP_THREADS         event loops (one per two CPUs, at most the pool)
 *	VENTROS_HTTP_PREPARED        prepared statements kept per connection (100)
 *	VENTROS_HTTP_AMQP_URL, VENTROS_HTTP_STREAM_*  the event stream (stream.c,
 *	                             docs/realtime.md)
 *
 * A few event-loop threads (loop.c, one per two CPUs), each with its own libmicrohttpd daemon
 * on the shared listening socket and its own share of the database
 * connections.  Each request runs as a task (task.c) that yields while it
 * waits for a connection or for the database, its HTTP connection
 * suspended meanwhile; no thread ever blocks on a client or on PostgreSQL.
 * Slow clients are cut by the connection timeout and by a deadline per
 * request (guard.c); bodies over the limit get 413 without being read.  Each request writes one access log line to stderr
 * (buffered, written by a thread of its own: log.c): time, method, path,
 * status, duration, tenant — never a token or a body.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "auth.h"
#include "buf.h"
#include "catalog.h"
#include "guard.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "pg.h"
#include "router.h"
#include "schema.h"
#include "stream.h"
#include "webhooks.h"

typedef struct VnConnState
{
	char		   *uri; /* raw request target */
	VnBuf			body;
	bool			too_big;
	bool			seen;
	struct timespec start;
	/* the request being served, by a task of its own (serve()) */
	struct MHD_Connection *con;
	const char			  *method;
	VnTask				  *task;
	bool				   suspended; /* the connection waits for the task */
	bool				   done;	  /* resp is the answer */
	VnRequest			   req;
	VnResponse			   resp;
	char				  *path;
	VnBuf				   headers;
	VnBuf				   prefer; /* every Prefer header, joined by commas */
} VnConnState;

/* how much of an oversized body is read and discarded before the 413, in limits */
#define VN_DRAIN_FACTOR 16

static VnRouterConfig router_cfg;
static VnAuthConfig	  auth_cfg;
static size_t		  max_body = 1024 * 1024;

static long
env_long(const char *name, long dflt, long min, long max)
{
	const char *v = getenv(name);
	long		n;

	if (v == NULL || *v == '\0')
		return dflt;
	n = strtol(v, NULL, 10);
	if (n < min)
		n = min;
	if (n > max)
		n = max;
	return n;
}

static void *
uri_logger(void *cls, const char *uri, struct MHD_Connection *con)
{
	VnConnState *st = vn_alloc(sizeof(VnConnState));

	st->uri = vn_strdup(uri);
	vn_buf_init(&st->body);
	clock_gettime(CLOCK_MONOTONIC, &st->start);
	vn_guard_phase(con, VN_PHASE_RECEIVING);
	return st;
}

static void free_args(VnArgs *args);

static void
completed(void *cls, struct MHD_Connection *con, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	VnConnState *st = *con_cls;

	vn_guard_phase(con, VN_PHASE_WAITING);
	if (st == NULL)
		return;
	/*
	 * A suspended connection is never closed under its task (libmicrohttpd
	 * does not time out suspended connections, and the daemons are never
	 * stopped): a live task here would be a bug, and leaking beats freeing
	 * what it still uses.
	 */
	if (st->task && !vn_task_finished(st->task))
		return;
	if (st->task)
		vn_task_free(st->task);
	if (st->req.args.items)
		free_args(&st->req.args);
	free(st->path);
	vn_buf_free(&st->headers);
	vn_buf_free(&st->prefer);
	vn_response_free(&st->resp);
	free(st->uri);
	vn_buf_free(&st->body);
	free(st);
	*con_cls = NULL;
}


/*
 * A path is routed by its decoded segments: an encoded slash (%2F) or NUL
 * (%00) would make one segment look like two, or cut the path short, after
 * decoding.  Such a path names nothing here.
 */
static bool
path_plain(const char *s, size_t n)
{
	for (size_t i = 0; i + 2 < n; i++)
		if (s[i] == '%' && ((s[i + 1] == '2' && (s[i + 2] == 'F' || s[i + 2] == 'f')) ||
							(s[i + 1] == '0' && s[i + 2] == '0')))
			return false;
	return true;
}

/* the query string's arguments (parse.c's decoder, shared with form bodies) */
static bool
parse_query(const char *qs, VnArgs *args)
{
	return vn_args_parse(qs, strlen(qs), args);
}

static void
free_args(VnArgs *args)
{
	vn_args_free(args);
}

typedef struct HeaderCollect
{
	VnBuf *buf;
	bool   first;
	VnBuf *prefer; /* several Prefer headers are one list, as PostgREST reads them */
} HeaderCollect;

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	HeaderCollect *h = cls;
	char		   lower[128];
	size_t		   n = strlen(key);

	if (n >= sizeof(lower) || !vn_utf8_valid(key, n) || !vn_utf8_valid(value, strlen(value)))
		return MHD_YES;
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char) tolower((unsigned char) key[i]);
	/* credentials never reach the database's settings (nor its logs) */
	if (strcmp(lower, "authorization") == 0 || strcmp(lower, "cookie") == 0 || strcmp(lower, "apikey") == 0)
		return MHD_YES;
	if (strcmp(lower, "prefer") == 0)
	{
		vn_buf_add(h->prefer, h->prefer->len ? ", " : "");
		vn_buf_add(h->prefer, value);
	}
	if (!h->first)
		vn_buf_addc(h->buf, ',');
	h->first = false;
	vn_buf_json_string(h->buf, lower);
	vn_buf_addc(h->buf, ':');
	vn_buf_json_string(h->buf, value);
	return MHD_YES;
}

static enum MHD_Result
send_response(struct MHD_Connection *con, VnResponse *r)
{
	struct MHD_Response *mr;
	enum MHD_Result		 ret;

	mr = MHD_create_response_from_buffer(r->body.len, r->body.data, MHD_RESPMEM_MUST_COPY);
	if (mr == NULL)
		return MHD_NO;
	if (r->content_type && (r->body.len > 0 || r->status >= 400 || r->type_without_body))
		MHD_add_response_header(mr, "Content-Type", r->content_type);
	for (int i = 0; i < r->nheaders; i++)
		MHD_add_response_header(mr, r->header_names[i], r->header_values[i]);
	/*
	 * CORS, as PostgREST: any origin may call (credentials are bearer
	 * tokens, never cookies), and may read the paging headers.
	 */
	MHD_add_response_header(mr, "Access-Control-Allow-Origin", "*");
	MHD_add_response_header(mr, "Access-Control-Expose-Headers", "Content-Range, Content-Location, Location, Preference-Applied");
	ret = MHD_queue_response(con, (unsigned int) r->status, mr);
	MHD_destroy_response(mr);
	return ret;
}

static void
access_log(const char *method, const char *path, int status, const struct timespec *start, const char *tenant)
{
	struct timespec now;
	time_t			t = time(NULL);
	struct tm		tm;
	char			ts[32];
	char			safe[256];
	size_t			k = 0;
	double			ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - start->tv_sec) * 1000.0 + (now.tv_nsec - start->tv_nsec) / 1e6;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* a decoded path may hold control characters: no forged log lines */
	for (const char *p = path; *p && k < sizeof(safe) - 4; p++)
		safe[k++] = ((unsigned char) *p < 0x20 || *p == 0x7f || *p == ' ') ? '?' : *p;
	if (path[k] != '\0' && k >= sizeof(safe) - 4)
	{
		memcpy(safe + k, "...", 3);
		k += 3;
	}
	safe[k] = '\0';
	vn_log_line("%s %s %s %d %.1fms tenant=%s", ts, method, safe, status, ms, tenant);
}

/* POST /rpc/<f> with Content-Type: application/octet-stream: the body is bytes, not text */
static bool
binary_rpc_body(struct MHD_Connection *con, const char *path)
{
	const char *type = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Type");

	return type != NULL && strncmp(path, "/rpc/", 5) == 0 &&
		   strncasecmp(type, "application/octet-stream", 24) == 0 &&
		   (type[24] == '\0' || type[24] == ';' || type[24] == ' ');
}

/*
 * The request itself, on a task of its own: it may wait for the database
 * (the task yields and the connection is suspended), and ends with the
 * answer in st->resp.
 */
static void
serve(void *arg)
{
	VnConnState			  *st = arg;
	struct MHD_Connection *con = st->con;
	VnRequest			  *req = &st->req;
	VnResponse			  *resp = &st->resp;
	const char			  *q;
	HeaderCollect		   hc;

	req->method = st->method;
	snprintf(req->tenant, sizeof(req->tenant), "-");

	if (st->too_big)
	{
		char msg[96];

		snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes", max_body);
		vn_response_error(resp, 413, "54000", msg, NULL, NULL);
		if (vn_webhooks_path(st->uri))
			vn_webhooks_error(resp, 413, "payload_too_large");
		vn_response_header(resp, "Connection", "close");
		goto done;
	}

	q = strchr(st->uri, '?');
	if (!path_plain(st->uri, q ? (size_t) (q - st->uri) : strlen(st->uri)))
	{
		/* /webhooks/waha%2F<id> is one segment, never /webhooks/waha/<id> */
		if (vn_webhooks_path(st->uri))
			vn_webhooks_error(resp, 404, "channel_not_found");
		else
			vn_response_error(resp, 404, "PGRST125", "invalid path", NULL,
							  "A slash or a NUL byte in a path is never percent-encoded.");
		goto done;
	}
	st->path = vn_url_decode(st->uri, q ? (size_t) (q - st->uri) : strlen(st->uri), false);
	if (st->path == NULL || st->path[0] != '/' || !parse_query(q ? q + 1 : "", &req->args))
	{
		vn_response_error(resp, 400, "PGRST100", "malformed URL", NULL,
						  "Percent-encode the URL as UTF-8; at most 200 query parameters.");
		goto done;
	}
	if (vn_webhooks_path(st->path))
	{
		/* provider webhooks: raw bytes, no JWT (webhooks.c) */
		vn_webhooks_handle(&router_cfg, con, st->method, st->path, &req->args, st->body.data, st->body.len, resp);
		goto done;
	}
	if (vn_metrics_path(st->path))
	{
		/* the operator's scrape: its own access rule, no JWT (metrics.c) */
		vn_metrics_handle(&router_cfg, con, st->method, resp);
		goto done;
	}
	/* a binary body is only ever bytes for a function's bytea argument (rpc.c) */
	if (!binary_rpc_body(con, st->path) && !vn_utf8_valid(st->body.data, st->body.len))
	{
		vn_response_error(resp, 400, "PGRST102", "the request body is not valid UTF-8", NULL, NULL);
		goto done;
	}
	req->path = st->path;
	req->authorization = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
	req->apikey = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "apikey");
	req->accept = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Accept");
	req->range = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Range");
	req->accept_profile = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Accept-Profile");
	req->content_profile = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Profile");
	req->content_type = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Type");
	req->body = st->body.data;
	req->body_len = st->body.len;
	vn_buf_addc(&st->headers, '{');
	hc.buf = &st->headers;
	hc.first = true;
	hc.prefer = &st->prefer;
	MHD_get_connection_values(con, MHD_HEADER_KIND, collect_header, &hc);
	vn_buf_addc(&st->headers, '}');
	req->headers_json = st->headers.data;
	req->prefer = st->prefer.len ? st->prefer.data : NULL;
	vn_router_handle(&router_cfg, req, resp);

done:
	st->done = true;
	if (st->suspended)
		MHD_resume_connection(con); /* the handler is called again: it answers */
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *con, const char *url, const char *method,
		const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	VnConnState	   *st = *con_cls;
	enum MHD_Result ret;

	if (st == NULL)
		return MHD_NO;
	if (*upload_data_size > 0)
	{
		if (!st->too_big && st->body.len + *upload_data_size > max_body)
			st->too_big = true;
		if (!st->too_big)
			vn_buf_addn(&st->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!st->seen)
	{
		/*
		 * The first call, before any body.  An announced oversized body is
		 * refused without being stored; up to VN_DRAIN_FACTOR times the
		 * limit it is still read and thrown away before the 413 goes out,
		 * because closing a socket with unread data resets it, and a
		 * client still sending would see the reset instead of the answer
		 * (nginx's lingering close does the same).  A larger one is
		 * answered at once and the connection closed.
		 */
		const char		  *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
		unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;

		st->seen = true;
		if (announced <= max_body)
			return MHD_YES;
		st->too_big = true;
		if (announced <= (unsigned long long) max_body * VN_DRAIN_FACTOR)
			return MHD_YES;
	}
	if (st->task == NULL)
	{
		st->con = con;
		st->method = method;
		vn_response_init(&st->resp);
		vn_buf_init(&st->headers);
		vn_buf_init(&st->prefer);
		vn_guard_phase(con, VN_PHASE_SERVING);
		st->task = vn_task_start(serve, st);
		if (!st->done)
		{
			/* waiting for the database: serve() resumes the connection */
			st->suspended = true;
			MHD_suspend_connection(con);
			return MHD_YES;
		}
	}
	if (!st->done)
		return MHD_YES;
	if (st->resp.stream)
	{
		/* an event stream has no deadline: it ends when the client goes */
		access_log(method, st->path, st->resp.status, &st->start, st->req.tenant);
		return vn_stream_queue(con, &st->resp);
	}
	vn_guard_phase(con, VN_PHASE_SENDING);
	ret = send_response(con, &st->resp);
	access_log(method, st->path ? st->path : "(malformed)", st->resp.status, &st->start, st->req.tenant);
	vn_metrics_request(st->path, st->resp.status, &st->start);
	return ret;
}

/* each loop's round: the event stream's wake-ups, then the guard's cuts */
static void
loop_tick(void *guard)
{
	vn_stream_loop_tick();
	vn_guard_tick(guard);
}

/*
 * The listening socket, made here and shared by every loop's daemon: a
 * connection goes to whichever loop accepts it first.
 */
static int
listen_on(const struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *) addr, sizeof(*addr)) != 0 || listen(fd, 1024) != 0)
	{
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * The roles (PostgREST's db-anon-role and jwt-role-claim-key): the role of
 * a request without a token, the claim naming a token's role (a top-level
 * claim: ".role" or "role"), and the roles a token may name besides
 * Ventros' tenant roles.
 */
static bool
roles_configure(VnAuthConfig *cfg, char **error)
{
	const char *anon = getenv("VENTROS_HTTP_DB_ANON_ROLE");
	const char *claim = getenv("VENTROS_HTTP_JWT_ROLE_CLAIM_KEY");
	const char *roles = getenv("VENTROS_HTTP_DB_ROLES");

	cfg->anon_role = anon && *anon ? anon : "ventros_anon";
	if (claim && *claim == '.')
		claim++;
	cfg->role_claim = claim && *claim ? claim : "role";
	if (strpbrk(cfg->role_claim, ".[]\"") != NULL || strlen(cfg->anon_role) > 63)
	{
		*error = vn_strdup("VENTROS_HTTP_JWT_ROLE_CLAIM_KEY names a top-level claim (.role); nested paths are not supported\n");
		return false;
	}
	if (roles && *roles)
	{
		char *copy = vn_strdup(roles);
		char *save = NULL;

		cfg->roles = vn_alloc(sizeof(char *) * (strlen(roles) + 1));
		for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
			cfg->roles[cfg->nroles++] = vn_strdup(t);
		free(copy);
	}
	return true;
}

int
main(int argc, char **argv)
{
	const char		  *conninfo = getenv("VENTROS_HTTP_DB");
	const char		  *host = getenv("VENTROS_HTTP_HOST");
	long			   port = env_long("VENTROS_HTTP_PORT", 3000, 1, 65535);
	long			   pool_size = env_long("VENTROS_HTTP_POOL", 8, 1, 64);
	long			   nthreads = env_long("VENTROS_HTTP_THREADS", 0, 0, 64);
	long			   max_clients = env_long("VENTROS_HTTP_MAX_CLIENTS", 256, 1, 10000);
	long			   max_stmts = env_long("VENTROS_HTTP_PREPARED", 100, 2, 10000);
	VnGuardConfig	   guard_cfg;
	int				   listen_fd;
	char			  *error = NULL;
	const VnSchema	  *schema;
	struct sockaddr_in addr;
	sigset_t		   sigs;
	int				   sig;
	static char		   timeout[32];
	static char		   plan_cost[32];
	const char		  *t = getenv("VENTROS_HTTP_STATEMENT_TIMEOUT");

	if (conninfo == NULL || *conninfo == '\0')
	{
		fprintf(stderr, "ventros-http: VENTROS_HTTP_DB (a libpq connection string) is required\n");
		return 2;
	}
	if (!vn_auth_load_secret(&auth_cfg, &error))
	{
		fprintf(stderr, "ventros-http: %s\n", error);
		return 2;
	}
	auth_cfg.audience = getenv("VENTROS_JWT_AUD") && *getenv("VENTROS_JWT_AUD") ? getenv("VENTROS_JWT_AUD") : NULL;
	auth_cfg.leeway = 0;
	max_body = (size_t) env_long("VENTROS_HTTP_MAX_BODY", 1024 * 1024, 1024, 64L * 1024 * 1024);
	snprintf(timeout, sizeof(timeout), "%s", t && *t ? t : "10s");

	vn_metrics_configure();
	if (!roles_configure(&auth_cfg, &error) || !vn_catalog_configure(conninfo, &error))
	{
		fprintf(stderr, "ventros-http: %s", error);
		return 2;
	}
	if (!vn_catalog_reload(&error))
	{
		fprintf(stderr, "ventros-http: cannot read the exposed schemas: %s", error);
		return 1;
	}
	if (!vn_stream_start(&error))
	{
		fprintf(stderr, "ventros-http: %s", error);
		return 2;
	}
	router_cfg.auth = &auth_cfg;
	router_cfg.max_rows = env_long("VENTROS_HTTP_MAX_ROWS", 1000, 1, 100000);
	router_cfg.statement_timeout = timeout;
	snprintf(plan_cost, sizeof(plan_cost), "%ld", env_long("VENTROS_HTTP_MAX_PLAN_COST", 1000000, 0, 1000000000000L));
	router_cfg.max_plan_cost = plan_cost;
	router_cfg.max_embeds = (int) env_long("VENTROS_HTTP_MAX_EMBEDS", 20, 0, 10000);
	router_cfg.max_select = (int) env_long("VENTROS_HTTP_MAX_SELECT", 200, 1, 100000);
	router_cfg.pool_wait_ms = (int) env_long("VENTROS_HTTP_POOL_WAIT_MS", 5000, 1, 600000);
	/* PostgREST's db-aggregates-enabled: off unless true */
	router_cfg.aggregates = getenv("VENTROS_HTTP_DB_AGGREGATES_ENABLED") &&
							strcmp(getenv("VENTROS_HTTP_DB_AGGREGATES_ENABLED"), "true") == 0;
	/* PostgREST's db-plan-enabled: off unless true (never for api: router.c) */
	router_cfg.plan = getenv("VENTROS_HTTP_DB_PLAN_ENABLED") && strcmp(getenv("VENTROS_HTTP_DB_PLAN_ENABLED"), "true") == 0;

	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t) port);
	if (inet_pton(AF_INET, host && *host ? host : "127.0.0.1", &addr.sin_addr) != 1)
	{
		fprintf(stderr, "ventros-http: bad VENTROS_HTTP_HOST\n");
		return 2;
	}

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* after the mask: the listener thread must not take SIGHUP or SIGTERM */
	if (!vn_catalog_listen(&error))
	{
		fprintf(stderr, "ventros-http: %s", error);
		return 1;
	}

	listen_fd = listen_on(&addr);
	if (listen_fd < 0)
	{
		fprintf(stderr, "ventros-http: cannot listen on port %ld\n", port);
		return 1;
	}
	/*
	 * The loops: one per two CPUs unless told, never more than connections;
	 * the pool's connections and the client limit are shared out among
	 * them.  A loop's work per request is a small part of the database's,
	 * so half the CPUs keep up; fewer loops take more events per wake-up,
	 * and leave fewer connections idle in one loop while requests wait in
	 * another (bench/http: 3 % more writes with one loop than two on 2 CPUs).
	 */
	if (nthreads <= 0)
		nthreads = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? (sysconf(_SC_NPROCESSORS_ONLN) + 1) / 2 : 1;
	if (nthreads > pool_size)
		nthreads = pool_size;
	guard_cfg.request_timeout = (int) env_long("VENTROS_HTTP_REQUEST_TIMEOUT", 20, 1, 3600);
	guard_cfg.per_ip = (int) env_long("VENTROS_HTTP_PER_IP_LIMIT", (max_clients + 1) / 2, 0, 10000);
	guard_cfg.reserve_pct = (int) env_long("VENTROS_HTTP_RESERVE", 20, 0, 90);
	for (long i = 0; i < nthreads; i++)
	{
		unsigned int	   slots = (unsigned int) ((max_clients + nthreads - 1) / nthreads);
		VnGuard			  *guard = vn_guard_create(&guard_cfg, slots);
		int				   conns = (int) (pool_size / nthreads + (i < pool_size % nthreads ? 1 : 0));
		VnPool			  *pool = vn_pg_pool_create(conninfo, conns, (int) max_stmts, &error);
		struct MHD_Daemon *d;

		if (pool == NULL)
		{
			fprintf(stderr, "ventros-http: cannot open the connection pool: %s", error);
			return 1;
		}
		d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG,
							 0, vn_guard_accept, guard, handler, NULL,
							 MHD_OPTION_LISTEN_SOCKET, listen_fd,
							 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) env_long("VENTROS_HTTP_CLIENT_TIMEOUT", 10, 1, 3600),
							 MHD_OPTION_CONNECTION_LIMIT, slots,
							 MHD_OPTION_URI_LOG_CALLBACK, uri_logger, NULL,
							 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
							 MHD_OPTION_NOTIFY_CONNECTION, vn_guard_notify, guard,
							 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 64 * 1024,
							 MHD_OPTION_END);
		if (d == NULL || vn_loop_start(d, pool, loop_tick, guard, &error) == NULL)
		{
			fprintf(stderr, "ventros-http: cannot start event loop %ld on port %ld%s%s\n", i, port,
					d ? ": " : "", d ? error : "");
			return 1;
		}
	}
	vn_log_start();
	schema = vn_catalog_current()->schemas[0];
	fprintf(stderr, "ventros-http: listening on %s:%ld (%s: %d relations, %d functions, pool %ld, %ld loops)\n",
			host && *host ? host : "127.0.0.1", port, vn_catalog_current()->names, schema->nrels, schema->nfuncs,
			pool_size, nthreads);
	for (;;)
	{
		sigwait(&sigs, &sig);
		if (sig != SIGHUP)
			break;
		/* reload the schema cache (catalog.c; also on NOTIFY pgrst) */
		if (!vn_catalog_reload(&error))
		{
			fprintf(stderr, "ventros-http: schema reload failed, keeping the old one: %s", error);
			free(error);
			continue;
		}
		schema = vn_catalog_current()->schemas[0];
		fprintf(stderr, "ventros-http: schema reloaded (%d relations, %d functions)\n", schema->nrels, schema->nfuncs);
	}
	/*
	 * The loops are not stopped one by one: requests in flight are cut
	 * short by the exit, as a client must expect of any server.
	 */
	vn_log_flush();
	return 0;
}
