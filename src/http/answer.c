/*
 * answer.c
 *	  PostgREST's response to a statement that ran: the status (200, 201,
 *	  204, 206, 406, 416), Content-Range, Preference-Applied, Location, the
 *	  media type, and the body the statement made (or a token it granted).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "answer.h"
#include "request.h"

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
		vn_response_error(resp, 401, "28000", "invalid or revoked refresh token", NULL, "Log in again.");
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

/* ", token" when the request's Prefer names it */
static void
echo(VnBuf *applied, const char *prefer, const char *token)
{
	if (vn_request_has_token(prefer, token))
		vn_buf_addf(applied, ", %s", token);
}

/*
 * Preference-Applied: the preferences this answer honoured, those the
 * request sent, in PostgREST 12's order (resolution, missing, return,
 * params, count, tx, handling, timezone, max-affected).  Ventros' one
 * addition: count=planned and count=estimated are answered, and named, as
 * count=exact (docs/http.md, Counting).
 */
static void
preference_applied(const VnAnswerInput *a, VnResponse *resp)
{
	const VnQueryInput *in = a->in;
	const char		   *prefer = a->req->prefer;
	bool				write = !a->q->is_read && !in->rpc && !a->openapi;
	bool				post = strcmp(in->method, "POST") == 0;
	VnBuf				applied;

	vn_buf_init(&applied);
	if (write && post && (in->merge_duplicates || in->ignore_duplicates))
		vn_buf_add(&applied, in->merge_duplicates ? ", resolution=merge-duplicates" : ", resolution=ignore-duplicates");
	if (write && post)
	{
		echo(&applied, prefer, "missing=default");
		echo(&applied, prefer, "missing=null");
	}
	if (write)
	{
		echo(&applied, prefer, "return=representation");
		echo(&applied, prefer, "return=headers-only");
		echo(&applied, prefer, "return=minimal");
	}
	if (in->rpc && in->single_object)
		vn_buf_add(&applied, ", params=single-object");
	else if (in->rpc && in->multiple_objects && post)
		vn_buf_add(&applied, ", params=multiple-objects");
	if (in->count == VN_COUNT_EXACT)
		vn_buf_add(&applied, ", count=exact");
	if (vn_request_has_token(prefer, "tx=rollback"))
		vn_buf_add(&applied, ", tx=rollback");
	else if (vn_request_has_token(prefer, "tx=commit"))
		vn_buf_add(&applied, ", tx=commit");
	if (vn_request_has_token(prefer, "handling=strict"))
		vn_buf_add(&applied, ", handling=strict");
	else
		echo(&applied, prefer, "handling=lenient");
	if (in->timezone)
		vn_buf_addf(&applied, ", timezone=%s", in->timezone);
	if (in->max_affected >= 0 && write && !post)
		vn_buf_addf(&applied, ", max-affected=%ld", in->max_affected);
	if (applied.len > 2)
		vn_response_header(resp, "Preference-Applied", applied.data + 2);
	vn_buf_free(&applied);
}

/* the Content-Type of a body that is not plain JSON */
static void
media_type(const VnAnswerInput *a, VnResponse *resp)
{
	const VnQuery *q = a->q;

	if (a->openapi)
		resp->content_type = "application/openapi+json; charset=utf-8";
	else if (q->media_type[0])
	{
		char ct[96];

		snprintf(ct, sizeof(ct), "%s; charset=utf-8", q->media_type);
		vn_response_header(resp, "Content-Type", ct);
		resp->content_type = NULL;
	}
	else if (a->in->format == VN_FORMAT_CSV && q->returns_body)
		resp->content_type = "text/csv; charset=utf-8";
	else if (a->in->format == VN_FORMAT_OBJECT && q->returns_body)
		resp->content_type = "application/vnd.pgrst.object+json; charset=utf-8";
}

/* a read's page: 200, 206 when partial, 416 past the end */
static void
answer_read(const VnAnswerInput *a, PGresult *res, long n, const char *total, VnResponse *resp)
{
	long t = total ? atol(total) : -1;

	if (t >= 0 && n == 0 && a->q->offset > 0 && a->q->offset >= t)
	{
		vn_response_error(resp, 416, "PGRST103", "requested range not satisfiable", NULL, NULL);
		content_range(resp, 0, 0, total);
		return;
	}
	content_range(resp, a->q->offset, n, total);
	if (t >= 0 && n < t)
		resp->status = 206;
	if (!a->head)
		vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
}

