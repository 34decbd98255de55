/*
 * router.h
 *	  One HTTP request in, one answer out: authentication, dispatch to
 *	  /, /health, /rpc/<function> and /<relation>, and the shaping of the
 *	  database's result into PostgREST's answers.
 */
#ifndef VN_HTTP_ROUTER_H
#define VN_HTTP_ROUTER_H

#include "auth.h"
#include "query.h"
#include "response.h"
#include "schema.h"

typedef struct VnRouterConfig
{
	const VnAuthConfig *auth;
	long				max_rows;
	const char		   *statement_timeout;
	const char		   *max_plan_cost; /* ventros.max_plan_cost of each request */
	int					max_embeds;	   /* embedded resources per request */
	int					max_select;	   /* select-list items per request, embeds' own included */
	int					pool_wait_ms;
	bool				aggregates; /* db-aggregates-enabled */
	bool				plan;		/* db-plan-enabled: Accept: application/vnd.pgrst.plan (plan.c) */
} VnRouterConfig;

typedef struct VnRequest
{
	const char *method;
	const char *path; /* decoded, without the query string */
	VnArgs		args; /* decoded query string, in order */
	const char *authorization;
	const char *apikey;
	const char *prefer;
	const char *accept;
	const char *range;
	const char *accept_profile; /* Accept-Profile (reads), Content-Profile (writes) */
	const char *content_profile;
	const char *content_type;
	const char *headers_json; /* request.headers: no credentials */
	const char *body;
	size_t		body_len;
	/* out: for the access log */
	char tenant[130];
} VnRequest;

extern void vn_router_handle(const VnRouterConfig *cfg, VnRequest *req, VnResponse *resp);

#endif
