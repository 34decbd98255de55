/*-------------------------------------------------------------------------
 *
 * worker_queue.c
 *	  The loop of a worker kind that drains a queue table through one SQL
 *	  function: the inbox processors and the automation executors.
 *
 * All the work is in SQL (a function that takes rows SKIP LOCKED, does
 * each in a subtransaction and records the outcome as row state), so this
 * loop only decides when to call it:
 *
 *	- woken (at the commit of a transaction that queued rows, shmem.c) or
 *	  after queue->poll_interval (retries and waits become due with time),
 *	  a worker calls queue->batch_sql until a call says the queue is worked
 *	  off: fewer items than a batch, or, with again_on_any, none at all (a
 *	  call that takes only the first row of each aggregate may take fewer
 *	  than a batch while more wait);
 *	- a call that found work wakes the kind's next worker of this
 *	  database, which wakes the one after it in turn, so a backlog is
 *	  shared while a trickle costs one process;
 *	- until the database has the functions the worker calls (a new
 *	  database, or an install script older than the library), it reports
 *	  that in its slot's last error and waits, instead of failing in a loop.
 *
 * A worker that dies mid-batch loses its transaction; the rows are simply
 * there again for the next call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"

#include "worker_queue.h"

/*
 * installed
 *		In a transaction step: whether the database has every function the
 *		worker calls; if not, the first one missing becomes its last error.
 */
static bool
installed(const VnQueueWorker *queue)
{
	const char *missing = vn_worker_missing_function(queue->functions, queue->nfunctions);
	char		msg[VN_WORKER_ERRLEN];

	if (missing == NULL)
		return true;
	snprintf(msg, sizeof(msg),
			 "function %s is missing in database \"%s\": the extension is not installed, "
			 "or its SQL is older than the loaded library",
			 missing, get_database_name(MyDatabaseId));
	vn_worker_set_error(msg);
	return false;
}

/*
 * run_batch
 *		One transaction: queue->batch_sql.  Returns how many items it took,
 *		or -1 while the database lacks the worker's functions (*ready
 *		remembers once it has them, so the check is not repeated per batch).
 */
static int
run_batch(const VnQueueWorker *queue, bool *ready)
{
	int			  taken = -1;
	MemoryContext caller = vn_worker_begin(queue->activity);

	if (!*ready)
		*ready = installed(queue);
	if (*ready)
	{
		Datum arg = Int32GetDatum(*queue->batch_size);
		Oid	  argtype = INT4OID;
		bool  isnull;
		Datum n;

		if (SPI_execute_with_args(queue->batch_sql, 1, &argtype, &arg, NULL, false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "%s: the batch statement did not answer one row", queue->kind->type);
		n = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		taken = isnull ? 0 : DatumGetInt32(n);
	}
	vn_worker_end(caller);
	return taken;
}

void
vn_queue_worker_main(const VnQueueWorker *queue, Datum main_arg)
{
	int	 index = DatumGetInt32(main_arg);
	bool ready = false;

	vn_worker_attach(queue->kind, main_arg);
	for (;;)
	{
		(void) vn_worker_loop_top();
		for (;;)
		{
			int	   taken = run_batch(queue, &ready);
			Latch *next;

			if (queue->again_on_any ? taken <= 0 : taken < *queue->batch_size)
				break;
			/* there was work: the next worker shares it (SKIP LOCKED keeps each row to one) */
			next = vn_worker_find_latch(queue->kind, index + 1, MyDatabaseId);
			if (next != NULL)
				SetLatch(next);
			CHECK_FOR_INTERRUPTS();
		}
		/* the latch is reset when it wakes us: a wake-up during a batch is not lost */
		(void) vn_worker_wait(*queue->poll_interval, PGINVALID_SOCKET);
	}
}
