/*-------------------------------------------------------------------------
 *
 * direct_writes.c
 *	  Which writes of an aggregate table are a command's, and what happens
 *	  to the others: the declared outcome of a direct write.
 *
 * A tenant role reaches an aggregate's table two ways: through a command
 * (a function of the extension: create_contact, send_message, ...) or
 * directly (INSERT, UPDATE or DELETE in SQL, or through the api views over
 * HTTP).  Each aggregate declares, per operation, what a direct write is
 * (ventros.register_writes, stored in ventros.aggregate_writes): the same as
 * the command it names, because every rule and effect of that command lives
 * in the data (constraints, the engine's state machine, declared guards,
 * triggers), or refused with 42501 and a hint that names the command.
 *
 * Telling the two apart, once, here:
 *
 *	- Writes by the table's owner are the system's: the extension's SECURITY
 *	  DEFINER commands, the background workers, pg_cron's jobs and the
 *	  superuser.  They are never refused.
 *	- Otherwise a write is a command's while a command of the extension is
 *	  running.  PostgreSQL calls needs_fmgr_hook for every function it looks
 *	  up; for the extension's commands it answers yes, and fmgr_hook then
 *	  counts them in and out (vn_command_depth), on error too (FHET_ABORT).
 *	  No setting, flag or function of SQL sets the count, so a tenant cannot
 *	  claim a command's context: a DO block or a function of its own is not
 *	  in schema ventros, where tenants cannot create functions.
 *
 * A command is a function of schema ventros that is VOLATILE (only those
 * write), written in SQL or PL/pgSQL (the engine's C triggers are not: they
 * run for every write, direct ones included), and that takes no row or
 * table as an argument.  Functions that do (apply_changes, change_row,
 * delete_row, set_enrollment_status, finish_session: the row or table to
 * write is their caller's choice) are building blocks: they act for the
 * command that calls them, and called directly their writes are direct
 * writes.  Trigger functions of the extension are commands: what they write
 * is the system's reaction to a write, and it must not be refused as the
 * tenant's own.
 *
 * Hooked functions are called through fmgr_security_definer, as functions
 * with a SET clause already are (nearly every command pins search_path), so
 * the cost is one hash lookup per call.  The hook must be installed before
 * the first command of a session runs: ventros is preloaded
 * (shared_preload_libraries), as its workers require.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "direct_writes.h"
#include "engine.h"
#include "tenant.h"

/* Commands of the extension now running in this backend. */
static int vn_command_depth = 0;

/* function oid -> whether it is a command; reset when pg_proc changes */
typedef struct VnCommandEntry
{
	Oid	 fn_oid;
	bool is_command;
} VnCommandEntry;

static HTAB *vn_command_functions = NULL;
static Oid	 vn_schema_oid = InvalidOid; /* schema ventros; Invalid: look up */

static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type		prev_fmgr_hook = NULL;

static const char *const vn_write_operations[VN_WRITE_OPERATIONS] = {"INSERT", "UPDATE", "DELETE"};

PG_FUNCTION_INFO_V1(ventros_engine_direct_writes);

static void
command_cache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	if (vn_command_functions != NULL)
	{
		hash_destroy(vn_command_functions);
		vn_command_functions = NULL;
	}
	vn_schema_oid = InvalidOid;
}

/*
 * An argument that names the row or table to write: a building block's.  An
 * array of rows names rows too (the set-based forms of the building blocks,
 * record_session_messages).
 */
static bool
is_row_argument(Oid type)
{
	Oid elem = get_element_type(type);

	return type == REGCLASSOID || IsPolymorphicType(type) || type_is_rowtype(type) ||
		   (OidIsValid(elem) && type_is_rowtype(elem));
}

/* Decide from pg_proc; the caller is in a transaction. */
static bool
classify_function(Oid fn_oid)
{
	HeapTuple	 tuple;
	Form_pg_proc proc;
	bool		 result;

	if (!OidIsValid(vn_schema_oid))
		vn_schema_oid = get_namespace_oid("ventros", true);
	if (!OidIsValid(vn_schema_oid))
		return false; /* the extension is not in this database */
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tuple))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	result = proc->pronamespace == vn_schema_oid &&
			 proc->provolatile == PROVOLATILE_VOLATILE &&
			 proc->prolang != ClanguageId && proc->prolang != INTERNALlanguageId;
	for (int i = 0; result && i < proc->pronargs; i++)
		if (is_row_argument(proc->proargtypes.values[i]))
			result = false;
	ReleaseSysCache(tuple);
	return result;
}

/*
 * is_command
 *		Whether fn_oid is a command of the extension.  Called for every
 *		function PostgreSQL looks up, so built-in functions return at once
 *		and the others are cached.
 */
