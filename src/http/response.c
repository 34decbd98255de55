/*
 * response.c
 *	  Answers and PostgREST's error JSON.
 *
 * The SQLSTATE -> HTTP status table is PostgREST's, with the rows of Ventros'
 * own error table (style.md) taking precedence: VN001 stale version and
 * VN002 forbidden transition -> 409, P0002 not found -> 404, 54000 size limit
 * -> 413, 55000 not preloaded -> 503; 28P01/28000 (bad credentials) -> 401.
 */
#include <stdlib.h>
#include <string.h>

#include "response.h"

void
vn_response_init(VnResponse *r)
{
	memset(r, 0, sizeof(*r));
	r->status = 200;
	r->content_type = "application/json; charset=utf-8";
	vn_buf_init(&r->body);
}

void
vn_response_free(VnResponse *r)
{
	vn_buf_free(&r->body);
	for (int i = 0; i < r->nheaders; i++)
	{
		free(r->header_names[i]);
		free(r->header_values[i]);
	}
	r->nheaders = 0;
}

void
vn_response_header(VnResponse *r, const char *name, const char *value)
{
	if (r->nheaders >= VN_MAX_HEADERS)
		return;
	r->header_names[r->nheaders] = vn_strdup(name);
	r->header_values[r->nheaders] = vn_strdup(value);
	r->nheaders++;
}

void
vn_response_error(VnResponse *r, int status, const char *code, const char *message,
				  const char *details, const char *hint)
{
	r->status = status;
	r->content_type = "application/json; charset=utf-8";
	vn_buf_reset(&r->body);
	vn_buf_add(&r->body, "{\"code\":");
	vn_buf_json_string(&r->body, code);
	vn_buf_add(&r->body, ",\"message\":");
	vn_buf_json_string(&r->body, message);
	vn_buf_add(&r->body, ",\"details\":");
	if (details)
		vn_buf_json_string(&r->body, details);
	else
		vn_buf_add(&r->body, "null");
	vn_buf_add(&r->body, ",\"hint\":");
	if (hint)
		vn_buf_json_string(&r->body, hint);
	else
		vn_buf_add(&r->body, "null");
	vn_buf_addc(&r->body, '}');
}

int
vn_status_of_sqlstate(const char *s, bool authenticated)
{
	if (s == NULL || strlen(s) != 5)
		return 500;
	/* Ventros' own table first */
	if (strcmp(s, "VN001") == 0 || strcmp(s, "VN002") == 0)
		return 409;
	if (strcmp(s, "P0002") == 0)
		return 404;
	if (strcmp(s, "54000") == 0)
		return 413;
	if (strcmp(s, "55000") == 0)
		return 503;
	if (strcmp(s, "28P01") == 0 || strcmp(s, "28000") == 0)
		return 401;
	/* PostgREST's */
	if (strncmp(s, "08", 2) == 0)
		return 503;
	if (strncmp(s, "09", 2) == 0)
		return 500;
	if (strncmp(s, "0L", 2) == 0 || strncmp(s, "0P", 2) == 0)
		return 403;
	if (strcmp(s, "23503") == 0 || strcmp(s, "23505") == 0)
		return 409;
	if (strcmp(s, "25006") == 0)
		return 405;
	if (strncmp(s, "25", 2) == 0)
		return 500;
	if (strncmp(s, "28", 2) == 0)
		return 403;
	if (strncmp(s, "2D", 2) == 0 || strncmp(s, "38", 2) == 0 || strncmp(s, "39", 2) == 0 ||
		strncmp(s, "3B", 2) == 0)
		return 500;
	if (strcmp(s, "40001") == 0)
		return 409;				/* serialization failure: retryable */
	if (strncmp(s, "40", 2) == 0)
		return 500;
	if (strncmp(s, "53", 2) == 0)
		return 503;
	if (strncmp(s, "54", 2) == 0)
		return 413;
	if (strcmp(s, "57014") == 0)
		return 504;				/* statement timeout */
	if (strncmp(s, "55", 2) == 0 || strncmp(s, "57", 2) == 0 || strncmp(s, "58", 2) == 0 ||
		strncmp(s, "F0", 2) == 0 || strncmp(s, "HV", 2) == 0 || strncmp(s, "XX", 2) == 0)
		return 500;
	if (strcmp(s, "P0001") == 0)
		return 400;
	if (strncmp(s, "P0", 2) == 0)
		return 500;
	if (strcmp(s, "42883") == 0)
		return 404;
	if (strcmp(s, "42P01") == 0)
		return 404;
	if (strcmp(s, "42501") == 0)
		return authenticated ? 403 : 401;
	if (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0 || strncmp(s, "42", 2) == 0)
		return 400;
	return 400;
}

void
vn_response_pg_error(VnResponse *r, const PGresult *res, bool authenticated)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);

	if (state == NULL)
	{
		vn_response_error(r, 503, "PGRST001", "database connection error", NULL, NULL);
		return;
	}
	vn_response_error(r, vn_status_of_sqlstate(state, authenticated), state,
					  message ? message : "error", detail, hint);
}
