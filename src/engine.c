/*-------------------------------------------------------------------------
 *
 * engine.c
 *	  The aggregate engine: one mechanism for every aggregate table.
 *
 * ventros.register_aggregate() attaches two row triggers to a table:
 *
 *	ventros_engine_before (BEFORE INSERT OR UPDATE OR DELETE, FOR EACH ROW)
 *		sets version, created_at, updated_at and tenant_id on the tuple itself;
 *		refuses a stale or unstated version (VN001), a change of tenant (42501),
 *		an update of a soft-deleted row (P0002) and a status change that the
 *		declared state machine does not allow (VN002); turns a DELETE into an
 *		update of deleted_at (a soft delete) and skips the physical delete.
 *
 *	ventros_engine_after (AFTER INSERT OR UPDATE, FOR EACH ROW)
 *		writes the event for the row that was really written: created (or the
 *		declared initial-state event), updated (payload: the changed fields and
 *		their previous values), deleted, or the transition's event.  Emitting
 *		after the write means that rows skipped by ON CONFLICT DO NOTHING or by
 *		another BEFORE trigger emit nothing, and that an upsert emits only the
 *		event of what it did.
 *
 * The version contract: an UPDATE states the version its caller read, as
 * SET version = <read version>; the engine compares it with the row's and
 * stores the next one.  SET version = version states "whatever is current"
 * explicitly.  An UPDATE that changes no field keeps version and updated_at
 * and emits nothing.
 *
 * Field events (ventros.aggregate_field_events) name the change of one field:
 * after the updated (or transition) event of a live row, each declared column
 * the update changed gets its own event, {"<column>": new, "previous_<column>":
 * old}, without an aggregate version (the engine's events keep consecutive
 * versions).  Written here rather than by a trigger of the aggregate's own, so
 * that a bulk update pays one row trigger, not two and a call of ventros.emit
 * per field.
 *
 * Quiet columns (ventros.aggregates.quiet_columns) are counters and marks the
 * system keeps up to date under the row lock (a session's message counters,
 * a channel's last_message_at).  An UPDATE that changes only quiet columns
 * keeps version and updated_at and emits nothing: the fact is carried by the
 * event of the row that caused it (message.created), and a busy conversation
 * does not make every editor's version stale.
 *
 * Metadata (attribute numbers, payload columns and their JSON types, the
 * state machine, the soft-delete plan) is cached per relation in a hash keyed
 * by relid, as ri_triggers.c caches its plans, and dropped by a relcache
 * invalidation of the table or of the catalog (see emit.c).  A dropped entry's
 * memory is retired until the end of the transaction, since an outer trigger
 * of the same table may still be running when an inner one rebuilds it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "direct_writes.h"
#include "emit.h"
#include "engine.h"
#include "errors.h"
#include "tenant.h"
#include "trigger.h"

static HTAB *vn_aggregates = NULL;
static List *vn_retired_contexts = NIL;

/*
 * The entry found last: a statement's rows fire three row triggers of one
 * table each (the direct-writes guard, before, after), so most lookups ask
 * for the table asked for just before.  Entries never move nor leave the
 * hash (an invalidation only clears valid), so the pointer stays good.
 */
static VnAggregate *vn_last_aggregate = NULL;

PG_FUNCTION_INFO_V1(ventros_engine_before);
PG_FUNCTION_INFO_V1(ventros_engine_after);
PG_FUNCTION_INFO_V1(ventros_engine_refuse_truncate);

static void
engine_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	VnAggregate	   *agg;

	if (vn_aggregates == NULL)
		return;
	if (OidIsValid(relid))
	{
		agg = hash_search(vn_aggregates, &relid, HASH_FIND, NULL);
		if (agg)
			agg->valid = false;
		return;
	}
	hash_seq_init(&status, vn_aggregates);
	while ((agg = hash_seq_search(&status)) != NULL)
		agg->valid = false;
}

static void
engine_xact_callback(XactEvent event, void *arg)
{
	ListCell *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	foreach(lc, vn_retired_contexts)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(vn_retired_contexts);
	vn_retired_contexts = NIL;
}

