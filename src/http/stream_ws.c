/*
 * stream_ws.c
 *	  GET /events/ws: the event stream of stream.c over a WebSocket
 *	  (RFC 6455), through libmicrohttpd's upgrade (docs/realtime.md).
 *
 * The subscription is the same (filters, visibility, resume, bounded
 * buffer); only its bytes differ: each event is one text message
 * {"id": "<position>", "event": "<type>", "data": <envelope>}, a heartbeat is a
 * ping, and a cut is a last text message {"event": "closed", "data":
 * {"reason", "message"}} followed by a close frame.
 *
 * After the 101 answer the socket is ours: a task of the connection's loop
 * thread (writer()) sends what the buffer holds without blocking, waits for
 * the socket to drain when it is full, and otherwise waits on an eventfd of
 * the subscription that wake() signals from the feed thread.  What the
 * client sends (pongs, its close) is not read: a client that left is
 * noticed when a send fails (at the latest at the next heartbeat's ping).
 * When the writer ends it hands the socket back to libmicrohttpd (close)
 * and the subscription to the feed thread (vn_stream_release); finished
 * writer tasks are freed by the loop's next round (vn_stream_ws_reap).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "loop.h"
#include "stream_int.h"

#define VN_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* this loop thread's writers that returned, for vn_stream_ws_reap */
static __thread VnTask **done;
static __thread int		 ndone;
static __thread int		 capdone;

/* a request header's value from the headers JSON of main.c ("" when absent) */
static void
header(const char *headers_json, const char *name, char *out, size_t len)
{
	char		key[64];
	const char *h;
	size_t		k = 0;

	snprintf(key, sizeof(key), "\"%s\":\"", name);
	h = headers_json ? strstr(headers_json, key) : NULL;
	if (h)
		for (h += strlen(key); *h && *h != '"' && k < len - 1; h++)
			out[k++] = *h;
	out[k] = '\0';
}

