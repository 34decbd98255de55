/*-------------------------------------------------------------------------
 *
 * outbox_worker.c
 *	  The outbox publisher: delivers every committed ventros.outbox row to
 *	  the RabbitMQ exchange ventros.events, at least once, in order per
 *	  aggregate, within milliseconds of its commit.
 *
 * One background worker per database named in ventros.outbox_databases,
 * registered at preload, restarted by the postmaster after a crash
 * (bgw_restart_time).  Its loop, worker_spi's shape:
 *
 *	1. claim a batch in one short transaction (ventros.outbox_claim: SKIP
 *	   LOCKED, a lease, an attempt counted, envelopes built in SQL);
 *	2. publish it, outside any transaction (outbox_amqp.c);
 *	3. wait for the publisher confirms of the batch published in the
 *	   previous step (the broker persisted it while we claimed and published
 *	   this one) and record them in one transaction: acked rows published,
 *	   nacked, returned or unconfirmed rows failed (retry after backoff,
 *	   dead after ventros.outbox_max_attempts).
 *
 * So at most two batches are in flight.  The second never holds a row of an
 * aggregate that has a row in the first (the first's leases block it), and
 * one channel keeps publish order: order per aggregate holds.
 *
 * All progress is row state, so the worker may die anywhere: a restarted
 * worker frees the leases of dead claimers and publishes again what was not
 * recorded as confirmed (the only source of duplicates).
 *
 * Wake-up (pg_net's pattern): vn_emit() calls vn_outbox_wake_at_commit(),
 * which only sets a backend-local flag; at XACT_EVENT_COMMIT a transaction
 * that wrote events sets the latch of its database's worker, found in
 * shared memory.  An aborted transaction wakes nobody.  The worker also
 * wakes every ventros.outbox_poll_interval (rows waiting for their retry
 * time, or a commit whose wake-up was missed, such as COMMIT PREPARED).
 *
 * While connected and idle, the worker also waits on the broker's socket,
 * so a broker that closes the connection (stopping) is noticed at once and
 * no attempt is wasted on a dead connection.  While disconnected it claims
 * nothing and reconnects with exponential backoff and jitter.
 *
 * Shared memory: one VnOutboxShared with a slot per configured database;
 * every field of every slot is protected by the spinlock "mutex".  Workers
 * write their own slot; backends read it (wake-up, status view).  SetLatch
 * is called after releasing the spinlock: a latch pointer read under it
 * points into the PGPROC array, which outlives any worker.
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
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "outbox_amqp.h"
#include "outbox_worker.h"
#include "shmem.h"

#define VN_OUTBOX_MAX_DATABASES 8
#define VN_OUTBOX_RESTART_SECONDS 1
#define VN_OUTBOX_CONNECT_TIMEOUT_MS 5000
#define VN_OUTBOX_PRUNE_EVERY_MS 60000
#define VN_OUTBOX_PRUNE_CHUNK 10000
#define VN_OUTBOX_ERRLEN 512

typedef struct VnOutboxSlot
{
	Oid			dbid;			/* InvalidOid until the worker connected */
	pid_t		pid;			/* 0 when no worker runs */
	Latch	   *latch;
	bool		connected;		/* to the broker */
	TimestampTz connected_since;
	int64		published;		/* messages confirmed, since server start */
	int64		failed;			/* failed attempts, since server start */
	TimestampTz last_publish_at;
	TimestampTz last_error_at;
	char		database[NAMEDATALEN];
	char		last_error[VN_OUTBOX_ERRLEN];
} VnOutboxSlot;

typedef struct VnOutboxShared
{
	slock_t		mutex;
	VnOutboxSlot slot[VN_OUTBOX_MAX_DATABASES];
} VnOutboxShared;

/* GUCs */
static char *vn_amqp_url = NULL;
static char *vn_outbox_databases = NULL;
static int	vn_outbox_batch_size = 1000;
static int	vn_outbox_poll_interval = 1000;
static int	vn_outbox_backoff_min = 100;
static int	vn_outbox_backoff_max = 30000;
static int	vn_outbox_max_attempts = 10;
static int	vn_outbox_retention = 7 * 24 * 3600;
static int	vn_outbox_lease = 60;
static bool vn_outbox_mandatory = false;

/* shared memory */
static VnOutboxShared *vn_outbox_shared = NULL;

/* backend: this transaction wrote events */
static int	vn_outbox_wake_target = -1;	/* set in the postmaster, inherited */

