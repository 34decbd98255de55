/*
 * plan.h
 *	  Accept: application/vnd.pgrst.plan: the plan of a request's statement
 *	  instead of its answer (PostgREST's db-plan-enabled).
 */
#ifndef VN_HTTP_PLAN_H
#define VN_HTTP_PLAN_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "buf.h"
#include "response.h"

typedef struct VnPlan
{
	bool on;		  /* the plan was asked for */
	bool json;		  /* +json; else text */
	char target[48];  /* for="...": the media type whose statement is explained */
	char options[96]; /* ", ANALYZE, VERBOSE ...": EXPLAIN's options, from a fixed list */
} VnPlan;

/* from an Accept header naming the plan media type; false when it is malformed */
extern bool vn_plan_parse(const char *accept, VnPlan *p);
/* EXPLAIN (FORMAT ..., options) in front of sql */
extern void vn_plan_wrap(const VnPlan *p, VnBuf *sql);
/* the answer: the plan's rows, with PostgREST's Content-Type */
extern void vn_plan_answer(const VnPlan *p, PGresult *res, VnResponse *resp);

#endif