/* a write's: 201 or 200/204, Content-Range */
static void
answer_write(const VnAnswerInput *a, PGresult *res, long n, VnResponse *resp)
{
	bool post = strcmp(a->in->method, "POST") == 0;
	char cr[64];

	if (a->q->put && n == 0)
	{
		/* the body's key was not the URL's: nothing was written (put.c) */
		vn_response_error(resp, 400, "PGRST115", "Payload values do not match URL in primary key column(s)", NULL,
						  "The body names the row the URL names.");
		return;
	}
	resp->status = post ? 201 : (a->q->returns_body ? 200 : 204);
	if (a->q->returns_body)
		vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
	else if (post)
		resp->content_type = NULL;
	/*
	 * PostgREST's shapes: a PATCH or DELETE answers the range of the rows
	 * it changed, 0-1 out of an unknown total (the total with Prefer:
	 * count=exact), or no range for none; a POST the count of rows it
	 * created.
	 */
	if (post)
		snprintf(cr, sizeof(cr), "*/%ld", n);
	else if (n > 0 && a->in->count == VN_COUNT_EXACT)
		snprintf(cr, sizeof(cr), "0-%ld/%ld", n - 1, n);
	else if (n > 0)
		snprintf(cr, sizeof(cr), "0-%ld/*", n - 1);
	else
		snprintf(cr, sizeof(cr), "*/%s", a->in->count == VN_COUNT_EXACT ? "0" : "*");
	vn_response_header(resp, "Content-Range", cr);
	if (post && n == 1 && PQnfields(res) >= 4 && !PQgetisnull(res, 0, 3))
	{
		VnBuf loc;

		vn_buf_init(&loc);
		vn_buf_addf(&loc, "/%s?%s", a->in->target, PQgetvalue(res, 0, 3));
		vn_response_header(resp, "Location", loc.data);
		vn_buf_free(&loc);
	}
}

/* an HTTP header name: RFC 9110's token characters */
static bool
header_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!(isalnum((unsigned char) *s) || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	return true;
}

/*
 * What a function set in response.headers and response.status (rpc.c's
 * fourth and fifth columns): its headers are added (a Content-Type
 * replaces the answer's), its status replaces the answer's.  Headers that
 * are not name and value, or a status that is not a number from 100 to
 * 599, answer 500 with PostgREST's codes: the function's fault, not the
 * client's.
 */
static void
function_response(PGresult *res, VnResponse *resp)
{
	if (!PQgetisnull(res, 0, 3))
	{
		char *list = vn_strdup(PQgetvalue(res, 0, 3));
		char *save = NULL;

		for (char *pair = strtok_r(list, "\x1e", &save); pair; pair = strtok_r(NULL, "\x1e", &save))
		{
			char *value = strchr(pair, 31);

			if (value == NULL || (*value = '\0', !header_name(pair)) || strpbrk(value + 1, "\r\n"))
			{
				free(list);
				vn_response_error(resp, 500, "PGRST111", "response.headers guc must be a JSON array composed of objects with a single key and a string value", NULL, NULL);
				return;
			}
			vn_response_header(resp, pair, value + 1);
			if (strcasecmp(pair, "Content-Type") == 0)
				resp->content_type = NULL;
		}
		free(list);
	}
	if (!PQgetisnull(res, 0, 4))
	{
		char *end;
		long  status = strtol(PQgetvalue(res, 0, 4), &end, 10);

		if (*end != '\0' || status < 100 || status > 599)
			vn_response_error(resp, 500, "PGRST112", "response.status guc must be a valid status code", NULL, NULL);
		else
			resp->status = (int) status;
	}
}

void
vn_answer(const VnAnswerInput *a, PGresult *res, VnResponse *resp)
{
	const VnQuery *q = a->q;
	long		   n;
	const char	  *total;

	preference_applied(a, resp);
	if (q->shape == VN_SHAPE_GRANT)
	{
		shape_grant(a->cfg, res, resp);
		return;
	}
	n = atol(PQgetvalue(res, 0, 1));
	total = PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2);
	media_type(a, resp);
	resp->type_without_body = a->head; /* HEAD answers GET's headers, as PostgREST */
	if (a->in->format == VN_FORMAT_OBJECT && q->returns_body && !q->is_rpc_scalar && !a->openapi && n != 1)
	{
		char details[96];

		snprintf(details, sizeof(details), "The result contains %ld rows", n);
		vn_response_error(resp, 406, "PGRST116", "JSON object requested, multiple (or no) rows returned",
						  details, NULL);
	}
	else if (q->is_read && !a->openapi)
		answer_read(a, res, n, total, resp);
	else if (a->in->rpc || a->openapi)
	{
		if (q->void_result)
			resp->status = 204;
		else if (!a->head)
			vn_buf_add(&resp->body, PQgetvalue(res, 0, 0));
	}
	else
		answer_write(a, res, n, resp);
	if (a->in->rpc && !a->openapi && resp->status < 400 && PQnfields(res) >= 5)
		function_response(res, resp);
}
