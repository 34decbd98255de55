/*-------------------------------------------------------------------------
 *
 * emit.c
 *	  The one path by which events reach ventros.outbox.
 *
 * Every event, from the engine's triggers or from ventros.emit(), is written
 * by vn_emit() as a row of ventros.outbox in the caller's (sub)transaction:
 * it commits or rolls back with the change it describes.
 *
 * Speed: an event is written for every changed row, so it cannot afford an
 * SPI statement each.  The writer inserts the way logical replication's apply
 * worker does (ExecSimpleRelationInsert: heap insert, constraints, indexes),
 * through an EState built once per transaction and closed at pre-commit.  The
 * relation and its indexes are opened under TopTransactionResourceOwner, so a
 * subtransaction that aborts does not take them away from the cached writer.
 * Column defaults of ventros.outbox are evaluated for columns we do not fill.
 * Each event also gets its row in ventros.outbox_queue (seq, tenant_id,
 * aggregate_id; never failed, not dead), the publisher's to-do list
 * (sql/03_outbox.sql), through the same EState.
 *
 * Order: seq comes from ventros.outbox_seq, which must keep CACHE 1.  Events
 * of one aggregate are written while its row is locked, so their seq order is
 * their commit order; a per-backend sequence cache would break that.
 *
 * The event type catalog (ventros.event_types) is cached as a hash of names,
 * each with the table of its aggregate when one is registered; a statement
 * trigger on the catalog tables sends a relcache invalidation for them, which
 * clears the cache in every backend.
 *
 * Who may emit (docs/events.md, docs/security.md): the engine writes the
 * events of every change it sees.  ventros.emit(), the path of commands that
 * add a business event to their change, is checked against the privileges of
 * the current user (the function's owner inside SECURITY DEFINER commands):
 * an event of an aggregate needs UPDATE on the aggregate's table, so a caller
 * who cannot change invoices cannot say that one was paid; an aggregate
 * without a table is the superuser's.  Some event types are said only by the
 * platform, whoever may change their aggregate (the executor's reports on a
 * rule agents may edit, an account's payment state): they are reserved to a
 * role in the catalog (emitted_by) and need that role's privileges.
 * Anything else a tenant wants to say goes through
 * ventros.emit_custom_event(), as type custom.<name> of the aggregate
 * "custom", which no registered event type may use.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/md5.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "emit.h"
#include "outbox_worker.h"
#include "tenant.h"
#include "trigger.h"
#include "webhook_fanout.h"

/* the columns the writer fills; any other column gets its default */
typedef enum VnOutboxColumn
{
	OB_TENANT_ID,
	OB_SEQ,
	OB_EVENT_ID,
	OB_EVENT_TYPE,
	OB_AGGREGATE_TYPE,
	OB_AGGREGATE_ID,
	OB_AGGREGATE_VERSION,
	OB_PAYLOAD,
	OB_ACTOR,
	OB_OCCURRED_AT,
	OB_NCOLUMNS
} VnOutboxColumn;

static const char *const vn_outbox_column_names[OB_NCOLUMNS] = {
	"tenant_id",
	"seq",
	"event_id",
	"event_type",
	"aggregate_type",
	"aggregate_id",
	"aggregate_version",
	"payload",
	"actor",
	"occurred_at",
};

/* The per-transaction writer: lives in TopTransactionContext. */
typedef struct VnOutboxWriter
{
	EState		   *estate;
	ResultRelInfo  *rri;
	Relation		rel;
	TupleTableSlot *slot;
	ResultRelInfo  *qrri; /* ventros.outbox_queue */
	Relation		qrel;
	TupleTableSlot *qslot;
	Oid				seq_relid;
	AttrNumber		attnum[OB_NCOLUMNS];
	int				ndefaults;
	AttrNumber	   *default_attnum;
	ExprState	  **default_expr;
	bool			stale; /* the outbox changed under us: rebuild */
} VnOutboxWriter;

