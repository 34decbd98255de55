/*
 * plan.c
 *	  Accept: application/vnd.pgrst.plan[+json|+text]; for="<media type>";
 *	  options=analyze|verbose|settings|buffers|wal: the request's one
 *	  statement is run under EXPLAIN and its plan answered, as PostgREST
 *	  does with db-plan-enabled.
 *
 * Who may see a plan is the router's decision (VENTROS_HTTP_DB_PLAN_ENABLED,
 * never for Ventros' api: the planner's estimates come from statistics over
 * every tenant's rows, docs/http.md "Counting").  The options come from a
 * fixed list, so nothing of the header reaches SQL but those words.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "plan.h"
#include "request.h"

static const char *option_words[] = {"analyze", "verbose", "settings", "buffers", "wal", NULL};

/* the value of a media-type parameter (name=value or name="value"), or "" */
static void
parameter(const char *accept, const char *name, char *out, size_t len)
{
	const char *p = strstr(accept, name);
	size_t		n = 0;

	*out = '\0';
	if (p == NULL)
		return;
	p += strlen(name);
	if (*p == '"')
		p++;
	while (p[n] && p[n] != '"' && p[n] != ';' && p[n] != ',' && p[n] != ' ' && n + 1 < len)
		n++;
	memcpy(out, p, n);
	out[n] = '\0';
}

bool
vn_plan_parse(const char *accept, VnPlan *p)
{
	char		options[96];
	const char *o;

	memset(p, 0, sizeof(*p));
	if (accept == NULL || (o = strstr(accept, "application/vnd.pgrst.plan")) == NULL)
		return true;
	p->on = true;
	p->json = strncmp(o + 26, "+json", 5) == 0;
	parameter(o, "for=", p->target, sizeof(p->target));
	if (p->target[0] == '\0')
		snprintf(p->target, sizeof(p->target), "application/json");
	if (strspn(p->target, "abcdefghijklmnopqrstuvwxyz0123456789/+.*-") != strlen(p->target))
		return false; /* it is echoed in Content-Type */
	parameter(o, "options=", options, sizeof(options));
	for (char *w = options; *w;)
	{
		size_t n = strcspn(w, "|");
		bool   known = false;

		for (int i = 0; option_words[i]; i++)
			if (strlen(option_words[i]) == n && strncasecmp(w, option_words[i], n) == 0)
			{
				size_t used = strlen(p->options);

				snprintf(p->options + used, sizeof(p->options) - used, ", %s", option_words[i]);
				known = true;
			}
		if (!known && n > 0)
			return false;
		w += n + (w[n] == '|');
	}
	return true;
}

void
vn_plan_wrap(const VnPlan *p, VnBuf *sql)
{
	VnBuf out;

	vn_buf_init(&out);
	vn_buf_addf(&out, "EXPLAIN (FORMAT %s%s) %s", p->json ? "JSON" : "TEXT", p->options, sql->data);
	vn_buf_free(sql);
	*sql = out;
}

void
vn_plan_answer(const VnPlan *p, PGresult *res, VnResponse *resp)
{
	char type[128];

	resp->status = 200;
	for (int i = 0; i < PQntuples(res); i++)
	{
		if (i)
			vn_buf_addc(&resp->body, '\n');
		vn_buf_add(&resp->body, PQgetvalue(res, i, 0));
	}
	snprintf(type, sizeof(type), "application/vnd.pgrst.plan+%s; for=\"%s\"; charset=utf-8", p->json ? "json" : "text",
			 p->target);
	vn_response_header(resp, "Content-Type", type);
	resp->content_type = NULL;
}
