/*-------------------------------------------------------------------------
 *
 * automation_worker.c
 *	  The automation executor: runs the tenants' automation rules right
 *	  after the events that trigger them commit.
 *
 * Rules never run in the writer's transaction: a failing or slow rule must
 * not fail or slow the write that triggered it, and a rule must see
 * committed state.  The emitter writes a row of ventros.automation_queue
 * with every event some enabled rule of its tenant may want (the fan-out
 * cache of webhook_fanout.c answers that question), in the event's own
 * transaction; this worker, woken at that commit, calls
 * ventros.run_automations(ventros.automation_batch_size), which takes the
 * first queued event of each aggregate (SKIP LOCKED), matches the batch's
 * rules in one query, runs them (the whole batch in one subtransaction; per
 * event, then per rule, only when a rule failed in it) and deletes the
 * queue rows, all in one transaction: a crash re-runs nothing twice, and
 * the run log's key (tenant, rule, event) makes a second run impossible
 * anyway.  Everything
 * the executor does is in SQL (sql/83_automation_rules.sql and the
 * sql/84_automation_*.sql files); this file is only the loop.
 *
 * ventros.automation_workers executors run; the commit wakes the first, and
 * one that finds work wakes the next, so a backlog is shared.  Waits ("wait
 * N minutes then continue") become due with time, so the worker also runs
 * every ventros.automation_poll_interval milliseconds.
 *
 * Wake-up: the statement trigger ventros.automation_wake on
 * ventros.automation_queue sets a backend-local flag through
 * vn_wake_at_commit (shmem.c); at commit the first executor's latch is set.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "automation_worker.h"
#include "shmem.h"
#include "trigger.h"
#include "worker.h"
#include "worker_queue.h"

#define VN_AUTOMATION_MAX_WORKERS 8

/* GUCs */
static int	 vn_automation_batch_size = 100;
static int	 vn_automation_workers = 2;
static int	 vn_automation_poll_interval = 1000;
static int	 vn_automation_depth = 0;
static char *vn_automation_origin = NULL;

/* An executor's slot holds only the kit's part. */
static VnWorkerKind automation_kind = {
	.type = "ventros automation executor",
	.main = "vn_automation_worker_main",
	.slot_size = sizeof(VnWorkerSlot),
};

static int vn_automation_wake_target = -1; /* set in the postmaster, inherited */

/* what the executor calls: there once the extension is */
static const char *const automation_functions[] = {
	"ventros.run_automations(integer,timestamp with time zone)",
};

PG_FUNCTION_INFO_V1(ventros_automation_wake);

/* The wake at commit goes to the first executor; see the loop for the rest. */
static Latch *
vn_automation_find_latch(void)
{
	return vn_worker_find_latch(&automation_kind, 0, MyDatabaseId);
}

/*
 * ventros.automation_wake(): statement trigger on ventros.automation_queue;
 * wakes the executor when the transaction commits.
 */
Datum
ventros_automation_wake(PG_FUNCTION_ARGS)
{
	vn_check_trigger(fcinfo, "ventros_automation_wake");
	vn_wake_at_commit(vn_automation_wake_target);
	return PointerGetDatum(NULL);
}

/*
 * The loop: worker_queue.c.  A call takes only the first queued event of
 * each aggregate (order per aggregate), so a short batch does not mean the
 * queue is empty: the executor calls again until a call takes nothing.
 */
static const VnQueueWorker automation_queue = {
	.kind = &automation_kind,
	.activity = "running automation rules",
	.functions = automation_functions,
	.nfunctions = lengthof(automation_functions),
	.batch_sql = "SELECT ventros.run_automations($1)",
	.batch_size = &vn_automation_batch_size,
	.poll_interval = &vn_automation_poll_interval,
	.again_on_any = true,
};

void
vn_automation_worker_main(Datum main_arg)
{
	vn_queue_worker_main(&automation_queue, main_arg);
}

void
vn_automation_worker_init(void)
{
	DefineCustomIntVariable("ventros.automation_batch_size",
							"Queued events an automation executor takes in one transaction.",
							"Only the first queued event of each aggregate is taken per call, so events of one "
							"aggregate run in order.",
							&vn_automation_batch_size,
							100, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.automation_workers",
							"Automation executors (background workers) of each database.",
							NULL,
							&vn_automation_workers,
							2, 1, VN_AUTOMATION_MAX_WORKERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.automation_poll_interval",
							"Longest sleep of an automation executor without a wake-up (waits become due).",
							NULL,
							&vn_automation_poll_interval,
							1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * The cascade marks the executor sets while a rule acts, read by
	 * ventros.automation_enqueue for the events the rule's actions emit.
	 * Superuser-only: a tenant must not make its own writes look like a
	 * cascade (deeper, or from another event) to escape or exhaust rules.
	 */
	DefineCustomIntVariable("ventros.automation_depth",
							"Cascade depth of the events emitted now (set by the automation executor).",
							NULL,
							&vn_automation_depth,
							0, 0, 1000,
							PGC_SUSET, GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);
	DefineCustomStringVariable("ventros.automation_origin",
							   "Originating event of the events emitted now (set by the automation executor).",
							   NULL,
							   &vn_automation_origin,
							   "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	vn_automation_wake_target = vn_worker_define(&automation_kind, vn_automation_workers, vn_automation_find_latch);
}
