/*
 * router.c
 *	  Authenticates a request, builds its statement, runs it in one round
 *	  trip and shapes PostgREST's answer (status, Content-Range, formats).
 *
 * Invariants: a request with a token that does not verify is answered 401
 * before any database work; a request without a token runs as ventros_anon;
 * the role is never taken from anywhere but a verified token or a valid API
 * key.  Errors of our own and of PostgreSQL have PostgREST's JSON shape.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg.h"
#include "router.h"

static bool
has_token(const char *list, const char *token)
{
	const char *p = list;
	size_t		n = strlen(token);

	if (list == NULL)
		return false;
	while ((p = strstr(p, token)) != NULL)
	{
		bool start_ok = p == list || p[-1] == ',' || p[-1] == ' ' || p[-1] == ';';
		bool end_ok = p[n] == '\0' || p[n] == ',' || p[n] == ' ' || p[n] == ';';

		if (start_ok && end_ok)
			return true;
		p += n;
	}
	return false;
}

/*
 * Range: 0-9 (items); false when malformed.  Bounds past VN_RANGE_MAX are
 * refused too: strtol saturates at LONG_MAX, and b - a + 1 would overflow
 * (found by test/fuzz/fuzz_headers; regression input in its corpus).
 */
#define VN_RANGE_MAX 999999999999L /* as query.c's limit= and offset= */

static bool
parse_range(const char *h, long *offset, long *limit)
{
	long a,
		b = -1;
	char *end;

	*offset = -1;
	*limit = -1;
	if (h == NULL)
		return true;
	if (strncmp(h, "items=", 6) == 0)
		h += 6;
	a = strtol(h, &end, 10);
	if (end == h || *end != '-' || a < 0 || a > VN_RANGE_MAX)
		return false;
	h = end + 1;
	if (*h)
	{
		b = strtol(h, &end, 10);
		if (end == h || *end != '\0' || b < a || b > VN_RANGE_MAX)
			return false;
	}
	*offset = a;
	*limit = b < 0 ? -1 : b - a + 1;
	return true;
}

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
content_range(VnResponse *resp, long offset, long n, const char *total)
{
	char buf[96];

	if (n > 0)
		snprintf(buf, sizeof(buf), "%ld-%ld/%s", offset, offset + n - 1, total ? total : "*");
	else
		snprintf(buf, sizeof(buf), "*/%s", total ? total : "*");
	vn_response_header(resp, "Content-Range", buf);
}

static void
shape_grant(const VnRouterConfig *cfg, PGresult *res, VnResponse *resp)
{
	char *token;

	if (PQgetisnull(res, 0, 3) || PQgetisnull(res, 0, 4))
	{
		vn_response_error(resp, 401, "28000", "invalid or revoked refresh token", NULL,
						  "Log in again.");
		return;
	}
	token = vn_auth_sign(cfg->auth, PQgetvalue(res, 0, 3), atol(PQgetvalue(res, 0, 5)));
	if (token == NULL)
	{
		if (cfg->auth->rs256 && cfg->auth->private_key == NULL)
			vn_response_error(resp, 501, "PGRST000", "sign-in is off: access tokens come from an external issuer",
							  NULL, "Set VENTROS_JWT_PRIVATE_KEY_FILE to sign them here.");
		else
			vn_response_error(resp, 500, "PGRST000", "could not sign the access token", NULL, NULL);
		return;
	}
	vn_buf_add(&resp->body, "{\"access_token\":");
	vn_buf_json_string(&resp->body, token);
	vn_buf_addf(&resp->body, ",\"token_type\":\"bearer\",\"expires_in\":%s,\"refresh_token\":",
				PQgetvalue(res, 0, 5));
	vn_buf_json_string(&resp->body, PQgetvalue(res, 0, 4));
	vn_buf_addc(&resp->body, '}');
	free(token);
	vn_response_header(resp, "Cache-Control", "no-store");
}

