/*
 * stream_feed.c
 *	  The front's one feed of events: a thread consuming the ventros.events
 *	  topic exchange through an exclusive, auto-deleted queue of its own
 *	  (bound with "#"), handing each event to stream.c's fan-out.
 *
 * Every wait is bounded: the broker is read in slices of 250 ms, between
 * which the thread sends heartbeats to idle subscribers and frees ended
 * subscriptions (vn_stream_tick).  When the connection is lost, events
 * published meanwhile go to no queue of ours, so every subscriber is cut
 * with reason feed_lost (it resumes with Last-Event-ID and reads the gap
 * from the outbox); the thread reconnects every second and, until then,
 * new subscriptions are answered 503.
 *
 * Credentials never reach a log line: the broker is named host:port/vhost.
 */
#define _GNU_SOURCE /* memmem */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "buf.h"
#include "loop.h"
#include "stream_int.h"

#define VN_FEED_CHANNEL 1
#define VN_FEED_EXCHANGE "ventros.events"
#define VN_FEED_SLICE_MS 250

static char *feed_url;
static char *feed_url_parsed; /* amqp_parse_url's copy, pointed into by the connection info */
static int	 feed_state = VN_FEED_DISCONNECTED;

VnFeedState
vn_stream_feed_state(void)
{
	return (VnFeedState) __atomic_load_n(&feed_state, __ATOMIC_ACQUIRE);
}

static void
set_state(VnFeedState s)
{
	__atomic_store_n(&feed_state, (int) s, __ATOMIC_RELEASE);
}

static bool
rpc_ok(amqp_connection_state_t conn, const char *what, char *err, size_t errlen)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);

	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
		snprintf(err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
	else
		snprintf(err, errlen, "%s: refused by the broker", what);
	return false;
}

