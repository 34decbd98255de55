/*-------------------------------------------------------------------------
 *
 * outbox_amqp.c
 *	  The outbox publisher's AMQP 0-9-1 client, on librabbitmq 0.11.
 *
 * One connection, channel 1 in confirm mode, the durable topic exchange
 * ventros.events declared on connect.  A batch is published in full, then
 * its confirms are read: basic.ack (possibly "multiple"), basic.nack, and
 * basic.return (a mandatory message nobody could route; its ack follows,
 * and the return wins).  Delivery tags count from 1 per channel; the
 * messages in flight are kept in tag order, so a tag is an index.  Several
 * batches may be in flight (the worker publishes new batches while the
 * broker confirms earlier ones): vn_amqp_poll applies the confirms that have
 * come, without waiting; vn_amqp_settle and vn_amqp_wait hand back the
 * oldest batch once it is settled.
 *
 * Every wait is bounded (connect, login and RPC timeouts; confirms are read
 * in slices of 100 ms with CHECK_FOR_INTERRUPTS between them), so SIGTERM
 * is noticed.  AMQP heartbeats are on (ventros.outbox_heartbeat): a broker
 * that goes silent with the connection open is noticed without a confirm
 * being awaited.  Any protocol or socket error ends the connection: the caller
 * disconnects and reconnects with backoff.
 *
 * Credentials never reach a message: errors name the broker as
 * host:port/vhost (vn_amqp_describe_url).
 *
 * Memory: librabbitmq allocates its own buffers with malloc and frees them
 * in amqp_destroy_connection; the VnAmqp handle lives in TopMemoryContext
 * and is freed by vn_amqp_disconnect.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "outbox_amqp.h"

#define VN_AMQP_CHANNEL 1
#define VN_AMQP_FRAME_MAX 131072

struct VnAmqp
{
	amqp_connection_state_t conn;
	uint64					next_tag;  /* delivery tag of the next publish */
	char					peer[256]; /* host:port/vhost, for messages */
	/* messages published and not yet handed back by vn_amqp_wait, in tag order */
	VnAmqpMessage **inflight;
	int				ninflight;
	int				inflight_cap;
	uint64			inflight_base; /* delivery tag of inflight[0] */
};

