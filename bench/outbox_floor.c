/*
 * outbox_floor.c: the floor of bench/outbox.sh.  Publishes COUNT messages
 * straight to the exchange ventros.events with publisher confirms, waiting
 * for every confirm of a batch of BATCH before the next batch, with the same
 * properties, headers and body size as the outbox publisher's messages.
 * Prints one line: "<count> <seconds> <msgs/s> <CPU seconds used>".
 *
 * usage: outbox_floor HOST PORT USER PASSWORD COUNT BATCH BODYFILE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

static void
die_on(amqp_rpc_reply_t r, const char *what)
{
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		fprintf(stderr, "outbox_floor: %s failed (%d)\n", what, r.reply_type);
		exit(1);
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	amqp_connection_state_t conn;
	amqp_socket_t		   *sock;
	amqp_basic_properties_t props;
	amqp_table_entry_t		headers[3];
	char				   *body;
	long					len;
	FILE				   *f;
	int						count,
		batch;
	uint64_t tag = 0;
	double	 t0,
		t1;
	char id[64];

	if (argc != 8)
	{
		fprintf(stderr, "usage: outbox_floor HOST PORT USER PASSWORD COUNT BATCH BODYFILE\n");
		return 2;
	}
	count = atoi(argv[5]);
	batch = atoi(argv[6]);
	f = fopen(argv[7], "rb");
	if (!f)
	{
		perror(argv[7]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	body = malloc(len + 1);
	if (fread(body, 1, len, f) != (size_t) len)
		return 1;
	body[len] = '\0';
	fclose(f);

	conn = amqp_new_connection();
	sock = amqp_tcp_socket_new(conn);
	if (amqp_socket_open(sock, argv[1], atoi(argv[2])) != AMQP_STATUS_OK)
	{
		fprintf(stderr, "outbox_floor: cannot connect\n");
		return 1;
	}
	die_on(amqp_login(conn, "/", 1, 131072, 0, AMQP_SASL_METHOD_PLAIN, argv[3], argv[4]), "login");
	amqp_channel_open(conn, 1);
	die_on(amqp_get_rpc_reply(conn), "channel.open");
	amqp_confirm_select(conn, 1);
	die_on(amqp_get_rpc_reply(conn), "confirm.select");
	amqp_exchange_declare(conn, 1, amqp_cstring_bytes("ventros.events"), amqp_cstring_bytes("topic"),
						  0, 1, 0, 0, amqp_empty_table);
	die_on(amqp_get_rpc_reply(conn), "exchange.declare");

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
				   AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
				   AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG;
	props.content_type = amqp_cstring_bytes("application/cloudevents+json");
	props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	props.app_id = amqp_cstring_bytes("ventros");
	props.type = amqp_cstring_bytes("benchob.happened");
	headers[0].key = amqp_cstring_bytes("tenant_id");
	headers[1].key = amqp_cstring_bytes("aggregate_type");
	headers[2].key = amqp_cstring_bytes("aggregate_id");
	for (int h = 0; h < 3; h++)
		headers[h].value.kind = AMQP_FIELD_KIND_UTF8;
	headers[0].value.value.bytes = amqp_cstring_bytes("benchfloor");
	headers[1].value.value.bytes = amqp_cstring_bytes("benchob");
	headers[2].value.value.bytes = amqp_cstring_bytes("00000000-0000-4000-8000-000000000001");
	props.headers.num_entries = 3;
	props.headers.entries = headers;

	t0 = now_s();
	for (int sent = 0; sent < count;)
	{
		int		 n = count - sent < batch ? count - sent : batch;
		uint64_t want;

		for (int i = 0; i < n; i++)
		{
			snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d", sent + i);
			props.message_id = amqp_cstring_bytes(id);
			props.timestamp = (uint64_t) time(NULL);
			if (amqp_basic_publish(conn, 1, amqp_cstring_bytes("ventros.events"),
								   amqp_cstring_bytes("benchob.happened"), 0, 0, &props,
								   amqp_cstring_bytes(body)) != AMQP_STATUS_OK)
			{
				fprintf(stderr, "outbox_floor: publish failed\n");
				return 1;
			}
		}
		want = tag + n;
		while (tag < want)
		{
			amqp_frame_t frame;

			if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK)
			{
				fprintf(stderr, "outbox_floor: connection lost\n");
				return 1;
			}
			if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD)
				tag = ((amqp_basic_ack_t *) frame.payload.method.decoded)->delivery_tag;
			else if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_NACK_METHOD)
			{
				fprintf(stderr, "outbox_floor: nack\n");
				return 1;
			}
		}
		amqp_maybe_release_buffers(conn);
		sent += n;
	}
	t1 = now_s();
	{
		struct rusage ru;

		getrusage(RUSAGE_SELF, &ru);
		printf("%d %.3f %.0f %.3f\n", count, t1 - t0, count / (t1 - t0),
			   ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	}
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
	free(body);
	return 0;
}
