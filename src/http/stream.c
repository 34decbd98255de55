/*
 * stream.c
 *	  GET /events/stream: subscriptions, their filters and buffers, and
 *	  the Server-Sent Events answer (docs/realtime.md).
 *
 * A subscription (VnStream) lives in the hub, a list under hub_lock, from
 * its opening until the feed thread frees it after its connection ended.
 * The feed thread (stream_feed.c) is the only one that walks the hub: it
 * appends every matching event to the subscriber's buffer and resumes the
 * subscriber's connection when libmicrohttpd had suspended it for want of
 * data.  The connection's loop thread only takes bytes out of the buffer
 * (reader()), suspending the connection when it is empty.  Both hold the
 * subscription's own lock for that; the lock order is hub_lock, then a
 * subscription's lock, then libmicrohttpd's own (suspend and resume), so
 * nothing waits on a client: a subscriber whose buffer would pass its bound
 * is cut (a last "closed" event, then the end of the answer) and receives
 * nothing more.
 *
 * An event's SSE id is its publish position (the message's header
 * "position", set by the outbox publisher in the order it publishes), not
 * its seq: events are published out of seq order, positions grow in the
 * order the feed receives them.  Resuming (Last-Event-ID: the position of
 * the last event received): the subscription is registered first, holding
 * the live events it matches, then its gap is read from the outbox
 * (ventros.stream_gap, as the subscriber's role: the events published after
 * that position, then those not yet recorded as published, which have no
 * position yet and are written without an id line, so a client's
 * Last-Event-ID stays the last position it got); an event in both is
 * written once, from the gap (the gap's seqs are kept, sorted, for the
 * subscription's life: a pending event of the gap is published, and so
 * arrives live, later).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "loop.h"
#include "pg.h"
#include "stream.h"
#include "stream_int.h"


/*
 * Waking a loop: libmicrohttpd's own inter-thread channel is off in
 * external-epoll mode, so a connection resumed from the feed thread would
 * wait for its loop's next round (up to 200 ms).  Each loop runs a task
 * that waits on an eventfd of its own (vn_stream_loop_tick starts it); the
 * feed thread writes to the eventfds of the loops it resumed connections
 * of, once per batch of events (flush_wakes).
 */
static __thread int	 loop_wake_fd = -1;
static __thread bool is_feed_thread;
static int			 pending_fds[64];
static int			 npending;

/* the wakers run for the process's life: kept here, never freed */
static VnTask *wakers[64];
static int	   nwakers;

static pthread_mutex_t hub_lock = PTHREAD_MUTEX_INITIALIZER;
static VnStream		 **hub;
static int			   nhub;
static int			   caphub;

/* the settings */
static size_t stream_buffer = 256 * 1024;
static long	  heartbeat_ms = 15000;
static int	  gap_max = 10000;
static bool	  configured;

static long
env_long(const char *name, long dflt, long min, long max)
{
	const char *v = getenv(name);
	long		n;

	if (v == NULL || *v == '\0')
		return dflt;
	n = strtol(v, NULL, 10);
	return n < min ? min : n > max ? max :
									 n;
}

bool
vn_stream_start(char **error)
{
	const char *url = getenv("VENTROS_HTTP_AMQP_URL");

	stream_buffer = (size_t) env_long("VENTROS_HTTP_STREAM_BUFFER", 256 * 1024, 4096, 64L * 1024 * 1024);
	heartbeat_ms = env_long("VENTROS_HTTP_STREAM_HEARTBEAT", 15, 1, 3600) * 1000;
	gap_max = (int) env_long("VENTROS_HTTP_STREAM_GAP_MAX", 10000, 1, 1000000);
	if (url == NULL || *url == '\0')
		return true;
	configured = true;
	return vn_stream_feed_start(url, error);
}

