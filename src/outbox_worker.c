/*-------------------------------------------------------------------------
 *
 * outbox_worker.c
 *	  The outbox publisher: delivers every committed ventros.outbox row to
 *	  the RabbitMQ exchange ventros.events, at least once, in order per
 *	  aggregate, within milliseconds of its commit.
 *
 * One background worker per database named in ventros.databases,
 * registered at preload, restarted by the postmaster after a crash
 * (bgw_restart_time).  An event loop, worker_spi's shape:
 *
 *	1. claim a batch in one short transaction (ventros.outbox_claim): no row
 *	   is written; rows of aggregates with a row in flight are skipped (the
 *	   worker passes their ids, kept in memory); envelopes built here in C;
 *	2. publish it, outside any transaction (outbox_amqp.c), and go on
 *	   without waiting for its confirms: new commits are claimed and
 *	   published at once, up to 2 x ventros.outbox_batch_size messages in
 *	   flight (a ring of batches, in publish order);
 *	3. as confirms come in, record the settled batches in one transaction:
 *	   acked rows published (their one write), nacked, returned or
 *	   unconfirmed rows failed (an attempt counted; retry after backoff, dead
 *	   after ventros.outbox_max_attempts).
 *
 * Order per aggregate holds: one channel keeps publish order, and a later
 * row of an aggregate is claimed only once its earlier rows are recorded
 * (never while one is in flight, whose failure would have to come first).
 *
 * Publish order is kept too: each claimed event gets a position from the
 * sequence ventros.outbox_position when its batch is logged in flight
 * (ventros.outbox_log_in_flight, in the claim's transaction, committed and
 * flushed before the batch is sent), carried in its message (header
 * "position") and recorded with it (ventros.outbox.position).  Only the
 * lock holder takes positions and it sends batches in the order it logged
 * them, so positions grow in the order a consumer receives the events,
 * which seq does not (a seq is taken before commit): the event stream
 * resumes by position (docs/realtime.md).
 *
 * One publisher per database: the claim takes the publisher lock, a
 * session lock of a class no SQL function can take (locks.c), which this
 * worker takes at start and holds while it lives, so no other session
 * publishes a row at the same time, and no tenant can hold it.  All
 * progress is row state, so the worker may die anywhere: the next one
 * publishes again what was not recorded as confirmed (the only source of
 * duplicates).  SIGTERM is a shutdown request: the worker stops claiming,
 * records the confirms of what it has in flight (bounded wait), and exits.
 *
 * Wake-up (pg_net's pattern): vn_emit() calls vn_outbox_wake_at_commit(),
 * which only sets a backend-local flag; at XACT_EVENT_COMMIT a transaction
 * that wrote events sets the latch of its database's worker, found in
 * shared memory.  An aborted transaction wakes nobody.  The worker also
 * wakes every ventros.outbox_poll_interval (rows waiting for their retry
 * time, or a commit whose wake-up was missed, such as COMMIT PREPARED), and
 * whenever the broker's socket is readable (confirms, or a broker that
 * closes the connection: noticed at once).  While disconnected it claims
 * nothing and reconnects with exponential backoff and jitter.
 *
 * The publishers run on the worker kit (worker.c): registration, the
 * shared slot per configured database (the kit's part, then the broker
 * connection and counters), attach, loop, transaction steps and the
 * install check are the kit's.  The loop is a few named steps:
 * ensure_ready, ensure_connected, prune_if_due, claim_and_publish (which
 * records what the confirms settled), wait_for_work.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/itemptr.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "outbox_amqp.h"
#include "outbox_envelope.h"
#include "outbox_worker.h"
#include "shmem.h"
#include "worker.h"

#define VN_OUTBOX_CONNECT_TIMEOUT_MS 5000
#define VN_OUTBOX_PRUNE_EVERY_MS 60000
#define VN_OUTBOX_PRUNE_CHUNK 10000
#define VN_OUTBOX_ERRLEN VN_WORKER_ERRLEN
#define VN_OUTBOX_MAX_BATCHES 16 /* batches in flight at most (a ring) */

/* A publisher's shared slot: the kit's part, then the broker's. */
typedef struct VnOutboxSlot
{
	VnWorkerSlot w;
	bool		 connected; /* to the broker */
	TimestampTz	 connected_since;
	int64		 published; /* messages confirmed, since server start */
	int64		 failed;	/* failed attempts, since server start */
	TimestampTz	 last_publish_at;
} VnOutboxSlot;


/*
 * The statements of the hot path, prepared once per worker and kept: a
 * batch of one event (the usual case at low rates) otherwise spends most of
 * its own time parsing and planning these four statements.
 */
typedef enum VnSavedStmt
{
	VN_SAVED_CLAIM,
	VN_SAVED_LOG_FLIGHT,
	VN_SAVED_PUBLISHED,
	VN_SAVED_CLEAR_FLIGHT,
	VN_SAVED_COUNT
} VnSavedStmt;

