/*
 * loop.h
 *	  The event loops of ventros-http: a few threads (one per two CPUs
 *	  by default), each running its own libmicrohttpd daemon on the shared
 *	  listening socket and its own database connections, with every request
 *	  a task (task.h) that yields while it waits.
 */
#ifndef VN_HTTP_LOOP_H
#define VN_HTTP_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#include "pg.h"
#include "task.h"

typedef struct VnLoop VnLoop;

/*
 * Starts one loop thread serving daemon (started by the caller with
 * MHD_USE_EPOLL and MHD_ALLOW_SUSPEND_RESUME, no thread of its own) with
 * pool's connections; tick(tick_arg), when given, runs after every round
 * (at least every 200 ms).  NULL with *error set when it could not start.
 */
extern VnLoop *vn_loop_start(struct MHD_Daemon *daemon, VnPool *pool, void (*tick)(void *), void *tick_arg,
							 char **error);

/*
 * Inside a task on a loop thread: waits until fd is ready for events
 * (EPOLLIN, EPOLLOUT).  Outside one (start-up, the main thread), it blocks
 * in poll() instead.
 */
extern void		 vn_loop_wait_fd(int fd, uint32_t events);
extern long long vn_loop_now_ms(void);
/*
 * Inside a task: sleeps until vn_loop_wake() or timeout_ms passed; true
 * when woken.  Outside a task it returns false at once.
 */
extern bool vn_loop_park(long timeout_ms);
/* makes a parked task of this thread run again (from any task of it) */
extern void vn_loop_wake(VnTask *task);
/* the calling loop thread's database pool, NULL outside a loop thread */
extern VnPool *vn_loop_pool(void);

#endif
