/*
 * webhooks.c
 *	  Provider webhooks (channels.md §0, §1.10):
 *	    POST /webhooks/<provider>/<channel_id>
 *	      -> ventros.accept_webhook(provider, channel_id, headers, body)
 *	    GET  /webhooks/<provider>/<channel_id>?hub.mode=&hub.verify_token=&hub.challenge=
 *	      -> ventros.webhook_challenge(...): 200 text/plain challenge, or 403
 *	    POST /webhooks/<name>
 *	      -> ventros.accept_platform_webhook(name, headers, body): webhooks of
 *	         the platform itself, such as Stripe's (ventros.platform_webhooks)
 *
 * Which providers exist is the database's business (ventros.inbound_providers):
 * no provider is named here, a path segment of the registry's shape is handed
 * over, and an unregistered one is answered 404 by the database's answer.
 *
 * Invariants:
 *	- The body reaches the database as the bytes received: a binary bytea
 *	  parameter, never decoded, re-encoded or checked for UTF-8 here, because
 *	  the providers' signatures are over those bytes (Meta escapes non-ASCII as
 *	  \uXXXX; any re-serialisation breaks the HMAC).
 *	- The request runs as ventros_anon, whatever credentials it carries: the
 *	  signature is the authentication and is checked in SQL, and the function
 *	  (SECURITY DEFINER) finds the tenant from the channel.  Authorization,
 *	  Cookie and apikey headers are neither read nor handed over.
 *	- One round trip, as every request of the front (pg.c): the setup
 *	  statement (role ventros_anon, no claims, statement timeout) and the
 *	  call are pipelined with one Sync, so they form one implicit transaction
 *	  whose settings end with it.
 *	- The answer is the function's (status and JSON).  When nothing could be
 *	  stored (database unreachable, pool exhausted, transaction failed for a
 *	  transient reason) it is 503 {"error":"unavailable"}, so the provider
 *	  retries.  A call whose connection broke is sent once more on another
 *	  connection: accept_webhook is idempotent, so a delivery that did commit
 *	  is answered "duplicate" the second time.
 *	- The access log (main.c) shows the path without its query string, so the
 *	  handshake's verify token never reaches a log.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pg.h"
#include "webhooks.h"

#define BYTEAOID 17
#define TEXTOID 25
#define JSONBOID 3802

#define VN_WEBHOOK_MAX_HEADERS 100
#define VN_WEBHOOK_MAX_ID 128

static const char *accept_sql =
	"SELECT w.http_status, w.response::text FROM ventros.accept_webhook($1, $2, $3, $4) w";

static const char *platform_sql =
	"SELECT w.http_status, w.response::text FROM ventros.accept_platform_webhook($1, $3, $4) w";

static const char *challenge_sql =
	"SELECT ventros.webhook_challenge($1, $2, $3, $4, $5)";

bool
vn_webhooks_path(const char *path)
{
	return path != NULL && strncmp(path, "/webhooks/", 10) == 0;
}

void
vn_webhooks_error(VnResponse *resp, int status, const char *error)
{
	resp->status = status;
	resp->content_type = "application/json; charset=utf-8";
	vn_buf_reset(&resp->body);
	vn_buf_add(&resp->body, "{\"error\":");
	vn_buf_json_string(&resp->body, error);
	vn_buf_addc(&resp->body, '}');
}

static void
unavailable(VnResponse *resp)
{
	vn_webhooks_error(resp, 503, "unavailable");
	vn_response_header(resp, "Retry-After", "1");
}

/* ---- request headers -> JSON object (lowercase names) ---- */

typedef struct HeaderList
{
	int			n;
	char	   *names[VN_WEBHOOK_MAX_HEADERS];
	const char *values[VN_WEBHOOK_MAX_HEADERS];
} HeaderList;

static enum MHD_Result
collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	HeaderList *h = cls;
	size_t		n = strlen(key);
	char	   *lower;

	if (h->n >= VN_WEBHOOK_MAX_HEADERS || value == NULL || !vn_utf8_valid(key, n) ||
		!vn_utf8_valid(value, strlen(value)))
		return MHD_YES;
	lower = vn_alloc(n + 1);
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char) tolower((unsigned char) key[i]);
	/* credentials are not the webhook's business, and are not stored with it */
	if (strcmp(lower, "authorization") == 0 || strcmp(lower, "cookie") == 0 || strcmp(lower, "apikey") == 0)
	{
		free(lower);
		return MHD_YES;
	}
	h->names[h->n] = lower;
	h->values[h->n] = value;
	h->n++;
	return MHD_YES;
}