static SPIPlanPtr saved_plans[VN_SAVED_COUNT];

static char *vn_amqp_url = NULL;
static int	 vn_outbox_batch_size = 1000;
static int	 vn_outbox_poll_interval = 1000;
static int	 vn_outbox_backoff_min = 100;
static int	 vn_outbox_backoff_max = 30000;
static int	 vn_outbox_max_attempts = 10;
static int	 vn_outbox_retention = 7 * 24 * 3600;
static int	 vn_outbox_confirm_timeout = 30000;
static int	 vn_outbox_heartbeat = 10;
static bool	 vn_outbox_mandatory = false;

static VnWorkerKind outbox_kind = {
	.type = "ventros outbox publisher",
	.main = "vn_outbox_worker_main",
	.slot_size = sizeof(VnOutboxSlot),
	.drain_on_sigterm = true,
	.old_databases = "ventros.outbox_databases",
	.old_databases_list = true,
};

/*
 * What the publisher calls: the first is there once the extension is, the
 * others once its install script is as recent as the library.
 */
static const char *const outbox_functions[] = {
	"ventros.outbox_claim(integer,uuid[])",
	"ventros.outbox_published(bigint[],tid[],tid[],bigint[])",
	"ventros.outbox_log_in_flight(bigint[])",
	"ventros.outbox_recover_in_flight(integer,integer,integer)",
	"ventros.outbox_failed(bigint[],text[],integer,integer,integer)",
	"ventros.outbox_prune(interval,integer)",
};

/* backend: this transaction wrote events */
static int vn_outbox_wake_target = -1; /* set in the postmaster, inherited */

/* worker state (the worker process only) */
static VnOutboxSlot *my_slot = NULL;
static VnAmqp		*my_amqp = NULL;
static char			*my_url = NULL; /* the URL my_amqp was opened with */

PG_FUNCTION_INFO_V1(ventros_outbox_wake);
PG_FUNCTION_INFO_V1(ventros_outbox_worker_state);

/* ---- wake at commit ----------------------------------------------------- */

/*
 * vn_outbox_wake_at_commit
 *		Called for every event written: the publisher of this database is
 *		woken when (and only if) the current transaction commits.
 */
void
vn_outbox_wake_at_commit(void)
{
	vn_wake_at_commit(vn_outbox_wake_target);
}

/* The latch of this database's publisher, for the wake at commit. */
static Latch *
vn_outbox_find_latch(void)
{
	return vn_worker_find_latch(&outbox_kind, 0, MyDatabaseId);
}

/*
 * ventros.outbox_wake() RETURNS void
 *		Wake the publisher when the current transaction commits (replay).
 */
Datum
ventros_outbox_wake(PG_FUNCTION_ARGS)
{
	vn_outbox_wake_at_commit();
	PG_RETURN_VOID();
}

/* ---- status ------------------------------------------------------------- */

/*
 * ventros.outbox_worker_state()
 *		The shared counters of the publisher of the current database; a row
 *		of NULLs (connected false) when no publisher serves it.
 */