static void
ms_to_timeval(int ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/*
 * vn_amqp_describe_url
 *		"host:port/vhost" of an AMQP URL, without its credentials.  False
 *		when the URL does not parse.
 */
bool
vn_amqp_describe_url(const char *url, char *out, size_t outlen)
{
	struct amqp_connection_info ci;
	char					   *copy = pstrdup(url);
	bool						ok;

	amqp_default_connection_info(&ci);
	ok = amqp_parse_url(copy, &ci) == AMQP_STATUS_OK;
	if (ok)
		snprintf(out, outlen, "%s:%d/%s", ci.host, ci.port, ci.vhost);
	else
		strlcpy(out, "(unparsable ventros.amqp_url)", outlen);
	pfree(copy);
	return ok;
}

/* a readable description of a failed RPC reply */
static void
reply_error(amqp_rpc_reply_t r, const char *what, const char *peer, char *err, size_t errlen)
{
	switch (r.reply_type)
	{
		case AMQP_RESPONSE_NORMAL:
			snprintf(err, errlen, "%s on %s: unexpected reply", what, peer);
			break;
		case AMQP_RESPONSE_NONE:
			snprintf(err, errlen, "%s on %s: missing reply", what, peer);
			break;
		case AMQP_RESPONSE_LIBRARY_EXCEPTION:
			snprintf(err, errlen, "%s on %s: %s", what, peer,
					 amqp_error_string2(r.library_error));
			break;
		case AMQP_RESPONSE_SERVER_EXCEPTION:
			if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
			{
				amqp_connection_close_t *m = r.reply.decoded;

				snprintf(err, errlen, "%s on %s: connection closed by broker: %d %.*s",
						 what, peer, m->reply_code, (int) m->reply_text.len,
						 (char *) m->reply_text.bytes);
			}
			else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
			{
				amqp_channel_close_t *m = r.reply.decoded;

				snprintf(err, errlen, "%s on %s: channel closed by broker: %d %.*s",
						 what, peer, m->reply_code, (int) m->reply_text.len,
						 (char *) m->reply_text.bytes);
			}
			else
				snprintf(err, errlen, "%s on %s: broker error (method 0x%08X)",
						 what, peer, r.reply.id);
			break;
	}
}

/*
 * vn_amqp_connect
 *		Connect, log in, open channel 1 in confirm mode and declare the
 *		exchange.  NULL with err filled on failure.
 */
VnAmqp *
vn_amqp_connect(const char *url, int timeout_ms, int heartbeat_s, char *err, size_t errlen)
{
	struct amqp_connection_info ci;
	char					   *copy;
	VnAmqp					   *a;
	amqp_socket_t			   *sock;
	struct timeval				tv;
	amqp_rpc_reply_t			r;
	int							rc;

	if (url == NULL || url[0] == '\0')
	{
		snprintf(err, errlen, "ventros.amqp_url is not set");
		return NULL;
	}
	copy = MemoryContextStrdup(TopMemoryContext, url);
	amqp_default_connection_info(&ci);
	if (amqp_parse_url(copy, &ci) != AMQP_STATUS_OK)
	{
		pfree(copy);
		snprintf(err, errlen, "ventros.amqp_url is not a valid amqp:// URL");
		return NULL;
	}
	a = MemoryContextAllocZero(TopMemoryContext, sizeof(VnAmqp));
	snprintf(a->peer, sizeof(a->peer), "%s:%d/%s", ci.host, ci.port, ci.vhost);
	a->next_tag = 1;
	a->conn = amqp_new_connection();
	sock = amqp_tcp_socket_new(a->conn);
	if (sock == NULL)
	{
		snprintf(err, errlen, "could not create a socket for %s", a->peer);
		goto fail;
	}
	ms_to_timeval(timeout_ms, &tv);
	rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
	if (rc != AMQP_STATUS_OK)
	{
		snprintf(err, errlen, "could not connect to %s: %s", a->peer, amqp_error_string2(rc));
		goto fail;
	}
	amqp_set_handshake_timeout(a->conn, &tv);
	amqp_set_rpc_timeout(a->conn, &tv);
	/*
	 * Heartbeats (the smaller of ours and the broker's interval): a broker
	 * that stops answering without closing the socket (frozen, or a network
	 * that drops everything) is noticed by the next read after two silent
	 * intervals (AMQP_STATUS_HEARTBEAT_TIMEOUT), even when no confirm is
	 * awaited.  librabbitmq sends ours and checks the broker's whenever a
	 * frame is read: the worker polls at least twice per interval.
	 */
	r = amqp_login(a->conn, ci.vhost, 1, VN_AMQP_FRAME_MAX, heartbeat_s, AMQP_SASL_METHOD_PLAIN,
				   ci.user, ci.password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "login refused", a->peer, err, errlen);
		goto fail;
	}
	amqp_channel_open(a->conn, VN_AMQP_CHANNEL);
	r = amqp_get_rpc_reply(a->conn);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "could not open a channel", a->peer, err, errlen);
		goto fail;
	}
	amqp_confirm_select(a->conn, VN_AMQP_CHANNEL);
	r = amqp_get_rpc_reply(a->conn);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "could not enable publisher confirms", a->peer, err, errlen);
		goto fail;
	}
	amqp_exchange_declare(a->conn, VN_AMQP_CHANNEL, amqp_cstring_bytes(VN_AMQP_EXCHANGE),
						  amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
	r = amqp_get_rpc_reply(a->conn);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		reply_error(r, "could not declare exchange " VN_AMQP_EXCHANGE, a->peer, err, errlen);
		goto fail;
	}
	pfree(copy);
	return a;

fail:
	pfree(copy);
	amqp_destroy_connection(a->conn);
	pfree(a);
	return NULL;
}

/*
 * vn_amqp_disconnect
 *		Close (politely when the socket still works) and free.
 */
void
vn_amqp_disconnect(VnAmqp *a)
{
	if (a == NULL)
		return;
	/* a close on a dead socket fails fast; on a live one it is bounded by the RPC timeout */
	amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(a->conn);
	if (a->inflight)
		pfree(a->inflight);
	pfree(a);
}

int
vn_amqp_socket(VnAmqp *a)
{
	return amqp_get_sockfd(a->conn);
}

/* find a message in flight by its message id (returns are rare: linear) */
static VnAmqpMessage *
find_message(VnAmqp *a, amqp_bytes_t id)
{
	for (int i = 0; i < a->ninflight; i++)
	{
		VnAmqpMessage *m = a->inflight[i];

		if (strlen(m->message_id) == id.len && memcmp(m->message_id, id.bytes, id.len) == 0)
			return m;
	}
	return NULL;
}

/*
 * handle_frame
 *		Apply one frame read while confirms are outstanding.  Returns false
 *		when the connection or channel is closing (err filled).
 */
