/*
 * task.c
 *	  Cooperative tasks, each on a stack of its own.
 *
 * A task is a function running on its own stack (VN_TASK_STACK bytes,
 * mapped with a guard page below it so that an overflow faults instead of
 * corrupting a neighbour).  vn_task_yield() switches back to the context
 * that started or resumed the task; vn_task_resume() switches into it
 * again.  Tasks never move between threads, so each thread keeps its own
 * list of free stacks and its own notion of the current task.
 *
 * On x86-64 a switch is a few instructions of our own (vn_switch below):
 * it saves the callee-saved registers and the stack pointer, as a function
 * call would, and nothing else.  glibc's swapcontext() also saves and
 * restores the signal mask, two system calls per switch and four per
 * request; no code here changes the signal mask, the floating-point
 * control words or anything else a switch would have to carry.  Elsewhere
 * the portable ucontext functions do the same job.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "task.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#define VN_TASK_STACK	(256 * 1024)
#define VN_TASK_FREE_MAX 64

struct VnTask
{
#if defined(__x86_64__)
	void	   *sp;				/* the task's saved stack pointer */
	void	   *caller_sp;		/* the resumer's, while the task runs */
#else
	ucontext_t	context;
	ucontext_t	caller;
#endif
	void		(*fn) (void *);
	void	   *arg;
	bool		finished;
	char	   *stack;			/* the mapping, guard page included */
	VnTask	   *next_free;
};

static __thread VnTask *current;
static __thread VnTask *free_tasks;
static __thread int nfree;

#if defined(__x86_64__)

/*
 * vn_switch(save, to): pushes the callee-saved registers, stores the stack
 * pointer in *save, loads to, pops the registers saved there and returns
 * into whatever called vn_switch on that stack.  A new task's stack is
 * prepared (make_context) so that this return lands in vn_task_boot, which
 * passes the task (in r12) to vn_task_main.
 */
void		vn_switch(void **save, void *to);
void		vn_task_boot(void);
void		vn_task_main(VnTask *task) __attribute__((used, noreturn));

__asm__(
		".text\n"
		".p2align 4\n"
		".globl vn_switch\n"
		".type vn_switch, @function\n"
		"vn_switch:\n"
		"	pushq %rbp\n"
		"	pushq %rbx\n"
		"	pushq %r12\n"
		"	pushq %r13\n"
		"	pushq %r14\n"
		"	pushq %r15\n"
		"	movq %rsp, (%rdi)\n"
		"	movq %rsi, %rsp\n"
		"	popq %r15\n"
		"	popq %r14\n"
		"	popq %r13\n"
		"	popq %r12\n"
		"	popq %rbx\n"
		"	popq %rbp\n"
		"	ret\n"
		".size vn_switch, .-vn_switch\n"
		".p2align 4\n"
		".globl vn_task_boot\n"
		".type vn_task_boot, @function\n"
		"vn_task_boot:\n"
		"	movq %r12, %rdi\n"
		"	call vn_task_main\n"
		"	ud2\n"
		".size vn_task_boot, .-vn_task_boot\n");

void
vn_task_main(VnTask *task)
{
	task->fn(task->arg);
	task->finished = true;
	vn_switch(&task->sp, task->caller_sp);
	abort();					/* a finished task is never switched into */
}

/*
 * The new stack, from its 16-byte aligned top down: the return address
 * vn_task_boot (so that after the return the stack is aligned for its
 * call), then the six registers vn_switch pops, r12 holding the task.
 */
static void
make_context(VnTask *task, long page)
{
	uintptr_t	top = ((uintptr_t) (task->stack + page + VN_TASK_STACK)) & ~(uintptr_t) 15;
	void	  **frame = (void **) (top - 56);

	frame[0] = NULL;			/* r15 */
	frame[1] = NULL;			/* r14 */
	frame[2] = NULL;			/* r13 */
	frame[3] = task;			/* r12 */
	frame[4] = NULL;			/* rbx */
	frame[5] = NULL;			/* rbp */
	frame[6] = (void *) vn_task_boot;
	task->sp = frame;
}

static void
switch_in(VnTask *task)
{
	VnTask	   *outer = current;

	current = task;
	vn_switch(&task->caller_sp, task->sp);
	current = outer;
}

void
vn_task_yield(void)
{
	VnTask	   *task = current;

	if (task == NULL)
		abort();				/* nothing to yield to: a programming error */
	vn_switch(&task->sp, task->caller_sp);
}

#else							/* portable: ucontext */

static void
trampoline(unsigned int hi, unsigned int lo)
{
	VnTask	   *task = (VnTask *) (((uintptr_t) hi << 32) | (uintptr_t) lo);

	task->fn(task->arg);
	task->finished = true;
	/* returning switches to uc_link: the caller's context */
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

static void
switch_in(VnTask *task)
{
	VnTask	   *outer = current;

	current = task;
	if (swapcontext(&task->caller, &task->context) != 0)
		abort();
	current = outer;
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

#endif

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