/*
 * {"name":"value",...}; a header received more than once is one member with
 * its values joined by ", " (RFC 9110 §5.3), so none is silently dropped.
 */
static void
headers_json(struct MHD_Connection *con, VnBuf *out)
{
	HeaderList h;
	bool	   first = true;

	h.n = 0;
	MHD_get_connection_values(con, MHD_HEADER_KIND, collect, &h);
	vn_buf_addc(out, '{');
	for (int i = 0; i < h.n; i++)
	{
		VnBuf v;
		bool  seen = false;

		for (int j = 0; j < i && !seen; j++)
			seen = strcmp(h.names[j], h.names[i]) == 0;
		if (seen)
			continue;
		vn_buf_init(&v);
		vn_buf_add(&v, h.values[i]);
		for (int j = i + 1; j < h.n; j++)
			if (strcmp(h.names[j], h.names[i]) == 0)
			{
				vn_buf_add(&v, ", ");
				vn_buf_add(&v, h.values[j]);
			}
		if (!first)
			vn_buf_addc(out, ',');
		first = false;
		vn_buf_json_string(out, h.names[i]);
		vn_buf_addc(out, ':');
		vn_buf_json_string(out, v.data);
		vn_buf_free(&v);
	}
	vn_buf_addc(out, '}');
	for (int i = 0; i < h.n; i++)
		free(h.names[i]);
}

/* ---- the round trip ---- */

/*
 * The call as ventros_anon, in the front's one round trip (pg.c: setup and
 * statement pipelined, one implicit transaction), once more on another
 * connection if the first one broke.  NULL when no connection could run it.
 */
static PGresult *
call(const VnRouterConfig *cfg, const char *method, const char *path, const char *sql, const VnParams *params)
{
	VnSetup	  setup = {.role = "ventros_anon", .claims = "", .method = method, .path = path, .headers = "{}", .timeout = cfg->statement_timeout, .max_plan_cost = cfg->max_plan_cost};
	PGresult *res = NULL;

	for (int attempt = 0; attempt < 2 && res == NULL; attempt++)
	{
		PGconn *conn = vn_pg_acquire(cfg->pool_wait_ms);

		if (conn == NULL)
			return NULL;
		res = vn_pg_run(conn, &setup, sql, params);
		vn_pg_release(conn);
	}
	return res;
}

/*
 * A failed transaction: nothing was stored; transient causes ask for a retry.
 * P0002 is no failure: webhook_challenge names a provider not registered.
 */
static void
failed(VnResponse *resp, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	if (state != NULL && strcmp(state, "P0002") == 0)
	{
		/* not a failure: a provider the registry does not know (webhook_challenge) */
		vn_webhooks_error(resp, 404, "channel_not_found");
		return;
	}
	fprintf(stderr, "ventros-http: webhook call failed: %s %s\n", state ? state : "(no sqlstate)",
			message ? message : "");
	if (state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
		strncmp(state, "57", 2) == 0 || strncmp(state, "40", 2) == 0 || strcmp(state, "55P03") == 0 ||
		strcmp(state, "55000") == 0)
		unavailable(resp);
	else
		vn_webhooks_error(resp, 500, "internal_error");
}

static const char *
arg(const VnArgs *args, const char *key)
{
	for (int i = 0; i < args->n; i++)
		if (strcmp(args->items[i].key, key) == 0)
			return args->items[i].value;
	return NULL;
}

