/*-------------------------------------------------------------------------
 *
 * inbox_worker.c
 *	  The inbox processor: turns stored webhook items (ventros.inbox) into
 *	  contacts, sessions and messages right after they commit.
 *
 * A provider's webhook is answered as soon as its raw items are stored
 * (ventros.accept_webhook); with ventros.inbox_processing = deferred (the
 * default) nothing else happens in that transaction, so the answer's latency
 * does not depend on the CRM work behind it.  This background worker does
 * that work: woken at the commit of a transaction that stored items, it
 * calls ventros.process_inbox(ventros.inbox_batch_size) — every due item of
 * every tenant, each in its own subtransaction, SKIP LOCKED, in the order of
 * each conversation but with no lock per channel — until a call finds fewer
 * items than a batch, then sleeps.  ventros.inbox_workers
 * processors run in each database of ventros.databases; the commit wakes
 * the database's first, and a processor that finds a
 * full batch wakes the next, so a backlog is worked in parallel while a
 * trickle costs one process.  Failed items come back when
 * their retry is due, so the worker also runs every
 * ventros.inbox_poll_interval milliseconds.
 *
 * All progress is row state (the item's status); a worker that dies mid-batch
 * loses its transaction and the items are simply due again.  The pg_cron job
 * ventros-process-inbox calls the same function once a minute, a fallback
 * when the worker is not running.
 *
 * Wake-up: the statement trigger ventros.inbox_wake on ventros.inbox sets a
 * backend-local flag through vn_wake_at_commit (shmem.c); at commit the
 * database's first processor's latch is set.  The processors run on the worker kit
 * (worker.c): their slots hold only the kit's part (pid, latch, last error).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "inbox_worker.h"
#include "shmem.h"
#include "trigger.h"
#include "worker.h"
#include "worker_queue.h"

#define VN_INBOX_MAX_WORKERS 8

/* GUCs */
static int vn_inbox_batch_size = 20;
static int vn_inbox_workers = 2;
static int vn_inbox_poll_interval = 1000;
static int vn_inbox_lock_timeout = 500;
static int vn_inbox_processing = VN_INBOX_DEFERRED;

static const struct config_enum_entry vn_inbox_processing_options[] = {
	{"deferred", VN_INBOX_DEFERRED, false},
	{"inline", VN_INBOX_INLINE, false},
	{NULL, 0, false},
};

/* A processor's slot holds only the kit's part. */
static VnWorkerKind inbox_kind = {
	.type = "ventros inbox processor",
	.main = "vn_inbox_worker_main",
	.slot_size = sizeof(VnWorkerSlot),
	.old_databases = "ventros.inbox_database",
};

static int vn_inbox_wake_target = -1; /* set in the postmaster, inherited */

/* what the processor calls: the first is there once the extension is */
static const char *const inbox_functions[] = {
	"ventros.process_inbox(integer,timestamp with time zone)",
};

PG_FUNCTION_INFO_V1(ventros_inbox_wake);

/*
 * The wake at commit goes to the first processor of this database; see the
 * loop for the rest.
 */
static Latch *
vn_inbox_find_latch(void)
{
	return vn_worker_find_latch(&inbox_kind, 0, MyDatabaseId);
}

/*
 * ventros.inbox_wake(): statement trigger on ventros.inbox; wakes the
 * processor when the transaction commits.
 */
Datum
ventros_inbox_wake(PG_FUNCTION_ARGS)
{
	vn_check_trigger(fcinfo, "ventros_inbox_wake");
	if (vn_inbox_processing == VN_INBOX_DEFERRED)
		vn_wake_at_commit(vn_inbox_wake_target);
	return PointerGetDatum(NULL);
}

/* the loop: worker_queue.c */
static const VnQueueWorker inbox_queue = {
	.kind = &inbox_kind,
	.activity = "processing ventros.inbox",
	.functions = inbox_functions,
	.nfunctions = lengthof(inbox_functions),
	/*
	 * Items left waiting behind an earlier item of their conversation that
	 * another processor holds count as taken (more may be due behind them),
	 * unless the batch was nothing else: then this processor sleeps rather
	 * than spin on them, and the holder comes back for them.
	 */
	.batch_sql = "SELECT CASE WHEN count(*) FILTER (WHERE status <> 'waiting') > 0 "
				 "THEN sum(items) ELSE 0 END::integer FROM ventros.process_inbox($1)",
	.batch_size = &vn_inbox_batch_size,
	.poll_interval = &vn_inbox_poll_interval,
	.again_on_any = false, /* a short batch: nothing more is due */
};

void
vn_inbox_worker_main(Datum main_arg)
{
	vn_queue_worker_main(&inbox_queue, main_arg);
}

void
vn_inbox_worker_init(void)
{
	DefineCustomEnumVariable("ventros.inbox_processing",
							 "When stored webhook items become contacts, sessions and messages.",
							 "deferred: by the inbox processor right after the webhook's transaction commits "
							 "(the answer does not wait for it); inline: inside ventros.accept_webhook, "
							 "each item in its own subtransaction.",
							 &vn_inbox_processing,
							 VN_INBOX_DEFERRED, vn_inbox_processing_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.inbox_batch_size",
							"Inbox items a processor takes in one transaction.",
							"A full batch also wakes the next processor, so a backlog is shared.",
							&vn_inbox_batch_size,
							20, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.inbox_workers",
							"Inbox processors (background workers) of each database.",
							NULL,
							&vn_inbox_workers,
							2, 1, VN_INBOX_MAX_WORKERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.inbox_lock_timeout",
							"How long processing one inbox item waits for a lock before it is put off.",
							"A tenant's own open transaction can hold the rows its items need: past this wait the item "
							"is retried a few seconds later (no attempt is counted), and the tenant's other items of the "
							"batch with it, so no tenant holds up the others.  0: wait without a limit.",
							&vn_inbox_lock_timeout,
							500, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.inbox_poll_interval",
							"Longest sleep of an inbox processor without a wake-up (retries become due).",
							NULL,
							&vn_inbox_poll_interval,
							1000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	vn_inbox_wake_target = vn_worker_define(&inbox_kind, vn_inbox_workers, vn_inbox_find_latch);
}
