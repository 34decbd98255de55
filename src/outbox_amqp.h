/*-------------------------------------------------------------------------
 *
 * outbox_amqp.h
 *	  The outbox publisher's AMQP 0-9-1 client (librabbitmq): one connection,
 *	  one channel in confirm mode, batches published and confirmed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_OUTBOX_AMQP_H
#define VENTROS_OUTBOX_AMQP_H

#define VN_AMQP_EXCHANGE "ventros.events"

/* the broker's verdict on one message of a batch */
typedef enum VnAmqpOutcome
{
	VN_AMQP_UNCONFIRMED = 0, /* no ack yet: the connection died first */
	VN_AMQP_ACKED,
	VN_AMQP_FAILED /* nacked or returned: see error */
} VnAmqpOutcome;

typedef struct VnAmqpMessage
{
	/* in */
	const char *routing_key; /* the event type */
	const char *message_id;	 /* the event id */
	const char *tenant_id;
	const char *aggregate_type;
	const char *aggregate_id;
	const char *body;	   /* the CloudEvents envelope, JSON */
	int64		position;  /* publish position (header "position") */
	int64		timestamp; /* seconds since the Unix epoch */
	/* out */
	VnAmqpOutcome outcome;
	bool		  returned; /* a basic.return came for it */
	const char	 *error;	/* static text when FAILED */
} VnAmqpMessage;

typedef struct VnAmqp VnAmqp; /* opaque; palloc'd in TopMemoryContext */

/* in outbox_amqp.c */
extern VnAmqp *vn_amqp_connect(const char *url, int timeout_ms, int heartbeat_s,
							   char *err, size_t errlen);
extern void	   vn_amqp_disconnect(VnAmqp *a);
extern int	   vn_amqp_socket(VnAmqp *a);
extern bool	   vn_amqp_publish(VnAmqp *a, VnAmqpMessage *msgs, int n, bool mandatory,
							   char *err, size_t errlen);
extern bool	   vn_amqp_poll(VnAmqp *a, char *err, size_t errlen);
extern bool	   vn_amqp_settled(VnAmqpMessage *msgs, int n);
extern bool	   vn_amqp_settle(VnAmqp *a, VnAmqpMessage *msgs, int n);
extern bool	   vn_amqp_wait(VnAmqp *a, VnAmqpMessage *msgs, int n, int timeout_ms,
							char *err, size_t errlen);
extern bool	   vn_amqp_describe_url(const char *url, char *out, size_t outlen);

#endif /* VENTROS_OUTBOX_AMQP_H */
