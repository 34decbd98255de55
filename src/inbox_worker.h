/*-------------------------------------------------------------------------
 *
 * inbox_worker.h
 *	  The inbox processor: a background worker turning stored webhook
 *	  items into the CRM domain right after they commit.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_INBOX_WORKER_H
#define VENTROS_INBOX_WORKER_H

/* values of ventros.inbox_processing */
#define VN_INBOX_DEFERRED 0
#define VN_INBOX_INLINE 1

/* in inbox_worker.c */
extern void				vn_inbox_worker_init(void);
extern PGDLLEXPORT void vn_inbox_worker_main(Datum main_arg);

#endif /* VENTROS_INBOX_WORKER_H */