static VnOutboxWriter *vn_writer = NULL;
static Oid			   vn_outbox_relid = InvalidOid;
static Oid			   vn_outbox_queue_relid = InvalidOid;

/* the columns of ventros.outbox_queue, in order */
#define OQ_SEQ 0
#define OQ_TENANT_ID 1
#define OQ_AGGREGATE_ID 2
#define OQ_NEXT_ATTEMPT_AT 3
#define OQ_DEAD 4
#define OQ_NCOLUMNS 5

/* cache of registered event types: name -> aggregate and its table */
typedef struct VnEventTypeEntry
{
	char event_type[NAMEDATALEN * 2];
	char aggregate[NAMEDATALEN];
	Oid	 table_relid; /* InvalidOid: no registered table */
	bool reserved;	  /* emitted only by members of emitter */
	Oid	 emitter;	  /* InvalidOid when reserved: superusers only */
} VnEventTypeEntry;

/* custom events: custom.<name>, of this aggregate */
#define VN_CUSTOM_AGGREGATE "custom"
#define VN_CUSTOM_NAME_MAX 100

static HTAB *vn_event_types = NULL;
static Oid	 vn_event_types_relid = InvalidOid;

PG_FUNCTION_INFO_V1(ventros_emit);
PG_FUNCTION_INFO_V1(ventros_emit_custom_event);
PG_FUNCTION_INFO_V1(ventros_catalog_changed);

/*
 * vn_relid
 *		OID of a relation in schema ventros, or an error naming it.
 */
Oid
vn_relid(const char *relname)
{
	Oid nsp = get_namespace_oid("ventros", false);
	Oid relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation ventros.%s does not exist", relname),
				 errhint("Run CREATE EXTENSION ventros in this database.")));
	return relid;
}

static void
writer_close(void)
{
	ResourceOwner saved = CurrentResourceOwner;

	if (vn_writer == NULL)
		return;
	CurrentResourceOwner = TopTransactionResourceOwner;
	ExecCloseIndices(vn_writer->rri);
	ExecCloseIndices(vn_writer->qrri);
	ExecResetTupleTable(vn_writer->estate->es_tupleTable, false);
	table_close(vn_writer->rel, NoLock);
	table_close(vn_writer->qrel, NoLock);
	FreeExecutorState(vn_writer->estate);
	CurrentResourceOwner = saved;
	vn_writer = NULL;
}

static void
writer_open(void)
{
	MemoryContext	old = MemoryContextSwitchTo(TopTransactionContext);
	ResourceOwner	saved = CurrentResourceOwner;
	VnOutboxWriter *w = palloc0(sizeof(VnOutboxWriter));
	RangeTblEntry  *rte;
	RangeTblEntry  *qrte;
	TupleDesc		desc;
	bool			filled[MaxHeapAttributeNumber + 1] = {0};

	CurrentResourceOwner = TopTransactionResourceOwner;
	PG_TRY();
	{
		vn_outbox_relid = vn_relid("outbox");
		w->seq_relid = vn_relid("outbox_seq");
		w->rel = table_open(vn_outbox_relid, RowExclusiveLock);
		desc = RelationGetDescr(w->rel);
		vn_outbox_queue_relid = vn_relid("outbox_queue");
		w->qrel = table_open(vn_outbox_queue_relid, RowExclusiveLock);
		if (RelationGetDescr(w->qrel)->natts != OQ_NCOLUMNS)
			elog(ERROR, "ventros.outbox_queue does not have %d columns", OQ_NCOLUMNS);

		w->estate = CreateExecutorState();
		rte = makeNode(RangeTblEntry);
		rte->rtekind = RTE_RELATION;
		rte->relid = vn_outbox_relid;
		rte->relkind = RELKIND_RELATION;
		rte->rellockmode = RowExclusiveLock;
		qrte = copyObject(rte);
		qrte->relid = vn_outbox_queue_relid;
		ExecInitRangeTable(w->estate, list_make2(rte, qrte));
		w->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(w->rri, w->rel, 1, NULL, 0);
		ExecOpenIndices(w->rri, false);
		w->slot = ExecInitExtraTupleSlot(w->estate, desc, &TTSOpsVirtual);
		w->qrri = makeNode(ResultRelInfo);
		InitResultRelInfo(w->qrri, w->qrel, 2, NULL, 0);
		ExecOpenIndices(w->qrri, false);
		w->qslot = ExecInitExtraTupleSlot(w->estate, RelationGetDescr(w->qrel), &TTSOpsVirtual);

		for (int c = 0; c < OB_NCOLUMNS; c++)
		{
			w->attnum[c] = get_attnum(vn_outbox_relid, vn_outbox_column_names[c]);
			if (w->attnum[c] == InvalidAttrNumber)
				elog(ERROR, "ventros.outbox has no column %s", vn_outbox_column_names[c]);
			filled[w->attnum[c]] = true;
		}
		w->default_attnum = palloc(sizeof(AttrNumber) * desc->natts);
		w->default_expr = palloc(sizeof(ExprState *) * desc->natts);
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			Node			 *expr;

			if (att->attisdropped || filled[att->attnum])
				continue;
			expr = build_column_default(w->rel, att->attnum);
			if (expr == NULL)
				continue;
			w->default_attnum[w->ndefaults] = att->attnum;
			w->default_expr[w->ndefaults] = ExecPrepareExpr((Expr *) expr, w->estate);
			w->ndefaults++;
		}
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = saved;
		MemoryContextSwitchTo(old);
	}
	PG_END_TRY();
	vn_writer = w;
}