/* '*' matches any run of characters, dots included */
static bool
glob(const char *p, const char *s)
{
	for (; *p; p++, s++)
	{
		if (*p == '*')
		{
			while (p[1] == '*')
				p++;
			if (p[1] == '\0')
				return true;
			for (; *s; s++)
				if (glob(p + 1, s))
					return true;
			return false;
		}
		if (*s != *p)
			return false;
	}
	return *s == '\0';
}

static bool
in_list(char *const *list, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* does s want this event?  Its fields are read-only in the hub: no lock */
static bool
wants(const VnStream *s, const char *tenant, const char *type, const char *agg_type, const char *agg_id)
{
	bool typed = s->npatterns == 0;

	if (strcmp(s->tenant, tenant) != 0 || !in_list(s->visible, s->nvisible, agg_type))
		return false;
	for (int i = 0; i < s->npatterns && !typed; i++)
		typed = glob(s->patterns[i], type);
	return typed && (s->nagg_types == 0 || in_list(s->agg_types, s->nagg_types, agg_type)) &&
		   (s->nagg_ids == 0 || in_list(s->agg_ids, s->nagg_ids, agg_id));
}

/* one SSE message: id (none when position < 0), event, and the envelope as data lines */
static void
frame(VnBuf *b, long long position, const char *type, const char *body, size_t len)
{
	if (position >= 0)
		vn_buf_addf(b, "id: %lld\n", position);
	vn_buf_addf(b, "event: %s\n", type);
	while (len > 0)
	{
		const char *nl = memchr(body, '\n', len);
		size_t		n = nl ? (size_t) (nl - body) : len;

		vn_buf_add(b, "data: ");
		vn_buf_addn(b, body, n);
		vn_buf_addc(b, '\n');
		body += n;
		len -= n;
		if (nl)
		{
			body++;
			len--;
		}
	}
	vn_buf_addc(b, '\n');
}

static void
signal_fd(int fd)
{
	uint64_t one = 1;
	ssize_t	 n = write(fd, &one, sizeof(one));

	(void) n; /* EAGAIN: the counter is full, the loop is being woken anyway */
}

/* after the feed thread's batch: wake each loop it resumed connections of */
static void
flush_wakes(void)
{
	for (int i = 0; i < npending; i++)
		signal_fd(pending_fds[i]);
	npending = 0;
}

/* under s->lock: libmicrohttpd goes on with a connection reader() suspended */
static void
wake(VnStream *s)
{
	bool listed = false;

	if (!s->suspended || s->dead || s->con == NULL)
		return;
	s->suspended = false;
	if (s->ws)
	{
		vn_stream_ws_wake(s);
		return;
	}
	MHD_resume_connection(s->con);
	if (s->wake_fd < 0)
		return;
	if (!is_feed_thread)
	{
		signal_fd(s->wake_fd);
		return;
	}
	for (int i = 0; i < npending && !listed; i++)
		listed = pending_fds[i] == s->wake_fd;
	if (!listed && npending < (int) (sizeof(pending_fds) / sizeof(pending_fds[0])))
		pending_fds[npending++] = s->wake_fd;
	else if (!listed)
		signal_fd(s->wake_fd);
}

/* the task of a loop thread that the feed thread wakes (never returns) */
static void
waker(void *arg)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	if (fd < 0)
		return; /* connections are then resumed at the loop's next round */
	loop_wake_fd = fd;
	for (;;)
	{
		uint64_t n;

		vn_loop_wait_fd(fd, EPOLLIN);
		while (read(fd, &n, sizeof(n)) > 0)
			;
	}
}

void
vn_stream_loop_tick(void)
{
	static __thread bool started;

	vn_stream_ws_reap();
	if (!started && configured)
	{
		VnTask *t;

		started = true;
		t = vn_task_start(waker, NULL);
		pthread_mutex_lock(&hub_lock);
		if (nwakers < 64)
			wakers[nwakers++] = t;
		pthread_mutex_unlock(&hub_lock);
	}
}

