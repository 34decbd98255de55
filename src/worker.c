/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The worker kit: the one skeleton of every Ventros background worker
 *	  (the outbox publisher, the HTTP dispatcher, the inbox processors).
 *
 * Modelled on PostgreSQL's worker_spi and pg_cron's launcher.  A kind of
 * worker is a static VnWorkerKind in its own file; the kit owns:
 *
 *	- registration (postmaster): every kind serves the databases of one
 *	  setting, ventros.databases (a kind's own setting of 0.1.0 still
 *	  overrides it, with a warning); vn_worker_define asks shmem.c for the
 *	  kind's segment, {spinlock; slots[]}, per_database slots a database,
 *	  lists the kind for ventros.worker_status() and registers one worker
 *	  per slot, its slot index as main argument and its database in
 *	  bgw_extra;
 *	- the slot: each kind's slot struct starts with a VnWorkerSlot (pid,
 *	  latch, database, started_at, last error); every field of every slot
 *	  is protected by the kind's spinlock.  A worker writes its own slot,
 *	  backends read them (latch lookup for the wake at commit, status).
 *	  SetLatch is called after releasing the spinlock: a latch pointer read
 *	  under it points into the PGPROC array, which outlives any worker;
 *	- attach (worker): signal handlers, then the connection, jit off, the
 *	  application name, the slot filled, and cleared again by a
 *	  before_shmem_exit callback (a kind registering its own callback after
 *	  attaching has it run first, before the slot is cleared);
 *	- the loop: vn_worker_loop_top at the top of each iteration checks for
 *	  interrupts, resets the loop memory context (nothing allocated outside
 *	  a transaction outlives an iteration unless put elsewhere on purpose)
 *	  and reloads the configuration; vn_worker_wait sleeps on the latch;
 *	- a transaction step: vn_worker_begin / vn_worker_end, worker_spi's
 *	  sequence, back in the caller's memory context after the commit;
 *	- the flush before acting outside the database: vn_worker_flush_wal,
 *	  so that nothing a crash can take back is published or sent;
 *	- the install check: vn_worker_missing_function names the first SQL
 *	  function a worker calls that the database lacks (the install script
 *	  may predate the library), so the worker reports and waits instead of
 *	  failing in a loop;
 *	- the last error (vn_worker_set_error logs it only when it changes) and
 *	  ventros.worker_status(), one row per slot of every kind.
 *
 * Waking a worker at commit stays shmem.c's: a kind registers a
 * VnFindLatch that calls vn_worker_find_latch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "shmem.h"
#include "worker.h"

#define VN_WORKER_MAX_KINDS 4
#define VN_WORKER_MAX_DATABASES 8
#define VN_WORKER_RESTART_SECONDS 1

/* ventros.databases */
static char *vn_worker_databases = NULL;

/* the kinds defined at preload, for ventros.worker_status() */
static VnWorkerKind *vn_worker_kinds[VN_WORKER_MAX_KINDS];
static int			 vn_worker_nkinds = 0;

/* the worker process: its kind, slot and loop context */
static VnWorkerKind *my_kind = NULL;
static VnWorkerSlot *my_slot = NULL;
static MemoryContext my_loop_ctx = NULL;

PG_FUNCTION_INFO_V1(ventros_worker_status);

/* ---- registration (postmaster) ------------------------------------------ */

/*
 * A new segment is zeroed by shmem.c; this sets up its spinlock and names
 * each slot's database, so that ventros.worker_status() shows it before
 * the worker connects (or when it cannot).
 */
static void
vn_worker_shmem_init(void *segment)
{
	SpinLockInit(&((VnWorkerShared *) segment)->mutex);
	for (int k = 0; k < vn_worker_nkinds; k++)
	{
		VnWorkerKind *kind = vn_worker_kinds[k];

		if ((void *) kind->shared != segment)
			continue;
		for (int i = 0; i < kind->nslots; i++)
			strlcpy(vn_worker_slot(kind, i)->database,
					kind->databases[i / kind->per_database], NAMEDATALEN);
	}
}

