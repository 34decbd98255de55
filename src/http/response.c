/*
 * response.c
 *	  Answers and PostgREST's error JSON.
 *
 * The SQLSTATE -> HTTP status table (vn_status_rules) is PostgREST's, with
 * the rows of Ventros' own error table (style.md) taking precedence.
 */
#include <stdlib.h>
#include <string.h>

#include "json.h"
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

/* a well-formed JSON array of objects: the answer stays JSON whoever wrote it */
static bool
json_array(const char *s)
{
	char	  **keys = NULL;
	int			n = 0;
	bool		is_array = false;
	const char *error;
	bool		ok = vn_json_scan(s, strlen(s), &keys, &n, &is_array, &error);

	for (int i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	return ok && is_array;
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
	if (details && details[0] == VN_DETAILS_JSON && json_array(details + 1))
		vn_buf_add(&r->body, details + 1); /* the front's own JSON (PGRST201) */
	else if (details)
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

/*
 * SQLSTATE -> HTTP status: the first rule that matches wins, a whole code or
 * a class ("08*": the code's first two characters).  Ventros' own rows come
 * first (style.md's error table, and what PostgREST leaves to "other"); the
 * rest is PostgREST 12's table as its documentation prints it.  docs/http.md
 * prints this table: change both together.  A code no rule names is 400, as
 * in PostgREST.  42501 depends on the caller (see vn_status_of_sqlstate).
 */
typedef struct VnStatusRule
{
	const char *sqlstate; /* "VN001", or a class "08*" */
	int			status;
} VnStatusRule;

static const VnStatusRule vn_status_rules[] = {
	/* Ventros (style.md) */
	{"VN001", 409}, /* stale version: re-read, then retry */
	{"VN002", 409}, /* state transition not allowed */
	{"VN010", 409}, /* a send to a contact who opted out (docs/sql.md) */
	{"VN020", 402}, /* a plan limit reached: upgrade, or next period */
	{"P0002", 404}, /* aggregate not found (absent, deleted, other tenant) */
	{"54*", 413},	/* size or count limit: the request is too large */
	{"55000", 503}, /* not preloaded, worker absent */
	{"28P01", 401}, /* bad password, refresh token or API key */
	{"28000", 401}, /* account not active */
	{"57014", 504}, /* statement timeout */
	{"57P01", 503}, /* server shutting down: retry */
	/* PostgREST */
	{"08*", 503},	/* connection exception */
	{"09*", 500},	/* triggered action exception */
	{"0L*", 403},	/* invalid grantor */
	{"0P*", 403},	/* invalid role specification */
	{"23503", 409}, /* foreign key violation */
	{"23505", 409}, /* unique violation */
	{"25006", 405}, /* read-only transaction */
	{"25*", 500},	/* invalid transaction state */
	{"28*", 403},	/* invalid authorization specification */
	{"2D*", 500},	/* invalid transaction termination */
	{"38*", 500},	/* external routine exception */
	{"39*", 500},	/* external routine invocation */
	{"3B*", 500},	/* savepoint exception */
	{"40*", 500},	/* transaction rollback, 40001 included */
	{"53400", 500}, /* configuration limit exceeded */
	{"53*", 503},	/* insufficient resources */
	{"55*", 500},	/* object not in prerequisite state */
	{"57*", 500},	/* operator intervention */
	{"58*", 500},	/* system error */
	{"F0*", 500},	/* configuration file error */
	{"HV*", 500},	/* foreign data wrapper error */
	{"P0001", 400}, /* RAISE without a code */
	{"P0*", 500},	/* PL/pgSQL error */
	{"XX*", 500},	/* internal error */
	{"42883", 404}, /* undefined function */
	{"42P01", 404}, /* undefined table */
	{"42P17", 500}, /* infinite recursion */
};

static bool
status_rule_matches(const char *rule, const char *s)
{
	if (rule[2] == '*')
		return strncmp(rule, s, 2) == 0;
	return strcmp(rule, s) == 0;
}

int
vn_status_of_sqlstate(const char *s, bool authenticated)
{
	size_t i;

	if (s == NULL || strlen(s) != 5)
		return 500;
	if (strcmp(s, "42501") == 0)
		return authenticated ? 403 : 401; /* insufficient privilege */
	for (i = 0; i < sizeof(vn_status_rules) / sizeof(vn_status_rules[0]); i++)
		if (status_rule_matches(vn_status_rules[i].sqlstate, s))
			return vn_status_rules[i].status;
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
	/* the database's text is never taken for the front's JSON */
	if (detail && detail[0] == VN_DETAILS_JSON)
		detail++;
	vn_response_error(r, vn_status_of_sqlstate(state, authenticated), state,
					  message ? message : "error", detail, hint);
}
