/*-------------------------------------------------------------------------
 *
 * outbox_worker.h
 *	  The outbox publisher: a background worker per database that delivers
 *	  committed ventros.outbox rows to RabbitMQ, woken at commit.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_OUTBOX_WORKER_H
#define VENTROS_OUTBOX_WORKER_H

#include "fmgr.h"

/* in outbox_worker.c */
extern void				vn_outbox_init(void);
extern void				vn_outbox_wake_at_commit(void);
extern PGDLLEXPORT void vn_outbox_worker_main(Datum main_arg);

#endif /* VENTROS_OUTBOX_WORKER_H */