/*
 * vn_worker_init
 *		The kit's setting, before any kind is defined: ventros.databases.
 */
void
vn_worker_init(void)
{
	DefineCustomStringVariable("ventros.databases",
							   "Databases the Ventros background workers serve.",
							   "Each gets an outbox publisher, an HTTP dispatcher and ventros.inbox_workers "
							   "inbox processors.",
							   &vn_worker_databases,
							   "ventros",
							   PGC_POSTMASTER,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);
}

/*
 * vn_worker_preloading
 *		Whether workers are registered: _PG_init while preloading, except in
 *		a binary upgrade.
 */
bool
vn_worker_preloading(void)
{
	return process_shared_preload_libraries_in_progress && !IsBinaryUpgrade;
}

/*
 * list_databases
 *		The databases kind serves into kind->databases: those of
 *		ventros.databases, or those of the kind's setting of 0.1.0 when that
 *		is set, with a warning.  An error (the server does not start) on a
 *		list that is not one.
 */
static void
list_databases(VnWorkerKind *kind)
{
	bool		old = kind->old_databases != NULL && kind->old_databases_value != NULL;
	const char *setting = old ? kind->old_databases : "ventros.databases";
	char	   *raw = pstrdup(old ? kind->old_databases_value : vn_worker_databases);
	List	   *names = NIL;
	ListCell   *lc;

	if (old)
		ereport(WARNING,
				(errmsg("%s is deprecated: use ventros.databases", setting),
				 errdetail("The %s serves the database%s %s names, as in Ventros 0.1.0, "
						   "not those of ventros.databases.",
						   kind->type, kind->old_databases_list ? "s" : "", setting),
				 errhint("Name the databases in ventros.databases and remove %s.", setting)));
	if (old && !kind->old_databases_list)
		names = list_make1(raw); /* one name, as 0.1.0 took it */
	else if (!SplitGUCList(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in %s", setting)));
	kind->databases = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * VN_WORKER_MAX_DATABASES);
	kind->ndatabases = 0;
	foreach(lc, names)
	{
		const char *name = lfirst(lc);

		if (name[0] == '\0')
			continue;
		if (kind->ndatabases >= VN_WORKER_MAX_DATABASES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("%s names more than %d databases", setting, VN_WORKER_MAX_DATABASES)));
		if (strlen(name) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("database name \"%s\" in %s is too long", name, setting)));
		kind->databases[kind->ndatabases++] = MemoryContextStrdup(TopMemoryContext, name);
	}
}