static bool
handle_frame(VnAmqp *a, amqp_frame_t *frame, char *err, size_t errlen)
{
	if (frame->frame_type != AMQP_FRAME_METHOD)
		return true; /* heartbeat or stray content: nothing to do */

	switch (frame->payload.method.id)
	{
		case AMQP_BASIC_ACK_METHOD:
		case AMQP_BASIC_NACK_METHOD:
			{
				bool   ack = frame->payload.method.id == AMQP_BASIC_ACK_METHOD;
				uint64 tag;
				bool   multiple;
				int64  lo,
					hi;

				if (ack)
				{
					amqp_basic_ack_t *m = frame->payload.method.decoded;

					tag = m->delivery_tag;
					multiple = m->multiple;
				}
				else
				{
					amqp_basic_nack_t *m = frame->payload.method.decoded;

					tag = m->delivery_tag;
					multiple = m->multiple;
				}
				hi = (int64) tag - (int64) a->inflight_base;
				lo = multiple ? 0 : hi;
				if (hi >= a->ninflight)
					hi = a->ninflight - 1;
				for (int64 i = Max(lo, 0); i <= hi; i++)
				{
					VnAmqpMessage *m = a->inflight[i];

					if (m->outcome != VN_AMQP_UNCONFIRMED)
						continue;
					if (!ack)
					{
						m->outcome = VN_AMQP_FAILED;
						m->error = "nacked by the broker";
					}
					else if (m->returned)
					{
						/* the broker confirms a return with an ack: the return decides */
						m->outcome = VN_AMQP_FAILED;
						m->error = "returned by the broker: no queue bound for its routing key (mandatory)";
					}
					else
						m->outcome = VN_AMQP_ACKED;
				}
				return true;
			}
		case AMQP_BASIC_RETURN_METHOD:
			{
				amqp_message_t	 message;
				amqp_rpc_reply_t r;
				VnAmqpMessage	*m;

				r = amqp_read_message(a->conn, frame->channel, &message, 0);
				if (r.reply_type != AMQP_RESPONSE_NORMAL)
				{
					reply_error(r, "could not read a returned message", a->peer, err, errlen);
					return false;
				}
				if (message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
				{
					m = find_message(a, message.properties.message_id);
					if (m != NULL)
						m->returned = true; /* settled by the ack that follows */
				}
				amqp_destroy_message(&message);
				return true;
			}
		case AMQP_CHANNEL_CLOSE_METHOD:
			{
				amqp_channel_close_t *m = frame->payload.method.decoded;

				snprintf(err, errlen, "channel closed by broker on %s: %d %.*s", a->peer,
						 m->reply_code, (int) m->reply_text.len, (char *) m->reply_text.bytes);
				return false;
			}
		case AMQP_CONNECTION_CLOSE_METHOD:
			{
				amqp_connection_close_t *m = frame->payload.method.decoded;

				snprintf(err, errlen, "connection closed by broker on %s: %d %.*s", a->peer,
						 m->reply_code, (int) m->reply_text.len, (char *) m->reply_text.bytes);
				return false;
			}
		default:
			return true;
	}
}

/*
 * vn_amqp_publish
 *		Publish n messages (their outcomes reset to UNCONFIRMED) and track
 *		them until vn_amqp_wait hands them back.  False (err filled) when the
 *		connection failed: it must be dropped, and every message still
 *		UNCONFIRMED counts as a failed attempt.
 */
bool
vn_amqp_publish(VnAmqp *a, VnAmqpMessage *msgs, int n, bool mandatory, char *err, size_t errlen)
{
	amqp_table_entry_t		headers[4];
	amqp_basic_properties_t props;

	for (int i = 0; i < n; i++)
	{
		msgs[i].outcome = VN_AMQP_UNCONFIRMED;
		msgs[i].returned = false;
		msgs[i].error = NULL;
	}
	if (a->ninflight + n > a->inflight_cap)
	{
		int cap = Max(a->inflight_cap * 2, a->ninflight + n);

		a->inflight = a->inflight == NULL ? MemoryContextAlloc(TopMemoryContext, sizeof(VnAmqpMessage *) * cap) : repalloc(a->inflight, sizeof(VnAmqpMessage *) * cap);
		a->inflight_cap = cap;
	}
	if (a->ninflight == 0)
		a->inflight_base = a->next_tag;

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
				   AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
				   AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG;
	props.content_type = amqp_cstring_bytes("application/cloudevents+json");
	props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	props.app_id = amqp_cstring_bytes("ventros");
	headers[0].key = amqp_cstring_bytes("tenant_id");
	headers[1].key = amqp_cstring_bytes("aggregate_type");
	headers[2].key = amqp_cstring_bytes("aggregate_id");
	for (int h = 0; h < 3; h++)
		headers[h].value.kind = AMQP_FIELD_KIND_UTF8;
	/* the publish position: what a consumer resumes after (docs/realtime.md) */
	headers[3].key = amqp_cstring_bytes("position");
	headers[3].value.kind = AMQP_FIELD_KIND_I64;
	props.headers.num_entries = 4;
	props.headers.entries = headers;

	for (int i = 0; i < n; i++)
	{
		int rc;

		props.message_id = amqp_cstring_bytes(msgs[i].message_id);
		props.type = amqp_cstring_bytes(msgs[i].routing_key);
		props.timestamp = (uint64_t) msgs[i].timestamp;
		headers[0].value.value.bytes = amqp_cstring_bytes(msgs[i].tenant_id);
		headers[1].value.value.bytes = amqp_cstring_bytes(msgs[i].aggregate_type);
		headers[2].value.value.bytes = amqp_cstring_bytes(msgs[i].aggregate_id);
		headers[3].value.value.i64 = msgs[i].position;
		rc = amqp_basic_publish(a->conn, VN_AMQP_CHANNEL, amqp_cstring_bytes(VN_AMQP_EXCHANGE),
								amqp_cstring_bytes(msgs[i].routing_key), mandatory, 0, &props,
								amqp_cstring_bytes(msgs[i].body));
		if (rc != AMQP_STATUS_OK)
		{
			snprintf(err, errlen, "could not publish to %s: %s", a->peer, amqp_error_string2(rc));
			return false;
		}
		a->inflight[a->ninflight++] = &msgs[i];
		a->next_tag++;
	}
	return true;
}

/* stop tracking the oldest n messages in flight (settled, or given up with the connection) */
static void
release_oldest(VnAmqp *a, int n)
{
	Assert(n <= a->ninflight);
	a->ninflight -= n;
	memmove(a->inflight, a->inflight + n, sizeof(VnAmqpMessage *) * a->ninflight);
	a->inflight_base += n;
	if (a->ninflight == 0 && amqp_release_buffers_ok(a->conn))
		amqp_release_buffers(a->conn);
}

/* whether every one of msgs has its confirm */
bool
vn_amqp_settled(VnAmqpMessage *msgs, int n)
{
	/* confirms come in publish order: the last one settles last */
	for (int i = n - 1; i >= 0; i--)
		if (msgs[i].outcome == VN_AMQP_UNCONFIRMED)
			return false;
	return true;
}

/*
 * vn_amqp_poll
 *		Apply every confirm (ack, nack, return) the broker has sent so far,
 *		without waiting.  False (err filled) when the connection failed.
 */
bool
vn_amqp_poll(VnAmqp *a, char *err, size_t errlen)
{
	for (;;)
	{
		amqp_frame_t   frame;
		struct timeval tv = {0, 0};
		int			   rc;

		rc = amqp_simple_wait_frame_noblock(a->conn, &frame, &tv);
		if (rc == AMQP_STATUS_TIMEOUT)
			return true;
		if (rc != AMQP_STATUS_OK)
		{
			snprintf(err, errlen, "connection to %s lost: %s", a->peer, amqp_error_string2(rc));
			return false;
		}
		if (!handle_frame(a, &frame, err, errlen))
			return false;
	}
}

/*
 * vn_amqp_settle
 *		Whether every one of msgs, the oldest n messages in flight, has its
 *		confirm; if so, stop tracking them.
 */
bool
vn_amqp_settle(VnAmqp *a, VnAmqpMessage *msgs, int n)
{
	if (n == 0)
		return true;
	Assert(a->ninflight >= n && a->inflight[0] == &msgs[0]);
	if (!vn_amqp_settled(msgs, n))
		return false;
	release_oldest(a, n);
	return true;
}

/*
 * vn_amqp_wait
 *		Wait up to timeout_ms until the broker settled every one of msgs,
 *		the oldest n messages in flight, and stop tracking them.  False (err
 *		filled) when the connection failed or the confirms did not come in
 *		time: the connection must be dropped; UNCONFIRMED ones failed.
 */
bool
vn_amqp_wait(VnAmqp *a, VnAmqpMessage *msgs, int n, int timeout_ms, char *err, size_t errlen)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	if (n == 0)
		return true;
	Assert(a->ninflight >= n && a->inflight[0] == &msgs[0]);
	while (!vn_amqp_settled(msgs, n))
	{
		amqp_frame_t   frame;
		struct timeval tv = {0, 100 * 1000};
		int			   rc;

		CHECK_FOR_INTERRUPTS();
		rc = amqp_simple_wait_frame_noblock(a->conn, &frame, &tv);
		if (rc == AMQP_STATUS_TIMEOUT)
		{
			if (GetCurrentTimestamp() >= deadline)
			{
				snprintf(err, errlen, "no publisher confirm from %s within %d ms",
						 a->peer, timeout_ms);
				return false;
			}
			continue;
		}
		if (rc != AMQP_STATUS_OK)
		{
			snprintf(err, errlen, "connection to %s lost: %s", a->peer, amqp_error_string2(rc));
			return false;
		}
		if (!handle_frame(a, &frame, err, errlen))
			return false;
	}
	release_oldest(a, n);
	return true;
}