static void
route(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp, VnIdentity *idp)
{
	VnIdentity	 id;
	const char	*reason = NULL;
	const char	*api_key = NULL;
	bool		 authenticated = false;
	VnQueryInput in;
	VnQuery		 q;
	VnSetup		 setup;
	VnParams	 params = {0};
	PGconn		*conn;
	PGresult	*res;
	const char	*path = req->path;
	bool		 head = strcmp(req->method, "HEAD") == 0;
	bool		 openapi = false;

	memset(&id, 0, sizeof(id));
	snprintf(id.role, sizeof(id.role), "ventros_anon");

	if (strcmp(req->method, "OPTIONS") == 0)
	{
		/* a CORS preflight: what a browser may send */
		resp->status = 200;
		resp->content_type = NULL;
		vn_response_header(resp, "Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
		vn_response_header(resp, "Access-Control-Allow-Headers",
						   "Authorization, Content-Type, Accept, Prefer, Range, Range-Unit, apikey, X-Client-Info, Accept-Profile, Content-Profile");
		vn_response_header(resp, "Access-Control-Max-Age", "86400");
		vn_response_header(resp, "Allow", "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
		return;
	}
	if (strcmp(path, "/health") == 0)
	{
		run_health(cfg, resp);
		return;
	}

	/* credentials: a bearer JWT, or an API key (Bearer vnk_... or apikey: vnk_...) */
	if (req->authorization)
	{
		const char *a = req->authorization;

		if (strncasecmp(a, "Bearer ", 7) != 0)
		{
			vn_response_error(resp, 401, "PGRST301", "the Authorization header must be a Bearer token", NULL, NULL);
			vn_response_header(resp, "WWW-Authenticate", "Bearer");
			return;
		}
		a += 7;
		while (*a == ' ')
			a++;
		if (strncmp(a, "vnk_", 4) == 0)
			api_key = a;
		else if (!vn_auth_verify(cfg->auth, a, &id, &reason))
		{
			char www[200];

			vn_response_error(resp, 401, "PGRST301", reason, NULL, NULL);
			snprintf(www, sizeof(www), "Bearer error=\"invalid_token\", error_description=\"%s\"", reason);
			vn_response_header(resp, "WWW-Authenticate", www);
			return;
		}
		else
		{
			authenticated = true;
			idp->claims = id.claims; /* freed by the caller, whatever happens next */
		}
	}
	else if (req->apikey && strncmp(req->apikey, "vnk_", 4) == 0)
		api_key = req->apikey;
	if (api_key)
	{
		authenticated = true;
		snprintf(req->tenant, sizeof(req->tenant), "(api key)");
	}
	else
		snprintf(req->tenant, sizeof(req->tenant), "%s", id.tenant[0] ? id.tenant : "-");

	/*
	 * Schema switching, as PostgREST: Accept-Profile for reads,
	 * Content-Profile for the rest; the one exposed schema is api.
	 */
	{
		bool		read = strcmp(req->method, "GET") == 0 || head;
		const char *profile = read ? req->accept_profile : req->content_profile;

		if (profile && strcmp(profile, "api") != 0)
		{
			vn_response_error(resp, 406, "PGRST106", "The schema must be one of the following: api", NULL, NULL);
			return;
		}
	}

	/* what to run */
	memset(&in, 0, sizeof(in));
	in.schema = __atomic_load_n(&cfg->schema, __ATOMIC_ACQUIRE);
	in.method = req->method;
	in.args = &req->args;
	in.body = req->body;
	in.body_len = req->body_len;
	in.content_type = req->content_type;
	in.accept = req->accept;
	in.max_rows = cfg->max_rows;
	in.max_embeds = cfg->max_embeds;
	in.max_select = cfg->max_select;
	if (has_token(req->accept, "application/vnd.pgrst.object+json") ||
		has_token(req->accept, "application/vnd.pgrst.object"))
		in.format = VN_FORMAT_OBJECT;
	else if (has_token(req->accept, "text/csv"))
		in.format = VN_FORMAT_CSV;
	else
		in.format = VN_FORMAT_JSON;
	if (req->accept && *req->accept && !strstr(req->accept, "*/*") && !strstr(req->accept, "application/*") &&
		!strstr(req->accept, "application/json") && !strstr(req->accept, "text/csv") &&
		!strstr(req->accept, "application/vnd.pgrst.object") && !strstr(req->accept, "application/openapi+json"))
	{
		vn_response_error(resp, 406, "PGRST107", "none of these media types is available",
						  req->accept, "Ask for application/json, application/vnd.pgrst.object+json or text/csv.");
		return;
	}
	/*
	 * count=planned and count=estimated answer the exact count.  The
	 * planner's estimate comes from statistics over every tenant's rows: a
	 * filter on a value only another tenant has would estimate more rows
	 * than one on a value nobody has, and every role the front runs as is a
	 * tenant role (docs/http.md, "Counting").
	 */
	if (has_token(req->prefer, "count=exact") || has_token(req->prefer, "count=planned") ||
		has_token(req->prefer, "count=estimated"))
		in.count = VN_COUNT_EXACT;
	if (has_token(req->prefer, "return=representation"))
		in.ret = VN_RETURN_REPRESENTATION;
	else if (has_token(req->prefer, "return=headers-only"))
		in.ret = VN_RETURN_HEADERS;
	else
		in.ret = VN_RETURN_MINIMAL;
	in.merge_duplicates = has_token(req->prefer, "resolution=merge-duplicates");
	in.ignore_duplicates = has_token(req->prefer, "resolution=ignore-duplicates");
	in.single_object = has_token(req->prefer, "params=single-object");
	in.max_affected = -1;
	if (req->prefer && strstr(req->prefer, "max-affected="))
	{
		char	   *end;
		const char *v = strstr(req->prefer, "max-affected=") + strlen("max-affected=");
		long		n = strtol(v, &end, 10);

		if (end == v || n < 0 || (*end && *end != ',' && *end != ' ' && *end != ';'))
		{
			vn_response_error(resp, 400, "PGRST100", "malformed max-affected preference", NULL, "Write Prefer: max-affected=10.");
			return;
		}
		in.max_affected = n;
	}
	if (!parse_range(req->range, &in.range_offset, &in.range_limit))
	{
		vn_response_error(resp, 416, "PGRST103", "malformed Range header", NULL, "Write Range: 0-9.");
		return;
	}

	vn_query_init(&q);
	if (strcmp(path, "/") == 0)
	{
		if (strcmp(req->method, "GET") != 0 && !head)
		{
			vn_response_error(resp, 405, "PGRST101", "only GET is served at /", NULL, NULL);
			vn_query_free(&q);
			return;
		}
		openapi = true;
		vn_buf_add(&q.sql, "SELECT ventros.http_openapi()::text, 1::bigint, NULL::bigint");
	}
	else
	{
		const char *name;

		if (strncmp(path, "/rpc/", 5) == 0)
		{
			in.rpc = true;
			name = path + 5;
		}
		else
			name = path + 1;
		if (*name == '\0' || strchr(name, '/') != NULL || strlen(name) > 63)
		{
			vn_response_error(resp, 404, "PGRST125", "invalid path", NULL, "Paths are /<relation> or /rpc/<function>.");
			vn_query_free(&q);
			return;
		}
		in.target = name;
		if (!in.rpc && strcmp(req->method, "GET") != 0 && !head && strcmp(req->method, "POST") != 0 &&
			strcmp(req->method, "PATCH") != 0 && strcmp(req->method, "DELETE") != 0)
		{
			vn_response_error(resp, 405, "PGRST101", "method not allowed", NULL, NULL);
			vn_query_free(&q);
			return;
		}
		if (!vn_query_build(&in, &q))
		{
			vn_response_error(resp, q.status ? q.status : 400, q.code[0] ? q.code : "PGRST100",
							  q.message[0] ? q.message : "bad request", q.details, q.hint);
			vn_query_free(&q);
			return;
		}
	}

	/* one round trip */
	memset(&setup, 0, sizeof(setup));
	setup.role = id.role;
	setup.claims = id.claims ? id.claims : "";
	setup.method = req->method;
	setup.path = req->path;
	setup.headers = req->headers_json ? req->headers_json : "{}";
	setup.timeout = cfg->statement_timeout;
	setup.max_plan_cost = cfg->max_plan_cost;
	setup.api_key = api_key;
	/* Prefer: tx=rollback runs the request and undoes it (PostgREST's override) */
	setup.rollback = has_token(req->prefer, "tx=rollback");
	/* GET and HEAD read: a function called so may not write (PostgREST's rule) */
	setup.read_only = strcmp(req->method, "GET") == 0 || head;
	params.n = q.nparams;
	params.values = (const char *const *) q.params;
	conn = vn_pg_acquire(cfg->pool_wait_ms);
	if (conn == NULL)
	{
		vn_response_error(resp, 503, "PGRST003", "timed out waiting for a database connection", NULL,
						  "The server is busy; retry shortly.");
		vn_response_header(resp, "Retry-After", "1");
		vn_query_free(&q);
		return;
	}
	res = vn_pg_run(conn, &setup, q.sql.data, &params);
	vn_pg_release(conn);
	if (res == NULL && (strcmp(req->method, "GET") == 0 || head))
	{
		/* the connection had broken (it is reset now); a read may safely run again */
		conn = vn_pg_acquire(cfg->pool_wait_ms);
		if (conn)
		{
			res = vn_pg_run(conn, &setup, q.sql.data, &params);
			vn_pg_release(conn);
		}
	}
	if (res == NULL)
	{
		vn_response_error(resp, 503, "PGRST001", "database connection lost", NULL, "Retry the request.");
		vn_query_free(&q);
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (getenv("VENTROS_HTTP_DEBUG"))
			fprintf(stderr, "ventros-http: failed statement: %s\n", q.sql.data);
		vn_response_pg_error(resp, res, authenticated);
		PQclear(res);
		vn_query_free(&q);
		return;
	}

	{
		/* Preference-Applied: the preferences this answer honoured */
		VnBuf applied;

		vn_buf_init(&applied);
		if (in.count == VN_COUNT_EXACT)
			vn_buf_add(&applied, ", count=exact");
		if (!q.is_read && !in.rpc && !openapi)
		{
			vn_buf_add(&applied, in.ret == VN_RETURN_REPRESENTATION ? ", return=representation" :
								 in.ret == VN_RETURN_HEADERS		? ", return=headers-only" :
																	  ", return=minimal");
			if (strcmp(req->method, "POST") == 0 && (in.merge_duplicates || in.ignore_duplicates))
				vn_buf_add(&applied, in.merge_duplicates ? ", resolution=merge-duplicates" : ", resolution=ignore-duplicates");
		}
		if (in.rpc && in.single_object)
			vn_buf_add(&applied, ", params=single-object");
		if (in.max_affected >= 0 && !q.is_read && !in.rpc && strcmp(req->method, "POST") != 0)
			vn_buf_addf(&applied, ", max-affected=%ld", in.max_affected);
		if (setup.rollback)
			vn_buf_add(&applied, ", tx=rollback");
		else if (has_token(req->prefer, "tx=commit"))
			vn_buf_add(&applied, ", tx=commit");
		if (applied.len > 2)
			vn_response_header(resp, "Preference-Applied", applied.data + 2);
		vn_buf_free(&applied);
	}
	if (q.shape == VN_SHAPE_GRANT)
		shape_grant(cfg, res, resp);
	else
	{
		long		n = atol(PQgetvalue(res, 0, 1));
		const char *total = PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2);

		if (openapi)
			resp->content_type = "application/openapi+json; charset=utf-8";
		else if (q.media_type[0])
		{
			char ct[96];

			snprintf(ct, sizeof(ct), "%s; charset=utf-8", q.media_type);
			vn_response_header(resp, "Content-Type", ct);
			resp->content_type = NULL;
		}
		else if (in.format == VN_FORMAT_CSV && q.returns_body)
			resp->content_type = "text/csv; charset=utf-8";
		else if (in.format == VN_FORMAT_OBJECT && q.returns_body)
			resp->content_type = "application/vnd.pgrst.object+json; charset=utf-8";
		if (in.format == VN_FORMAT_OBJECT && q.returns_body && !q.is_rpc_scalar && !openapi && n != 1)
		{
			char details[96];

			snprintf(details, sizeof(details), "The result contains %ld rows", n);
			vn_response_error(resp, 406, "PGRST116", "JSON object requested, multiple (or no) rows returned",
							  details, NULL);
		}
		else if (q.is_read && !openapi)
		{
			long t = total ? atol(total) : -1;

			if (t >= 0 && n == 0 && q.offset > 0 && q.offset >= t)
			{
				vn_response_error(resp, 416, "PGRST103", "requested range not satisfiable", NULL, NULL);
				content_range(resp, 0, 0, total);
			}
			else
			{
				content_range(resp, q.offset, n, total);
				if (t >= 0 && n < t)
					resp->status = 206;
				if (!head)
					vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
			}
		}
		else if (in.rpc || openapi)
		{
			if (q.void_result)
				resp->status = 204;
			else if (!head)
				vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
		}
		else
		{
			/* writes */
			bool post = strcmp(req->method, "POST") == 0;

			resp->status = post ? 201 : (q.returns_body ? 200 : 204);
			if (q.returns_body)
				vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
			else if (post)
				resp->content_type = NULL;
			{
				char cr[64];

				snprintf(cr, sizeof(cr), "*/%ld", n);
				vn_response_header(resp, "Content-Range", cr);
			}
			if (post && n == 1 && PQnfields(res) >= 4 && !PQgetisnull(res, 0, 3))
			{
				VnBuf loc;

				vn_buf_init(&loc);
				vn_buf_addf(&loc, "/%s?id=eq.%s", in.target, PQgetvalue(res, 0, 3));
				vn_response_header(resp, "Location", loc.data);
				vn_buf_free(&loc);
			}
		}
	}
	PQclear(res);
	vn_query_free(&q);
}

void
vn_router_handle(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp)
{
	VnIdentity id;

	memset(&id, 0, sizeof(id));
	route(cfg, req, resp, &id);
	free(id.claims);
}