/* Register the worker of a slot, connecting to its database. */
static void
register_worker(VnWorkerKind *kind, int slot)
{
	BackgroundWorker worker;
	const char		*database = kind->databases[slot / kind->per_database];

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = VN_WORKER_RESTART_SECONDS;
	strlcpy(worker.bgw_library_name, "ventros", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, kind->main, BGW_MAXLEN);
	if (kind->per_database == 1)
		snprintf(worker.bgw_name, BGW_MAXLEN, "%s for %s", kind->type, database);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, "%s %d for %s",
				 kind->type, slot % kind->per_database + 1, database);
	strlcpy(worker.bgw_type, kind->type, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot);
	strlcpy(worker.bgw_extra, database, BGW_EXTRALEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * vn_worker_define
 *		Declare a kind whose workers serve each database per_database at a
 *		time: its setting of 0.1.0 (always, so that SET and SHOW know it);
 *		then, only when vn_worker_preloading, its shared segment (a slot a
 *		worker, database by database), its place in ventros.worker_status(),
 *		(find_latch not NULL) the wake at commit of its workers, and the
 *		workers.  Returns the wake-up target for vn_wake_at_commit (-1:
 *		none).
 */
int
vn_worker_define(VnWorkerKind *kind, int per_database, VnFindLatch find_latch)
{
	if (kind->old_databases != NULL)
		DefineCustomStringVariable(kind->old_databases,
								   "Deprecated: ventros.databases names the databases of every worker.",
								   "When set, the databases this kind of worker serves, as in Ventros 0.1.0.",
								   &kind->old_databases_value,
								   NULL,
								   PGC_POSTMASTER,
								   kind->old_databases_list ? GUC_LIST_INPUT : 0,
								   NULL, NULL, NULL);
	if (!vn_worker_preloading())
		return -1;
	if (vn_worker_nkinds >= VN_WORKER_MAX_KINDS)
		elog(ERROR, "too many kinds of Ventros workers");
	Assert(kind->slot_size >= sizeof(VnWorkerSlot) && per_database >= 1);
	list_databases(kind);
	kind->slot_size = MAXALIGN(kind->slot_size);
	kind->per_database = per_database;
	kind->nslots = kind->ndatabases * per_database;
	vn_shmem_register(kind->type,
					  offsetof(VnWorkerShared, slots) + kind->slot_size * kind->nslots,
					  (void **) &kind->shared, vn_worker_shmem_init);
	vn_worker_kinds[vn_worker_nkinds++] = kind;
	for (int i = 0; i < kind->nslots; i++)
		register_worker(kind, i);
	return find_latch != NULL ? vn_wake_register(find_latch) : -1;
}

/* ---- slots (any process) ------------------------------------------------ */

VnWorkerSlot *
vn_worker_slot(VnWorkerKind *kind, int slot)
{
	return (VnWorkerSlot *) (kind->shared->slots + kind->slot_size * slot);
}

void
vn_worker_lock(VnWorkerKind *kind)
{
	SpinLockAcquire(&kind->shared->mutex);
}

void
vn_worker_unlock(VnWorkerKind *kind)
{
	SpinLockRelease(&kind->shared->mutex);
}

/*
 * vn_worker_copy_slot
 *		Copy a kind's slot (slot_size bytes) into copy, under the lock: slot
 *		when it is >= 0, else the first slot serving the database dbid (its
 *		worker connected to it, or is to connect to a database of its name).
 *		Returns the slot's index, or -1 (none: copy untouched).
 */
int
vn_worker_copy_slot(VnWorkerKind *kind, int slot, Oid dbid, void *copy)
{
	int	  found = -1;
	char *name = slot < 0 ? get_database_name(dbid) : NULL;

	vn_worker_lock(kind);
	for (int i = Max(slot, 0); i < kind->nslots && found < 0; i++)
	{
		VnWorkerSlot *s = vn_worker_slot(kind, i);

		if (slot >= 0 || (OidIsValid(s->dbid) ? s->dbid == dbid : name != NULL && strcmp(s->database, name) == 0))
			found = i;
	}
	if (found >= 0)
		memcpy(copy, vn_worker_slot(kind, found), kind->slot_size);
	vn_worker_unlock(kind);
	return found;
}

/*
 * vn_worker_find_latch
 *		The latch of the first running worker of the kind from slot `from`
 *		on, serving dbid (InvalidOid: any database), never our own; or NULL.
 */
Latch *
vn_worker_find_latch(VnWorkerKind *kind, int from, Oid dbid)
{
	Latch *latch = NULL;

	if (kind->shared == NULL)
		return NULL;
	vn_worker_lock(kind);
	for (int i = from; i < kind->nslots && latch == NULL; i++)
	{
		VnWorkerSlot *s = vn_worker_slot(kind, i);

		if (s->pid != 0 && s->pid != MyProcPid && (dbid == InvalidOid || s->dbid == dbid))
			latch = s->latch;
	}
	vn_worker_unlock(kind);
	return latch;
}

/* ---- the worker --------------------------------------------------------- */

static void
vn_worker_detach(int code, Datum arg)
{
	vn_worker_lock(my_kind);
	my_slot->pid = 0;
	my_slot->latch = NULL;
	vn_worker_unlock(my_kind);
}

/*
 * vn_worker_attach
 *		The start of every worker's main function: signals, connection to
 *		the slot's database, session settings, the slot filled (and cleared
 *		at exit).  Returns the worker's slot.
 */
VnWorkerSlot *
vn_worker_attach(VnWorkerKind *kind, Datum main_arg)
{
	int	 slot = DatumGetInt32(main_arg);
	char database[NAMEDATALEN];

	strlcpy(database, MyBgworkerEntry->bgw_extra, sizeof(database));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, kind->drain_on_sigterm ? SignalHandlerForShutdownRequest : die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	/*
	 * The statements of a worker handle a batch each, milliseconds of work,
	 * often on tenants' data (handlers, webhook payloads): compiling them
	 * with LLVM costs more than it saves (the functions the outbox calls
	 * turn plan types off, whose penalty costs pushed plans over
	 * jit_above_cost, and JIT took 40% of its CPU), and a compilation is
	 * not interrupted by statement_timeout, so a row shaped to make a plan
	 * expensive could hold a worker far past it.
	 */
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname(kind->type);

	if (kind->shared == NULL)
		elog(FATAL, "%s: shared memory is not set up", kind->type);
	if (slot < 0 || slot >= kind->nslots)
		elog(FATAL, "%s: bad worker slot %d", kind->type, slot);
	my_kind = kind;
	my_slot = vn_worker_slot(kind, slot);
	vn_worker_lock(kind);
	my_slot->pid = MyProcPid;
	my_slot->latch = MyLatch;
	my_slot->dbid = MyDatabaseId;
	strlcpy(my_slot->database, database, NAMEDATALEN);
	my_slot->started_at = GetCurrentTimestamp();
	vn_worker_unlock(kind);
	before_shmem_exit(vn_worker_detach, (Datum) 0);

	my_loop_ctx = AllocSetContextCreate(TopMemoryContext, "ventros worker loop",
										ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(my_loop_ctx);
	return my_slot;
}

/*
 * vn_worker_loop_top
 *		The top of every iteration of a worker's loop: interrupts, a fresh
 *		loop context (current on return), the configuration reloaded after
 *		a SIGHUP.  Returns whether it was reloaded.
 */
bool
vn_worker_loop_top(void)
{
	CHECK_FOR_INTERRUPTS();
	MemoryContextReset(my_loop_ctx);
	MemoryContextSwitchTo(my_loop_ctx);
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

/*
 * vn_worker_wait
 *		Sleep until the latch is set, timeout_ms pass, or sock (when valid)
 *		is readable; the latch is reset when it woke us.  Exits when the
 *		postmaster dies.  Returns WaitLatchOrSocket's events.
 */
int
vn_worker_wait(long timeout_ms, pgsocket sock)
{
	int events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;
	int rc;

	if (sock != PGINVALID_SOCKET)
		events |= WL_SOCKET_READABLE;
	rc = WaitLatchOrSocket(MyLatch, events, sock, timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	return rc;
}

/*
 * vn_worker_begin, vn_worker_end
 *		One transaction step with SPI (worker_spi's sequence); end commits
 *		and returns to the memory context that begin returned (the
 *		caller's).
 */
MemoryContext
vn_worker_begin(const char *activity)
{
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	return caller;
}

void
vn_worker_end(MemoryContext caller)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(caller);
}

/*
 * vn_worker_flush_wal
 *		Flush the WAL inserted so far: every commit this worker has seen is
 *		on disk when it returns.  A worker calls it after a transaction step
 *		that claimed work and before acting on it outside the database
 *		(publishing, sending): a writer with synchronous_commit = off makes
 *		its commit visible before its WAL is flushed, and a crash would then
 *		undo a transaction whose effect is already out (the soak saw one
 *		aggregate version twice, with different contents).  Nothing to do
 *		when all is flushed already (synchronous_commit on).
 *
 *		At the start of a page GetXLogInsertRecPtr points past the page
 *		header, which nothing has written yet; XLogFlush of that position
 *		fails ("xlog flush request ... is not satisfied"), and killed the
 *		publisher with a batch in flight (published again: duplicates).  The
 *		inserted WAL ends at the page boundary then.
 */
void
vn_worker_flush_wal(void)
{
	XLogRecPtr upto = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(upto, wal_segment_size) == SizeOfXLogLongPHD)
		upto -= SizeOfXLogLongPHD;
	else if (upto % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		upto -= SizeOfXLogShortPHD;
	XLogFlush(upto);
}

/*
 * vn_worker_missing_function
 *		In a transaction step: the first of the n regprocedure signatures
 *		that does not name a function of this database, or NULL when all do.
 */
const char *
vn_worker_missing_function(const char *const *signatures, int n)
{
	Oid argtype = TEXTOID;

	for (int i = 0; i < n; i++)
	{
		Datum arg = CStringGetTextDatum(signatures[i]);
		bool  isnull;

		if (SPI_execute_with_args("SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
								  1, &argtype, &arg, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look for %s", signatures[i]);
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			return signatures[i];
	}
	return NULL;
}

/*
 * vn_worker_note_error
 *		Under the caller's lock: record msg as the slot's last error, at at.
 */
void
vn_worker_note_error(VnWorkerSlot *slot, const char *msg, TimestampTz at)
{
	strlcpy(slot->last_error, msg, VN_WORKER_ERRLEN);
	slot->last_error_at = at;
}

/*
 * vn_worker_set_error
 *		Record the worker's last error in its slot; log it when it differs
 *		from the previous one (a broker or a database that stays unusable
 *		logs once).
 */
void
vn_worker_set_error(const char *msg)
{
	bool changed;

	vn_worker_lock(my_kind);
	changed = strncmp(my_slot->last_error, msg, VN_WORKER_ERRLEN - 1) != 0;
	vn_worker_note_error(my_slot, msg, GetCurrentTimestamp());
	vn_worker_unlock(my_kind);
	if (changed)
		ereport(LOG,
				(errmsg("%s: %s", my_kind->type, msg)));
}

/* ---- status ------------------------------------------------------------- */

/* The status functions of a library that was not preloaded have nothing to show. */
static void
require_preloaded(bool preloaded)
{
	if (!preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("ventros is not loaded through shared_preload_libraries"),
				 errhint("Add ventros to shared_preload_libraries and restart the server.")));
}

/*
 * vn_worker_database_state
 *		The start of a kind's own status function (one row, for the current
 *		database): 55000 unless preloaded, the function's row type into
 *		*desc, and into copy the slot of the worker serving this database,
 *		zeroed when none does.  Returns whether one does.
 */
bool
vn_worker_database_state(VnWorkerKind *kind, FunctionCallInfo fcinfo, TupleDesc *desc, void *copy)
{
	require_preloaded(kind->shared != NULL);
	if (get_call_result_type(fcinfo, NULL, desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (vn_worker_copy_slot(kind, -1, MyDatabaseId, copy) >= 0)
		return true;
	memset(copy, 0, kind->slot_size);
	return false;
}

/*
 * ventros.worker_status()
 *		One row per slot of every kind of worker: kind, slot, pid (NULL
 *		when not running), database, started_at, last error.
 */
Datum
ventros_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	require_preloaded(vn_worker_nkinds > 0);
	InitMaterializedSRF(fcinfo, 0);
	for (int k = 0; k < vn_worker_nkinds; k++)
	{
		VnWorkerKind *kind = vn_worker_kinds[k];
		VnWorkerSlot *copy = palloc(kind->slot_size);

		for (int i = 0; i < kind->nslots; i++)
		{
			Datum v[7];
			bool  nulls[7];

			vn_worker_copy_slot(kind, i, InvalidOid, copy);
			memset(nulls, 0, sizeof(nulls));
			v[0] = CStringGetTextDatum(kind->type);
			v[1] = Int32GetDatum(i);
			v[2] = Int32GetDatum(copy->pid);
			nulls[2] = copy->pid == 0;
			v[3] = CStringGetTextDatum(copy->database);
			nulls[3] = copy->database[0] == '\0';
			v[4] = TimestampTzGetDatum(copy->started_at);
			nulls[4] = copy->pid == 0 || copy->started_at == 0;
			v[5] = CStringGetTextDatum(copy->last_error);
			nulls[5] = copy->last_error[0] == '\0';
			v[6] = TimestampTzGetDatum(copy->last_error_at);
			nulls[6] = copy->last_error[0] == '\0';
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
		}
		pfree(copy);
	}
	return (Datum) 0;
}
