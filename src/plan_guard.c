/*-------------------------------------------------------------------------
 *
 * plan_guard.c
 *	  Refuses a plan whose estimated total cost exceeds ventros.max_plan_cost.
 *
 * Why: statement_timeout bounds execution, but a statement can spend its
 * time where the timeout is not looked at (JIT compilation of thousands of
 * expressions, a plan over every row of a large table), and a request
 * shaped by an untrusted client chooses how big its statement is.  The
 * planner knows the cost before any of that starts, so a session that
 * serves such clients (ventros-http sets the setting for each request)
 * refuses the statement there, with 54000, instead of running it.
 *
 * ventros.max_plan_cost (user, default 0 = off): the ceiling, in the
 *		planner's cost units (seq_page_cost = 1).  Every plan made while it
 *		is set is checked, those of statements inside functions included:
 *		a function's inner statement could otherwise do what its caller
 *		may not.  It is a limit a session puts on itself, not a boundary
 *		between roles: a login that can run SQL can also reset it.
 *
 * The hook is chained as pg_stat_statements does: the previous planner_hook
 * (or standard_planner) makes the plan, then its cost is compared.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>

#include "optimizer/planner.h"
#include "utils/guc.h"

#include "plan_guard.h"

static double			 vn_max_plan_cost = 0;
static planner_hook_type prev_planner_hook = NULL;

static PlannedStmt *
vn_plan_guard_planner(Query *parse, const char *query_string, int cursorOptions, ParamListInfo boundParams)
{
	PlannedStmt *result;

	if (prev_planner_hook)
		result = prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	else
		result = standard_planner(parse, query_string, cursorOptions, boundParams);

	if (vn_max_plan_cost > 0 && result->planTree != NULL &&
		result->planTree->total_cost > vn_max_plan_cost)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the statement's estimated cost %.0f exceeds the limit %.0f",
						result->planTree->total_cost, vn_max_plan_cost),
				 errdetail("ventros.max_plan_cost refuses plans estimated to cost more."),
				 errhint("Ask for fewer rows or embedded resources, or filter on an indexed column.")));
	return result;
}

void
vn_plan_guard_init(void)
{
	DefineCustomRealVariable("ventros.max_plan_cost",
							 "Refuse statements whose planned total cost exceeds this (0: no limit).",
							 "Set by ventros-http for each request; off for ordinary sessions.",
							 &vn_max_plan_cost,
							 0,
							 0,
							 DBL_MAX,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	prev_planner_hook = planner_hook;
	planner_hook = vn_plan_guard_planner;
}