/* under s->lock: the last event, then the end of the answer */
static void
cut(VnStream *s, const char *reason, const char *message)
{
	if (s->state == VN_STREAM_CUT)
		return;
	if (s->ws)
	{
		vn_stream_ws_closed(&s->out, reason, message);
		s->state = VN_STREAM_CUT;
		wake(s);
		return;
	}
	vn_buf_add(&s->out, "event: closed\ndata: {\"reason\":");
	vn_buf_json_string(&s->out, reason);
	vn_buf_add(&s->out, ",\"message\":");
	vn_buf_json_string(&s->out, message);
	vn_buf_add(&s->out, "}\n\n");
	s->state = VN_STREAM_CUT;
	wake(s);
}

/* under s->lock: adds n bytes to send, or cuts a subscriber that fell behind */
static void
push(VnStream *s, const char *data, size_t n, long long now_ms)
{
	if (s->state == VN_STREAM_CUT)
		return;
	if (s->out.len - s->pos + n > s->bound)
	{
		char msg[160];

		snprintf(msg, sizeof(msg), "the subscriber fell behind: more than %zu bytes waiting to be sent", stream_buffer);
		cut(s, "slow_client", msg);
		return;
	}
	vn_buf_addn(&s->out, data, n);
	s->last_write_ms = now_ms;
	wake(s);
}