void
vn_engine_init(void)
{
	CacheRegisterRelcacheCallback(engine_relcache_callback, (Datum) 0);
	RegisterXactCallback(engine_xact_callback, NULL);
}

static AttrNumber
required_column(Relation rel, const char *aggregate, const char *column, Oid type)
{
	TupleDesc desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), column) != 0)
			continue;
		if (type != InvalidOid && att->atttypid != type)
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("column %s of aggregate %s has type %s, not %s",
							column, aggregate, format_type_be(att->atttypid), format_type_be(type))));
		return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("table %s of aggregate %s has no column %s",
					RelationGetRelationName(rel), aggregate, column)));
	return InvalidAttrNumber;
}

/* agg's field events, into agg->cxt; the caller is connected to SPI. */
static void
load_field_events(VnAggregate *agg, Relation rel)
{
	Oid	  argtypes[1] = {TEXTOID};
	Datum args[1];
	int	  ret;

	agg->field_events = MemoryContextAllocZero(agg->cxt, sizeof(char *) * (agg->natts + 1));
	agg->previous_names = MemoryContextAllocZero(agg->cxt, sizeof(char *) * (agg->natts + 1));
	/*
	 * A database still at 0.1.0, which has no such table, runs this library
	 * between its install and its ALTER EXTENSION UPDATE: no field events.
	 */
	if (!OidIsValid(get_relname_relid("aggregate_field_events", get_namespace_oid("ventros", false))))
		return;
	args[0] = CStringGetTextDatum(agg->name);
	ret = SPI_execute_with_args("SELECT column_name::text, event_type "
								"FROM ventros.aggregate_field_events WHERE aggregate = $1",
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read field events of %s: %s", agg->name, SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple  tuple = SPI_tuptable->vals[i];
		char	  *column = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 1);
		char	  *event = SPI_getvalue(tuple, SPI_tuptable->tupdesc, 2);
		AttrNumber att = required_column(rel, agg->name, column, InvalidOid);

		agg->field_events[att] = MemoryContextStrdup(agg->cxt, event);
		agg->previous_names[att] = MemoryContextStrdup(agg->cxt, psprintf("previous_%s", column));
		agg->has_field_events = true;
	}
	for (int a = 1; a <= agg->natts; a++)
		if (agg->field_events[a])
			vn_require_event_type(agg->field_events[a], agg->name);
}

