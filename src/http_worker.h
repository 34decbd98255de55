/*-------------------------------------------------------------------------
 *
 * http_worker.h
 *	  The HTTP dispatcher: a background worker delivering
 *	  ventros.http_requests with libcurl multi.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_HTTP_WORKER_H
#define VENTROS_HTTP_WORKER_H

/* in http_worker.c */
extern void				vn_http_worker_init(void);
extern void				vn_http_wake_at_commit(void);
extern PGDLLEXPORT void vn_http_worker_main(Datum main_arg);

#endif /* VENTROS_HTTP_WORKER_H */