/* worker state (the worker process only) */
static VnOutboxSlot *my_slot = NULL;
static VnAmqp *my_amqp = NULL;
static char *my_url = NULL;		/* the URL my_amqp was opened with */

PG_FUNCTION_INFO_V1(ventros_outbox_wake);
PG_FUNCTION_INFO_V1(ventros_outbox_worker_state);

/* ---- shared memory ------------------------------------------------------ */

/* A new segment is zeroed by shmem.c; this sets up its spinlock. */
static void
vn_outbox_shmem_init(void *segment)
{
	SpinLockInit(&((VnOutboxShared *) segment)->mutex);
}

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
	Latch	   *latch = NULL;

	if (vn_outbox_shared == NULL)
		return NULL;
	SpinLockAcquire(&vn_outbox_shared->mutex);
	for (int i = 0; i < VN_OUTBOX_MAX_DATABASES; i++)
	{
		VnOutboxSlot *s = &vn_outbox_shared->slot[i];

		if (s->pid != 0 && s->dbid == MyDatabaseId)
		{
			latch = s->latch;
			break;
		}
	}
	SpinLockRelease(&vn_outbox_shared->mutex);
	return latch;
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
	TupleDesc	desc;
	Datum		values[9];
	bool		nulls[9];
	VnOutboxSlot copy;
	bool		found = false;

	if (vn_outbox_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ventros is not loaded through shared_preload_libraries"),
				 errhint("Add ventros to shared_preload_libraries and restart the server.")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SpinLockAcquire(&vn_outbox_shared->mutex);
	for (int i = 0; i < VN_OUTBOX_MAX_DATABASES; i++)
	{
		VnOutboxSlot *s = &vn_outbox_shared->slot[i];

		if (s->dbid == MyDatabaseId && s->database[0] != '\0')
		{
			copy = *s;
			found = true;
			break;
		}
	}
	SpinLockRelease(&vn_outbox_shared->mutex);

	memset(nulls, true, sizeof(nulls));
	values[2] = BoolGetDatum(false);
	nulls[2] = false;
	if (found)
	{
		values[0] = CStringGetTextDatum(copy.database);
		nulls[0] = false;
		if (copy.pid != 0)
		{
			values[1] = Int32GetDatum(copy.pid);
			nulls[1] = false;
		}
		values[2] = BoolGetDatum(copy.pid != 0 && copy.connected);
		if (copy.pid != 0 && copy.connected)
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
		if (copy.last_error[0] != '\0')
		{
			values[7] = CStringGetTextDatum(copy.last_error);
			values[8] = TimestampTzGetDatum(copy.last_error_at);
			nulls[7] = nulls[8] = false;
		}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* ---- the worker ---------------------------------------------------------- */

/*
 * set_error
 *		Record the worker's last error in its slot; log it when it differs
 *		from the previous one (a broker that stays down logs once).
 */
static void
set_error(const char *msg)
{
	bool		changed;

	SpinLockAcquire(&vn_outbox_shared->mutex);
	changed = strcmp(my_slot->last_error, msg) != 0;
	strlcpy(my_slot->last_error, msg, VN_OUTBOX_ERRLEN);
	my_slot->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&vn_outbox_shared->mutex);
	if (changed)
		ereport(LOG,
				(errmsg("ventros outbox publisher: %s", msg)));
}

static void
set_connected(bool connected)
{
	SpinLockAcquire(&vn_outbox_shared->mutex);
	my_slot->connected = connected;
	my_slot->connected_since = connected ? GetCurrentTimestamp() : 0;
	SpinLockRelease(&vn_outbox_shared->mutex);
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

static void
worker_exit(int code, Datum arg)
{
	if (my_amqp != NULL)
	{
		vn_amqp_disconnect(my_amqp);
		my_amqp = NULL;
	}
	SpinLockAcquire(&vn_outbox_shared->mutex);
	my_slot->pid = 0;
	my_slot->latch = NULL;
	my_slot->connected = false;
	SpinLockRelease(&vn_outbox_shared->mutex);
}

/* milliseconds to wait after the n-th consecutive failure: exponential, capped, jittered */
static long
backoff_ms(int failures)
{
	double		ms = vn_outbox_backoff_min;
	int			max = Max(vn_outbox_backoff_max, vn_outbox_backoff_min);

	for (int i = 1; i < failures && ms < max; i++)
		ms *= 2;
	if (ms > max)
		ms = max;
	/* jitter in [50%, 100%]: publishers of many databases do not reconnect in step */
	return (long) (ms * (0.5 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

/* run one statement of the worker in its own transaction (no result rows) */
static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * schema_ready
 *		Whether this database has the extension (the publisher's functions).
 *		On the first success, frees the leases left by dead publishers.
 */
static bool
schema_ready(void)
{
	bool		ready;
	bool		isnull;
	int			freed = 0;

	begin_work("ventros outbox: checking the extension");
	if (SPI_execute("SELECT pg_catalog.to_regprocedure("
					"'ventros.outbox_claim(integer,interval,integer)') IS NOT NULL",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for ventros.outbox_claim");
	ready = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (ready)
	{
		if (SPI_execute("SELECT ventros.outbox_release_leases()", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not release stale outbox leases");
		freed = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	end_work();
	if (freed > 0)
		ereport(LOG,
				(errmsg("ventros outbox publisher: released %d leases of a previous publisher", freed)));
	return ready;
}

static ArrayType *
text_array(char **items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = CStringGetTextDatum(items[i]);
	return construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT);
}

static ArrayType *
int8_array(int64 *items, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(items[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/* a claimed batch: rows and their messages, in its own memory context */
typedef struct VnBatch
{
	MemoryContext ctx;
	int			n;
	VnAmqpMessage *msgs;
	char	  **tenants;
	int64	   *seqs;
	TimestampTz claimed_at;
	TimestampTz published_at;
} VnBatch;

/*
 * claim_batch
 *		Claim up to ventros.outbox_batch_size rows (one transaction) into b.
 *		Rows of aggregates whose earlier rows are in flight are not claimed:
 *		their leases block them.
 */
static void
claim_batch(VnBatch *b)
{
	MemoryContext old;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	int64		now_s = (int64) time(NULL);

	MemoryContextReset(b->ctx);
	b->n = 0;
	b->claimed_at = GetCurrentTimestamp();
	begin_work("ventros outbox: claiming");
	args[0] = Int32GetDatum(vn_outbox_batch_size);
	args[1] = Int32GetDatum(vn_outbox_lease);
	if (SPI_execute_with_args("SELECT tenant_id, seq, event_id, event_type, aggregate_type, "
							  "aggregate_id, body FROM ventros.outbox_claim($1, "
							  "pg_catalog.make_interval(secs => $2))",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "ventros.outbox_claim failed");
	old = MemoryContextSwitchTo(b->ctx);
	b->n = (int) SPI_processed;
	b->msgs = palloc0(sizeof(VnAmqpMessage) * Max(b->n, 1));
	b->tenants = palloc(sizeof(char *) * Max(b->n, 1));
	b->seqs = palloc(sizeof(int64) * Max(b->n, 1));
	for (int i = 0; i < b->n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;

		b->tenants[i] = SPI_getvalue(t, d, 1);
		b->seqs[i] = DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
		b->msgs[i].message_id = SPI_getvalue(t, d, 3);
		b->msgs[i].routing_key = SPI_getvalue(t, d, 4);
		b->msgs[i].aggregate_type = SPI_getvalue(t, d, 5);
		b->msgs[i].aggregate_id = SPI_getvalue(t, d, 6);
		b->msgs[i].body = SPI_getvalue(t, d, 7);
		b->msgs[i].tenant_id = b->tenants[i];
		b->msgs[i].timestamp = now_s;
	}
	MemoryContextSwitchTo(old);
	end_work();
	b->published_at = GetCurrentTimestamp();
}

/*
 * record_batch
 *		Record the outcome of a batch (one transaction): acked rows published,
 *		the others failed attempts, with their own error or conn_error (the
 *		connection failed before their confirm came).  Empties the batch.
 */
static void
record_batch(VnBatch *b, const char *conn_error)
{
	MemoryContext old;
	char	  **ok_tenants,
			  **bad_tenants,
			  **bad_errors;
	int64	   *ok_seqs,
			   *bad_seqs;
	int			nacked = 0,
				nfailed = 0,
				ndead = 0;
	TimestampTz t_record = GetCurrentTimestamp();

	if (b->n == 0)
		return;
	old = MemoryContextSwitchTo(b->ctx);
	ok_tenants = palloc(sizeof(char *) * b->n);
	ok_seqs = palloc(sizeof(int64) * b->n);
	bad_tenants = palloc(sizeof(char *) * b->n);
	bad_seqs = palloc(sizeof(int64) * b->n);
	bad_errors = palloc(sizeof(char *) * b->n);
	for (int i = 0; i < b->n; i++)
	{
		if (b->msgs[i].outcome == VN_AMQP_ACKED)
		{
			ok_tenants[nacked] = b->tenants[i];
			ok_seqs[nacked++] = b->seqs[i];
		}
		else
		{
			bad_tenants[nfailed] = b->tenants[i];
			bad_seqs[nfailed] = b->seqs[i];
			bad_errors[nfailed++] = (char *) (b->msgs[i].outcome == VN_AMQP_FAILED
											  ? b->msgs[i].error
											  : (conn_error ? conn_error : "not confirmed"));
		}
	}
	MemoryContextSwitchTo(old);

	begin_work("ventros outbox: recording confirms");
	if (nacked > 0)
	{
		Oid			argtypes[2] = {TEXTARRAYOID, INT8ARRAYOID};
		Datum		args[2];

		args[0] = PointerGetDatum(text_array(ok_tenants, nacked));
		args[1] = PointerGetDatum(int8_array(ok_seqs, nacked));
		if (SPI_execute_with_args("SELECT ventros.outbox_published($1, $2)",
								  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "ventros.outbox_published failed");
	}
	if (nfailed > 0)
	{
		Oid			argtypes[6] = {TEXTARRAYOID, INT8ARRAYOID, TEXTARRAYOID, INT4OID, INT4OID, INT4OID};
		Datum		args[6];
		bool		isnull;

		args[0] = PointerGetDatum(text_array(bad_tenants, nfailed));
		args[1] = PointerGetDatum(int8_array(bad_seqs, nfailed));
		args[2] = PointerGetDatum(text_array(bad_errors, nfailed));
		args[3] = Int32GetDatum(vn_outbox_max_attempts);
		args[4] = Int32GetDatum(vn_outbox_backoff_min);
		args[5] = Int32GetDatum(vn_outbox_backoff_max);
		if (SPI_execute_with_args("SELECT ventros.outbox_failed($1, $2, $3, $4, $5, $6)",
								  6, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "ventros.outbox_failed failed");
		ndead = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	end_work();
	elog(DEBUG1, "ventros outbox publisher: batch of %d: claim %ld us, publish and confirm %ld us, record %ld us",
		 b->n, (long) (b->published_at - b->claimed_at), (long) (t_record - b->published_at),
		 (long) (GetCurrentTimestamp() - t_record));

	SpinLockAcquire(&vn_outbox_shared->mutex);
	my_slot->published += nacked;
	my_slot->failed += nfailed;
	if (nacked > 0)
		my_slot->last_publish_at = GetCurrentTimestamp();
	SpinLockRelease(&vn_outbox_shared->mutex);

	if (ndead > 0)
		ereport(WARNING,
				(errmsg("ventros outbox publisher: %d events dead-lettered after %d attempts",
						ndead, vn_outbox_max_attempts),
				 errhint("See ventros.outbox rows with status 'dead'; ventros.replay_dead_events() puts them back.")));
	if (nfailed > 0 && conn_error == NULL)
		set_error(bad_errors[0]);
	b->n = 0;
}

/* the worker's two batches: the one in flight and the next; batches[cur] is claimed next */
static VnBatch batches[2];
static int	cur = 0;

/*
 * publish_step
 *		One step of the pipeline: claim the next batch, publish it, then wait
 *		for the confirms of the batch published in the previous step (which
 *		the broker was persisting meanwhile) and record them.  The next batch
 *		never holds a row whose aggregate has a row in the previous one (its
 *		lease blocks it), and one channel keeps publish order, so order per
 *		aggregate holds.  Returns the number of rows claimed, or -1 when the
 *		connection failed (rows in flight recorded as failed attempts,
 *		connection dropped).
 */
static int
publish_step(VnBatch *prev, VnBatch *next)
{
	char		err[VN_OUTBOX_ERRLEN];
	bool		ok = true;
	int			confirm_ms = Max(vn_outbox_lease * 1000 / 2, 1000);

	err[0] = '\0';
	claim_batch(next);
	if (next->n > 0)
	{
		pgstat_report_activity(STATE_RUNNING, "ventros outbox: publishing");
		ok = vn_amqp_publish(my_amqp, next->msgs, next->n, vn_outbox_mandatory, err, sizeof(err));
	}
	if (ok && prev->n > 0)
	{
		pgstat_report_activity(STATE_RUNNING, "ventros outbox: awaiting confirms");
		ok = vn_amqp_wait(my_amqp, prev->msgs, prev->n, confirm_ms, err, sizeof(err));
	}
	if (ok)
	{
		record_batch(prev, NULL);
		return next->n;
	}
	/* the connection failed: whatever was not confirmed failed with it */
	record_batch(prev, err);
	record_batch(next, err);
	set_error(err);
	disconnect();
	return -1;
}

/* delete published rows older than the retention, a chunk per transaction */
static void
prune(void)
{
	int			deleted;

	if (vn_outbox_retention <= 0)
		return;
	for (int round = 0; round < 10; round++)
	{
		Oid			argtypes[2] = {INT4OID, INT4OID};
		Datum		args[2];
		bool		isnull;

		begin_work("ventros outbox: pruning");
		args[0] = Int32GetDatum(vn_outbox_retention);
		args[1] = Int32GetDatum(VN_OUTBOX_PRUNE_CHUNK);
		if (SPI_execute_with_args("SELECT ventros.outbox_prune(pg_catalog.make_interval(secs => $1), $2)",
								  2, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "ventros.outbox_prune failed");
		deleted = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		end_work();
		if (deleted < VN_OUTBOX_PRUNE_CHUNK)
			break;
		CHECK_FOR_INTERRUPTS();
	}
}

static void
try_connect(void)
{
	char		err[VN_OUTBOX_ERRLEN];
	char		peer[256];

	my_amqp = vn_amqp_connect(vn_amqp_url, VN_OUTBOX_CONNECT_TIMEOUT_MS, err, sizeof(err));
	if (my_amqp == NULL)
	{
		set_error(err);
		return;
	}
	my_url = MemoryContextStrdup(TopMemoryContext, vn_amqp_url);
	set_connected(true);
	vn_amqp_describe_url(vn_amqp_url, peer, sizeof(peer));
	ereport(LOG,
			(errmsg("ventros outbox publisher: connected to %s", peer)));
}

void
vn_outbox_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	char		dbname[NAMEDATALEN];
	bool		ready = false;
	int			failures = 0;	/* consecutive connection failures */
	TimestampTz next_connect_at = 0;
	TimestampTz next_prune_at = 0;
	TimestampTz next_ready_check = 0;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, sizeof(dbname));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("ventros outbox publisher");

	if (vn_outbox_shared == NULL || index < 0 || index >= VN_OUTBOX_MAX_DATABASES)
		elog(FATAL, "ventros outbox publisher: shared memory is not set up");
	my_slot = &vn_outbox_shared->slot[index];
	SpinLockAcquire(&vn_outbox_shared->mutex);
	my_slot->dbid = MyDatabaseId;
	my_slot->pid = MyProcPid;
	my_slot->latch = MyLatch;
	my_slot->connected = false;
	strlcpy(my_slot->database, dbname, NAMEDATALEN);
	SpinLockRelease(&vn_outbox_shared->mutex);
	before_shmem_exit(worker_exit, (Datum) 0);

	for (int i = 0; i < 2; i++)
	{
		batches[i].ctx = AllocSetContextCreate(TopMemoryContext, "ventros outbox batch",
											   ALLOCSET_DEFAULT_SIZES);
		batches[i].n = 0;
	}

	for (;;)
	{
		TimestampTz now;
		long		timeout;
		int			events;
		int			rc;
		int			sock = PGINVALID_SOCKET;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* a new URL (or credentials): reconnect with it now */
			if (my_url != NULL && strcmp(my_url, vn_amqp_url ? vn_amqp_url : "") != 0)
			{
				VnBatch    *inflight = &batches[cur ^ 1];

				if (inflight->n > 0)
				{
					char		err[VN_OUTBOX_ERRLEN];
					bool		ok;

					ok = vn_amqp_wait(my_amqp, inflight->msgs, inflight->n,
									  Max(vn_outbox_lease * 1000 / 2, 1000), err, sizeof(err));
					record_batch(inflight, ok ? NULL : err);
				}
				disconnect();
				failures = 0;
				next_connect_at = 0;
			}
		}

		now = GetCurrentTimestamp();
		if (!ready && now >= next_ready_check)
		{
			ready = schema_ready();
			if (!ready)
			{
				char		msg[VN_OUTBOX_ERRLEN];

				snprintf(msg, sizeof(msg), "extension ventros is not installed in database \"%s\"", dbname);
				set_error(msg);
				next_ready_check = TimestampTzPlusMilliseconds(now, vn_outbox_poll_interval);
			}
		}

		if (ready && my_amqp == NULL && now >= next_connect_at)
		{
			try_connect();
			if (my_amqp == NULL)
			{
				failures++;
				next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms(failures));
			}
			else
				failures = 0;
		}

		if (ready && my_amqp != NULL)
		{
			bool		had_inflight = batches[cur ^ 1].n > 0;
			int			n = publish_step(&batches[cur ^ 1], &batches[cur]);

			if (n < 0)
			{
				failures = 1;
				next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms(failures));
			}
			else if (n > 0)
			{
				/* its confirms are awaited in the next step, with the next batch in flight */
				cur ^= 1;
				continue;
			}
			else if (had_inflight)
				continue;		/* its confirms may have unblocked rows held back by its leases */
		}

		now = GetCurrentTimestamp();
		if (ready && now >= next_prune_at)
		{
			prune();
			next_prune_at = TimestampTzPlusMilliseconds(now, VN_OUTBOX_PRUNE_EVERY_MS);
		}

		/* sleep until a commit, the poll interval, the next reconnect, or the broker speaks */
		timeout = vn_outbox_poll_interval;
		if (ready && my_amqp == NULL)
		{
			long		until = (long) ((next_connect_at - now) / 1000);

			timeout = Max(Min(timeout, until), 0);
		}
		events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
		if (my_amqp != NULL)
		{
			sock = vn_amqp_socket(my_amqp);
			if (sock >= 0)
				events |= WL_SOCKET_READABLE;
		}
		rc = WaitLatchOrSocket(MyLatch, events, sock, timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if ((rc & WL_SOCKET_READABLE) && my_amqp != NULL)
		{
			char		err[VN_OUTBOX_ERRLEN];

			if (!vn_amqp_check(my_amqp, err, sizeof(err)))
			{
				set_error(err);
				disconnect();
				failures = 1;
				next_connect_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms(failures));
			}
		}
	}
}

/* ---- registration -------------------------------------------------------- */

static void
register_workers(void)
{
	char	   *raw = pstrdup(vn_outbox_databases ? vn_outbox_databases : "");
	List	   *names = NIL;
	ListCell   *lc;
	int			i = 0;

	if (!SplitGUCList(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in ventros.outbox_databases")));
	foreach(lc, names)
	{
		const char *name = lfirst(lc);
		BackgroundWorker worker;

		if (name[0] == '\0')
			continue;
		if (i >= VN_OUTBOX_MAX_DATABASES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("ventros.outbox_databases names more than %d databases",
							VN_OUTBOX_MAX_DATABASES)));
		if (strlen(name) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("database name \"%s\" in ventros.outbox_databases is too long", name)));
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = VN_OUTBOX_RESTART_SECONDS;
		strlcpy(worker.bgw_library_name, "ventros", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "vn_outbox_worker_main", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "ventros outbox publisher for %s", name);
		strlcpy(worker.bgw_type, "ventros outbox publisher", BGW_MAXLEN);
		worker.bgw_main_arg = Int32GetDatum(i);
		strlcpy(worker.bgw_extra, name, BGW_EXTRALEN);
		RegisterBackgroundWorker(&worker);
		i++;
	}
}

/*
 * vn_outbox_init
 *		GUCs always; at preload also shared memory and one worker per
 *		database of ventros.outbox_databases.
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
	DefineCustomStringVariable("ventros.outbox_databases",
							   "Databases whose outbox is published, one publisher each.",
							   NULL,
							   &vn_outbox_databases,
							   "ventros",
							   PGC_POSTMASTER,
							   GUC_LIST_INPUT,
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
	DefineCustomIntVariable("ventros.outbox_lease",
							"How long a claimed batch is reserved for its publisher.",
							"Confirms are awaited for at most half of it.",
							&vn_outbox_lease,
							60, 2, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("ventros.outbox_mandatory",
							 "Publish with the mandatory flag: an event no queue is bound for is a failed attempt.",
							 NULL,
							 &vn_outbox_mandatory,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);


	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	vn_outbox_wake_target = vn_wake_register(vn_outbox_find_latch);
	vn_shmem_register("ventros outbox", sizeof(VnOutboxShared), (void **) &vn_outbox_shared,
					  vn_outbox_shmem_init);
	register_workers();
}