/* Fill agg from the catalog; the caller is connected to SPI. */
static void
load_aggregate(VnAggregate *agg, Relation rel)
{
	Oid			  argtypes[1] = {OIDOID};
	Datum		  args[1];
	int			  ret;
	TupleDesc	  desc = RelationGetDescr(rel);
	char		 *state_column;
	Datum		  redacted;
	Datum		  quiet;
	bool		  isnull;
	bool		  quiet_isnull;
	MemoryContext old;
	Oid			  outfunc;
	bool		  isvarlena;
	bool		  needs_created;

	args[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	ret = SPI_execute_with_args("SELECT aggregate, state_column::text, "
								"coalesce(redacted_columns, '{}')::text[], "
								"coalesce(quiet_columns, '{}')::text[] "
								"FROM ventros.aggregates WHERE table_name = $1",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read ventros.aggregates: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table %s is not a registered aggregate", RelationGetRelationName(rel)),
				 errhint("Attach the engine with ventros.register_aggregate(), never by hand.")));

	old = MemoryContextSwitchTo(agg->cxt);
	agg->name = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	state_column = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	redacted = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	quiet = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &quiet_isnull);

	agg->event_created = psprintf("%s.created", agg->name);
	agg->event_updated = psprintf("%s.updated", agg->name);
	agg->event_deleted = psprintf("%s.deleted", agg->name);
	agg->natts = desc->natts;
	agg->att_id = required_column(rel, agg->name, "id", UUIDOID);
	agg->att_tenant = required_column(rel, agg->name, "tenant_id", TEXTOID);
	agg->att_version = required_column(rel, agg->name, "version", INT4OID);
	agg->att_created = required_column(rel, agg->name, "created_at", TIMESTAMPTZOID);
	agg->att_updated = required_column(rel, agg->name, "updated_at", TIMESTAMPTZOID);
	agg->att_deleted = required_column(rel, agg->name, "deleted_at", TIMESTAMPTZOID);
	agg->att_state = state_column ? required_column(rel, agg->name, state_column, InvalidOid) : InvalidAttrNumber;

	agg->in_payload = palloc0(sizeof(bool) * (desc->natts + 1));
	agg->quiet = palloc0(sizeof(bool) * (desc->natts + 1));
	agg->colnames = palloc0(sizeof(char *) * (desc->natts + 1));
	agg->coltypes = palloc0(sizeof(VnJsonType *) * (desc->natts + 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		agg->in_payload[att->attnum] = true;
		agg->colnames[att->attnum] = pstrdup(NameStr(att->attname));
		agg->coltypes[att->attnum] = vn_json_type_for(att->atttypid, agg->cxt);
	}
	if (!isnull)
	{
		Datum *names;
		bool  *nulls;
		int	   n;

		deconstruct_array(DatumGetArrayTypeP(redacted), TEXTOID, -1, false, TYPALIGN_INT,
						  &names, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			AttrNumber att = required_column(rel, agg->name, TextDatumGetCString(names[i]), InvalidOid);

			agg->in_payload[att] = false;
		}
	}
	if (!quiet_isnull)
	{
		Datum *names;
		bool  *nulls;
		int	   n;

		deconstruct_array(DatumGetArrayTypeP(quiet), TEXTOID, -1, false, TYPALIGN_INT,
						  &names, &nulls, &n);
		for (int i = 0; i < n; i++)
		{
			AttrNumber att = required_column(rel, agg->name, TextDatumGetCString(names[i]), InvalidOid);

			agg->quiet[att] = true;
		}
	}
	if (agg->att_state != InvalidAttrNumber)
	{
		Oid state_type = TupleDescAttr(desc, agg->att_state - 1)->atttypid;

		agg->state_is_bool = (state_type == BOOLOID);
		getTypeOutputInfo(state_type, &outfunc, &isvarlena);
		fmgr_info_cxt(outfunc, &agg->state_output, agg->cxt);
	}
	MemoryContextSwitchTo(old);

	vn_state_machine_load(agg);
	vn_direct_writes_load(agg, rel);
	load_field_events(agg, rel);
	/*
	 * <aggregate>.created is written for a creation whose initial state has
	 * no event of its own; when every initial state declares one (session:
	 * session.started), it is never written and need not be registered.
	 */
	needs_created = !agg->has_initial;
	for (int i = 0; i < agg->ntransitions; i++)
		if (agg->transitions[i].from_state == NULL && agg->transitions[i].event_type == NULL)
			needs_created = true;
	if (needs_created)
		vn_require_event_type(agg->event_created, agg->name);
	vn_require_event_type(agg->event_updated, agg->name);
	vn_require_event_type(agg->event_deleted, agg->name);
	for (int i = 0; i < agg->ntransitions; i++)
		if (agg->transitions[i].event_type)
			vn_require_event_type(agg->transitions[i].event_type, agg->name);
}

/*
 * vn_aggregate_for
 *		The engine's metadata for rel, built on first use.
 */
