/*-------------------------------------------------------------------------
 *
 * webhook_fanout.c
 *	  Webhook subscriptions: every event that matches an active subscription
 *	  of its tenant becomes exactly one delivery, written in the event's own
 *	  transaction (so a delivery exists if and only if its event committed).
 *
 * vn_emit() calls vn_webhook_fanout() for every event it writes.  Most
 * tenants subscribe to nothing and the engine's write path is benchmarked,
 * so the question "may a subscription of this tenant want this event?" is
 * answered from a backend-local cache: a hash of tenant -> the event
 * patterns of its active subscriptions (a tenant with none is cached too,
 * as an empty entry, so its events cost one hash probe).  Only when a
 * pattern matches is ventros.webhook_fanout() called (a kept SPI plan, see
 * sql/92_webhook_deliveries.sql); it matches exactly (patterns and the
 * contact-event filters) and writes the deliveries.  The cache therefore
 * only has to be a superset of the truth; it must never miss a
 * subscription.
 *
 * Invalidation: triggers on ventros.webhook_subscriptions (an insert, a
 * delete, a truncate, or an update that changes which events a subscription
 * receives; not the delivery counters) send a relcache invalidation of the
 * table, and our relcache callback drops the whole cache.  PostgreSQL
 * applies it in this backend at the end of the command (so a subscription
 * created earlier in the same transaction is seen by the next statement),
 * and undoes it on rollback.  Other backends would only apply it when they
 * next lock a relation they do not hold yet, which a transaction in READ
 * COMMITTED writing again to the same tables does not do: so the first
 * event of each statement accepts pending invalidations itself (a flag test
 * when there are none), and each statement fans out with the subscriptions
 * its snapshot sees.  A load that ran while an invalidation arrived may be
 * stale: it is used for the event at hand and not kept (fanout_generation).
 *
 * Privileges: the cache load and the fan-out run as the owner of
 * ventros.webhook_subscriptions with forced row security off for the owner,
 * as ri_triggers.c runs its checks: the acting role (an agent, or anon
 * through a SECURITY DEFINER entry point) need not read subscriptions or
 * write the HTTP queue, and the tenant is the event's, passed explicitly.
 *
 * Events of webhook subscriptions themselves are never delivered (a
 * delivery updates its subscription's counters, which would feed back).
 *
 * Automation rules ask the same question of every event ("may a rule of
 * this tenant want it?"), so the same cache holds, per tenant, the triggers
 * of its enabled rules too, loaded and invalidated with the subscriptions
 * (ventros.automations has the same invalidation triggers).  When one
 * matches, ventros.automation_enqueue() writes the event into the
 * automation executor's queue (sql/83_automation_rules.sql), before the
 * webhook deliveries: it reads the event's seq with currval(), and a
 * delivery may emit events of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "trigger.h"
#include "webhook_fanout.h"

/* tenant ids have at most 128 characters (tenant.c); longer ones are not cached */
#define VN_FANOUT_KEYLEN 129
#define VN_FANOUT_SELF_PREFIX "webhook_subscription."
#define VN_FANOUT_CONTACT_EVENT "contact_event.created"
#define VN_FANOUT_MAX_SCHEDULE 20

/* One tenant: the union of its active subscriptions' event patterns. */
typedef struct VnFanoutTenant
{
	char   tenant_id[VN_FANOUT_KEYLEN]; /* hash key */
	int	   npatterns;
	char **patterns;
	bool   contact_events; /* some subscription wants contact events */
	int	   nrules;
	char **rules; /* triggers of the tenant's enabled automation rules */
} VnFanoutTenant;

static MemoryContext fanout_cxt = NULL;
static HTAB			*fanout_tenants = NULL;
static uint64		 fanout_generation = 0;
static Oid			 fanout_relid = InvalidOid;
static Oid			 fanout_rules_relid = InvalidOid;
static Oid			 fanout_owner = InvalidOid;
static SPIPlanPtr	 load_plan = NULL;
static SPIPlanPtr	 fanout_plan = NULL;
static SPIPlanPtr	 rules_plan = NULL;
static SPIPlanPtr	 enqueue_plan = NULL;
static TimestampTz	 fanout_statement = 0; /* invalidations accepted for it */

/* GUC */
static char *vn_webhook_retry_schedule = NULL;

PG_FUNCTION_INFO_V1(ventros_webhook_subscriptions_changed);

static void
fanout_reset(void)
{
	fanout_generation++;
	fanout_tenants = NULL;
	if (fanout_cxt != NULL)
		MemoryContextReset(fanout_cxt);
}