static void
vn_emit_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			writer_close();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* resource owners release the relations; memory goes with the transaction */
			vn_writer = NULL;
			break;
		default:
			/* COMMIT and PREPARE come after PRE_*: already closed */
			vn_writer = NULL;
			break;
	}
}

static void
vn_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == vn_outbox_relid || relid == vn_outbox_queue_relid)
	{
		if (vn_writer)
			vn_writer->stale = true;
	}
	if (relid == InvalidOid || relid == vn_event_types_relid)
	{
		if (vn_event_types)
		{
			hash_destroy(vn_event_types);
			vn_event_types = NULL;
		}
	}
}

void
vn_emit_init(void)
{
	RegisterXactCallback(vn_emit_xact_callback, NULL);
	CacheRegisterRelcacheCallback(vn_relcache_callback, (Datum) 0);
}

static void
load_event_types(void)
{
	HASHCTL ctl;
	HTAB   *h;
	int		ret;

	ctl.keysize = NAMEDATALEN * 2;
	ctl.entrysize = sizeof(VnEventTypeEntry);
	ctl.hcxt = CacheMemoryContext;
	h = hash_create("ventros event types", 512, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	vn_event_types_relid = vn_relid("event_types");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/*
	 * emitted_by through to_jsonb: a database still at 0.1.0, which has no
	 * such column, runs this library between its install and its ALTER
	 * EXTENSION UPDATE.
	 */
	ret = SPI_execute("SELECT e.event_type, e.aggregate, a.table_name::oid, pg_catalog.to_jsonb(e) ->> 'emitted_by' "
					  "FROM ventros.event_types e LEFT JOIN ventros.aggregates a ON a.aggregate = e.aggregate",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read ventros.event_types: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char			 *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char			 *aggregate = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char			 *emitter;
		bool			  isnull;
		Datum			  relid = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull);
		VnEventTypeEntry *e;

		if (strlen(name) >= NAMEDATALEN * 2 || strlen(aggregate) >= NAMEDATALEN)
			continue; /* the catalog's CHECK forbids these */
		e = hash_search(h, name, HASH_ENTER, NULL);
		strlcpy(e->aggregate, aggregate, NAMEDATALEN);
		e->table_relid = isnull ? InvalidOid : DatumGetObjectId(relid);
		emitter = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4);
		e->reserved = emitter != NULL;
		e->emitter = emitter != NULL ? get_role_oid(emitter, true) : InvalidOid;
	}
	SPI_finish();
	vn_event_types = h;
}