Datum
ventros_outbox_worker_state(PG_FUNCTION_ARGS)
{
	TupleDesc	 desc;
	Datum		 values[9];
	bool		 nulls[9];
	VnOutboxSlot copy;
	bool		 found;

	found = vn_worker_database_state(&outbox_kind, fcinfo, &desc, &copy);

	memset(nulls, true, sizeof(nulls));
	values[2] = BoolGetDatum(false);
	nulls[2] = false;
	if (found)
	{
		values[0] = CStringGetTextDatum(copy.w.database);
		nulls[0] = false;
		if (copy.w.pid != 0)
		{
			values[1] = Int32GetDatum(copy.w.pid);
			nulls[1] = false;
		}
		values[2] = BoolGetDatum(copy.w.pid != 0 && copy.connected);
		if (copy.w.pid != 0 && copy.connected)
		{
			values[3] = TimestampTzGetDatum(copy.connected_since);
			nulls[3] = false;
		}
		values[4] = Int64GetDatum(copy.published);
		values[5] = Int64GetDatum(copy.failed);
		nulls[4] = nulls[5] = false;
		if (copy.last_publish_at != 0)
		{
			values[6] = TimestampTzGetDatum(copy.last_publish_at);
			nulls[6] = false;
		}
		if (copy.w.last_error[0] != '\0')
		{
			values[7] = CStringGetTextDatum(copy.w.last_error);
			values[8] = TimestampTzGetDatum(copy.w.last_error_at);
			nulls[7] = nulls[8] = false;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* ---- the worker ---------------------------------------------------------- */

static void
set_connected(bool connected)
{
	vn_worker_lock(&outbox_kind);
	my_slot->connected = connected;
	my_slot->connected_since = connected ? GetCurrentTimestamp() : 0;
	vn_worker_unlock(&outbox_kind);
}

static void
disconnect(void)
{
	if (my_amqp != NULL)
	{
		vn_amqp_disconnect(my_amqp);
		my_amqp = NULL;
	}
	if (my_url != NULL)
	{
		pfree(my_url);
		my_url = NULL;
	}
	set_connected(false);
}

/* before the kit clears the slot: close the broker connection */
static void
worker_exit(int code, Datum arg)
{
	if (my_amqp != NULL)
	{
		vn_amqp_disconnect(my_amqp);
		my_amqp = NULL;
	}
	set_connected(false);
}

/* milliseconds to wait after the n-th consecutive failure: exponential, capped, jittered */
static long
backoff_ms(int failures)
{
	double ms = vn_outbox_backoff_min;
	int	   max = Max(vn_outbox_backoff_max, vn_outbox_backoff_min);

	for (int i = 1; i < failures && ms < max; i++)
		ms *= 2;
	if (ms > max)
		ms = max;
	/* jitter in [50%, 100%]: publishers of many databases do not reconnect in step */
	return (long) (ms * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

/* runs one of the saved statements, preparing it the first time */
static int
execute_saved(VnSavedStmt which, const char *sql, int nargs, Oid *argtypes, Datum *values, long count)
{
	if (saved_plans[which] == NULL)
	{
		SPIPlanPtr plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the plan of \"%s\"", sql);
		saved_plans[which] = plan;
	}
	return SPI_execute_plan(saved_plans[which], values, NULL, false, count);
}

/*
 * schema_ready
 *		Whether this database has the extension (the publisher's functions)
 *		and this worker holds the publisher lock (one publisher per
 *		database: another session holding it is an error to show, and a
 *		reason to try again later).
 */
static bool
schema_ready(const char *dbname)
{
	const char	 *missing;
	bool		  installed;
	bool		  ready;
	bool		  locked = false;
	bool		  isnull;
	MemoryContext caller = vn_worker_begin("ventros outbox: checking the extension");

	/*
	 * Installed at all, and with every function this library calls: a
	 * database whose install script predates the library (the same version
	 * rebuilt) is reported and waited for, not crashed on in a loop.
	 */
	missing = vn_worker_missing_function(outbox_functions, lengthof(outbox_functions));
	installed = missing != outbox_functions[0];
	ready = missing == NULL;
	if (ready)
	{
		/* the claim takes it too; taken here, a holder elsewhere is reported */
		if (SPI_execute("SELECT ventros.outbox_publisher_lock()", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not take the outbox publisher lock");
		locked = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (ready && locked)
	{
		/* batches a crashed predecessor sent but never recorded */
		Oid	  argtypes[3] = {INT4OID, INT4OID, INT4OID};
		Datum args[3];
		int	  left_behind;

		args[0] = Int32GetDatum(vn_outbox_max_attempts);
		args[1] = Int32GetDatum(vn_outbox_backoff_min);
		args[2] = Int32GetDatum(vn_outbox_backoff_max);
		if (SPI_execute_with_args("SELECT ventros.outbox_recover_in_flight($1, $2, $3)",
								  3, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "ventros.outbox_recover_in_flight failed");
		left_behind = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (left_behind > 0)
			ereport(LOG,
					(errmsg("ventros outbox publisher: %d events were in flight when the previous publisher stopped; a failed attempt was counted for those not published",
							left_behind)));
	}
	vn_worker_end(caller);
	if (!installed)
	{
		char msg[VN_OUTBOX_ERRLEN];

		snprintf(msg, sizeof(msg), "extension ventros is not installed in database \"%s\"", dbname);
		vn_worker_set_error(msg);
	}
	else if (!ready)
	{
		char msg[VN_OUTBOX_ERRLEN];

		snprintf(msg, sizeof(msg),
				 "the ventros SQL installed in database \"%s\" is older than the loaded library: update or recreate the extension",
				 dbname);
		vn_worker_set_error(msg);
	}
	else if (!locked)
		vn_worker_set_error("another session holds the outbox publisher lock of this database (ventros.outbox_claim)");
	return ready && locked;
}

static ArrayType *
text_array(char **items, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT);
}

static ArrayType *
tid_array(ItemPointerData *items, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(&items[i]);
	return construct_array(d, n, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT);
}

static ArrayType *
int8_array(int64 *items, int n)
{
	Datum *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(items[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/*
 * A claimed batch: its rows and their messages, in its own memory context.
 * Batches in flight form a FIFO (ring) in publish order, which is also the
 * order their confirms come in.
 */
typedef struct VnBatch
{
	MemoryContext	 ctx;
	int				 n;
	VnAmqpMessage	*msgs;
	char		   **tenants;
	int64			*seqs;
	int64			*positions;	  /* publish position of each (outbox_log_in_flight) */
	ItemPointerData *outbox_rows; /* where the claim found each event ... */
	ItemPointerData *queue_rows;  /* ... and its queue row */
	Datum			*aggregates;  /* uuid Datums: the in-flight set of the next claims */
	int64			 flight_id;	  /* its ventros.outbox_in_flight row (0: none) */
	TimestampTz		 published_at;
} VnBatch;

static VnBatch ring[VN_OUTBOX_MAX_BATCHES];
static int	   ring_head = 0;  /* oldest batch in flight */
static int	   ring_count = 0; /* batches in flight */
static int	   ring_msgs = 0;  /* messages in flight */

#define RING_AT(i) (&ring[(ring_head + (i)) % VN_OUTBOX_MAX_BATCHES])

/* messages in flight at most: the next claim is limited to what fits */
static int
max_in_flight(void)
{
	return 2 * vn_outbox_batch_size;
}

/*
 * claim_batch
 *		Claim up to limit rows into b, in the caller's transaction (no row
 *		written): rows of aggregates with a row in flight are skipped.
 */
static void
claim_batch(VnBatch *b, int limit)
{
	MemoryContext old;
	Oid			  argtypes[2] = {INT4OID, UUIDARRAYOID};
	Datum		  args[2];
	Datum		 *inflight;
	int			  ninflight = 0;
	int64		  now_s = (int64) time(NULL);

	MemoryContextReset(b->ctx);
	b->n = 0;
	inflight = palloc(sizeof(Datum) * Max(ring_msgs, 1));
	for (int i = 0; i < ring_count; i++)
	{
		VnBatch *f = RING_AT(i);

		for (int j = 0; j < f->n; j++)
			inflight[ninflight++] = f->aggregates[j];
	}
	args[0] = Int32GetDatum(limit);
	args[1] = PointerGetDatum(construct_array(inflight, ninflight, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	if (execute_saved(VN_SAVED_CLAIM, "SELECT * FROM ventros.outbox_claim($1, $2)",
					  2, argtypes, args, 0) != SPI_OK_SELECT)
		elog(ERROR, "ventros.outbox_claim failed");
	old = MemoryContextSwitchTo(b->ctx);
	b->n = (int) SPI_processed;
	b->msgs = palloc0(sizeof(VnAmqpMessage) * Max(b->n, 1));
	b->tenants = palloc(sizeof(char *) * Max(b->n, 1));
	b->seqs = palloc(sizeof(int64) * Max(b->n, 1));
	b->outbox_rows = palloc(sizeof(ItemPointerData) * Max(b->n, 1));
	b->queue_rows = palloc(sizeof(ItemPointerData) * Max(b->n, 1));
	b->aggregates = palloc(sizeof(Datum) * Max(b->n, 1));
	for (int i = 0; i < b->n; i++)
	{
		HeapTuple	   t = SPI_tuptable->vals[i];
		TupleDesc	   d = SPI_tuptable->tupdesc;
		bool		   isnull;
		StringInfoData body;
		pg_uuid_t	  *agg;

		b->tenants[i] = vn_claimed_text(t, d, CL_TENANT_ID);
		b->seqs[i] = DatumGetInt64(SPI_getbinval(t, d, CL_SEQ, &isnull));
		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(t, d, CL_OUTBOX_ROW, &isnull)), &b->outbox_rows[i]);
		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(t, d, CL_QUEUE_ROW, &isnull)), &b->queue_rows[i]);
		agg = palloc(sizeof(pg_uuid_t));
		memcpy(agg, DatumGetUUIDP(SPI_getbinval(t, d, CL_AGGREGATE_ID, &isnull)), sizeof(pg_uuid_t));
		b->aggregates[i] = UUIDPGetDatum(agg);
		b->msgs[i].message_id = vn_claimed_uuid(t, d, CL_EVENT_ID);
		b->msgs[i].routing_key = vn_claimed_text(t, d, CL_EVENT_TYPE);
		b->msgs[i].aggregate_type = vn_claimed_text(t, d, CL_AGGREGATE_TYPE);
		b->msgs[i].aggregate_id = vn_claimed_uuid(t, d, CL_AGGREGATE_ID);
		b->msgs[i].tenant_id = b->tenants[i];
		initStringInfo(&body);
		vn_outbox_envelope(&body, t, d, &b->msgs[i]);
		b->msgs[i].body = body.data;
		b->msgs[i].timestamp = now_s;
	}
	MemoryContextSwitchTo(old);

	/*
	 * The batch is in flight once this transaction commits: log it, with
	 * the publish position of each event (in the order it is sent).
	 */
	b->flight_id = 0;
	b->positions = NULL;
	if (b->n > 0)
	{
		Oid		   seqtype[1] = {INT8ARRAYOID};
		Datum	   seqarg[1];
		bool	   isnull;
		ArrayType *pos;
		Datum	  *items;
		int		   nitems;

		seqarg[0] = PointerGetDatum(int8_array(b->seqs, b->n));
		if (execute_saved(VN_SAVED_LOG_FLIGHT, "SELECT id, positions FROM ventros.outbox_log_in_flight($1)",
						  1, seqtype, seqarg, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "could not log the outbox batch in flight");
		b->flight_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		old = MemoryContextSwitchTo(b->ctx);
		pos = DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		deconstruct_array(pos, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &items, NULL, &nitems);
		if (nitems != b->n)
			elog(ERROR, "ventros.outbox_log_in_flight returned %d positions for %d events", nitems, b->n);
		b->positions = palloc(sizeof(int64) * b->n);
		for (int i = 0; i < b->n; i++)
		{
			b->positions[i] = DatumGetInt64(items[i]);
			b->msgs[i].position = b->positions[i];
		}
		MemoryContextSwitchTo(old);
	}
}

/*
 * record_batches
 *		Record the outcome of the oldest count batches in flight (in the
 *		caller's transaction when in_xact, else in one of its own): acked
 *		rows published, the others failed attempts, with their own error or
 *		conn_error (the connection failed before their confirm came).  Takes
 *		them out of the ring.
 */
static void
record_batches(int count, const char *conn_error, bool in_xact)
{
	char **bad_errors;
	int64 *ok_seqs,
		*ok_positions,
		*bad_seqs;
	ItemPointerData *ok_outbox_rows,
		*ok_queue_rows;
	int total = 0,
		nacked = 0,
		nfailed = 0,
		ndead = 0;
	MemoryContext tmp,
		old,
		caller = NULL;

	if (count == 0)
		return;
	for (int k = 0; k < count; k++)
		total += RING_AT(k)->n;
	tmp = AllocSetContextCreate(CurrentMemoryContext, "ventros outbox record", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);
	ok_seqs = palloc(sizeof(int64) * Max(total, 1));
	ok_positions = palloc(sizeof(int64) * Max(total, 1));
	ok_outbox_rows = palloc(sizeof(ItemPointerData) * Max(total, 1));
	ok_queue_rows = palloc(sizeof(ItemPointerData) * Max(total, 1));
	bad_seqs = palloc(sizeof(int64) * Max(total, 1));
	bad_errors = palloc(sizeof(char *) * Max(total, 1));
	for (int k = 0; k < count; k++)
	{
		VnBatch *b = RING_AT(k);

		for (int i = 0; i < b->n; i++)
		{
			if (b->msgs[i].outcome == VN_AMQP_ACKED)
			{
				ok_outbox_rows[nacked] = b->outbox_rows[i];
				ok_queue_rows[nacked] = b->queue_rows[i];
				ok_positions[nacked] = b->positions[i];
				ok_seqs[nacked++] = b->seqs[i];
			}
			else
			{
				bad_seqs[nfailed] = b->seqs[i];
				bad_errors[nfailed++] = pstrdup(b->msgs[i].outcome == VN_AMQP_FAILED ? b->msgs[i].error : (conn_error ? conn_error : "not confirmed"));
			}
		}
	}
	MemoryContextSwitchTo(old);

	if (total > 0)
	{
		if (!in_xact)
			caller = vn_worker_begin("ventros outbox: recording confirms");
		if (nacked > 0)
		{
			Oid	  argtypes[4] = {INT8ARRAYOID, TIDARRAYOID, TIDARRAYOID, INT8ARRAYOID};
			Datum args[4];

			args[0] = PointerGetDatum(int8_array(ok_seqs, nacked));
			args[1] = PointerGetDatum(tid_array(ok_outbox_rows, nacked));
			args[2] = PointerGetDatum(tid_array(ok_queue_rows, nacked));
			args[3] = PointerGetDatum(int8_array(ok_positions, nacked));
			if (execute_saved(VN_SAVED_PUBLISHED, "SELECT ventros.outbox_published($1, $2, $3, $4)",
							  4, argtypes, args, 1) != SPI_OK_SELECT)
				elog(ERROR, "ventros.outbox_published failed");
		}
		if (nfailed > 0)
		{
			Oid	  argtypes[5] = {INT8ARRAYOID, TEXTARRAYOID, INT4OID, INT4OID, INT4OID};
			Datum args[5];
			bool  isnull;

			args[0] = PointerGetDatum(int8_array(bad_seqs, nfailed));
			args[1] = PointerGetDatum(text_array(bad_errors, nfailed));
			args[2] = Int32GetDatum(vn_outbox_max_attempts);
			args[3] = Int32GetDatum(vn_outbox_backoff_min);
			args[4] = Int32GetDatum(vn_outbox_backoff_max);
			if (SPI_execute_with_args("SELECT ventros.outbox_failed($1, $2, $3, $4, $5)",
									  5, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "ventros.outbox_failed failed");
			ndead = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
		{
			Oid	   idtype[1] = {INT8ARRAYOID};
			Datum  idarg[1];
			int64 *ids = palloc(sizeof(int64) * count);
			int	   nids = 0;

			for (int k = 0; k < count; k++)
				if (RING_AT(k)->flight_id != 0)
					ids[nids++] = RING_AT(k)->flight_id;
			idarg[0] = PointerGetDatum(int8_array(ids, nids));
			if (nids > 0 &&
				execute_saved(VN_SAVED_CLEAR_FLIGHT, "DELETE FROM ventros.outbox_in_flight WHERE id = ANY ($1)",
							  1, idtype, idarg, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not clear the outbox batches in flight");
		}
		if (!in_xact)
			vn_worker_end(caller);
	}

	vn_worker_lock(&outbox_kind);
	my_slot->published += nacked;
	my_slot->failed += nfailed;
	if (nacked > 0)
		my_slot->last_publish_at = GetCurrentTimestamp();
	vn_worker_unlock(&outbox_kind);

	if (ndead > 0)
		ereport(WARNING,
				(errmsg("ventros outbox publisher: %d events dead-lettered after %d attempts",
						ndead, vn_outbox_max_attempts),
				 errhint("See ventros.outbox rows with status 'dead'; ventros.replay_dead_events() puts them back.")));
	if (nfailed > 0 && conn_error == NULL)
		vn_worker_set_error(bad_errors[0]);
	MemoryContextDelete(tmp);

	for (int k = 0; k < count; k++)
	{
		ring_msgs -= RING_AT(0)->n;
		RING_AT(0)->n = 0;
		ring_head = (ring_head + 1) % VN_OUTBOX_MAX_BATCHES;
		ring_count--;
	}
}

/* the connection failed (err): what was not confirmed failed with it */
static void
connection_failed(const char *err)
{
	record_batches(ring_count, err, false);
	vn_worker_set_error(err);
	disconnect();
}

/*
 * step
 *		One transaction: record the batches at the head of the ring that
 *		the confirms settled, then (when claim) claim up to limit new rows,
 *		which sees what was just recorded; after the commit, publish them
 *		without waiting for their confirms: the batch joins the ring.
 *		Returns the number of rows claimed, or -1 when the connection failed
 *		(handled: in-flight rows failed, connection dropped).  *recorded
 *		is set to the number of batches recorded.
 */
static int
step(bool claim, int limit, int *recorded)
{
	VnBatch		 *b = NULL;
	int			  settled = 0;
	char		  err[VN_OUTBOX_ERRLEN];
	MemoryContext caller;

	while (settled < ring_count &&
		   vn_amqp_settle(my_amqp, RING_AT(settled)->msgs, RING_AT(settled)->n))
		settled++;
	*recorded = settled;
	if (settled == 0 && !claim)
		return 0;
	caller = vn_worker_begin(claim ? "ventros outbox: claiming" : "ventros outbox: recording confirms");
	record_batches(settled, NULL, true);
	if (claim)
	{
		b = RING_AT(ring_count);
		claim_batch(b, limit);
	}
	vn_worker_end(caller);
	if (b == NULL || b->n == 0)
		return 0;

	/*
	 * Publish only what a crash cannot take back (worker.c): every commit
	 * the claim saw was inserted into the WAL before it.
	 */
	vn_worker_flush_wal();
	ring_count++;
	ring_msgs += b->n;
	b->published_at = GetCurrentTimestamp();
	pgstat_report_activity(STATE_RUNNING, "ventros outbox: publishing");
	if (!vn_amqp_publish(my_amqp, b->msgs, b->n, vn_outbox_mandatory, err, sizeof(err)))
	{
		connection_failed(err);
		return -1;
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	return b->n;
}

/*
 * drain
 *		Wait (bounded) for the confirms of every batch in flight and record
 *		them: before a shutdown, or a reconnect with a new URL.  Rows that got
 *		no confirm count a failed attempt.
 */
static void
drain(void)
{
	char err[VN_OUTBOX_ERRLEN];

	while (ring_count > 0)
	{
		VnBatch *b = RING_AT(0);

		if (my_amqp == NULL ||
			!vn_amqp_wait(my_amqp, b->msgs, b->n, vn_outbox_confirm_timeout, err, sizeof(err)))
		{
			connection_failed(my_amqp == NULL ? "not connected" : err);
			return;
		}
		record_batches(1, NULL, false);
	}
}

/* delete published rows older than the retention, a chunk per transaction */
static void
prune(void)
{
	int deleted;

	if (vn_outbox_retention <= 0)
		return;
	for (int round = 0; round < 10; round++)
	{
		Oid			  argtypes[2] = {INT4OID, INT4OID};
		Datum		  args[2];
		bool		  isnull;
		MemoryContext caller = vn_worker_begin("ventros outbox: pruning");

		args[0] = Int32GetDatum(vn_outbox_retention);
		args[1] = Int32GetDatum(VN_OUTBOX_PRUNE_CHUNK);
		if (SPI_execute_with_args("SELECT ventros.outbox_prune(pg_catalog.make_interval(secs => $1), $2)",
								  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "ventros.outbox_prune failed");
		deleted = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		vn_worker_end(caller);
		if (deleted < VN_OUTBOX_PRUNE_CHUNK)
			break;
		CHECK_FOR_INTERRUPTS();
	}
}

static void
try_connect(void)
{
	char err[VN_OUTBOX_ERRLEN];
	char peer[256];

	my_amqp = vn_amqp_connect(vn_amqp_url, VN_OUTBOX_CONNECT_TIMEOUT_MS, vn_outbox_heartbeat,
							  err, sizeof(err));
	if (my_amqp == NULL)
	{
		vn_worker_set_error(err);
		return;
	}
	my_url = MemoryContextStrdup(TopMemoryContext, vn_amqp_url);
	set_connected(true);
	vn_amqp_describe_url(vn_amqp_url, peer, sizeof(peer));
	ereport(LOG,
			(errmsg("ventros outbox publisher: connected to %s", peer)));
}

/* The publisher's loop state, between the steps of its loop. */
typedef struct VnPublisher
{
	char		database[NAMEDATALEN];
	bool		ready;		/* extension current, publisher lock held */
	bool		want_claim; /* there may be rows to claim */
	int			failures;	/* consecutive connection failures */
	TimestampTz next_connect_at;
	TimestampTz next_prune_at;
	TimestampTz next_ready_check;
	TimestampTz next_poll_at;
} VnPublisher;

static VnPublisher pub;

/* the broker failed (handled: in flight failed, disconnected): retry soon */
static void
schedule_reconnect(void)
{
	pub.failures = 1;
	pub.next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms(pub.failures));
}

/* a new URL (or credentials) after a reload: reconnect with it now */
static void
reconnect_if_url_changed(void)
{
	if (my_url != NULL && strcmp(my_url, vn_amqp_url ? vn_amqp_url : "") != 0)
	{
		drain();
		disconnect();
		pub.failures = 0;
		pub.next_connect_at = 0;
	}
}

/* until the database is usable, look again every poll interval */
static void
ensure_ready(TimestampTz now)
{
	if (pub.ready || now < pub.next_ready_check)
		return;
	pub.ready = schema_ready(pub.database);
	if (!pub.ready)
		pub.next_ready_check = TimestampTzPlusMilliseconds(now, vn_outbox_poll_interval);
}

/* while disconnected, connect when the backoff allows */
static void
ensure_connected(TimestampTz now)
{
	if (!pub.ready || my_amqp != NULL || now < pub.next_connect_at)
		return;
	try_connect();
	if (my_amqp == NULL)
	{
		pub.failures++;
		pub.next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms(pub.failures));
	}
	else
	{
		pub.failures = 0;
		pub.want_claim = true;
	}
}

/* pruning comes before claiming: a busy publisher may never sleep */
static void
prune_if_due(TimestampTz now)
{
	if (!pub.ready || now < pub.next_prune_at)
		return;
	prune();
	pub.next_prune_at = TimestampTzPlusMilliseconds(now, VN_OUTBOX_PRUNE_EVERY_MS);
}

/*
 * claim_and_publish
 *		Read the confirms that came, then one transaction records what they
 *		settled and claims new rows, up to a bound on what is in flight;
 *		those are published at once, whatever is in flight.  Returns true
 *		when there may be more to claim at once (no sleep).
 */
static bool
claim_and_publish(void)
{
	char err[VN_OUTBOX_ERRLEN];
	int	 settled_msgs = 0;
	int	 settled = 0;
	int	 recorded;
	bool claim;
	int	 limit;
	int	 n;

	if (!pub.ready || my_amqp == NULL)
		return false;
	/* the confirms that came so far (no SQL yet) */
	if (!vn_amqp_poll(my_amqp, err, sizeof(err)))
	{
		connection_failed(err);
		schedule_reconnect();
		return false;
	}
	while (settled < ring_count &&
		   vn_amqp_settled(RING_AT(settled)->msgs, RING_AT(settled)->n))
		settled_msgs += RING_AT(settled++)->n;
	limit = Min(vn_outbox_batch_size, max_in_flight() - (ring_msgs - settled_msgs));
	claim = pub.want_claim && limit > 0 && ring_count - settled < VN_OUTBOX_MAX_BATCHES - 1;
	n = step(claim, limit, &recorded);
	if (n < 0)
	{
		schedule_reconnect();
		return false;
	}
	if (claim)
		pub.want_claim = n == limit; /* a full batch: there may be more */
	else if (recorded > 0)
		pub.want_claim = true; /* room again, and rows may be unblocked */
	if (ring_count > 0 &&
		GetCurrentTimestamp() >= TimestampTzPlusMilliseconds(RING_AT(0)->published_at,
															 vn_outbox_confirm_timeout))
	{
		snprintf(err, sizeof(err), "no publisher confirm within %d ms", vn_outbox_confirm_timeout);
		connection_failed(err);
		schedule_reconnect();
		return false;
	}
	return pub.want_claim && ring_count < VN_OUTBOX_MAX_BATCHES - 1 && ring_msgs < max_in_flight();
}

/*
 * wait_for_work
 *		Sleep until a commit, a confirm (the broker speaks), the poll
 *		interval, the next reconnect, or the confirm deadline.
 */
static void
wait_for_work(void)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout;
	int			rc;

	if (now >= pub.next_poll_at)
		pub.next_poll_at = TimestampTzPlusMilliseconds(now, vn_outbox_poll_interval);
	timeout = (long) ((pub.next_poll_at - now) / 1000) + 1;
	if (!pub.ready)
		timeout = Max(Min(timeout, (long) ((pub.next_ready_check - now) / 1000)), 0);
	else if (my_amqp == NULL)
		timeout = Max(Min(timeout, (long) ((pub.next_connect_at - now) / 1000)), 0);
	else if (ring_count > 0)
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(RING_AT(0)->published_at,
														   vn_outbox_confirm_timeout);

		timeout = Max(Min(timeout, (long) ((deadline - now) / 1000) + 1), 0);
	}
	/*
	 * Connected: read twice per heartbeat interval (ours go out, theirs are
	 * checked); such a wake-up is not the poll (next_poll_at).
	 */
	if (pub.ready && my_amqp != NULL && vn_outbox_heartbeat > 0)
		timeout = Min(timeout, vn_outbox_heartbeat * 500L);
	rc = vn_worker_wait(timeout, my_amqp != NULL ? vn_amqp_socket(my_amqp) : PGINVALID_SOCKET);
	if (rc & WL_LATCH_SET)
		pub.want_claim = true;
	if (GetCurrentTimestamp() >= pub.next_poll_at)
		pub.want_claim = true; /* the poll: rows due for a retry, a missed wake-up */
}

void
vn_outbox_worker_main(Datum main_arg)
{
	my_slot = (VnOutboxSlot *) vn_worker_attach(&outbox_kind, main_arg);
	before_shmem_exit(worker_exit, (Datum) 0);
	strlcpy(pub.database, MyBgworkerEntry->bgw_extra, sizeof(pub.database));
	pub.want_claim = true;
	/*
	 * A commit that is lost in a crash loses a published mark (the event is
	 * published again: at least once) or an attempt count: no reason to wait
	 * for the WAL flush of every batch.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);

	for (int i = 0; i < VN_OUTBOX_MAX_BATCHES; i++)
	{
		ring[i].ctx = AllocSetContextCreate(TopMemoryContext, "ventros outbox batch",
											ALLOCSET_DEFAULT_SIZES);
		ring[i].n = 0;
	}

	for (;;)
	{
		TimestampTz now;

		if (vn_worker_loop_top())
			reconnect_if_url_changed();
		/* SIGTERM: stop claiming, record what is in flight, exit */
		if (ShutdownRequestPending)
		{
			drain();
			/* exit code 1: the postmaster restarts us (pg_terminate_backend) */
			proc_exit(1);
		}
		now = GetCurrentTimestamp();
		ensure_ready(now);
		ensure_connected(now);
		prune_if_due(now);
		if (claim_and_publish())
			continue;
		wait_for_work();
	}
}

/*
 * vn_outbox_init
 *		GUCs always; at preload also shared memory and one worker per
 *		database of ventros.databases.
 */
void
vn_outbox_init(void)
{
	DefineCustomStringVariable("ventros.amqp_url",
							   "AMQP URL of the broker the outbox publisher delivers to.",
							   "amqp://user:password@host:port/vhost; only superusers can read it, and it is never logged.",
							   &vn_amqp_url,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_batch_size",
							"Events claimed, published and confirmed per batch.",
							NULL,
							&vn_outbox_batch_size,
							1000, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_poll_interval",
							"Fallback poll interval of the outbox publisher (commits wake it at once).",
							NULL,
							&vn_outbox_poll_interval,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_backoff_min",
							"First delay before retrying after a broker failure.",
							NULL,
							&vn_outbox_backoff_min,
							100, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_backoff_max",
							"Longest delay between retries after broker failures.",
							NULL,
							&vn_outbox_backoff_max,
							30000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_max_attempts",
							"Failed publish attempts after which an event is dead-lettered.",
							NULL,
							&vn_outbox_max_attempts,
							10, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_retention",
							"How long published events stay in ventros.outbox (0 keeps them).",
							NULL,
							&vn_outbox_retention,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_confirm_timeout",
							"How long the publisher waits for the broker's confirm of a batch.",
							"A batch not confirmed in time counts a failed attempt, and the connection is dropped.",
							&vn_outbox_confirm_timeout,
							30000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("ventros.outbox_heartbeat",
							"AMQP heartbeat interval the outbox publisher asks the broker for (0: none).",
							"A broker silent for two intervals (frozen, or cut off without a reset) is taken as gone: what is in flight counts a failed attempt and the publisher reconnects. Applies to the next connection.",
							&vn_outbox_heartbeat,
							10, 0, 65535,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("ventros.outbox_mandatory",
							 "Publish with the mandatory flag: an event no queue is bound for is a failed attempt.",
							 NULL,
							 &vn_outbox_mandatory,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);


	vn_outbox_wake_target = vn_worker_define(&outbox_kind, 1, vn_outbox_find_latch);
}
