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
 *
 * Under AddressSanitizer every switch is announced to it
 * (__sanitizer_start_switch_fiber before, __sanitizer_finish_switch_fiber
 * after), or it would take a task's stack for a wild overflow of the
 * thread's and report or miss errors; a reused stack is unpoisoned first.
 * Without ASan the VN_ASAN_* macros are empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "task.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VN_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(VN_ASAN)
#define VN_ASAN 1
#endif

#ifdef VN_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
/* the resumer, about to run the task */
#define VN_ASAN_ENTER(task) \
	__sanitizer_start_switch_fiber(&(task)->caller_fake, (task)->stack_lo, VN_TASK_STACK)
/* the resumer, back from the task */
#define VN_ASAN_ENTERED_BACK(task) \
	__sanitizer_finish_switch_fiber((task)->caller_fake, NULL, NULL)
/* the task, now running: learns whose stack it left */
#define VN_ASAN_STARTED(task, fake) \
	__sanitizer_finish_switch_fiber((fake), &(task)->caller_lo, &(task)->caller_size)
/* the task, about to switch back (fakep NULL: for good, its fake stack goes) */
#define VN_ASAN_LEAVE(task, fakep) \
	__sanitizer_start_switch_fiber((fakep), (task)->caller_lo, (task)->caller_size)
#define VN_ASAN_FRESH(task) \
	ASAN_UNPOISON_MEMORY_REGION((task)->stack_lo, VN_TASK_STACK)
#else
#define VN_ASAN_ENTER(task) ((void) 0)
#define VN_ASAN_ENTERED_BACK(task) ((void) 0)
#define VN_ASAN_STARTED(task, fake) ((void) 0)
#define VN_ASAN_LEAVE(task, fakep) ((void) 0)
#define VN_ASAN_FRESH(task) ((void) 0)
#endif

#define VN_TASK_STACK (256 * 1024)
#define VN_TASK_FREE_MAX 64

struct VnTask
{
#if defined(__x86_64__)
	void *sp;		 /* the task's saved stack pointer */
	void *caller_sp; /* the resumer's, while the task runs */
#else
	ucontext_t context;
	ucontext_t caller;
#endif
	void (*fn)(void *);
	void   *arg;
	bool	finished;
	char   *stack; /* the mapping, guard page included */
	VnTask *next_free;
#ifdef VN_ASAN
	void	   *stack_lo;	 /* above the guard page */
	void	   *fake;		 /* ASan's fake stack of the task, while switched out */
	void	   *caller_fake; /* the resumer's, while the task runs */
	const void *caller_lo;	 /* the resumer's stack */
	size_t		caller_size;
#endif
};

static __thread VnTask *current;
static __thread VnTask *free_tasks;
static __thread int		nfree;

#if defined(__x86_64__)

/*
 * vn_switch(save, to): pushes the callee-saved registers, stores the stack
 * pointer in *save, loads to, pops the registers saved there and returns
 * into whatever called vn_switch on that stack.  A new task's stack is
 * prepared (make_context) so that this return lands in vn_task_boot, which
 * passes the task (in r12) to vn_task_main.
 */
void vn_switch(void **save, void *to);
void vn_task_boot(void);
void vn_task_main(VnTask *task) __attribute__((used, noreturn));

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
	VN_ASAN_STARTED(task, NULL);
	task->fn(task->arg);
	task->finished = true;
	VN_ASAN_LEAVE(task, NULL);
	vn_switch(&task->sp, task->caller_sp);
	abort(); /* a finished task is never switched into */
}

/*
 * The new stack, from its 16-byte aligned top down: the return address
 * vn_task_boot (so that after the return the stack is aligned for its
 * call), then the six registers vn_switch pops, r12 holding the task.
 */
static void
make_context(VnTask *task, long page)
{
	uintptr_t top = ((uintptr_t) (task->stack + page + VN_TASK_STACK)) & ~(uintptr_t) 15;
	void	**frame = (void **) (top - 56);

	frame[0] = NULL; /* r15 */
	frame[1] = NULL; /* r14 */
	frame[2] = NULL; /* r13 */
	frame[3] = task; /* r12 */
	frame[4] = NULL; /* rbx */
	frame[5] = NULL; /* rbp */
	frame[6] = (void *) vn_task_boot;
	task->sp = frame;
}

static void
switch_in(VnTask *task)
{
	VnTask *outer = current;

	current = task;
	VN_ASAN_ENTER(task);
	vn_switch(&task->caller_sp, task->sp);
	VN_ASAN_ENTERED_BACK(task);
	current = outer;
}

void
vn_task_yield(void)
{
	VnTask *task = current;

	if (task == NULL)
		abort(); /* nothing to yield to: a programming error */
	VN_ASAN_LEAVE(task, &task->fake);
	vn_switch(&task->sp, task->caller_sp);
	VN_ASAN_STARTED(task, task->fake);
}

#else /* portable: ucontext */

static void
trampoline(unsigned int hi, unsigned int lo)
{
	VnTask *task = (VnTask *) (((uintptr_t) hi << 32) | (uintptr_t) lo);

	VN_ASAN_STARTED(task, NULL);
	task->fn(task->arg);
	task->finished = true;
	VN_ASAN_LEAVE(task, NULL);
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
	makecontext(&task->context, (void (*)(void)) trampoline, 2,
				(unsigned int) ((uintptr_t) task >> 32), (unsigned int) ((uintptr_t) task & 0xffffffffu));
}

static void
switch_in(VnTask *task)
{
	VnTask *outer = current;

	current = task;
	VN_ASAN_ENTER(task);
	if (swapcontext(&task->caller, &task->context) != 0)
		abort();
	VN_ASAN_ENTERED_BACK(task);
	current = outer;
}

void
vn_task_yield(void)
{
	VnTask *task = current;

	if (task == NULL)
		abort(); /* nothing to yield to: a programming error */
	VN_ASAN_LEAVE(task, &task->fake);
	if (swapcontext(&task->context, &task->caller) != 0)
		abort();
	VN_ASAN_STARTED(task, task->fake);
}

#endif

VnTask *
vn_task_start(void (*fn)(void *), void *arg)
{
	VnTask *task = free_tasks;
	long	page = sysconf(_SC_PAGESIZE);

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
#ifdef VN_ASAN
	task->stack_lo = task->stack + page;
#endif
	VN_ASAN_FRESH(task);
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
