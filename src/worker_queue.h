/*-------------------------------------------------------------------------
 *
 * worker_queue.h
 *	  A worker kind that drains a queue table through one SQL function.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_WORKER_QUEUE_H
#define VENTROS_WORKER_QUEUE_H

#include "worker.h"

/*
 * What a queue worker is: a static struct in the kind's file, next to its
 * VnWorkerKind.  The worker calls batch_sql with $1 = *batch_size in one
 * transaction; the statement answers one int4 column, the items it took.
 */
typedef struct VnQueueWorker
{
	VnWorkerKind	  *kind;
	const char		  *activity;  /* pg_stat_activity while a batch runs */
	const char *const *functions; /* regprocedure signatures it needs */
	int				   nfunctions;
	const char		  *batch_sql;	  /* $1 int4: the batch size; one int4 column */
	int				  *batch_size;	  /* the kind's setting */
	int				  *poll_interval; /* ms: the longest sleep without a wake-up */
	bool			   again_on_any;  /* another batch after any work, not only after a full one */
} VnQueueWorker;

extern void vn_queue_worker_main(const VnQueueWorker *queue, Datum main_arg) pg_attribute_noreturn();

#endif /* VENTROS_WORKER_QUEUE_H */
