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
 * every tenant, each in its own subtransaction, SKIP LOCKED — until a call
 * finds fewer items than a batch, then sleeps.  ventros.inbox_workers
 * processors run; the commit wakes the first, and a processor that finds a
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
 * first processor's latch is set.  Shared memory holds only the processors'
 * pids and latches, under a spinlock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "inbox_worker.h"
#include "shmem.h"
#include "trigger.h"

#define VN_INBOX_RESTART_SECONDS 1
#define VN_INBOX_MAX_WORKERS 8

typedef struct VnInboxShared
{
	slock_t		mutex;
	pid_t		pid[VN_INBOX_MAX_WORKERS];	/* 0: not running */
	Latch	   *latch[VN_INBOX_MAX_WORKERS];
} VnInboxShared;

/* GUCs */
static char *vn_inbox_database = NULL;
static int	vn_inbox_batch_size = 20;
static int	vn_inbox_workers = 2;
static int	vn_inbox_poll_interval = 1000;
static int	vn_inbox_processing = VN_INBOX_DEFERRED;

static const struct config_enum_entry vn_inbox_processing_options[] = {
	{"deferred", VN_INBOX_DEFERRED, false},
	{"inline", VN_INBOX_INLINE, false},
	{NULL, 0, false}
};

static VnInboxShared *vn_inbox_shared = NULL;
static int	vn_inbox_wake_target = -1;	/* set in the postmaster, inherited */

PG_FUNCTION_INFO_V1(ventros_inbox_wake);

static void
vn_inbox_shmem_init(void *segment)
{
	SpinLockInit(&((VnInboxShared *) segment)->mutex);
}

/*
 * The latch of the first running processor from index `from` on (never our
 * own process), or NULL.
 */
static Latch *
find_latch_from(int from)
{
	Latch	   *latch = NULL;
	int			i;

	if (vn_inbox_shared == NULL)
		return NULL;
	SpinLockAcquire(&vn_inbox_shared->mutex);
	for (i = from; i < VN_INBOX_MAX_WORKERS && latch == NULL; i++)
		if (vn_inbox_shared->pid[i] != 0 && vn_inbox_shared->pid[i] != MyProcPid)
			latch = vn_inbox_shared->latch[i];
	SpinLockRelease(&vn_inbox_shared->mutex);
	return latch;
}

/* The wake at commit goes to the first processor; see the loop for the rest. */
static Latch *
vn_inbox_find_latch(void)
{
	return find_latch_from(0);
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

/*
 * process_batch
 *		One transaction: ventros.process_inbox(batch).  Returns how many
 *		items it took (processed, failed, ignored, ... all count), or -1
 *		when the extension is not installed in the database yet (*ready
 *		remembers once it is, so the check is not repeated per batch).
 */
static int
process_batch(bool *ready)
{
	int			taken = 0;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "processing ventros.inbox");

	/* until the extension is there (the database may be new), look for it */
	if (!*ready)
	{
		if (SPI_execute("SELECT pg_catalog.to_regprocedure('ventros.process_inbox(integer,timestamp with time zone)') IS NOT NULL",
						true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not check for the ventros extension");
		*ready = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (!*ready)
		taken = -1;
	else
	{
		Datum		arg = Int32GetDatum(vn_inbox_batch_size);
		Oid			argtype = INT4OID;
		Datum		sum;

		if (SPI_execute_with_args("SELECT coalesce(sum(items), 0)::integer FROM ventros.process_inbox($1)",
								  1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "ventros.process_inbox failed");
		sum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		taken = isnull ? 0 : DatumGetInt32(sum);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return taken;
}

static void
worker_exit(int code, Datum arg)
{
	int			index = DatumGetInt32(arg);

	SpinLockAcquire(&vn_inbox_shared->mutex);
	vn_inbox_shared->pid[index] = 0;
	vn_inbox_shared->latch[index] = NULL;
	SpinLockRelease(&vn_inbox_shared->mutex);
}

void
vn_inbox_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	bool		ready = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(vn_inbox_database, NULL, 0);
	/*
	 * Its statements run on tenants' data (handlers, webhook payloads): an
	 * LLVM compilation is not interrupted by statement_timeout, so a row
	 * shaped to make a plan expensive could hold the worker far past it.
	 */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname("ventros inbox processor");

	if (vn_inbox_shared == NULL)
		elog(FATAL, "ventros inbox processor: shared memory is not set up");
	if (index < 0 || index >= VN_INBOX_MAX_WORKERS)
		elog(FATAL, "ventros inbox processor: bad worker index %d", index);
	SpinLockAcquire(&vn_inbox_shared->mutex);
	vn_inbox_shared->pid[index] = MyProcPid;
	vn_inbox_shared->latch[index] = MyLatch;
	SpinLockRelease(&vn_inbox_shared->mutex);
	before_shmem_exit(worker_exit, Int32GetDatum(index));

	for (;;)
	{
		int			taken;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* Reset before working: a wake-up during the batch is not lost. */
		ResetLatch(MyLatch);
		for (;;)
		{
			Latch	   *next;

			taken = process_batch(&ready);
			if (taken < vn_inbox_batch_size)
				break;
			/*
			 * A full batch: there may be a backlog.  Wake the next processor
			 * so the items are shared (SKIP LOCKED keeps each item to one);
			 * it wakes the one after it in turn.
			 */
			next = find_latch_from(index + 1);
			if (next != NULL)
				SetLatch(next);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 vn_inbox_poll_interval, PG_WAIT_EXTENSION);
	}
}

void
vn_inbox_worker_init(void)
{
	BackgroundWorker worker;

	DefineCustomEnumVariable("ventros.inbox_processing",
							 "When stored webhook items become contacts, sessions and messages.",
							 "deferred: by the inbox processor right after the webhook's transaction commits "
							 "(the answer does not wait for it); inline: inside ventros.accept_webhook, "
							 "each item in its own subtransaction.",
							 &vn_inbox_processing,
							 VN_INBOX_DEFERRED, vn_inbox_processing_options,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("ventros.inbox_database",
							   "Database whose ventros.inbox the inbox processor works through.",
							   NULL,
							   &vn_inbox_database,
							   "ventros",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.inbox_batch_size",
							"Inbox items a processor takes in one transaction.",
							"A full batch also wakes the next processor, so a backlog is shared.",
							&vn_inbox_batch_size,
							20, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.inbox_workers",
							"Inbox processors (background workers) of the database.",
							NULL,
							&vn_inbox_workers,
							2, 1, VN_INBOX_MAX_WORKERS,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.inbox_poll_interval",
							"Milliseconds the inbox processor sleeps at most without a wake-up (retries become due).",
							NULL,
							&vn_inbox_poll_interval,
							1000, 10, 3600000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	vn_inbox_wake_target = vn_wake_register(vn_inbox_find_latch);
	vn_shmem_register("ventros inbox processor", sizeof(VnInboxShared), (void **) &vn_inbox_shared,
					  vn_inbox_shmem_init);

	for (int i = 0; i < vn_inbox_workers; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = VN_INBOX_RESTART_SECONDS;
		worker.bgw_main_arg = Int32GetDatum(i);
		strlcpy(worker.bgw_library_name, "ventros", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "vn_inbox_worker_main", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "ventros inbox processor %d", i + 1);
		strlcpy(worker.bgw_type, "ventros inbox processor", BGW_MAXLEN);
		RegisterBackgroundWorker(&worker);
	}
}