static void
fanout_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == fanout_relid || relid == fanout_rules_relid)
		fanout_reset();
}

/*
 * A duration list for ventros.webhook_retry_schedule: "5s,5min,30min,2h",
 * each a non-negative number and a unit (ms, s, min, h, d).  Checked here so
 * that the SQL that reads it (ventros.webhook_retry_schedule()) never fails
 * on the write path.
 */
static bool
check_retry_schedule(char **newval, void **extra, GucSource source)
{
	const char *p = *newval ? *newval : "";
	int			n = 0;

	for (;;)
	{
		const char *start;
		bool		digits = false;

		while (*p == ' ')
			p++;
		while (isdigit((unsigned char) *p))
			p++, digits = true;
		if (*p == '.')
		{
			p++;
			while (isdigit((unsigned char) *p))
				p++, digits = true;
		}
		if (!digits)
		{
			GUC_check_errdetail("Each delay is a number and a unit (ms, s, min, h or d), as in \"5s,5min,30min\".");
			return false;
		}
		while (*p == ' ')
			p++;
		start = p;
		while (isalpha((unsigned char) *p))
			p++;
		if (!((p - start == 2 && strncmp(start, "ms", 2) == 0) ||
			  (p - start == 1 && (*start == 's' || *start == 'h' || *start == 'd')) ||
			  (p - start == 3 && strncmp(start, "min", 3) == 0)))
		{
			GUC_check_errdetail("Units are ms, s, min, h and d.");
			return false;
		}
		while (*p == ' ')
			p++;
		if (++n > VN_FANOUT_MAX_SCHEDULE)
		{
			GUC_check_errdetail("At most %d delays.", VN_FANOUT_MAX_SCHEDULE);
			return false;
		}
		if (*p == '\0')
			return true;
		if (*p != ',')
		{
			GUC_check_errdetail("Delays are separated by commas.");
			return false;
		}
		p++;
	}
}

void
vn_webhook_fanout_init(void)
{
	fanout_cxt = AllocSetContextCreate(CacheMemoryContext, "ventros webhook subscriptions",
									   ALLOCSET_SMALL_SIZES);
	CacheRegisterRelcacheCallback(fanout_relcache_callback, (Datum) 0);
	DefineCustomStringVariable("ventros.webhook_retry_schedule",
							   "Delays between the attempts of a webhook delivery (each with +-10 % jitter).",
							   "Comma-separated durations (ms, s, min, h, d); a delivery makes at most one attempt more "
							   "than there are delays, fewer when its subscription's retry_count is smaller.",
							   &vn_webhook_retry_schedule,
							   "5s,5min,30min,2h,5h,10h,10h",
							   PGC_SUSET, 0,
							   check_retry_schedule, NULL, NULL);
}

/*
 * The OID and owner of ventros.webhook_subscriptions, or false when the
 * table does not exist (the extension is being installed or dropped).
 */
static bool
lookup_table(void)
{
	Oid		  nsp = get_namespace_oid("ventros", true);
	Oid		  relid;
	HeapTuple tup;

	if (!OidIsValid(nsp))
		return false;
	relid = get_relname_relid("webhook_subscriptions", nsp);
	if (!OidIsValid(relid))
		return false;
	fanout_rules_relid = get_relname_relid("automations", nsp);
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		return false;
	fanout_owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	fanout_relid = relid;
	return true;
}