static bool
is_command(Oid fn_oid)
{
	VnCommandEntry *entry;
	bool			found;

	if (fn_oid < FirstNormalObjectId || !IsTransactionState() || IsBinaryUpgrade)
		return false;
	if (vn_command_functions == NULL)
	{
		HASHCTL ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(VnCommandEntry);
		ctl.hcxt = CacheMemoryContext;
		vn_command_functions = hash_create("ventros commands", 256, &ctl,
										   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(vn_command_functions, &fn_oid, HASH_FIND, NULL);
	if (entry)
		return entry->is_command;
	found = classify_function(fn_oid);
	/* the lookup may have reset the cache (an invalidation): search again */
	if (vn_command_functions == NULL)
		return found;
	entry = hash_search(vn_command_functions, &fn_oid, HASH_ENTER, NULL);
	entry->is_command = found;
	return found;
}

static bool
vn_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	return is_command(fn_oid);
}

/*
 * A call of a hooked function starts, ends or is left by an error.  The
 * call's *private remembers that its start was counted, so its end needs no
 * catalog lookup (it may run while an error unwinds) and a command that
 * started before the library was loaded is not counted out.  *private
 * belongs to the hook chained before this one when there is one (sepgsql
 * keeps a pointer there): then the end asks is_command again, and the count
 * never goes below zero.
 */
#define VN_COUNTED ((Datum) 0x76656e74) /* "vent" */

static void
vn_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, private);
	if (event == FHET_START)
	{
		if (!is_command(flinfo->fn_oid))
			return;
		vn_command_depth++;
		if (prev_fmgr_hook == NULL)
			*private = VN_COUNTED;
		return;
	}
	if (prev_fmgr_hook == NULL ? *private != VN_COUNTED : !is_command(flinfo->fn_oid))
		return;
	if (prev_fmgr_hook == NULL)
		*private = (Datum) 0;
	if (vn_command_depth > 0)
		vn_command_depth--;
}

void
vn_direct_writes_init(void)
{
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = vn_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = vn_fmgr_hook;
	CacheRegisterSyscacheCallback(PROCOID, command_cache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, command_cache_callback, (Datum) 0);
}

void
vn_system_write_begin(void)
{
	vn_command_depth++;
}

void
vn_system_write_end(void)
{
	if (vn_command_depth > 0)
		vn_command_depth--;
}

/* ---- the declaration ------------------------------------------------- */

/*
 * "ventros.a()", "ventros.a() or ventros.b()", "ventros.a(), ventros.b() or
 * ventros.c()"; *first: the first alone.
 */
static char *
command_list(Datum commands, char **first)
{
	Datum		  *names;
	bool		  *nulls;
	int			   n;
	StringInfoData buf;

	deconstruct_array(DatumGetArrayTypeP(commands), TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	*first = NULL;
	if (n == 0)
		return NULL;
	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		char *name = TextDatumGetCString(names[i]);

		if (i > 0)
			appendStringInfoString(&buf, i == n - 1 ? " or " : ", ");
		appendStringInfo(&buf, "%s%s()", strchr(name, '.') ? "" : "ventros.", name);
		if (i == 0)
			*first = pstrdup(buf.data);
	}
	return buf.data;
}

/*
 * vn_direct_writes_load
 *		Fill agg->writes from ventros.aggregate_writes (after the columns are
 *		known); the caller is connected to SPI.  An operation without a row is
 *		refused (undeclared).
 */
void
vn_direct_writes_load(VnAggregate *agg, Relation rel)
{
	Oid			  argtypes[1] = {TEXTOID};
	Datum		  args[1];
	int			  ret;
	MemoryContext old;

	/*
	 * A catalog without the table predates direct writes (a 0.1.0 install
	 * script running on this library, before ALTER EXTENSION UPDATE): it
	 * declares nothing, and nothing is refused, as then.
	 */
	if (!OidIsValid(get_relname_relid("aggregate_writes", get_namespace_oid("ventros", false))))
	{
		for (int op = 0; op < VN_WRITE_OPERATIONS; op++)
			agg->writes[op].declared = agg->writes[op].direct = true;
		return;
	}
	args[0] = CStringGetTextDatum(agg->name);
	ret = SPI_execute_with_args("SELECT operation, direct, commands, columns::text[] "
								"FROM ventros.aggregate_writes WHERE aggregate = $1",
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read ventros.aggregate_writes: %s", SPI_result_code_string(ret));
	old = MemoryContextSwitchTo(agg->cxt);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	 tuple = SPI_tuptable->vals[r];
		TupleDesc	 desc = SPI_tuptable->tupdesc;
		char		*operation = SPI_getvalue(tuple, desc, 1);
		bool		 isnull;
		VnWriteRule *rule = NULL;
		Datum		 columns;

		for (int op = 0; op < VN_WRITE_OPERATIONS; op++)
			if (strcmp(operation, vn_write_operations[op]) == 0)
				rule = &agg->writes[op];
		if (rule == NULL)
			continue; /* the catalog's CHECK forbids it */
		rule->declared = true;
		rule->direct = DatumGetBool(SPI_getbinval(tuple, desc, 2, &isnull));
		rule->commands = command_list(SPI_getbinval(tuple, desc, 3, &isnull), &rule->first_command);
		columns = SPI_getbinval(tuple, desc, 4, &isnull);
		if (!isnull)
		{
			Datum *names;
			bool  *nulls;
			int	   n;

			rule->columns = palloc0(sizeof(bool) * (agg->natts + 1));
			deconstruct_array(DatumGetArrayTypeP(columns), TEXTOID, -1, false, TYPALIGN_INT,
							  &names, &nulls, &n);
			for (int i = 0; i < n; i++)
			{
				char *column = TextDatumGetCString(names[i]);

				for (int a = 1; a <= agg->natts; a++)
					if (agg->colnames[a] && strcmp(agg->colnames[a], column) == 0)
						rule->columns[a] = true;
			}
		}
	}
	MemoryContextSwitchTo(old);
}

