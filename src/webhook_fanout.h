/*-------------------------------------------------------------------------
 *
 * webhook_fanout.h
 *	  Webhook subscriptions: events that match a subscription become
 *	  deliveries in the event's own transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_WEBHOOK_FANOUT_H
#define VENTROS_WEBHOOK_FANOUT_H

#include "emit.h"

/* in webhook_fanout.c */
extern void vn_webhook_fanout_init(void);
extern void vn_webhook_fanout(const VnEvent *event, pg_uuid_t *event_id);

#endif /* VENTROS_WEBHOOK_FANOUT_H */