VnAggregate *
vn_aggregate_for(Relation rel)
{
	Oid			 relid = RelationGetRelid(rel);
	VnAggregate *agg;
	bool		 found;

	if (vn_last_aggregate != NULL && vn_last_aggregate->relid == relid && vn_last_aggregate->valid)
		return vn_last_aggregate;
	if (vn_aggregates == NULL)
	{
		HASHCTL ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(VnAggregate);
		ctl.hcxt = CacheMemoryContext;
		vn_aggregates = hash_create("ventros aggregates", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	agg = hash_search(vn_aggregates, &relid, HASH_ENTER, &found);
	if (found && agg->valid)
	{
		vn_last_aggregate = agg;
		return agg;
	}

	if (found && agg->cxt)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		vn_retired_contexts = lappend(vn_retired_contexts, agg->cxt);
		MemoryContextSwitchTo(old);
	}
	memset(((char *) agg) + sizeof(Oid), 0, sizeof(VnAggregate) - sizeof(Oid));
	agg->cxt = AllocSetContextCreate(CacheMemoryContext, "ventros aggregate",
									 ALLOCSET_SMALL_SIZES);
	MemoryContextCopyAndSetIdentifier(agg->cxt, RelationGetRelationName(rel));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	load_aggregate(agg, rel);
	SPI_finish();
	agg->valid = true;
	vn_last_aggregate = agg;
	return agg;
}

/*
 * vn_engine_check_trigger
 *		The trigger data of one of the engine's row triggers, fired before
 *		(or after) the write as register_aggregate attaches it; 39P01 when
 *		attached any other way.
 */
TriggerData *
vn_engine_check_trigger(FunctionCallInfo fcinfo, const char *name, bool before)
{
	TriggerData *td = vn_check_trigger(fcinfo, name);

	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		(before ? !TRIGGER_FIRED_BEFORE(td->tg_event) : !TRIGGER_FIRED_AFTER(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: must be fired %s, for each row", name, before ? "before" : "after"),
				 errhint("Attach the engine with ventros.register_aggregate(), never by hand.")));
	return td;
}

static char *
uuid_text(Datum id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, id));
}

/* The state as declared in the catalog: text output, booleans spelled out. */
static char *
state_text(VnAggregate *agg, Datum value, bool isnull)
{
	if (isnull)
		return NULL;
	if (agg->state_is_bool)
		return DatumGetBool(value) ? "true" : "false";
	return OutputFunctionCall(&agg->state_output, value);
}

/* ---- BEFORE ---------------------------------------------------------- */

static HeapTuple
before_insert(VnAggregate *agg, TriggerData *td)
{
	HeapTuple tuple = td->tg_trigtuple;
	TupleDesc desc = RelationGetDescr(td->tg_relation);
	Datum	  now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	int		  cols[4];
	Datum	  values[4];
	bool	  nulls[4] = {false, false, false, false};
	int		  n = 0;
	bool	  isnull;

	(void) heap_getattr(tuple, agg->att_deleted, desc, &isnull);
	if (!isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a new %s cannot be deleted already", agg->name),
				 errdetail("deleted_at is set by deleting the %s.", agg->name)));

	if (agg->att_state != InvalidAttrNumber)
	{
		Datum state = heap_getattr(tuple, agg->att_state, desc, &isnull);

		if (!isnull)
			(void) vn_state_transition(agg, NULL, state_text(agg, state, false), NULL);
	}

	(void) heap_getattr(tuple, agg->att_tenant, desc, &isnull);
	if (isnull)
	{
		cols[n] = agg->att_tenant;
		values[n++] = CStringGetTextDatum(vn_require_tenant());
	}
	cols[n] = agg->att_version;
	values[n++] = Int32GetDatum(1);
	cols[n] = agg->att_created;
	values[n++] = now;
	cols[n] = agg->att_updated;
	values[n++] = now;
	return heap_modify_tuple_by_cols(tuple, desc, n, cols, values, nulls);
}