/* ---- the check ------------------------------------------------------- */

static void
refuse(VnAggregate *agg, VnWriteRule *rule, const char *operation)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("direct %s of %s rows are refused", operation, agg->name),
			 errdetail("A %s changes only through its commands, which apply its rules and effects.", agg->name),
			 rule->commands ? errhint("Use %s.", rule->commands) : errhint("No command does this: %s rows are written by the system only.", agg->name)));
}

/*
 * A direct write that is the command's sets (INSERT: the others stay NULL)
 * or changes (UPDATE) the command's fields only.
 */
static void
check_columns(VnAggregate *agg, VnWriteRule *rule, TriggerData *td, bool insert)
{
	TupleDesc desc = RelationGetDescr(td->tg_relation);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		AttrNumber		  a = att->attnum;
		Datum			  oldv,
			newv;
		bool oldnull,
			newnull;

		if (att->attisdropped || rule->columns[a] || a == agg->att_id || a == agg->att_tenant ||
			a == agg->att_version || a == agg->att_created || a == agg->att_updated ||
			a == agg->att_deleted)
			continue;
		newv = heap_getattr(insert ? td->tg_trigtuple : td->tg_newtuple, a, desc, &newnull);
		if (insert && newnull)
			continue;
		if (!insert)
		{
			oldv = heap_getattr(td->tg_trigtuple, a, desc, &oldnull);
			if (oldnull == newnull && (oldnull || datumIsEqual(oldv, newv, att->attbyval, att->attlen)))
				continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("direct %s of %s rows may not %s %s", insert ? "inserts" : "updates", agg->name,
						insert ? "set" : "change", NameStr(att->attname)),
				 errdetail("Direct %s of %s rows are the same as %s, which does not %s %s.",
						   insert ? "inserts" : "updates", agg->name, rule->first_command,
						   insert ? "set" : "change", NameStr(att->attname)),
				 insert ? errhint("Create it with %s and set %s afterwards.", rule->first_command, NameStr(att->attname)) : errhint("Use %s.", rule->commands)));
	}
}

static bool
other_tenant(VnAggregate *agg, TriggerData *td)
{
	bool		isnull;
	Datum		tenant = heap_getattr(td->tg_trigtuple, agg->att_tenant,
									  RelationGetDescr(td->tg_relation), &isnull);
	const char *acting = vn_current_tenant();

	return !isnull && acting != NULL && strcmp(TextDatumGetCString(tenant), acting) != 0;
}

/*
 * direct_write_check
 *		A direct write by a tenant role gets the declared outcome of its
 *		aggregate.  The caller has seen that no command is running.
 */
static void
direct_write_check(VnAggregate *agg, TriggerData *td)
{
	int			 op;
	VnWriteRule *rule;

	if (pg_class_ownercheck(RelationGetRelid(td->tg_relation), GetUserId()))
		return;
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
		op = 0;
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		op = 1;
	else
		op = 2;
	rule = &agg->writes[op];
	/*
	 * A new row of another tenant is left to the INSERT policy, which
	 * PostgreSQL checks after the BEFORE triggers: it refuses the row for
	 * commands and direct writes alike, and the tenancy tests see it do so.
	 */
	if (op == 0 && other_tenant(agg, td))
		return;
	if (!rule->declared || !rule->direct)
		refuse(agg, rule, op == 0 ? "inserts" : op == 1 ? "updates" :
														  "deletes");
	if (op != 2 && rule->columns != NULL)
		check_columns(agg, rule, td, op == 0);
}

/*
 * ventros_engine_direct_writes
 *		BEFORE INSERT OR UPDATE OR DELETE, FOR EACH ROW, attached by
 *		ventros.register_aggregate as "_ventros_direct_writes": the name sorts
 *		before every other trigger (PostgreSQL fires them in name order), so a
 *		refused write meets its declared refusal before any guard of the
 *		aggregate or the engine itself.  The row goes on unchanged.
 */
Datum
ventros_engine_direct_writes(PG_FUNCTION_ARGS)
{
	TriggerData *td = vn_engine_check_trigger(fcinfo, "ventros_engine_direct_writes", true);

	if (vn_command_depth == 0)
		direct_write_check(vn_aggregate_for(td->tg_relation), td);
	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
}
