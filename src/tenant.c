/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  The acting tenant of a transaction, and the rules for choosing it.
 *
 * A session acts for at most one tenant at a time.  Three sources exist, read
 * in this order by vn_current_tenant():
 *
 *	1. ventros.bound_tenant: a PGC_SUSET setting that a superuser attaches to a
 *	   login (ALTER ROLE ... SET ventros.bound_tenant).  A bound login acts for
 *	   that tenant and nothing else; since the setting is SUSET, the login
 *	   itself can neither SET, RESET nor override it.
 *	2. ventros.tenant: chosen per transaction (SET LOCAL) by a trusted session.
 *	3. the "tenant_id" claim of request.jwt.claims (PostgREST's convention), set
 *	   per request by the HTTP front, which connects as a trusted role.
 *
 * "Trusted" means that the session user (not the current user: SET ROLE must
 * not help) is a superuser or a member of ventros_authenticator or
 * ventros_platform_admin, and is not bound: a bound login stays untrusted
 * even when it also holds a trusted role.  Only trusted sessions have their
 * claims read: the tenant_id claim above, and the sub claim that names the
 * actor (vn_current_actor).  Anyone else who tries to choose
 * a tenant, by SET, set_config or a crafted claim, gets 42501; the check hook
 * on ventros.tenant refuses at SET time, and vn_current_tenant() refuses a
 * claim that disagrees with what the session may act for.
 *
 * Cache: the last claims string seen and the tenant and subject parsed from
 * it, in TopMemoryContext, so that policies evaluated per query do not parse
 * JSON again while the claims are unchanged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "tenant.h"

/* GUCs */
static char *vn_tenant = NULL;
static char *vn_bound_tenant = NULL;

/* cache of the last parsed request.jwt.claims */
static char *vn_claims_seen = NULL;
static char *vn_claims_tenant = NULL;
static char *vn_claims_subject = NULL;

#define VN_TENANT_MAX_LEN 128

PG_FUNCTION_INFO_V1(ventros_current_tenant);
PG_FUNCTION_INFO_V1(ventros_require_tenant);
PG_FUNCTION_INFO_V1(ventros_actor);
PG_FUNCTION_INFO_V1(ventros_session_is_trusted);

static inline bool
is_set(const char *value)
{
	return value != NULL && value[0] != '\0';
}

/*
 * vn_session_is_trusted
 *		May this session choose the acting tenant?  Needs catalog access, so
 *		only call it inside a transaction.
 */
bool
vn_session_is_trusted(void)
{
	Oid session_user = GetSessionUserId();
	Oid role;

	if (is_set(vn_bound_tenant))
		return false;
	if (superuser_arg(session_user))
		return true;
	role = get_role_oid("ventros_authenticator", true);
	if (OidIsValid(role) && is_member_of_role(session_user, role))
		return true;
	role = get_role_oid("ventros_platform_admin", true);
	if (OidIsValid(role) && is_member_of_role(session_user, role))
		return true;
	return false;
}

static bool
check_tenant(char **newval, void **extra, GucSource source)
{
	if (!is_set(*newval))
		return true; /* clearing the choice is always allowed */
	if (strlen(*newval) > VN_TENANT_MAX_LEN)
	{
		GUC_check_errdetail("A tenant id has at most %d characters.", VN_TENANT_MAX_LEN);
		return false;
	}
	/* the server's own configuration is the administrator's choice */
	if (source < PGC_S_DATABASE)
		return true;
	if (is_set(vn_bound_tenant) && strcmp(*newval, vn_bound_tenant) == 0)
		return true; /* a bound login naming its own tenant */
	if (IsTransactionState() && vn_session_is_trusted())
		return true;
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("permission denied to choose the acting tenant");
	GUC_check_errdetail("Only sessions of ventros_authenticator or ventros_platform_admin members, not bound to a tenant, may choose one.");
	return false;
}

void
vn_tenant_init(void)
{
	DefineCustomStringVariable("ventros.tenant",
							   "The tenant this transaction acts for (trusted sessions only).",
							   "Set it with SET LOCAL; tenant-bound logins cannot.",
							   &vn_tenant,
							   "",
							   PGC_USERSET,
							   0,
							   check_tenant, NULL, NULL);
	DefineCustomStringVariable("ventros.bound_tenant",
							   "The only tenant a login may act for.",
							   "Attach it to a login with ALTER ROLE ... SET; only superusers can.",
							   &vn_bound_tenant,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
}

/*
 * Parse request.jwt.claims when it changed since the last call; remember the
 * tenant_id and sub claims.
 */
static void
refresh_claims(void)
{
	const char	 *claims = GetConfigOption("request.jwt.claims", true, false);
	MemoryContext old;
	Jsonb		 *jb;
	JsonbValue	  key;
	JsonbValue	 *v;

	if (!is_set(claims))
		claims = "";
	if (vn_claims_seen != NULL && strcmp(vn_claims_seen, claims) == 0)
		return;

	if (vn_claims_seen)
		pfree(vn_claims_seen);
	if (vn_claims_tenant)
		pfree(vn_claims_tenant);
	if (vn_claims_subject)
		pfree(vn_claims_subject);
	vn_claims_seen = vn_claims_tenant = vn_claims_subject = NULL;
	if (claims[0] == '\0')
	{
		vn_claims_seen = MemoryContextStrdup(TopMemoryContext, "");
		return;
	}

	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims)));
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("request.jwt.claims must be a JSON object")));

	old = MemoryContextSwitchTo(TopMemoryContext);
	key.type = jbvString;
	key.val.string.val = "tenant_id";
	key.val.string.len = strlen("tenant_id");
	v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &key);
	if (v && v->type == jbvString)
		vn_claims_tenant = pnstrdup(v->val.string.val, v->val.string.len);
	key.val.string.val = "sub";
	key.val.string.len = strlen("sub");
	v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &key);
	if (v && v->type == jbvString)
		vn_claims_subject = pnstrdup(v->val.string.val, v->val.string.len);
	vn_claims_seen = pstrdup(claims);
	MemoryContextSwitchTo(old);
}