static void
accept_post(const VnRouterConfig *cfg, struct MHD_Connection *con, const char *path, const char *provider,
			const char *channel, const char *body, size_t body_len, VnResponse *resp)
{
	VnBuf		headers;
	PGresult   *res;
	const Oid	types[4] = {TEXTOID, TEXTOID, JSONBOID, BYTEAOID};
	const char *values[4];
	int			lengths[4] = {0, 0, 0, (int) body_len};
	const int	formats[4] = {0, 0, 0, 1};
	VnParams	params = {4, values, types, lengths, formats};

	vn_buf_init(&headers);
	headers_json(con, &headers);
	values[0] = provider;
	values[1] = channel; /* NULL: a platform webhook, /webhooks/<name> */
	values[2] = headers.data;
	values[3] = body ? body : "";
	res = call(cfg, "POST", path, channel ? accept_sql : platform_sql, &params);
	vn_buf_free(&headers);
	if (res == NULL)
		unavailable(resp);
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		failed(resp, res);
	else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1) ||
			 atoi(PQgetvalue(res, 0, 0)) < 200 || atoi(PQgetvalue(res, 0, 0)) > 599)
	{
		fprintf(stderr, "ventros-http: accept_webhook answered %d rows without a status\n", PQntuples(res));
		vn_webhooks_error(resp, 500, "internal_error");
	}
	else
	{
		resp->status = atoi(PQgetvalue(res, 0, 0));
		vn_buf_add(&resp->body, PQgetvalue(res, 0, 1));
	}
	if (res)
		PQclear(res);
}

static void
challenge_get(const VnRouterConfig *cfg, const char *path, const char *provider, const char *channel,
			  const VnArgs *args,
			  VnResponse   *resp)
{
	PGresult   *res;
	const char *values[5] = {provider, channel, arg(args, "hub.mode"), arg(args, "hub.verify_token"),
							 arg(args, "hub.challenge")};
	VnParams	params = {5, values, NULL, NULL, NULL};

	res = call(cfg, "GET", path, challenge_sql, &params);
	if (res == NULL)
		unavailable(resp);
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		failed(resp, res);
	else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		vn_webhooks_error(resp, 403, "forbidden");
	else
	{
		/* the caller's own text echoed: never to be sniffed as anything else */
		resp->status = 200;
		resp->content_type = "text/plain; charset=utf-8";
		vn_response_header(resp, "X-Content-Type-Options", "nosniff");
		vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
	}
	if (res)
		PQclear(res);
}

/* the shape of ventros.inbound_providers.provider: ^[a-z][a-z0-9_]*$ */
static bool
provider_name(const char *name)
{
	if (name[0] < 'a' || name[0] > 'z')
		return false;
	for (const char *c = name; *c != '\0'; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
			return false;
	return true;
}

void
vn_webhooks_handle(const VnRouterConfig *cfg, struct MHD_Connection *con, const char *method,
				   const char *path, const VnArgs *args, const char *body, size_t body_len, VnResponse *resp)
{
	const char *p = path + strlen("/webhooks/");
	const char *slash = strchr(p, '/');
	char		provider[16];
	char		channel[VN_WEBHOOK_MAX_ID + 1];

	vn_response_header(resp, "Cache-Control", "no-store");
	/* /webhooks/<name>: a platform webhook (POST only) */
	if (slash == NULL && strcmp(method, "POST") == 0 && strlen(p) < sizeof(provider) && provider_name(p))
	{
		accept_post(cfg, con, path, p, NULL, body, body_len, resp);
		return;
	}
	/* /webhooks/<provider>/<channel_id>, nothing more */
	if (slash == NULL || (size_t) (slash - p) >= sizeof(provider) || slash[1] == '\0' ||
		strchr(slash + 1, '/') != NULL || strlen(slash + 1) > VN_WEBHOOK_MAX_ID)
	{
		vn_webhooks_error(resp, 404, "channel_not_found");
		return;
	}
	memcpy(provider, p, slash - p);
	provider[slash - p] = '\0';
	snprintf(channel, sizeof(channel), "%s", slash + 1);
	/*
	 * Which providers exist is the database's business (the registry
	 * ventros.inbound_providers: accept_webhook answers 404 for another, and
	 * webhook_challenge raises P0002); here only the shape of a registered
	 * name: lower case letters, digits and '_'.
	 */
	if (!provider_name(provider))
	{
		vn_webhooks_error(resp, 404, "channel_not_found");
		return;
	}
	if (strcmp(method, "POST") == 0)
		accept_post(cfg, con, path, provider, channel, body, body_len, resp);
	else if (strcmp(method, "GET") == 0)
		challenge_get(cfg, path, provider, channel, args, resp);
	else
	{
		vn_webhooks_error(resp, 405, "method_not_allowed");
		vn_response_header(resp, "Allow", "GET, POST");
	}
}