/* a consuming connection, or NULL with err */
static amqp_connection_state_t
feed_connect(struct amqp_connection_info *ci, char *err, size_t errlen)
{
	amqp_connection_state_t	 conn = amqp_new_connection();
	amqp_socket_t			*sock = amqp_tcp_socket_new(conn);
	struct timeval			 tv = {5, 0};
	amqp_rpc_reply_t		 r;
	amqp_queue_declare_ok_t *q;
	amqp_bytes_t			 qname;

	if (sock == NULL || amqp_socket_open_noblock(sock, ci->host, ci->port, &tv) != AMQP_STATUS_OK)
	{
		snprintf(err, errlen, "cannot connect");
		goto fail;
	}
	amqp_set_rpc_timeout(conn, &tv);
	r = amqp_login(conn, ci->vhost, 0, 131072, 10, AMQP_SASL_METHOD_PLAIN, ci->user, ci->password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		snprintf(err, errlen, "login refused");
		goto fail;
	}
	amqp_channel_open(conn, VN_FEED_CHANNEL);
	if (!rpc_ok(conn, "channel.open", err, errlen))
		goto fail;
	/* as the outbox publisher declares it: a front may start first */
	amqp_exchange_declare(conn, VN_FEED_CHANNEL, amqp_cstring_bytes(VN_FEED_EXCHANGE), amqp_cstring_bytes("topic"), 0,
						  1, 0, 0, amqp_empty_table);
	if (!rpc_ok(conn, "exchange.declare", err, errlen))
		goto fail;
	q = amqp_queue_declare(conn, VN_FEED_CHANNEL, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
	if (q == NULL || !rpc_ok(conn, "queue.declare", err, errlen))
		goto fail;
	qname = amqp_bytes_malloc_dup(q->queue);
	amqp_queue_bind(conn, VN_FEED_CHANNEL, qname, amqp_cstring_bytes(VN_FEED_EXCHANGE), amqp_cstring_bytes("#"),
					amqp_empty_table);
	if (!rpc_ok(conn, "queue.bind", err, errlen))
	{
		amqp_bytes_free(qname);
		goto fail;
	}
	amqp_basic_consume(conn, VN_FEED_CHANNEL, qname, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
	amqp_bytes_free(qname);
	if (!rpc_ok(conn, "basic.consume", err, errlen))
		goto fail;
	return conn;
fail:
	amqp_destroy_connection(conn);
	return NULL;
}

/* a header's string value into out ("" when absent) */
static void
header(const amqp_basic_properties_t *p, const char *name, char *out, size_t outlen)
{
	out[0] = '\0';
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return;
	for (int i = 0; i < p->headers.num_entries; i++)
	{
		const amqp_table_entry_t *e = &p->headers.entries[i];
		size_t					  n = strlen(name);

		if (e->key.len == n && memcmp(e->key.bytes, name, n) == 0 &&
			(e->value.kind == AMQP_FIELD_KIND_UTF8 || e->value.kind == AMQP_FIELD_KIND_BYTES))
		{
			size_t len = e->value.value.bytes.len < outlen - 1 ? e->value.value.bytes.len : outlen - 1;

			memcpy(out, e->value.value.bytes.bytes, len);
			out[len] = '\0';
			return;
		}
	}
}

/* an integer header's value (-1 when absent) */
static long long
int_header(const amqp_basic_properties_t *p, const char *name)
{
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return -1;
	for (int i = 0; i < p->headers.num_entries; i++)
	{
		const amqp_table_entry_t *e = &p->headers.entries[i];
		size_t					  n = strlen(name);

		if (e->key.len != n || memcmp(e->key.bytes, name, n) != 0)
			continue;
		switch (e->value.kind)
		{
			case AMQP_FIELD_KIND_I64:
				return (long long) e->value.value.i64;
			case AMQP_FIELD_KIND_U64:
				return (long long) e->value.value.u64;
			case AMQP_FIELD_KIND_I32:
				return (long long) e->value.value.i32;
			default:
				return -1;
		}
	}
	return -1;
}

/* one delivery to the subscribers */
static void
deliver(const amqp_envelope_t *env)
{
	const amqp_basic_properties_t *p = &env->message.properties;
	char						   tenant[130],
		agg_type[130], agg_id[64], type[256];
	const char *body = env->message.body.bytes;
	size_t		len = env->message.body.len;
	const char *key = "\"sequence\": ";
	/* the envelope's members before data are ours (src/outbox_envelope.c) */
	const char	 *at = memmem(body, len, key, strlen(key));
	VnStreamEvent ev;

	header(p, "tenant_id", tenant, sizeof(tenant));
	header(p, "aggregate_type", agg_type, sizeof(agg_type));
	header(p, "aggregate_id", agg_id, sizeof(agg_id));
	len = env->routing_key.len < sizeof(type) - 1 ? env->routing_key.len : sizeof(type) - 1;
	memcpy(type, env->routing_key.bytes, len);
	type[len] = '\0';
	if (at == NULL || tenant[0] == '\0' || agg_type[0] == '\0')
		return; /* not an event of the outbox publisher */
	ev.seq = strtoll(at + strlen(key), NULL, 10);
	/* the publish position: the SSE id (docs/realtime.md) */
	ev.position = int_header(p, "position");
	ev.type = type;
	ev.tenant = tenant;
	ev.aggregate_type = agg_type;
	ev.aggregate_id = agg_id;
	ev.body = body;
	ev.body_len = env->message.body.len;
	vn_stream_dispatch(&ev);
}

/* consumes until the connection fails; err says why */
static void
consume(amqp_connection_state_t conn, char *err, size_t errlen)
{
	long long next_tick = 0;

	for (;;)
	{
		struct timeval	 tv = {0, VN_FEED_SLICE_MS * 1000};
		amqp_envelope_t	 env;
		amqp_rpc_reply_t r;
		long long		 now;

		amqp_maybe_release_buffers(conn);
		r = amqp_consume_message(conn, &env, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_NORMAL)
		{
			deliver(&env);
			amqp_destroy_envelope(&env);
		}
		else if (!(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT))
		{
			/* a closed channel or connection, a socket error: start again */
			snprintf(err, errlen, "%s",
					 r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ? amqp_error_string2(r.library_error) : "closed by the broker");
			return;
		}
		now = vn_loop_now_ms();
		if (now >= next_tick)
		{
			vn_stream_tick(now);
			next_tick = now + VN_FEED_SLICE_MS;
		}
	}
}

static void *
feed_main(void *arg)
{
	struct amqp_connection_info ci;
	char						peer[300];
	char						err[200];
	bool						said = false;

	vn_stream_feed_thread();
	amqp_default_connection_info(&ci);
	feed_url_parsed = vn_strdup(feed_url);
	amqp_parse_url(feed_url_parsed, &ci); /* checked in vn_stream_feed_start */
	snprintf(peer, sizeof(peer), "%s:%d%s", ci.host, ci.port, ci.vhost);
	for (;;)
	{
		amqp_connection_state_t conn = feed_connect(&ci, err, sizeof(err));

		if (conn == NULL)
		{
			if (!said)
				fprintf(stderr, "ventros-http: event stream: RabbitMQ at %s: %s; retrying every second\n", peer, err);
			said = true;
			for (int i = 0; i < 1000 / VN_FEED_SLICE_MS; i++)
			{
				struct timespec ts = {0, VN_FEED_SLICE_MS * 1000000L};

				vn_stream_tick(vn_loop_now_ms());
				nanosleep(&ts, NULL);
			}
			continue;
		}
		said = false;
		set_state(VN_FEED_CONNECTED);
		fprintf(stderr, "ventros-http: event stream: consuming %s at %s\n", VN_FEED_EXCHANGE, peer);
		consume(conn, err, sizeof(err));
		set_state(VN_FEED_DISCONNECTED);
		amqp_destroy_connection(conn);
		fprintf(stderr, "ventros-http: event stream: lost RabbitMQ at %s: %s\n", peer, err);
		vn_stream_cut_all("feed_lost", "the front lost its feed of events; resume with Last-Event-ID");
	}
	return NULL;
}

bool
vn_stream_feed_start(const char *url, char **error)
{
	struct amqp_connection_info ci;
	char					   *copy = vn_strdup(url);
	pthread_t					thread;
	bool						ok = amqp_parse_url(copy, &ci) == AMQP_STATUS_OK;

	free(copy);
	if (!ok)
	{
		*error = vn_strdup("VENTROS_HTTP_AMQP_URL is not an AMQP URL (amqp://user:password@host:port/vhost)\n");
		return false;
	}
	feed_url = vn_strdup(url);
	if (pthread_create(&thread, NULL, feed_main, NULL) != 0)
	{
		*error = vn_strdup("cannot start the event stream's thread\n");
		return false;
	}
	pthread_detach(thread);
	return true;
}