/*
 * lookup_event_type
 *		The cache entry of a registered event type (for aggregate_type, when
 *		given), or an error.
 */
static VnEventTypeEntry *
lookup_event_type(const char *event_type, const char *aggregate_type)
{
	VnEventTypeEntry *e = NULL;

	if (vn_event_types == NULL)
		load_event_types();
	if (strlen(event_type) < NAMEDATALEN * 2)
		e = hash_search(vn_event_types, event_type, HASH_FIND, NULL);
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown event type \"%s\"", event_type),
				 errdetail("Every event type must be registered in ventros.event_types."),
				 errhint("Register it with ventros.register_event_type('%s', ...).", event_type)));
	if (aggregate_type != NULL && strcmp(e->aggregate, aggregate_type) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type \"%s\" belongs to aggregate \"%s\", not \"%s\"",
						event_type, e->aggregate, aggregate_type)));
	return e;
}

/*
 * vn_require_event_type
 *		Error unless event_type is registered (for aggregate_type, when given).
 */
void
vn_require_event_type(const char *event_type, const char *aggregate_type)
{
	(void) lookup_event_type(event_type, aggregate_type);
}

/*
 * require_emit_privilege
 *		42501 unless the current user may change the event's aggregate:
 *		UPDATE on its table, or superuser when it has none.  An event type
 *		reserved to a role (ventros.reserve_event_type: the executor's
 *		reports, billing states set from Stripe) needs that role's privileges
 *		instead, whoever may change the aggregate otherwise.  The current
 *		user, not the session user: a SECURITY DEFINER command emits as its
 *		owner.
 */
static void
require_emit_privilege(const VnEventTypeEntry *e)
{
	Oid user = GetUserId();

	if (e->reserved)
	{
		if (superuser_arg(user) || (OidIsValid(e->emitter) && has_privs_of_role(user, e->emitter)))
			return;
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to emit event \"%s\"", e->event_type),
				 errdetail("Only role \"%s\" emits \"%s\"; role \"%s\" may not.",
						   OidIsValid(e->emitter) ? GetUserNameFromId(e->emitter, false) : "superuser",
						   e->event_type, GetUserNameFromId(user, false)),
				 errhint("Emit an event of your own with ventros.emit_custom_event(name, payload): its type is custom.<name>.")));
	}
	if (OidIsValid(e->table_relid) ?
			pg_class_aclcheck(e->table_relid, user, ACL_UPDATE) == ACLCHECK_OK :
			superuser_arg(user))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to emit event \"%s\"", e->event_type),
			 errdetail("Events of aggregate \"%s\" come from changes to it, and role \"%s\" may not change it.",
					   e->aggregate, GetUserNameFromId(user, false)),
			 errhint("Emit an event of your own with ventros.emit_custom_event(name, payload): its type is custom.<name>.")));
}

/*
 * vn_catalog_invalidate
 *		Tell every backend that a catalog relation (or a registered aggregate
 *		table) changed; they drop what they cached from it.
 */
void
vn_catalog_invalidate(Oid relid)
{
	CacheInvalidateRelcacheByRelid(relid);
}

static void
random_uuid(pg_uuid_t *uuid)
{
	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));
	/* RFC 4122 version 4, variant 1, as gen_random_uuid() */
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
}

/*
 * vn_emit
 *		Write one event into ventros.outbox in the current (sub)transaction.
 *		The caller has validated the event type.  Allocates in the current
 *		memory context only transiently.
 */
void
vn_emit(const VnEvent *event)
{
	VnOutboxWriter *w;
	TupleTableSlot *slot;
	ExprContext	   *econtext;
	pg_uuid_t	   *event_id;
	ResourceOwner	saved;
	MemoryContext	oldcxt;
	TupleTableSlot *qslot;

	if (vn_writer != NULL && vn_writer->stale)
		writer_close();
	if (vn_writer == NULL)
		writer_open();
	w = vn_writer;
	slot = w->slot;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);