static bool
in_gap(const VnStream *s, long long seq)
{
	int lo = 0,
		hi = s->ngap - 1;

	while (lo <= hi)
	{
		int mid = (lo + hi) / 2;

		if (s->gap[mid] == seq)
			return true;
		if (s->gap[mid] < seq)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

void
vn_stream_dispatch(const VnStreamEvent *ev)
{
	VnBuf sse,
		ws;
	long long now = vn_loop_now_ms();

	vn_buf_init(&sse);
	vn_buf_init(&ws);
	pthread_mutex_lock(&hub_lock);
	for (int i = 0; i < nhub; i++)
	{
		VnStream *s = hub[i];

		if (!wants(s, ev->tenant, ev->type, ev->aggregate_type, ev->aggregate_id))
			continue;
		VnBuf *f = s->ws ? &ws : &sse;

		if (f->len == 0)
		{
			if (s->ws)
				vn_stream_ws_message(f, ev->position, ev->type, ev->body, ev->body_len);
			else
				frame(f, ev->position, ev->type, ev->body, ev->body_len);
		}
		pthread_mutex_lock(&s->lock);
		if (s->dead || in_gap(s, ev->seq))
			;
		else if (s->state == VN_STREAM_HOLDING)
		{
			VnHeld *h = vn_alloc(sizeof(VnHeld));

			h->seq = ev->seq;
			h->frame = vn_alloc(f->len);
			memcpy(h->frame, f->data, f->len);
			h->len = f->len;
			h->next = s->held;
			s->held = h;
			s->held_bytes += f->len;
			if (s->held_bytes > stream_buffer)
				cut(s, "slow_client", "too many events arrived while the gap was read");
		}
		else
			push(s, f->data, f->len, now);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&hub_lock);
	flush_wakes();
	vn_buf_free(&sse);
	vn_buf_free(&ws);
}

static void
stream_free(VnStream *s)
{
	char **lists[] = {s->visible, s->patterns, s->agg_types, s->agg_ids};
	int	   counts[] = {s->nvisible, s->npatterns, s->nagg_types, s->nagg_ids};

	for (int l = 0; l < 4; l++)
		for (int i = 0; i < counts[l]; i++)
			free(lists[l][i]);
	while (s->held)
	{
		VnHeld *h = s->held;

		s->held = h->next;
		free(h->frame);
		free(h);
	}
	free(s->gap);
	vn_buf_free(&s->out);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void
vn_stream_tick(long long now_ms)
{
	pthread_mutex_lock(&hub_lock);
	for (int i = 0; i < nhub; i++)
	{
		VnStream *s = hub[i];
		bool	  dead;

		pthread_mutex_lock(&s->lock);
		dead = s->dead;
		if (!dead && s->state == VN_STREAM_LIVE && now_ms - s->last_write_ms >= heartbeat_ms)
		{
			if (s->ws)
			{
				VnBuf ping;

				vn_buf_init(&ping);
				vn_stream_ws_ping(&ping);
				push(s, ping.data, ping.len, now_ms);
				vn_buf_free(&ping);
			}
			else
				push(s, ": heartbeat\n\n", 13, now_ms);
		}
		pthread_mutex_unlock(&s->lock);
		if (dead)
		{
			/* nobody else holds it: the connection is gone and it leaves the hub */
			stream_free(s);
			hub[i--] = hub[--nhub];
		}
	}
	pthread_mutex_unlock(&hub_lock);
	flush_wakes();
}

void
vn_stream_cut_all(const char *reason, const char *message)
{
	pthread_mutex_lock(&hub_lock);
	for (int i = 0; i < nhub; i++)
	{
		pthread_mutex_lock(&hub[i]->lock);
		cut(hub[i], reason, message);
		pthread_mutex_unlock(&hub[i]->lock);
	}
	pthread_mutex_unlock(&hub_lock);
	flush_wakes();
}

void
vn_stream_feed_thread(void)
{
	is_feed_thread = true;
}

static void
hub_add(VnStream *s)
{
	pthread_mutex_lock(&hub_lock);
	if (nhub == caphub)
	{
		caphub = caphub ? caphub * 2 : 64;
		hub = realloc(hub, sizeof(VnStream *) * caphub);
		if (hub == NULL)
			abort();
	}
	hub[nhub++] = s;
	pthread_mutex_unlock(&hub_lock);
}

/* the subscription is over: the feed thread frees it at its next tick */
void
vn_stream_release(void *cls)
{
	VnStream *s = cls;

	pthread_mutex_lock(&s->lock);
	s->dead = true;
	pthread_mutex_unlock(&s->lock);
}

/*
 * libmicrohttpd's content reader: what is buffered, the end after a cut,
 * or nothing and the connection suspended until wake().
 */
static ssize_t
reader(void *cls, uint64_t offset, char *buf, size_t max)
{
	VnStream *s = cls;
	ssize_t	  n;

	pthread_mutex_lock(&s->lock);
	if (s->out.len > s->pos)
	{
		size_t avail = s->out.len - s->pos;

		n = (ssize_t) (avail < max ? avail : max);
		memcpy(buf, s->out.data + s->pos, (size_t) n);
		s->pos += (size_t) n;
		if (s->pos == s->out.len)
			s->pos = s->out.len = 0;
		else if (s->pos > 65536 && s->pos > s->out.len / 2)
		{
			memmove(s->out.data, s->out.data + s->pos, s->out.len - s->pos);
			s->out.len -= s->pos;
			s->pos = 0;
		}
	}
	else if (s->state == VN_STREAM_CUT)
		n = MHD_CONTENT_READER_END_OF_STREAM;
	else
	{
		s->suspended = true;
		MHD_suspend_connection(s->con);
		n = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

enum MHD_Result
vn_stream_queue(struct MHD_Connection *con, VnResponse *resp)
{
	VnStream					   *s = resp->stream;
	struct MHD_Response			   *mr;
	enum MHD_Result					ret;
	const union MHD_ConnectionInfo *ci;

	resp->stream = NULL;
	pthread_mutex_lock(&s->lock);
	s->con = con;
	s->wake_fd = loop_wake_fd;
	pthread_mutex_unlock(&s->lock);
	if (s->ws)
		return vn_stream_ws_queue(con, s);
	mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, s, vn_stream_release);
	if (mr == NULL)
	{
		vn_stream_release(s);
		return MHD_NO;
	}
	MHD_add_response_header(mr, "Content-Type", "text/event-stream; charset=utf-8");
	MHD_add_response_header(mr, "Cache-Control", "no-cache");
	MHD_add_response_header(mr, "X-Accel-Buffering", "no");
	MHD_add_response_header(mr, "Access-Control-Allow-Origin", "*");
	/*
	 * The kernel's send buffer is bounded too: autotuned, it would hold
	 * megabytes for a client that stopped reading before our own bound
	 * noticed it.
	 */
	ci = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
	{
		int size = (int) (stream_buffer < 1024 * 1024 ? stream_buffer : 1024 * 1024);

		setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	}
	ret = MHD_queue_response(con, 200, mr);
	MHD_destroy_response(mr);
	return ret;
}

/* a comma-separated list into items; false when too long or a bad character */
static bool
parse_list(const char *v, char **items, int *n, const char *allowed)
{
	const char *p = v;

	while (*p)
	{
		size_t len = strcspn(p, ",");

		if (len > 0)
		{
			if (*n >= VN_STREAM_MAX_ITEMS || len > VN_STREAM_ITEM_LEN || strspn(p, allowed) < len)
				return false;
			items[(*n)++] = vn_strndup(p, len);
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return true;
}

static bool
parse_seq(const char *v, long long *seq)
{
	char *end;

	if (v == NULL || *v < '0' || *v > '9')
		return false;
	errno = 0;
	*seq = strtoll(v, &end, 10);
	return errno == 0 && *end == '\0';
}

#define VN_LOWER "abcdefghijklmnopqrstuvwxyz0123456789_"

/* the query string and Last-Event-ID into s; false with resp a 400 */
static bool
parse_request(const VnRequest *req, VnStream *s, long long *after, VnResponse *resp)
{
	/* the header, from the request's headers (main.c collects them as JSON) */
	const char *h = req->headers_json ? strstr(req->headers_json, "\"last-event-id\":\"") : NULL;

	*after = -1;
	if (h)
	{
		char  v[32];
		char *q = v;

		for (h += strlen("\"last-event-id\":\""); *h && *h != '"' && q < v + sizeof(v) - 1; h++)
			*q++ = *h;
		*q = '\0';
		if (!parse_seq(v, after))
		{
			vn_response_error(resp, 400, "22P02", "malformed Last-Event-ID", NULL,
							  "Send back the id of the last event received (an integer).");
			return false;
		}
	}
	for (int i = 0; i < req->args.n; i++)
	{
		const char *k = req->args.items[i].key;
		const char *v = req->args.items[i].value;
		bool		ok;

		if (strcmp(k, "types") == 0)
			ok = parse_list(v, s->patterns, &s->npatterns, VN_LOWER ".*");
		else if (strcmp(k, "aggregate_type") == 0)
			ok = parse_list(v, s->agg_types, &s->nagg_types, VN_LOWER);
		else if (strcmp(k, "aggregate_id") == 0)
			ok = parse_list(v, s->agg_ids, &s->nagg_ids, "0123456789abcdef-");
		else if (strcmp(k, "last_event_id") == 0)
			ok = parse_seq(v, after);
		else
		{
			char msg[200];

			snprintf(msg, sizeof(msg), "unknown parameter of the event stream: %.120s", k);
			vn_response_error(resp, 400, "PGRST100", msg, NULL,
							  "Filter with types, aggregate_type and aggregate_id; resume with last_event_id.");
			return false;
		}
		if (!ok)
		{
			char msg[200];

			snprintf(msg, sizeof(msg), "malformed %s of the event stream", k);
			vn_response_error(resp, 400, "22023", msg, NULL,
							  "Write types=message.*,session.created, aggregate_type=contact, aggregate_id=<uuid>, last_event_id=<seq>: comma-separated lowercase lists of at most 64 items.");
			return false;
		}
	}
	return true;
}

/* "{a,b,c}" (aggregate names: no quoting) into s->visible */
static void
parse_visible(VnStream *s, const char *array)
{
	const char *p = array + (*array == '{');

	while (*p && *p != '}' && s->nvisible < (int) (sizeof(s->visible) / sizeof(s->visible[0])))
	{
		size_t len = strcspn(p, ",}");

		s->visible[s->nvisible++] = vn_strndup(p, len);
		p += len;
		if (*p == ',')
			p++;
	}
}

static int
cmp_seq(const void *a, const void *b)
{
	long long x = *(const long long *) a,
			  y = *(const long long *) b;

	return x < y ? -1 : x > y;
}

/* the gap after position `after`, written to s (HOLDING); false with resp an error */
static bool
read_gap(PGconn *conn, const VnSetup *setup, VnStream *s, long long after, VnResponse *resp)
{
	char after_s[32],
		max_s[32];
	const char *values[2] = {after_s, max_s};
	VnParams	params = {2, values, NULL, NULL, NULL};
	PGresult   *res;
	int			n;

	snprintf(after_s, sizeof(after_s), "%lld", after);
	snprintf(max_s, sizeof(max_s), "%d", gap_max + 1);
	res = vn_pg_run(conn, setup,
					"SELECT seq, event_type, aggregate_type, aggregate_id::text, envelope, position FROM ventros.stream_gap($1::bigint, $2::integer)",
					&params);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (res)
			vn_response_pg_error(resp, res, true);
		else
			vn_response_error(resp, 503, "PGRST001", "database connection lost", NULL, "Retry the request.");
		PQclear(res);
		return false;
	}
	n = PQntuples(res);
	if (n > gap_max)
	{
		char msg[160];

		snprintf(msg, sizeof(msg), "more than %d events were missed since Last-Event-ID", gap_max);
		vn_response_error(resp, 413, "54000", msg, NULL,
						  "Reconnect without Last-Event-ID and read what was missed from /outbox or the aggregates.");
		PQclear(res);
		return false;
	}
	pthread_mutex_lock(&s->lock);
	s->gap = vn_alloc(sizeof(long long) * (n ? n : 1));
	for (int i = 0; i < n; i++)
	{
		long long position = PQgetisnull(res, i, 5) ? -1 : strtoll(PQgetvalue(res, i, 5), NULL, 10);

		s->gap[s->ngap++] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		if (wants(s, s->tenant, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3)))
		{
			if (s->ws)
				vn_stream_ws_message(&s->out, position, PQgetvalue(res, i, 1), PQgetvalue(res, i, 4),
									 (size_t) PQgetlength(res, i, 4));
			else
				frame(&s->out, position, PQgetvalue(res, i, 1), PQgetvalue(res, i, 4), (size_t) PQgetlength(res, i, 4));
		}
	}
	/* written in publish order; looked up by seq (in_gap) */
	qsort(s->gap, (size_t) s->ngap, sizeof(long long), cmp_seq);
	pthread_mutex_unlock(&s->lock);
	PQclear(res);
	return true;
}

/* HOLDING to LIVE: the held events the gap did not have, oldest first */
static void
go_live(VnStream *s)
{
	VnHeld *rev = NULL;

	pthread_mutex_lock(&s->lock);
	while (s->held)
	{
		VnHeld *h = s->held;

		s->held = h->next;
		h->next = rev;
		rev = h;
	}
	if (s->state == VN_STREAM_HOLDING)
		s->state = VN_STREAM_LIVE;
	/* a gap larger than the buffer is written whole: it counts on top */
	s->bound = stream_buffer + s->out.len;
	s->last_write_ms = vn_loop_now_ms();
	while (rev)
	{
		VnHeld *h = rev;

		rev = h->next;
		if (!in_gap(s, h->seq))
			push(s, h->frame, h->len, s->last_write_ms);
		free(h->frame);
		free(h);
	}
	s->held_bytes = 0;
	pthread_mutex_unlock(&s->lock);
}

/* the tenant and visible types of the caller (ventros.stream_open); false with resp an error */
static bool
open_as_caller(PGconn *conn, const VnSetup *setup, VnStream *s, VnResponse *resp)
{
	VnParams  none = {0};
	PGresult *res = vn_pg_run(conn, setup, "SELECT tenant_id, aggregate_types::text FROM ventros.stream_open()", &none);

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
	{
		if (res && PQresultStatus(res) != PGRES_TUPLES_OK)
			vn_response_pg_error(resp, res, true);
		else if (res)
			vn_response_error(resp, 403, "42501", "no tenant to stream the events of", NULL,
							  "Use a token bound to a tenant.");
		else
			vn_response_error(resp, 503, "PGRST001", "database connection lost", NULL, "Retry the request.");
		PQclear(res);
		return false;
	}
	snprintf(s->tenant, sizeof(s->tenant), "%s", PQgetvalue(res, 0, 0));
	parse_visible(s, PQgetvalue(res, 0, 1));
	PQclear(res);
	return true;
}

void
vn_stream_open(const VnRouterConfig *cfg, VnRequest *req, const VnIdentity *id, const char *api_key,
			   VnResponse *resp)
{
	VnStream   *s;
	VnSetup		setup;
	PGconn	   *conn;
	long long	after;
	VnFeedState feed = configured ? vn_stream_feed_state() : VN_FEED_OFF;
	bool		ok;

	if (feed == VN_FEED_OFF)
	{
		vn_response_error(resp, 503, "55000", "the event stream is not configured", NULL,
						  "Start ventros-http with VENTROS_HTTP_AMQP_URL (docs/realtime.md).");
		return;
	}
	if (feed != VN_FEED_CONNECTED)
	{
		vn_response_error(resp, 503, "55000", "the event stream is not connected to RabbitMQ", NULL,
						  "Retry shortly.");
		vn_response_header(resp, "Retry-After", "1");
		return;
	}
	if (id->claims == NULL && api_key == NULL)
	{
		vn_response_error(resp, 401, "42501", "permission denied for the event stream", NULL,
						  "Send a token: Authorization: Bearer <jwt>.");
		vn_response_header(resp, "WWW-Authenticate", "Bearer");
		return;
	}
	s = vn_alloc(sizeof(VnStream));
	s->wake_fd = -1;
	s->ws_fd = -1;
	s->ws = strcmp(req->path, "/events/ws") == 0;
	if (s->ws && !vn_stream_ws_accept(req->headers_json, s->ws_accept, sizeof(s->ws_accept)))
	{
		vn_response_error(resp, 400, "22023", "/events/ws is a WebSocket: the request is not a WebSocket upgrade", NULL,
						  "Send Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key.");
		free(s);
		return;
	}
	pthread_mutex_init(&s->lock, NULL);
	vn_buf_init(&s->out);
	if (!parse_request(req, s, &after, resp))
	{
		stream_free(s);
		return;
	}
	memset(&setup, 0, sizeof(setup));
	setup.role = id->role;
	setup.claims = id->claims ? id->claims : "";
	setup.method = req->method;
	setup.path = req->path;
	setup.headers = req->headers_json ? req->headers_json : "{}";
	setup.timeout = cfg->statement_timeout;
	setup.max_plan_cost = "0";
	setup.api_key = api_key;
	setup.read_only = true;
	conn = vn_pg_acquire(cfg->pool_wait_ms);
	if (conn == NULL)
	{
		vn_response_error(resp, 503, "PGRST003", "timed out waiting for a database connection", NULL,
						  "The server is busy; retry shortly.");
		stream_free(s);
		return;
	}
	ok = open_as_caller(conn, &setup, s, resp);
	if (ok)
	{
		snprintf(req->tenant, sizeof(req->tenant), "%s", s->tenant);
		/* in the hub before the gap is read: nothing published meanwhile is missed */
		hub_add(s);
		if (after >= 0 && !read_gap(conn, &setup, s, after, resp))
		{
			vn_stream_release(s); /* the feed thread frees it */
			ok = false;
		}
	}
	else
		stream_free(s);
	vn_pg_release(conn);
	if (!ok)
		return;
	go_live(s);
	resp->status = s->ws ? 101 : 200; /* for the access log */
	resp->stream = s;
}