static HeapTuple
before_update(VnAggregate *agg, TriggerData *td)
{
	HeapTuple oldtup = td->tg_trigtuple;
	HeapTuple newtup = td->tg_newtuple;
	TupleDesc desc = RelationGetDescr(td->tg_relation);
	Datum	  oldv,
		newv;
	bool oldnull,
		newnull;
	int32 old_version,
		new_version;
	bool  changed = false;
	int	  cols[3];
	Datum values[3];
	bool  nulls[3] = {false, false, false};
	Datum id = heap_getattr(oldtup, agg->att_id, desc, &oldnull);

	(void) heap_getattr(oldtup, agg->att_deleted, desc, &oldnull);
	if (!oldnull)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("%s %s not found", agg->name, uuid_text(id)),
				 errdetail("It was deleted.")));

	old_version = DatumGetInt32(heap_getattr(oldtup, agg->att_version, desc, &oldnull));
	newv = heap_getattr(newtup, agg->att_version, desc, &newnull);
	if (!bms_is_member(agg->att_version - FirstLowInvalidHeapAttributeNumber, td->tg_updatedcols))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("update of %s %s must state the version it read", agg->name, uuid_text(id)),
				 errdetail("Current version is %d.", old_version),
				 errhint("Add SET version = <the version you read>; write SET version = version to update whatever is current.")));
	if (newnull || (new_version = DatumGetInt32(newv)) != old_version)
		ereport(ERROR,
				(errcode(ERRCODE_VN_STALE_VERSION),
				 errmsg("%s %s has changed since version %s was read", agg->name, uuid_text(id),
						newnull ? "NULL" : psprintf("%d", DatumGetInt32(newv))),
				 errdetail("Current version is %d.", old_version),
				 errhint("Read the %s again and retry with its current version.", agg->name)));

	oldv = heap_getattr(oldtup, agg->att_tenant, desc, &oldnull);
	newv = heap_getattr(newtup, agg->att_tenant, desc, &newnull);
	if (newnull || !datumIsEqual(oldv, newv, false, -1))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("tenant_id of %s %s cannot change", agg->name, uuid_text(id))));
	newv = heap_getattr(newtup, agg->att_id, desc, &newnull);
	if (newnull || !datumIsEqual(id, newv, false, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("id of %s %s cannot change", agg->name, uuid_text(id))));

	for (int i = 0; i < desc->natts && !changed; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		AttrNumber		  a = att->attnum;

		if (att->attisdropped || a == agg->att_version || a == agg->att_created ||
			a == agg->att_updated || agg->quiet[a])
			continue;
		oldv = heap_getattr(oldtup, a, desc, &oldnull);
		newv = heap_getattr(newtup, a, desc, &newnull);
		if (oldnull != newnull ||
			(!oldnull && !datumIsEqual(oldv, newv, att->attbyval, att->attlen)))
			changed = true;
	}

	if (changed && agg->att_state != InvalidAttrNumber)
	{
		char *from;
		char *to;

		oldv = heap_getattr(oldtup, agg->att_state, desc, &oldnull);
		newv = heap_getattr(newtup, agg->att_state, desc, &newnull);
		from = state_text(agg, oldv, oldnull);
		to = state_text(agg, newv, newnull);
		if (from && to && strcmp(from, to) != 0)
			(void) vn_state_transition(agg, from, to, uuid_text(id));
	}

	cols[0] = agg->att_version;
	values[0] = Int32GetDatum(changed ? old_version + 1 : old_version);
	cols[1] = agg->att_created;
	values[1] = heap_getattr(oldtup, agg->att_created, desc, &nulls[1]);
	cols[2] = agg->att_updated;
	if (changed)
		values[2] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	else
		values[2] = heap_getattr(oldtup, agg->att_updated, desc, &nulls[2]);
	return heap_modify_tuple_by_cols(newtup, desc, 3, cols, values, nulls);
}

static void
soft_delete(VnAggregate *agg, TriggerData *td)
{
	Relation rel = td->tg_relation;
	Datum	 args[1];
	int		 ret;

	int guc_level;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (agg->soft_delete_plan == NULL)
	{
		Oid		   argtypes[1] = {TIDOID};
		char	  *sql = psprintf("UPDATE ONLY %s SET deleted_at = pg_catalog.now(), version = version "
									   "WHERE ctid OPERATOR(pg_catalog.=) $1",
								  quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															 RelationGetRelationName(rel)));
		SPIPlanPtr plan = SPI_prepare(sql, 1, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for soft delete of %s: %s", agg->name,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		agg->soft_delete_plan = plan;
	}
	args[0] = PointerGetDatum(&td->tg_trigtuple->t_self);

	/*
	 * The row-level security policies hide soft-deleted rows, and PostgreSQL
	 * checks the new row of an UPDATE against them: let this one update see
	 * the row it deletes.  The setting is restored when the update ends.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("ventros.include_deleted", "on", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* The caller's DELETE was checked (direct_writes.c); its UPDATE is the engine's. */
	vn_system_write_begin();
	PG_TRY();
	{
		ret = SPI_execute_plan(agg->soft_delete_plan, args, NULL, false, 1);
	}
	PG_FINALLY();
	{
		vn_system_write_end();
	}
	PG_END_TRY();
	AtEOXact_GUC(true, guc_level);
	if (ret != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "soft delete of %s touched %lu rows", agg->name, (unsigned long) SPI_processed);
	SPI_finish();
}

