/*
 * loop.c
 *	  Event-loop threads: epoll over one libmicrohttpd daemon and the
 *	  sockets that this thread's tasks wait on.
 *
 * Why: with a thread per HTTP connection, every request crossed a thread
 * that had to be scheduled, on machines where the database's backends
 * already compete for the same CPUs; the tail latency was the scheduler's.
 * A loop thread instead takes whatever is ready (new requests, database
 * answers) in one wake-up, and never blocks on either.
 *
 * Each loop owns, and only it touches:
 *	- a daemon in external-epoll mode (MHD_USE_EPOLL) on the shared
 *	  listening socket: whichever loop is free accepts the next connection;
 *	- a pool of database connections (pg.c), in non-blocking mode;
 *	- the tasks of its requests.  A task waiting for a socket is armed as
 *	  that socket's one-shot epoll entry (the entry's data is the task); a
 *	  task waiting for a connection is parked with a deadline.
 * Nothing is shared between loops except the schema and the auth caches
 * (read-mostly, see main.c and auth.c), so there are no locks on a
 * request's path.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "buf.h"
#include "loop.h"

#define VN_LOOP_EVENTS 64
/* the longest a loop sleeps: its tick cuts slow clients about this often */
#define VN_LOOP_MAX_WAIT_MS 200

typedef struct VnParked
{
	VnTask			*task;
	long long		 deadline_ms; /* CLOCK_MONOTONIC */
	bool			 woken;
	bool			 scheduled; /* on the ready list already */
	struct VnParked *next;
} VnParked;

struct VnLoop
{
	int				   epfd;
	struct MHD_Daemon *daemon;
	VnPool			  *pool;
	VnParked		  *parked;
	VnTask			 **ready;
	int				   nready;
	int				   capready;
	void (*tick)(void *); /* called every round (guard.c) */
	void *tick_arg;
};

static __thread VnLoop *this_loop;

/* The front's clock for deadlines and timers: monotonic milliseconds. */
long long
vn_loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
push_ready(VnLoop *loop, VnTask *task)
{
	if (loop->nready == loop->capready)
	{
		loop->capready = loop->capready ? loop->capready * 2 : 16;
		loop->ready = realloc(loop->ready, sizeof(VnTask *) * loop->capready);
		if (loop->ready == NULL)
			abort();
	}
	loop->ready[loop->nready++] = task;
}

void
vn_loop_wait_fd(int fd, uint32_t events)
{
	VnTask			  *task = vn_task_current();
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events | EPOLLONESHOT;
	ev.data.ptr = task;
	/* re-arm the socket's entry, or add it (a new or reconnected socket) */
	if (this_loop != NULL && task != NULL &&
		(epoll_ctl(this_loop->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ||
		 (errno == ENOENT && epoll_ctl(this_loop->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)))
		vn_task_yield();
	else
	{
		/* outside a loop task, or epoll refused the socket: block instead */
		struct pollfd p = {fd, (short) ((events & EPOLLIN ? POLLIN : 0) | (events & EPOLLOUT ? POLLOUT : 0)), 0};

		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
	}
}

bool
vn_loop_park(long timeout_ms)
{
	VnParked   p;
	VnParked **link;

	if (this_loop == NULL || vn_task_current() == NULL)
		return false;
	p.task = vn_task_current();
	p.deadline_ms = vn_loop_now_ms() + timeout_ms;
	p.woken = false;
	p.scheduled = false;
	p.next = this_loop->parked;
	this_loop->parked = &p;
	vn_task_yield();
	for (link = &this_loop->parked; *link; link = &(*link)->next)
		if (*link == &p)
		{
			*link = p.next;
			break;
		}
	return p.woken;
}

void
vn_loop_wake(VnTask *task)
{
	for (VnParked *p = this_loop ? this_loop->parked : NULL; p; p = p->next)
		if (p->task == task && !p->scheduled)
		{
			p->woken = true;
			p->scheduled = true;
			push_ready(this_loop, task);
			return;
		}
}

VnPool *
vn_loop_pool(void)
{
	return this_loop ? this_loop->pool : NULL;
}

/* the tasks made ready since the last round, and the parked ones whose time is up */
static void
run_ready(VnLoop *loop)
{
	long long now = loop->parked ? vn_loop_now_ms() : 0;

	for (VnParked *p = loop->parked; p; p = p->next)
		if (!p->scheduled && p->deadline_ms <= now)
		{
			p->scheduled = true;
			push_ready(loop, p->task);
		}
	/* a resumed task may make others ready: take the list as it grows */
	for (int i = 0; i < loop->nready; i++)
		vn_task_resume(loop->ready[i]);
	loop->nready = 0;
}

static int
next_timeout(VnLoop *loop)
{
	MHD_UNSIGNED_LONG_LONG mhd;
	long long			   t = VN_LOOP_MAX_WAIT_MS;

	if (MHD_get_timeout(loop->daemon, &mhd) == MHD_YES && (long long) mhd < t)
		t = (long long) mhd;
	if (loop->parked)
	{
		long long now = vn_loop_now_ms();

		for (VnParked *p = loop->parked; p; p = p->next)
			if (!p->scheduled && p->deadline_ms - now < t)
				t = p->deadline_ms - now;
	}
	return t < 0 ? 0 : (int) t;
}

static void *
loop_main(void *arg)
{
	VnLoop			  *loop = arg;
	struct epoll_event events[VN_LOOP_EVENTS];

	this_loop = loop;
	for (;;)
	{
		int n = epoll_wait(loop->epfd, events, VN_LOOP_EVENTS, loop->nready ? 0 : next_timeout(loop));

		if (n < 0 && errno != EINTR)
		{
			fprintf(stderr, "ventros-http: epoll_wait: %s\n", strerror(errno));
			abort();
		}
		for (int i = 0; i < n; i++)
			if (events[i].data.ptr != NULL)
				push_ready(loop, events[i].data.ptr);
		run_ready(loop);
		/* new requests, resumed connections, answers to write, timeouts */
		MHD_run(loop->daemon);
		if (loop->tick)
			loop->tick(loop->tick_arg);
	}
	return NULL;
}

VnLoop *
vn_loop_start(struct MHD_Daemon *daemon, VnPool *pool, void (*tick)(void *), void *tick_arg, char **error)
{
	VnLoop					   *loop = vn_alloc(sizeof(VnLoop));
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
	struct epoll_event			ev;
	pthread_t					thread;

	loop->daemon = daemon;
	loop->pool = pool;
	loop->tick = tick;
	loop->tick_arg = tick_arg;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL; /* the daemon's own epoll set */
	if (loop->epfd < 0 || info == NULL || epoll_ctl(loop->epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0)
	{
		*error = vn_strdup("cannot set up the event loop's epoll set");
		return NULL;
	}
	if (pthread_create(&thread, NULL, loop_main, loop) != 0)
	{
		*error = vn_strdup("cannot start an event-loop thread");
		return NULL;
	}
	pthread_detach(thread);
	return loop;
}