#define SET_COLUMN(col, datum) \
	do \
	{ \
		slot->tts_values[w->attnum[col] - 1] = (datum); \
		slot->tts_isnull[w->attnum[col] - 1] = false; \
	} while (0)

	event_id = palloc(sizeof(pg_uuid_t));
	random_uuid(event_id);
	SET_COLUMN(OB_TENANT_ID, CStringGetTextDatum(event->tenant_id));
	SET_COLUMN(OB_SEQ, Int64GetDatum(nextval_internal(w->seq_relid, false)));
	SET_COLUMN(OB_EVENT_ID, UUIDPGetDatum(event_id));
	SET_COLUMN(OB_EVENT_TYPE, CStringGetTextDatum(event->event_type));
	SET_COLUMN(OB_AGGREGATE_TYPE, CStringGetTextDatum(event->aggregate_type));
	SET_COLUMN(OB_AGGREGATE_ID, UUIDPGetDatum(event->aggregate_id));
	if (event->aggregate_version > 0)
		SET_COLUMN(OB_AGGREGATE_VERSION, Int32GetDatum(event->aggregate_version));
	SET_COLUMN(OB_PAYLOAD, JsonbPGetDatum(event->payload));
	SET_COLUMN(OB_ACTOR, CStringGetTextDatum(vn_current_actor()));
	SET_COLUMN(OB_OCCURRED_AT, TimestampTzGetDatum(GetCurrentStatementStartTimestamp()));
#undef SET_COLUMN

	econtext = GetPerTupleExprContext(w->estate);
	for (int i = 0; i < w->ndefaults; i++)
	{
		AttrNumber att = w->default_attnum[i];

		slot->tts_values[att - 1] = ExecEvalExprSwitchContext(w->default_expr[i], econtext,
															  &slot->tts_isnull[att - 1]);
	}
	ExecStoreVirtualTuple(slot);

	/* its queue row: the publisher's to-do list */
	qslot = w->qslot;
	ExecClearTuple(qslot);
	qslot->tts_values[OQ_SEQ] = slot->tts_values[w->attnum[OB_SEQ] - 1];
	qslot->tts_values[OQ_TENANT_ID] = slot->tts_values[w->attnum[OB_TENANT_ID] - 1];
	qslot->tts_values[OQ_AGGREGATE_ID] = slot->tts_values[w->attnum[OB_AGGREGATE_ID] - 1];
	qslot->tts_values[OQ_NEXT_ATTEMPT_AT] = (Datum) 0;
	qslot->tts_values[OQ_DEAD] = BoolGetDatum(false);
	memset(qslot->tts_isnull, false, sizeof(bool) * OQ_NCOLUMNS);
	qslot->tts_isnull[OQ_NEXT_ATTEMPT_AT] = true;
	ExecStoreVirtualTuple(qslot);

	/*
	 * Insert as the executor does: in the query context of our EState, which
	 * lives as long as the writer.  Anything the executor sets up lazily on
	 * first use (a trigger's FmgrInfo on ventros.outbox, say) is allocated in
	 * the current context and must not land in the caller's per-tuple one.
	 */
	saved = CurrentResourceOwner;
	CurrentResourceOwner = TopTransactionResourceOwner;
	oldcxt = MemoryContextSwitchTo(w->estate->es_query_cxt);
	PG_TRY();
	{
		ExecSimpleRelationInsert(w->rri, w->estate, slot);
		ExecSimpleRelationInsert(w->qrri, w->estate, qslot);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = saved;
	}
	PG_END_TRY();
	ExecClearTuple(slot);
	ExecClearTuple(qslot);
	ResetPerTupleExprContext(w->estate);
	vn_outbox_wake_at_commit();
	vn_webhook_fanout(event, event_id);
}

/*
 * ventros.emit(event_type text, aggregate_type text, aggregate_id uuid,
 *				payload jsonb) RETURNS void
 *		A business event (contact.merged, ...) through the engine's path.
 *		The aggregate version is the aggregate row's, when one is registered
 *		for aggregate_type and the row exists; see ventros.emit in SQL.
 */
