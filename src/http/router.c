/*
 * router.c
 *	  The route table of the front's own endpoints (a CORS preflight,
 *	  /health, / the OpenAPI document, /rpc/<function>, /<relation>), and the
 *	  path of a request through them: authentication, the statement, one
 *	  round trip, the answer (answer.c).
 *
 * Invariants: a request with a token that does not verify is answered 401
 * before any database work; a request without a token runs as the anonymous
 * role (VENTROS_HTTP_DB_ANON_ROLE, ventros_anon by default);
 * the role is never taken from anywhere but a verified token or a valid API
 * key.  Errors of our own and of PostgreSQL have PostgREST's JSON shape.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "answer.h"
#include "catalog.h"
#include "console.h"
#include "pg.h"
#include "request.h"
#include "router.h"
#include "stream.h"

/* who the request runs as */
typedef struct Caller
{
	VnIdentity	id;
	const char *api_key; /* vnk_...: the database resolves it */
	bool		authenticated;
	const char *search_path; /* of the chosen schema */
} Caller;

typedef enum Endpoint
{
	EP_OPENAPI,
	EP_RPC,
	EP_RELATION
} Endpoint;

static const char *health_sql =
	"SELECT pg_catalog.json_build_object('status', 'ok', 'postgres', 'ok', 'workers', ventros.http_worker_status())::text";

static void
run_health(const VnRouterConfig *cfg, VnResponse *resp)
{
	PGconn	 *conn = vn_pg_acquire(cfg->pool_wait_ms);
	PGresult *res;

	if (conn == NULL)
	{
		vn_response_error(resp, 503, "PGRST001", "PostgreSQL is not reachable", NULL, NULL);
		return;
	}
	res = NULL;
	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (res)
			PQclear(res);
		res = vn_pg_exec(conn, health_sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK || PQstatus(conn) == CONNECTION_OK)
			break;
		vn_pg_reset(conn); /* a connection that broke since its last use: once more */
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
	else
		vn_response_error(resp, 503, "PGRST001", "PostgreSQL is not healthy", PQerrorMessage(conn), NULL);
	PQclear(res);
	vn_pg_release(conn);
}

