/*
 * task.c
 *	  Cooperative tasks on ucontext stacks.
 *
 * A task is a function running on a stack of its own (VN_TASK_STACK bytes,
 * mapped with a guard page below it so that an overflow faults instead of
 * corrupting a neighbour).  vn_task_yield() switches back to the context
 * that started or resumed the task; vn_task_resume() switches into it
 * again.  Tasks never move between threads, so each thread keeps its own
 * list of free stacks and its own notion of the current task.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "task.h"

#define VN_TASK_STACK	(256 * 1024)
#define VN_TASK_FREE_MAX 64

struct VnTask
{
	ucontext_t	context;
	ucontext_t	caller;
	void		(*fn) (void *);
	void	   *arg;
	bool		finished;
	char	   *stack;			/* the mapping, guard page included */
	VnTask	   *next_free;
};

static __thread VnTask *current;
static __thread VnTask *free_tasks;
static __thread int nfree;

static void
trampoline(unsigned int hi, unsigned int lo)
{
	VnTask	   *task = (VnTask *) (((uintptr_t) hi << 32) | (uintptr_t) lo);

	task->fn(task->arg);
	task->finished = true;
	/* returning switches to uc_link: the caller's context */
}

static void
switch_in(VnTask *task)
{
	VnTask	   *outer = current;

	current = task;
	if (swapcontext(&task->caller, &task->context) != 0)
		abort();
	current = outer;
}

/* apart from vn_task_start: getcontext returns twice, and its caller's locals must not care */
static void
make_context(VnTask *task, long page)
{
	if (getcontext(&task->context) != 0)
		abort();
	task->context.uc_stack.ss_sp = task->stack + page;
	task->context.uc_stack.ss_size = VN_TASK_STACK;
	task->context.uc_link = &task->caller;
	makecontext(&task->context, (void (*) (void)) trampoline, 2,
				(unsigned int) ((uintptr_t) task >> 32), (unsigned int) ((uintptr_t) task & 0xffffffffu));
}

VnTask *
vn_task_start(void (*fn) (void *), void *arg)
{
	VnTask	   *task = free_tasks;
	long		page = sysconf(_SC_PAGESIZE);

	if (task)
	{
		free_tasks = task->next_free;
		nfree--;
	}
	else
	{
		task = calloc(1, sizeof(VnTask));
		if (task == NULL)
			abort();
		task->stack = mmap(NULL, VN_TASK_STACK + page, PROT_READ | PROT_WRITE,
						   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (task->stack == MAP_FAILED || mprotect(task->stack, page, PROT_NONE) != 0)
			abort();
	}
	task->fn = fn;
	task->arg = arg;
	task->finished = false;
	make_context(task, page);
	switch_in(task);
	return task;
}

void
vn_task_resume(VnTask *task)
{
	if (!task->finished)
		switch_in(task);
}

bool
vn_task_finished(const VnTask *task)
{
	return task->finished;
}

void
vn_task_free(VnTask *task)
{
	if (nfree >= VN_TASK_FREE_MAX)
	{
		munmap(task->stack, VN_TASK_STACK + sysconf(_SC_PAGESIZE));
		free(task);
		return;
	}
	task->next_free = free_tasks;
	free_tasks = task;
	nfree++;
}

VnTask *
vn_task_current(void)
{
	return current;
}

void
vn_task_yield(void)
{
	VnTask	   *task = current;

	if (task == NULL)
		abort();				/* nothing to yield to: a programming error */
	if (swapcontext(&task->context, &task->caller) != 0)
		abort();
}
