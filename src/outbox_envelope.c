/*-------------------------------------------------------------------------
 *
 * outbox_envelope.c
 *	  A claimed outbox row, as the message the publisher sends: its columns
 *	  by name, and its CloudEvents envelope built without a jsonb value per
 *	  event (the same members and values as ventros.envelope() in SQL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "outbox_envelope.h"

/* a non-null text or uuid column of a claimed row, as a C string in the current context */
char *
vn_claimed_text(HeapTuple t, TupleDesc d, VnClaimColumn col)
{
	bool isnull;

	return TextDatumGetCString(SPI_getbinval(t, d, col, &isnull));
}

char *
vn_claimed_uuid(HeapTuple t, TupleDesc d, VnClaimColumn col)
{
	bool isnull;

	return DatumGetCString(DirectFunctionCall1(uuid_out, SPI_getbinval(t, d, col, &isnull)));
}

/*
 * vn_outbox_envelope
 *		The CloudEvents envelope of a claimed row, as ventros.envelope()
 *		builds it in SQL (same members and values; jsonb's rendering of the
 *		time), without a jsonb value per event.
 */
void
vn_outbox_envelope(StringInfo buf, HeapTuple t, TupleDesc d, const VnAmqpMessage *msg)
{
	bool		isnull;
	Datum		v;
	const char *tenant = msg->tenant_id;
	const char *aggregate_type = msg->aggregate_type;

	appendStringInfoString(buf, "{\"specversion\": \"1.0\", \"id\": \"");
	appendStringInfoString(buf, msg->message_id);
	appendStringInfoString(buf, "\", \"source\": ");
	{
		StringInfoData src;

		initStringInfo(&src);
		appendStringInfo(&src, "/ventros/%s/%s", tenant, aggregate_type);
		escape_json(buf, src.data);
		pfree(src.data);
	}
	appendStringInfoString(buf, ", \"type\": ");
	escape_json(buf, msg->routing_key);
	appendStringInfo(buf, ", \"subject\": \"%s\", \"time\": ", msg->aggregate_id);
	v = SPI_getbinval(t, d, CL_OCCURRED_AT, &isnull);
	if (isnull)
		appendStringInfoString(buf, "null");
	else
	{
		char ts[MAXDATELEN + 1];

		JsonEncodeDateTime(ts, v, TIMESTAMPTZOID, NULL);
		appendStringInfo(buf, "\"%s\"", ts);
	}
	appendStringInfoString(buf, ", \"datacontenttype\": \"application/json\", \"tenantid\": ");
	escape_json(buf, tenant);
	appendStringInfoString(buf, ", \"aggregatetype\": ");
	escape_json(buf, aggregate_type);
	appendStringInfo(buf, ", \"aggregateid\": \"%s\", \"aggregateversion\": ", msg->aggregate_id);
	v = SPI_getbinval(t, d, CL_AGGREGATE_VERSION, &isnull);
	if (isnull)
		appendStringInfoString(buf, "null");
	else
		appendStringInfo(buf, "%d", DatumGetInt32(v));
	appendStringInfo(buf, ", \"sequence\": " INT64_FORMAT ", \"actor\": ",
					 DatumGetInt64(SPI_getbinval(t, d, CL_SEQ, &isnull)));
	v = SPI_getbinval(t, d, CL_ACTOR, &isnull);
	if (isnull)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, TextDatumGetCString(v));
	appendStringInfoString(buf, ", \"data\": ");
	v = SPI_getbinval(t, d, CL_PAYLOAD, &isnull);
	if (isnull)
		appendStringInfoString(buf, "null");
	else
	{
		Jsonb *jb = DatumGetJsonbP(v);

		JsonbToCString(buf, &jb->root, VARSIZE(jb));
	}
	appendStringInfoChar(buf, '}');
}