static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/* The non-null elements of a text[] datum, copied into cxt. */
static char **
text_array_strings(Datum d, bool isnull, int *count, MemoryContext cxt)
{
	ArrayType *a;
	Datum	  *elems;
	bool	  *nulls;
	int		   n;
	char	 **result;

	*count = 0;
	if (isnull)
		return NULL;
	a = DatumGetArrayTypeP(d);
	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	result = MemoryContextAlloc(cxt, sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			result[(*count)++] = MemoryContextStrdup(cxt, TextDatumGetCString(elems[i]));
	return result;
}

/*
 * load_tenant
 *		Reads the tenant's active subscriptions into *entry (patterns in
 *		cxt).  Called with SPI connected, as the table owner.
 */
static void
load_tenant(const char *tenant_id, VnFanoutTenant *entry, MemoryContext cxt)
{
	Datum arg = CStringGetTextDatum(tenant_id);
	bool  isnull;
	Datum d;
	int	  ret;

	if (load_plan == NULL)
	{
		Oid types[1] = {TEXTOID};

		load_plan = keep_plan("SELECT coalesce(array_agg(DISTINCT e) FILTER (WHERE e IS NOT NULL), '{}'), "
							  "       coalesce(bool_or(w.subscribe_contact_events), false) "
							  "  FROM ventros.webhook_subscriptions w "
							  "  LEFT JOIN LATERAL pg_catalog.unnest(w.events) e ON true "
							  " WHERE w.tenant_id = $1 AND w.active AND w.deleted_at IS NULL",
							  1, types);
	}
	ret = SPI_execute_plan(load_plan, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the webhook subscriptions of tenant \"%s\"", tenant_id);

	entry->contact_events = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	entry->patterns = text_array_strings(d, isnull, &entry->npatterns, cxt);

	entry->nrules = 0;
	entry->rules = NULL;
	if (!OidIsValid(fanout_rules_relid))
		return;
	if (rules_plan == NULL)
	{
		Oid types[1] = {TEXTOID};

		rules_plan = keep_plan("SELECT coalesce(array_agg(DISTINCT CASE a.trigger WHEN 'message.received' "
							   "       THEN 'message.created' ELSE a.trigger END), '{}') "
							   "  FROM ventros.automations a "
							   " WHERE a.tenant_id = $1 AND a.enabled AND a.deleted_at IS NULL",
							   1, types);
	}
	ret = SPI_execute_plan(rules_plan, &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the automation rules of tenant \"%s\"", tenant_id);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	entry->rules = text_array_strings(d, isnull, &entry->nrules, cxt);
}

/* "*" matches every event, "contact.*" every contact.<action>, else equality. */
static bool
pattern_matches(const char *pattern, const char *event_type)
{
	size_t len = strlen(pattern);

	if (len == 1 && pattern[0] == '*')
		return true;
	if (len >= 2 && pattern[len - 1] == '*' && pattern[len - 2] == '.')
		return strncmp(pattern, event_type, len - 1) == 0;
	return strcmp(pattern, event_type) == 0;
}

static bool
rules_may_want(const VnFanoutTenant *entry, const char *event_type)
{
	for (int i = 0; i < entry->nrules; i++)
		if (pattern_matches(entry->rules[i], event_type))
			return true;
	return false;
}

static bool
tenant_may_want(const VnFanoutTenant *entry, const char *event_type)
{
	if (strncmp(event_type, VN_FANOUT_SELF_PREFIX, sizeof(VN_FANOUT_SELF_PREFIX) - 1) == 0)
		return false;
	if (entry->contact_events && strcmp(event_type, VN_FANOUT_CONTACT_EVENT) == 0)
		return true;
	for (int i = 0; i < entry->npatterns; i++)
		if (pattern_matches(entry->patterns[i], event_type))
			return true;
	return false;
}

/*
 * call_fanout
 *		ventros.webhook_fanout() for one event.  Called with SPI connected, as
 *		the table owner.
 */
static void
call_fanout(const VnEvent *event, pg_uuid_t *event_id)
{
	Datum v[8];
	char  nulls[8];
	int	  ret;

	if (fanout_plan == NULL)
	{
		Oid types[8] = {TEXTOID, UUIDOID, TEXTOID, TEXTOID, UUIDOID, INT4OID, JSONBOID, TIMESTAMPTZOID};

		fanout_plan = keep_plan("SELECT ventros.webhook_fanout($1, $2, $3, $4, $5, $6, $7, $8)", 8, types);
	}
	memset(nulls, ' ', sizeof(nulls));
	v[0] = CStringGetTextDatum(event->tenant_id);
	v[1] = UUIDPGetDatum(event_id);
	v[2] = CStringGetTextDatum(event->event_type);
	v[3] = CStringGetTextDatum(event->aggregate_type);
	v[4] = UUIDPGetDatum(event->aggregate_id);
	v[5] = Int32GetDatum(event->aggregate_version);
	if (event->aggregate_version <= 0)
		nulls[5] = 'n';
	v[6] = JsonbPGetDatum(event->payload);
	/* the outbox row's occurred_at (emit.c): the statement's start */
	v[7] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	ret = SPI_execute_plan(fanout_plan, v, nulls, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "ventros.webhook_fanout failed: %s", SPI_result_code_string(ret));
}

/*
 * call_enqueue
 *		ventros.automation_enqueue() for one event.  Called with SPI
 *		connected, as the table owner, right after the event's outbox row was
 *		written (the function reads its seq with currval).
 */
static void
call_enqueue(const VnEvent *event, pg_uuid_t *event_id)
{
	Datum v[4];
	int	  ret;

	if (enqueue_plan == NULL)
	{
		Oid types[4] = {TEXTOID, UUIDOID, TEXTOID, UUIDOID};

		enqueue_plan = keep_plan("SELECT ventros.automation_enqueue($1, $2, $3, $4)", 4, types);
	}
	v[0] = CStringGetTextDatum(event->tenant_id);
	v[1] = UUIDPGetDatum(event_id);
	v[2] = CStringGetTextDatum(event->event_type);
	v[3] = UUIDPGetDatum(event->aggregate_id);
	ret = SPI_execute_plan(enqueue_plan, v, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "ventros.automation_enqueue failed: %s", SPI_result_code_string(ret));
}

/* Whatever a tenant's cache entry says this event needs: deliveries, a queue row. */
static void
fan_out(const VnFanoutTenant *entry, const VnEvent *event, pg_uuid_t *event_id)
{
	if (rules_may_want(entry, event->event_type))
		call_enqueue(event, event_id);
	if (tenant_may_want(entry, event->event_type))
		call_fanout(event, event_id);
}

/*
 * vn_webhook_fanout
 *		Called by vn_emit() after it wrote an event: when an active
 *		subscription of the event's tenant may want it, write the deliveries.
 *		Costs one hash probe for a tenant without a matching subscription.
 */
void
vn_webhook_fanout(const VnEvent *event, pg_uuid_t *event_id)
{
	VnFanoutTenant *entry = NULL;
	VnFanoutTenant	loaded;
	bool			cacheable;
	Oid				save_userid;
	int				save_sec;
	uint64			generation;

	if (GetCurrentStatementStartTimestamp() != fanout_statement)
	{
		AcceptInvalidationMessages();
		fanout_statement = GetCurrentStatementStartTimestamp();
	}
	cacheable = strlen(event->tenant_id) < VN_FANOUT_KEYLEN;
	if (fanout_tenants != NULL && cacheable)
	{
		entry = hash_search(fanout_tenants, event->tenant_id, HASH_FIND, NULL);
		if (entry != NULL && !tenant_may_want(entry, event->event_type) && !rules_may_want(entry, event->event_type))
			return;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&save_userid, &save_sec);
	if (entry == NULL)
	{
		generation = fanout_generation;
		if (!lookup_table())
		{
			SPI_finish();
			return;
		}
		SetUserIdAndSecContext(fanout_owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
		load_tenant(event->tenant_id, &loaded, CurrentMemoryContext);
		if (cacheable && generation == fanout_generation)
		{
			MemoryContext old;
			bool		  found;

			/* keep it: copy into the cache's context */
			old = MemoryContextSwitchTo(fanout_cxt);
			if (fanout_tenants == NULL)
			{
				HASHCTL ctl;

				ctl.keysize = VN_FANOUT_KEYLEN;
				ctl.entrysize = sizeof(VnFanoutTenant);
				ctl.hcxt = fanout_cxt;
				fanout_tenants = hash_create("ventros webhook subscriptions", 64, &ctl,
											 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			}
			entry = hash_search(fanout_tenants, event->tenant_id, HASH_ENTER, &found);
			entry->contact_events = loaded.contact_events;
			entry->npatterns = loaded.npatterns;
			entry->patterns = palloc(sizeof(char *) * Max(loaded.npatterns, 1));
			for (int i = 0; i < loaded.npatterns; i++)
				entry->patterns[i] = pstrdup(loaded.patterns[i]);
			entry->nrules = loaded.nrules;
			entry->rules = palloc(sizeof(char *) * Max(loaded.nrules, 1));
			for (int i = 0; i < loaded.nrules; i++)
				entry->rules[i] = pstrdup(loaded.rules[i]);
			MemoryContextSwitchTo(old);
		}
		fan_out(&loaded, event, event_id);
	}
	else
	{
		SetUserIdAndSecContext(fanout_owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_NOFORCE_RLS);
		fan_out(entry, event, event_id);
	}
	SetUserIdAndSecContext(save_userid, save_sec);
	SPI_finish();
}

/*
 * ventros.webhook_subscriptions_changed(): trigger on the subscriptions
 * table; every backend drops its cache when the change commits (this one
 * at the end of the command).
 */
Datum
ventros_webhook_subscriptions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = vn_check_trigger(fcinfo, "ventros_webhook_subscriptions_changed");

	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