static void
route_options(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	/* a CORS preflight: what a browser may send */
	resp->status = 200;
	resp->content_type = NULL;
	vn_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
	vn_response_header(resp, "Access-Control-Allow-Headers",
					   "Authorization, Content-Type, Accept, Prefer, Range, Range-Unit, apikey, X-Client-Info, Accept-Profile, Content-Profile");
	vn_response_header(resp, "Access-Control-Max-Age", "86400");
	vn_response_header(resp, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
}

static void
route_health(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	run_health(cfg, resp);
}

/* a bearer JWT, or an API key (Bearer vnk_... or apikey: vnk_...); false: 401 answered */
static bool
authenticate(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp, Caller *who)
{
	const char *reason = NULL;

	snprintf(who->id.role, sizeof(who->id.role), "%s", cfg->auth->anon_role);
	if (req->authorization)
	{
		const char *a = req->authorization;

		if (strncasecmp(a, "Bearer ", 7) != 0)
		{
			vn_response_error(resp, 401, "PGRST301", "the Authorization header must be a Bearer token", NULL, NULL);
			vn_response_header(resp, "WWW-Authenticate", "Bearer");
			return false;
		}
		a += 7;
		while (*a == ' ')
			a++;
		if (strncmp(a, "vnk_", 4) == 0)
			who->api_key = a;
		else if (!vn_auth_verify(cfg->auth, a, &who->id, &reason))
		{
			char www[200];

			vn_response_error(resp, 401, "PGRST301", reason, NULL, NULL);
			snprintf(www, sizeof(www), "Bearer error=\"invalid_token\", error_description=\"%s\"", reason);
			vn_response_header(resp, "WWW-Authenticate", www);
			return false;
		}
		else
			who->authenticated = true;
	}
	else if (req->apikey && strncmp(req->apikey, "vnk_", 4) == 0)
		who->api_key = req->apikey;
	if (who->api_key)
	{
		who->authenticated = true;
		snprintf(req->tenant, sizeof(req->tenant), "(api key)");
	}
	else
		snprintf(req->tenant, sizeof(req->tenant), "%s", who->id.tenant[0] ? who->id.tenant : "-");
	return true;
}

/*
 * Schema switching, as PostgREST: Accept-Profile for reads,
 * Content-Profile for the rest, among the exposed schemas (catalog.c); none
 * named: the first.  The request's search_path is that schema's.
 */
static bool
choose_schema(const VnRequest *req, VnQueryInput *in, const char **search_path, VnResponse *resp)
{
	bool			 read = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	const char		*profile = read ? req->accept_profile : req->content_profile;
	const VnCatalog *cat = vn_catalog_current();
	int				 i = vn_catalog_find(cat, profile);

	if (i < 0)
	{
		char msg[600];

		snprintf(msg, sizeof(msg), "The schema must be one of the following: %.500s", cat->names);
		vn_response_error(resp, 406, "PGRST106", msg, NULL, NULL);
		return false;
	}
	in->schema = cat->schemas[i];
	*search_path = cat->search_paths[i];
	return true;
}

/* the statement of an endpoint; false with resp an error */
static bool
statement(VnRequest *req, Endpoint ep, VnQueryInput *in, VnQuery *q, VnResponse *resp)
{
	const char *name;
	bool		head = strcmp(req->method, "HEAD") == 0;

	if (ep == EP_OPENAPI)
	{
		if (strcmp(req->method, "GET") != 0 && !head)
		{
			vn_response_error(resp, 405, "PGRST101", "only GET is served at /", NULL, NULL);
			return false;
		}
		if (!in->schema->ventros)
			return vn_openapi_statement(in, q);
		vn_buf_add(&q->sql, "SELECT ventros.http_openapi()::text, 1::bigint, NULL::bigint");
		return true;
	}
	in->rpc = ep == EP_RPC;
	name = req->path + (in->rpc ? 5 : 1);
	if (*name == '\0' || strchr(name, '/') != NULL || strlen(name) > 63)
	{
		vn_response_error(resp, 404, "PGRST125", "invalid path", NULL, "Paths are /<relation> or /rpc/<function>.");
		return false;
	}
	in->target = name;
	if (!in->rpc && strcmp(req->method, "GET") != 0 && !head && strcmp(req->method, "POST") != 0 &&
		strcmp(req->method, "PATCH") != 0 && strcmp(req->method, "DELETE") != 0 && strcmp(req->method, "PUT") != 0)
	{
		vn_response_error(resp, 405, "PGRST101", "method not allowed", NULL, NULL);
		return false;
	}
	if (!vn_query_build(in, q))
	{
		vn_response_error(resp, q->status ? q->status : 400, q->code[0] ? q->code : "PGRST100",
						  q->message[0] ? q->message : "bad request", q->details, q->hint);
		return false;
	}
	if (in->plan.on)
		vn_plan_wrap(&in->plan, &q->sql);
	return true;
}

/* the statement in one round trip; NULL with resp an error */
static PGresult *
execute(const VnRouterConfig *cfg, const VnRequest *req, const Caller *who, const VnQueryInput *in, const VnQuery *q,
		VnResponse *resp)
{
	VnSetup	  setup;
	VnParams  params = {0};
	PGconn	 *conn;
	PGresult *res;
	bool	  read = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

	memset(&setup, 0, sizeof(setup));
	setup.role = who->id.role;
	setup.claims = who->id.claims ? who->id.claims : "";
	setup.method = req->method;
	setup.path = req->path;
	setup.headers = req->headers_json ? req->headers_json : "{}";
	setup.timeout = cfg->statement_timeout;
	setup.max_plan_cost = cfg->max_plan_cost;
	setup.api_key = who->api_key;
	/* Prefer: tx=rollback runs the request and undoes it (PostgREST's override) */
	setup.rollback = vn_request_has_token(req->prefer, "tx=rollback");
	/* GET and HEAD read: a function called so may not write (PostgREST's rule) */
	setup.read_only = read;
	setup.search_path = who->search_path;
	setup.timezone = in->timezone;
	params.n = q->nparams;
	params.values = (const char *const *) q->params;
	conn = vn_pg_acquire(cfg->pool_wait_ms);
	if (conn == NULL)
	{
		vn_response_error(resp, 503, "PGRST003", "timed out waiting for a database connection", NULL,
						  "The server is busy; retry shortly.");
		vn_response_header(resp, "Retry-After", "1");
		return NULL;
	}
	res = vn_pg_run(conn, &setup, q->sql.data, &params);
	vn_pg_release(conn);
	if (res == NULL && read && (conn = vn_pg_acquire(cfg->pool_wait_ms)) != NULL)
	{
		/* the connection had broken (it is reset now); a read may safely run again */
		res = vn_pg_run(conn, &setup, q->sql.data, &params);
		vn_pg_release(conn);
	}
	if (res == NULL)
		vn_response_error(resp, 503, "PGRST001", "database connection lost", NULL, "Retry the request.");
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (getenv("VENTROS_HTTP_DEBUG"))
			fprintf(stderr, "ventros-http: failed statement: %s\n", q->sql.data);
		vn_response_pg_error(resp, res, who->authenticated);
		PQclear(res);
		res = NULL;
	}
	return res;
}

