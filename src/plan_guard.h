/*-------------------------------------------------------------------------
 *
 * plan_guard.h
 *	  A ceiling on the planner's cost of one statement (ventros.max_plan_cost),
 *	  and no planner estimates over tenants' tables for untrusted sessions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_PLAN_GUARD_H
#define VENTROS_PLAN_GUARD_H

extern void vn_plan_guard_init(void);

#endif /* VENTROS_PLAN_GUARD_H */