Datum
ventros_engine_before(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	VnAggregate *agg;

	vn_engine_check_trigger(fcinfo, "ventros_engine_before", true);
	agg = vn_aggregate_for(td->tg_relation);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		return PointerGetDatum(before_insert(agg, td));
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		return PointerGetDatum(before_update(agg, td));
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		TupleDesc desc = RelationGetDescr(td->tg_relation);
		bool	  isnull;
		Datum	  id = heap_getattr(td->tg_trigtuple, agg->att_id, desc, &isnull);

		(void) heap_getattr(td->tg_trigtuple, agg->att_deleted, desc, &isnull);
		if (!isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 errmsg("%s %s not found", agg->name, uuid_text(id)),
					 errdetail("It was deleted already.")));
		soft_delete(agg, td);
		return PointerGetDatum(NULL); /* the row stays, with deleted_at set */
	}
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("ventros_engine_before: unsupported trigger event")));
	return (Datum) 0;
}

/* ---- AFTER ----------------------------------------------------------- */

static Jsonb *
row_payload(VnAggregate *agg, Datum *values, bool *nulls)
{
	JsonbParseState *state = NULL;
	JsonbValue		*result;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int a = 1; a <= agg->natts; a++)
	{
		if (!agg->in_payload[a])
			continue;
		vn_json_push_key(&state, agg->colnames[a]);
		vn_json_push_datum(&state, WJB_VALUE, values[a - 1], nulls[a - 1], agg->coltypes[a]);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * Per attribute, whether an update changed it: the columns of the payload and
 * those with a field event, never version and the timestamps.
 */
static bool *
changed_columns(VnAggregate *agg, TupleDesc desc, Datum *oldv, bool *oldn, Datum *newv, bool *newn)
{
	bool *changed = palloc0(sizeof(bool) * (agg->natts + 1));

	for (int a = 1; a <= agg->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a - 1);

		if ((!agg->in_payload[a] && agg->field_events[a] == NULL) || a == agg->att_version ||
			a == agg->att_created || a == agg->att_updated)
			continue;
		changed[a] = oldn[a - 1] != newn[a - 1] ||
					 (!oldn[a - 1] && !datumIsEqual(oldv[a - 1], newv[a - 1], att->attbyval, att->attlen));
	}
	return changed;
}

