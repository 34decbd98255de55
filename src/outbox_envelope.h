/*-------------------------------------------------------------------------
 *
 * outbox_envelope.h
 *	  A claimed outbox row, as the message the publisher sends.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_OUTBOX_ENVELOPE_H
#define VENTROS_OUTBOX_ENVELOPE_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"

#include "outbox_amqp.h"

/*
 * The columns of ventros.outbox_claim, in the order of its RETURNS TABLE
 * (SPI attribute numbers).
 */
typedef enum VnClaimColumn
{
	CL_TENANT_ID = 1,
	CL_SEQ,
	CL_EVENT_ID,
	CL_EVENT_TYPE,
	CL_AGGREGATE_TYPE,
	CL_AGGREGATE_ID,
	CL_AGGREGATE_VERSION,
	CL_PAYLOAD,
	CL_ACTOR,
	CL_OCCURRED_AT,
	CL_ATTEMPTS,
	CL_OUTBOX_ROW,
	CL_QUEUE_ROW
} VnClaimColumn;

/* in outbox_envelope.c; strings in the current memory context */
extern char *vn_claimed_text(HeapTuple t, TupleDesc d, VnClaimColumn col);
extern char *vn_claimed_uuid(HeapTuple t, TupleDesc d, VnClaimColumn col);
extern void	 vn_outbox_envelope(StringInfo buf, HeapTuple t, TupleDesc d, const VnAmqpMessage *msg);

#endif /* VENTROS_OUTBOX_ENVELOPE_H */