/*
 * vn_current_tenant
 *		The tenant this transaction acts for, or NULL for none.  The result
 *		points into GUC or cache memory: copy it before the next call.
 *		Raises 42501 when the session chose a tenant it may not act for.
 */
const char *
vn_current_tenant(void)
{
	const char *chosen;

	refresh_claims();
	chosen = is_set(vn_tenant) ? vn_tenant : vn_claims_tenant;

	if (is_set(vn_bound_tenant))
	{
		if (is_set(chosen) && strcmp(chosen, vn_bound_tenant) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" is bound to tenant \"%s\" and cannot act for tenant \"%s\"",
							GetUserNameFromId(GetSessionUserId(), false),
							vn_bound_tenant, chosen)));
		return vn_bound_tenant;
	}
	if (!is_set(chosen))
		return NULL;
	if (!vn_session_is_trusted())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to choose the acting tenant"),
				 errdetail("Role \"%s\" is not trusted to choose a tenant, so its tenant claim \"%s\" is refused.",
						   GetUserNameFromId(GetSessionUserId(), false), chosen),
				 errhint("Bind the login to its tenant with ventros.bind_login().")));
	return chosen;
}

/*
 * vn_require_tenant
 *		As vn_current_tenant(), but 42501 when there is none.
 */
const char *
vn_require_tenant(void)
{
	const char *tenant = vn_current_tenant();

	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("no acting tenant"),
				 errdetail("Role \"%s\" has not chosen a tenant and is not bound to one.",
						   GetUserNameFromId(GetSessionUserId(), false)),
				 errhint("Trusted sessions run SET LOCAL ventros.tenant = '<tenant id>'; logins are bound with ventros.bind_login().")));
	return tenant;
}

/*
 * vn_current_actor
 *		Who acts, for the event log: the JWT subject when the front set one,
 *		else the session user's name.  Points into cache memory or palloc'd.
 *
 * The subject is read only in a trusted session, as the tenant is: any
 * login can set request.jwt.claims, and a bound login that could name its
 * own subject would choose who the event log says acted (and defeat rules
 * such as "members cannot change their own role").  Elsewhere the claim is
 * ignored and the login itself is the actor.
 */
const char *
vn_current_actor(void)
{
	refresh_claims();
	if (is_set(vn_claims_subject) && vn_session_is_trusted())
		return vn_claims_subject;
	return GetUserNameFromId(GetSessionUserId(), false);
}

Datum
ventros_current_tenant(PG_FUNCTION_ARGS)
{
	const char *tenant = vn_current_tenant();

	if (tenant == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(tenant));
}

/* ventros.require_tenant(): in C, as every command and policy calls it */
Datum
ventros_require_tenant(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(vn_require_tenant()));
}

Datum
ventros_actor(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(vn_current_actor()));
}

Datum
ventros_session_is_trusted(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vn_session_is_trusted());
}