Datum
ventros_emit(PG_FUNCTION_ARGS)
{
	VnEvent event;
	Jsonb  *payload;

	for (int i = 0; i < 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("ventros.emit: %s must not be null",
							i == 0 ? "event_type" : i == 1 ? "aggregate_type" :
															 "aggregate_id")));
	event.event_type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	event.aggregate_type = text_to_cstring(PG_GETARG_TEXT_PP(1));
	event.aggregate_id = PG_GETARG_UUID_P(2);
	if (PG_ARGISNULL(3))
		payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	else
		payload = PG_GETARG_JSONB_P(3);
	if (!JB_ROOT_IS_OBJECT(payload))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event payload must be a JSON object")));
	event.payload = payload;
	event.aggregate_version = PG_ARGISNULL(4) ? 0 : PG_GETARG_INT32(4);
	require_emit_privilege(lookup_event_type(event.event_type, event.aggregate_type));
	event.tenant_id = pstrdup(vn_require_tenant());
	vn_emit(&event);
	PG_RETURN_VOID();
}

/*
 * custom_name_is_valid
 *		Lowercase words of [a-z0-9_], the first starting with a letter, joined
 *		by dots; at most VN_CUSTOM_NAME_MAX characters.
 */
static bool
custom_name_is_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > VN_CUSTOM_NAME_MAX || name[0] < 'a' || name[0] > 'z' || name[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char c = name[i];

		if (c == '.')
		{
			if (name[i - 1] == '.')
				return false;
		}
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

/*
 * custom_aggregate_id
 *		A name-based UUID (version 3, MD5) of tenant and name: the events of one
 *		custom name of a tenant form one stream, published in order.
 */
static pg_uuid_t *
custom_aggregate_id(const char *tenant, const char *name)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	char	   *key = psprintf("%s/%s", tenant, name);
	const char *errstr = NULL;

	if (!pg_md5_binary(key, strlen(key), uuid->data, &errstr))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the id of custom event \"%s\": %s", name, errstr)));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x30;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	pfree(key);
	return uuid;
}

/*
 * ventros.emit_custom_event(name text, payload jsonb) RETURNS text
 *		An event of the tenant's own, as type custom.<name> of aggregate
 *		"custom": never one of Ventros's domain events (no registered type
 *		may use that aggregate), so no consumer mistakes it for one.  Returns
 *		the event type.
 */
Datum
ventros_emit_custom_event(PG_FUNCTION_ARGS)
{
	VnEvent event;
	char   *name;
	Jsonb  *payload;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("ventros.emit_custom_event: name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!custom_name_is_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid custom event name \"%.*s\"", VN_CUSTOM_NAME_MAX, name),
				 errdetail("A custom event name is lowercase words of letters, digits and underscores joined by dots, at most %d characters.",
						   VN_CUSTOM_NAME_MAX),
				 errhint("The event's type is custom.<name>, for example custom.order_shipped.")));
	if (PG_ARGISNULL(1))
		payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	else
		payload = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(payload))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event payload must be a JSON object")));
	event.tenant_id = pstrdup(vn_require_tenant());
	event.event_type = psprintf(VN_CUSTOM_AGGREGATE ".%s", name);
	event.aggregate_type = VN_CUSTOM_AGGREGATE;
	event.aggregate_id = custom_aggregate_id(event.tenant_id, name);
	event.aggregate_version = 0;
	event.payload = payload;
	vn_emit(&event);
	PG_RETURN_TEXT_P(cstring_to_text(event.event_type));
}

/*
 * ventros_catalog_changed
 *		Statement trigger on the catalog tables: invalidate every backend's
 *		caches built from them.
 */
Datum
ventros_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = vn_check_trigger(fcinfo, "ventros_catalog_changed");

	vn_catalog_invalidate(RelationGetRelid(trigdata->tg_relation));
	/* registered aggregate tables cache transitions too: drop them all */
	CacheInvalidateRelcacheAll();
	return PointerGetDatum(NULL);
}