/* {"changed": {col: new, ...}, "previous": {col: old, ...}} */
static Jsonb *
diff_payload(VnAggregate *agg, bool *changed, Datum *oldv, bool *oldn, Datum *newv, bool *newn)
{
	JsonbParseState *state = NULL;
	JsonbValue		*result;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int pass = 0; pass < 2; pass++)
	{
		vn_json_push_key(&state, pass == 0 ? "changed" : "previous");
		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		for (int a = 1; a <= agg->natts; a++)
		{
			if (!changed[a] || !agg->in_payload[a])
				continue;
			vn_json_push_key(&state, agg->colnames[a]);
			if (pass == 0)
				vn_json_push_datum(&state, WJB_VALUE, newv[a - 1], newn[a - 1], agg->coltypes[a]);
			else
				vn_json_push_datum(&state, WJB_VALUE, oldv[a - 1], oldn[a - 1], agg->coltypes[a]);
		}
		pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/* The field events of an update of a live row, after the row's own event. */
static void
emit_field_events(VnAggregate *agg, const VnEvent *row_event, bool *changed, Datum *oldv, bool *oldn,
				  Datum *newv, bool *newn)
{
	for (int a = 1; a <= agg->natts; a++)
	{
		JsonbParseState *state = NULL;
		VnEvent			 event = *row_event;

		if (agg->field_events[a] == NULL || !changed[a])
			continue;
		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		vn_json_push_key(&state, agg->colnames[a]);
		vn_json_push_datum(&state, WJB_VALUE, newv[a - 1], newn[a - 1], agg->coltypes[a]);
		vn_json_push_key(&state, agg->previous_names[a]);
		vn_json_push_datum(&state, WJB_VALUE, oldv[a - 1], oldn[a - 1], agg->coltypes[a]);
		event.payload = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
		event.event_type = agg->field_events[a];
		event.aggregate_version = 0;
		vn_emit(&event);
	}
}

Datum
ventros_engine_after(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	 desc;
	VnAggregate *agg;
	VnEvent		 event;
	HeapTuple	 newtup;
	Datum		*newv;
	bool		*newn;
	bool		*changed;

	vn_engine_check_trigger(fcinfo, "ventros_engine_after", false);
	agg = vn_aggregate_for(td->tg_relation);
	desc = RelationGetDescr(td->tg_relation);

	newtup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	newv = palloc(sizeof(Datum) * desc->natts);
	newn = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(newtup, desc, newv, newn);

	event.tenant_id = TextDatumGetCString(newv[agg->att_tenant - 1]);
	event.aggregate_type = agg->name;
	event.aggregate_id = DatumGetUUIDP(newv[agg->att_id - 1]);
	event.aggregate_version = DatumGetInt32(newv[agg->att_version - 1]);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		const VnTransition *initial = NULL;

		if (agg->att_state != InvalidAttrNumber)
			initial = vn_state_transition(agg, NULL,
										  state_text(agg, newv[agg->att_state - 1], newn[agg->att_state - 1]),
										  NULL);
		event.event_type = (initial && initial->event_type) ? initial->event_type : agg->event_created;
		event.payload = row_payload(agg, newv, newn);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		Datum *oldv = palloc(sizeof(Datum) * desc->natts);
		bool  *oldn = palloc(sizeof(bool) * desc->natts);

		heap_deform_tuple(td->tg_trigtuple, desc, oldv, oldn);
		if (DatumGetInt32(oldv[agg->att_version - 1]) == event.aggregate_version)
			return PointerGetDatum(NULL); /* nothing changed */

		event.event_type = agg->event_updated;
		if (oldn[agg->att_deleted - 1] && !newn[agg->att_deleted - 1])
			event.event_type = agg->event_deleted;
		else if (agg->att_state != InvalidAttrNumber)
		{
			char *from = state_text(agg, oldv[agg->att_state - 1], oldn[agg->att_state - 1]);
			char *to = state_text(agg, newv[agg->att_state - 1], newn[agg->att_state - 1]);

			if (from && to && strcmp(from, to) != 0)
			{
				const VnTransition *t = vn_state_transition(agg, from, to, "");

				if (t && t->event_type)
					event.event_type = t->event_type;
			}
		}
		changed = changed_columns(agg, desc, oldv, oldn, newv, newn);
		event.payload = diff_payload(agg, changed, oldv, oldn, newv, newn);
		vn_emit(&event);
		if (agg->has_field_events && oldn[agg->att_deleted - 1] && newn[agg->att_deleted - 1])
			emit_field_events(agg, &event, changed, oldv, oldn, newv, newn);
		return PointerGetDatum(NULL);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("ventros_engine_after: unsupported trigger event")));

	vn_emit(&event);
	return PointerGetDatum(NULL);
}

Datum
ventros_engine_refuse_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td = vn_check_trigger(fcinfo, "ventros_engine_refuse_truncate");

	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot truncate aggregate table %s", RelationGetRelationName(td->tg_relation)),
			 errdetail("Truncating would change rows without their events."),
			 errhint("Delete the rows instead, or use ventros.erase_tenant().")));
	return (Datum) 0;
}