bool
vn_stream_ws_accept(const char *headers_json, char *accept, size_t len)
{
	char upgrade[64],
		key[64],
		version[16];
	char		  in[128];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int  mdlen = 0;

	header(headers_json, "upgrade", upgrade, sizeof(upgrade));
	header(headers_json, "sec-websocket-key", key, sizeof(key));
	header(headers_json, "sec-websocket-version", version, sizeof(version));
	if (strcasecmp(upgrade, "websocket") != 0 || strcmp(version, "13") != 0 || strlen(key) != 24 || len < 32)
		return false;
	snprintf(in, sizeof(in), "%s%s", key, VN_WS_GUID);
	if (!EVP_Digest(in, strlen(in), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
		return false;
	EVP_EncodeBlock((unsigned char *) accept, md, 20);
	return true;
}

/* a frame's header: FIN, opcode, unmasked payload length */
static void
frame_head(VnBuf *b, unsigned char opcode, size_t n)
{
	unsigned char h[10];
	int			  k = 0;

	h[k++] = 0x80 | opcode;
	if (n < 126)
		h[k++] = (unsigned char) n;
	else if (n < 65536)
	{
		h[k++] = 126;
		h[k++] = (unsigned char) (n >> 8);
		h[k++] = (unsigned char) n;
	}
	else
	{
		h[k++] = 127;
		for (int i = 7; i >= 0; i--)
			h[k++] = (unsigned char) (n >> (8 * i));
	}
	vn_buf_addn(b, (const char *) h, (size_t) k);
}

void
vn_stream_ws_message(VnBuf *b, long long position, const char *type, const char *body, size_t len)
{
	VnBuf m;

	vn_buf_init(&m);
	/* the publish position, as SSE's id; null for an event not yet recorded as published */
	if (position >= 0)
		vn_buf_addf(&m, "{\"id\": \"%lld\", \"event\": ", position);
	else
		vn_buf_add(&m, "{\"id\": null, \"event\": ");
	vn_buf_json_string(&m, type);
	vn_buf_add(&m, ", \"data\": ");
	vn_buf_addn(&m, body, len);
	vn_buf_addc(&m, '}');
	frame_head(b, 0x1, m.len);
	vn_buf_addn(b, m.data, m.len);
	vn_buf_free(&m);
}

void
vn_stream_ws_closed(VnBuf *b, const char *reason, const char *message)
{
	VnBuf m;

	vn_buf_init(&m);
	vn_buf_add(&m, "{\"event\": \"closed\", \"data\": {\"reason\": ");
	vn_buf_json_string(&m, reason);
	vn_buf_add(&m, ", \"message\": ");
	vn_buf_json_string(&m, message);
	vn_buf_add(&m, "}}");
	frame_head(b, 0x1, m.len);
	vn_buf_addn(b, m.data, m.len);
	vn_buf_free(&m);
	/* close, status 1000 */
	frame_head(b, 0x8, 2);
	vn_buf_addn(b, "\x03\xe8", 2);
}

void
vn_stream_ws_ping(VnBuf *b)
{
	frame_head(b, 0x9, 0);
}

void
vn_stream_ws_wake(VnStream *s)
{
	uint64_t one = 1;
	ssize_t	 n = s->ws_fd >= 0 ? write(s->ws_fd, &one, sizeof(one)) : 0;

	(void) n; /* EAGAIN: the counter is full, the writer is being woken anyway */
}

/* the task writing a subscription's buffer to its upgraded socket */
static void
writer(void *arg)
{
	VnStream *s = arg;
	bool	  over = false;

	while (!over)
	{
		pthread_mutex_lock(&s->lock);
		if (s->out.len > s->pos)
		{
			ssize_t n = send(s->ws_sock, s->out.data + s->pos, s->out.len - s->pos, MSG_DONTWAIT | MSG_NOSIGNAL);
			int		err = errno;

			if (n > 0)
			{
				s->pos += (size_t) n;
				if (s->pos == s->out.len)
					s->pos = s->out.len = 0;
			}
			pthread_mutex_unlock(&s->lock);
			if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK))
				vn_loop_wait_fd(s->ws_sock, EPOLLOUT);
			else if (n < 0)
				over = true; /* the client left */
			continue;
		}
		if (s->state == VN_STREAM_CUT)
		{
			pthread_mutex_unlock(&s->lock);
			break;
		}
		s->suspended = true;
		pthread_mutex_unlock(&s->lock);
		vn_loop_wait_fd(s->ws_fd, EPOLLIN);
		{
			uint64_t v;

			while (read(s->ws_fd, &v, sizeof(v)) > 0)
				;
		}
	}
	pthread_mutex_lock(&s->lock);
	close(s->ws_fd);
	s->ws_fd = -1;
	pthread_mutex_unlock(&s->lock);
	MHD_upgrade_action(s->ws_urh, MHD_UPGRADE_ACTION_CLOSE);
	vn_stream_release(s);
	if (ndone == capdone)
	{
		capdone = capdone ? capdone * 2 : 16;
		done = realloc(done, sizeof(VnTask *) * capdone);
		if (done == NULL)
			abort();
	}
	done[ndone++] = vn_task_current();
}

void
vn_stream_ws_reap(void)
{
	int kept = 0;

	for (int i = 0; i < ndone; i++)
		if (vn_task_finished(done[i]))
			vn_task_free(done[i]);
		else
			done[kept++] = done[i];
	ndone = kept;
}

/* libmicrohttpd hands over the socket after the 101 went out (the loop thread) */
static void
upgraded(void *cls, struct MHD_Connection *con, void *con_cls, const char *extra_in, size_t extra_in_size,
		 MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	VnStream *s = cls;
	int		  fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

	if (fd < 0)
	{
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		vn_stream_release(s);
		return;
	}
	pthread_mutex_lock(&s->lock);
	s->ws_sock = sock;
	s->ws_urh = urh;
	s->ws_fd = fd;
	pthread_mutex_unlock(&s->lock);
	vn_task_start(writer, s);
}

enum MHD_Result
vn_stream_ws_queue(struct MHD_Connection *con, VnStream *s)
{
	struct MHD_Response *mr = MHD_create_response_for_upgrade(upgraded, s);
	enum MHD_Result		 ret;

	if (mr == NULL)
	{
		vn_stream_release(s);
		return MHD_NO;
	}
	MHD_add_response_header(mr, "Upgrade", "websocket");
	MHD_add_response_header(mr, "Connection", "Upgrade");
	MHD_add_response_header(mr, "Sec-WebSocket-Accept", s->ws_accept);
	ret = MHD_queue_response(con, 101, mr);
	MHD_destroy_response(mr);
	if (ret != MHD_YES)
		vn_stream_release(s);
	return ret;
}
