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
 * (or standard_planner) makes the plan, then its cost is compared.  The
 * refusal names the limit, not the estimate: the estimate of a tenant's
 * statement depends on other tenants' rows (below), and the front passes
 * the message on to its client.
 *
 * EXPLAIN for tenant sessions: the planner estimates from statistics that
 * ANALYZE gathers over every row of a table, every tenant's, and row-level
 * security filters rows, not statistics.  So the estimated rows of a filter
 * on a value only another tenant holds tell whether, and how often, that
 * tenant holds it.  PostgreSQL hides pg_stats for tables whose rows a user
 * sees through RLS; EXPLAIN prints the same statistics as estimates.  The
 * ExplainOneQuery hook therefore plans the statement, and refuses with 42501
 * when the plan reads a relation under row-level security for this user
 * and the session is not a trusted one (tenant.c): a tenant-bound login, or
 * any other login that reads Ventros' tables through RLS.  Superusers,
 * owners bypassing RLS and trusted sessions explain as before, and so does
 * everyone for tables without RLS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>

#include "commands/explain.h"
#include "nodes/pg_list.h"
#include "optimizer/planner.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/rls.h"

#include "plan_guard.h"
#include "tenant.h"

static double					 vn_max_plan_cost = 0;
static planner_hook_type		 prev_planner_hook = NULL;
static ExplainOneQuery_hook_type prev_explain_hook = NULL;

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
				 errmsg("the statement's estimated cost exceeds the limit %.0f",
						vn_max_plan_cost),
				 errdetail("ventros.max_plan_cost refuses plans estimated to cost more."),
				 errhint("Ask for fewer rows or embedded resources, or filter on an indexed column.")));
	return result;
}

/*
 * refuse_estimates_under_rls
 *		42501 when the plan reads a relation under row-level security for
 *		the current user and the session is not trusted.
 */
static void
refuse_estimates_under_rls(PlannedStmt *plan)
{
	ListCell *lc;

	foreach(lc, plan->relationOids)
	{
		Oid relid = lfirst_oid(lc);

		if (check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED)
			continue;
		if (vn_session_is_trusted())
			return;
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to explain a statement over a table under row-level security"),
				 errdetail("The planner's estimates come from statistics over every tenant's rows."),
				 errhint("Count the rows you can see with count(*) instead.")));
	}
}

/*
 * vn_plan_guard_explain
 *		ExplainOneQuery for a planned statement, as explain.c does, with the
 *		check above between planning and printing.
 */
static void
vn_plan_guard_explain(Query *query, int cursorOptions, IntoClause *into,
					  ExplainState *es, const char *queryString,
					  ParamListInfo params, QueryEnvironment *queryEnv)
{
	PlannedStmt *plan;
	instr_time	 planstart;
	instr_time	 planduration;
	BufferUsage	 bufusage_start;
	BufferUsage	 bufusage;

	if (es->buffers)
		bufusage_start = pgBufferUsage;
	INSTR_TIME_SET_CURRENT(planstart);
	plan = pg_plan_query(query, queryString, cursorOptions, params);
	INSTR_TIME_SET_CURRENT(planduration);
	INSTR_TIME_SUBTRACT(planduration, planstart);
	if (es->buffers)
	{
		memset(&bufusage, 0, sizeof(BufferUsage));
		BufferUsageAccumDiff(&bufusage, &pgBufferUsage, &bufusage_start);
	}

	refuse_estimates_under_rls(plan);

	if (prev_explain_hook)
		prev_explain_hook(query, cursorOptions, into, es, queryString, params, queryEnv);
	else
		ExplainOnePlan(plan, into, es, queryString, params, queryEnv,
					   &planduration, es->buffers ? &bufusage : NULL);
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
	prev_explain_hook = ExplainOneQuery_hook;
	ExplainOneQuery_hook = vn_plan_guard_explain;
}
