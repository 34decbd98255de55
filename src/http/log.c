/*
 * log.c
 *	  The access log: one line per request, off the request's path.
 *
 * A request appends its line to a shared buffer under a mutex (a memcpy);
 * a writer thread writes the buffer to stderr every 100 ms, or at once when
 * it passes 32 KiB.  A write(2) to a log file can block for milliseconds
 * (the page cache throttling writers while PostgreSQL's checkpoint dirties
 * pages on the same disk); that wait now falls on the writer thread, not on
 * a request's latency.  Lines keep their order.  When the writer falls
 * behind so far that the buffer reaches 4 MiB, lines are dropped and
 * counted (the count is logged) rather than making requests wait or memory
 * grow without bound.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define VN_LOG_WAKE (32 * 1024)
#define VN_LOG_MAX (4 * 1024 * 1024)

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  log_wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static VnBuf		   pending;
static unsigned long   dropped;

/* takes the buffer and writes it; write_lock keeps flushes in order */
static void
flush_pending(void)
{
	VnBuf		  out;
	unsigned long lost;

	pthread_mutex_lock(&write_lock);
	pthread_mutex_lock(&log_lock);
	if (pending.data == NULL)
		vn_buf_init(&pending);
	out = pending;
	vn_buf_init(&pending);
	lost = dropped;
	dropped = 0;
	pthread_mutex_unlock(&log_lock);
	if (lost > 0)
		vn_buf_addf(&out, "ventros-http: %lu access log lines dropped (the log could not keep up)\n", lost);
	for (size_t off = 0; off < out.len;)
	{
		ssize_t n = write(STDERR_FILENO, out.data + off, out.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* nowhere to log to: drop */
		off += (size_t) n;
	}
	vn_buf_free(&out);
	pthread_mutex_unlock(&write_lock);
}

static void *
writer(void *arg)
{
	for (;;)
	{
		struct timespec deadline;

		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_nsec += 100 * 1000 * 1000;
		if (deadline.tv_nsec >= 1000000000L)
		{
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&log_lock);
		while (pending.len < VN_LOG_WAKE)
			if (pthread_cond_timedwait(&log_wake, &log_lock, &deadline) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&log_lock);
		flush_pending();
	}
	return NULL;
}

void
vn_log_start(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, writer, NULL) == 0)
		pthread_detach(t);
}

void
vn_log_line(const char *fmt, ...)
{
	char	line[1024];
	va_list ap;
	int		n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t) n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	pthread_mutex_lock(&log_lock);
	if (pending.data == NULL)
		vn_buf_init(&pending);
	if (pending.len + (size_t) n > VN_LOG_MAX)
		dropped++;
	else
	{
		vn_buf_addn(&pending, line, (size_t) n);
		if (pending.len >= VN_LOG_WAKE && pending.len - (size_t) n < VN_LOG_WAKE)
			pthread_cond_signal(&log_wake);
	}
	pthread_mutex_unlock(&log_lock);
}

void
vn_log_flush(void)
{
	flush_pending();
}
