/*-------------------------------------------------------------------------
 *
 * automation_worker.h
 *	  The automation executor: a background worker running the tenants'
 *	  automation rules after their triggering events commit.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_AUTOMATION_WORKER_H
#define VENTROS_AUTOMATION_WORKER_H

/* in automation_worker.c */
extern void				vn_automation_worker_init(void);
extern PGDLLEXPORT void vn_automation_worker_main(Datum main_arg);

#endif /* VENTROS_AUTOMATION_WORKER_H */
