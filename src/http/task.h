/*
 * task.h
 *	  Cooperative tasks: a request runs on a stack of its own and gives the
 *	  thread back while it waits (for the database, for a free connection),
 *	  so one event-loop thread serves many requests without blocking and the
 *	  request code stays straight-line.
 */
#ifndef VN_HTTP_TASK_H
#define VN_HTTP_TASK_H

#include <stdbool.h>

typedef struct VnTask VnTask;

/*
 * Starts fn(arg) on a new task and runs it until it yields or returns.
 * Never NULL (an allocation failure aborts, as everywhere in the front).
 */
extern VnTask *vn_task_start(void (*fn)(void *), void *arg);
/* runs a yielded task again, until it yields or returns */
extern void vn_task_resume(VnTask *task);
/* true once the task's function has returned */
extern bool vn_task_finished(const VnTask *task);
/* the stack goes back to the thread's free list; only for a finished task */
extern void vn_task_free(VnTask *task);
/* the task running now on this thread, or NULL outside any task */
extern VnTask *vn_task_current(void);
/* from inside a task: back to whoever started or resumed it */
extern void vn_task_yield(void);

#endif