/*
 * A plan is served when the configuration enables it (PostgREST's
 * db-plan-enabled), never for Ventros' own schema: its estimates come from
 * statistics over every tenant's rows (docs/http.md, "Counting").  Else the
 * media type is one the front does not offer: 406, as PostgREST.
 */
static bool
plan_allowed(const VnRouterConfig *cfg, const VnQueryInput *in, Endpoint ep, VnResponse *resp)
{
	if (!in->plan.on)
		return true;
	if (cfg->plan && !in->schema->ventros && ep != EP_OPENAPI)
		return true;
	vn_response_error(resp, 406, "PGRST107", "none of these media types is available", "application/vnd.pgrst.plan",
					  "Plans are served when VENTROS_HTTP_DB_PLAN_ENABLED=true, for schemas other than api.");
	return false;
}

/* /, /rpc/<function>, /<relation>: the endpoints served from the database */
static void
serve(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp, Endpoint ep)
{
	Caller		  who;
	VnQueryInput  in;
	VnQuery		  q;
	PGresult	 *res;
	VnAnswerInput a;

	memset(&who, 0, sizeof(who));
	memset(&in, 0, sizeof(in));
	if (!authenticate(cfg, req, resp, &who))
		return;
	in.platform_admin = strcmp(who.id.role, "ventros_platform_admin") == 0;
	in.max_rows = cfg->max_rows;
	in.max_embeds = cfg->max_embeds;
	in.max_select = cfg->max_select;
	in.aggregates = cfg->aggregates;
	vn_query_init(&q);
	if (choose_schema(req, &in, &who.search_path, resp) && vn_request_input(req, &in, resp) &&
		plan_allowed(cfg, &in, ep, resp) && statement(req, ep, &in, &q, resp) &&
		(res = execute(cfg, req, &who, &in, &q, resp)) != NULL)
	{
		if (in.plan.on)
		{
			vn_plan_answer(&in.plan, res, resp);
			PQclear(res);
			vn_query_free(&q);
			free(who.id.claims);
			return;
		}
		a.cfg = cfg;
		a.req = req;
		a.in = &in;
		a.q = &q;
		a.openapi = ep == EP_OPENAPI;
		a.head = strcmp(req->method, "HEAD") == 0;
		vn_answer(&a, res, resp);
		PQclear(res);
	}
	vn_query_free(&q);
	free(who.id.claims);
}

static void
route_openapi(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	serve(cfg, req, resp, EP_OPENAPI);
}

static void
route_rpc(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	serve(cfg, req, resp, EP_RPC);
}

static void
route_relation(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	serve(cfg, req, resp, EP_RELATION);
}

static void
route_console(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	vn_console_serve(req, resp);
}

/* GET /events/stream and /events/ws: Server-Sent Events, a WebSocket (stream.c) */
static void
route_stream(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	Caller who;

	memset(&who, 0, sizeof(who));
	if (authenticate(cfg, req, resp, &who))
		vn_stream_open(cfg, req, &who.id, who.api_key, resp);
	free(who.id.claims);
}

/* the route table: the first entry whose method and path match serves */
typedef struct Route
{
	const char *method; /* NULL: any */
	const char *path;	/* NULL: any; ending in '/': a prefix */
	void (*serve)(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp);
} Route;

static const Route routes[] = {
	{"OPTIONS", NULL, route_options},
	{NULL, "/health", route_health},
	{NULL, "/", route_openapi},
	{NULL, "/console", route_console},
	{NULL, "/console/", route_console},
	{NULL, "/rpc/", route_rpc},
	{"GET", "/events/stream", route_stream},
	{"GET", "/events/ws", route_stream},
	{NULL, NULL, route_relation},
};

static bool
matches(const Route *r, const VnRequest *req)
{
	size_t n;

	if (r->method && strcmp(r->method, req->method) != 0)
		return false;
	if (r->path == NULL)
		return true;
	n = strlen(r->path);
	if (n > 1 && r->path[n - 1] == '/')
		return strncmp(req->path, r->path, n) == 0;
	return strcmp(req->path, r->path) == 0;
}

void
vn_router_handle(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (matches(&routes[i], req))
		{
			routes[i].serve(cfg, req, resp);
			return;
		}
}
