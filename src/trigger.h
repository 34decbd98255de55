/*-------------------------------------------------------------------------
 *
 * trigger.h
 *	  The one check that a C function of Ventros runs as a trigger.
 *
 * Every SQL-callable C function meant for CREATE TRIGGER starts with
 * vn_check_trigger(): called any other way (SELECT ventros.inbox_wake()), it
 * raises 39P01 with one message for all of them, as ri_triggers.c's
 * ri_CheckTrigger does for the foreign-key triggers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_TRIGGER_H
#define VENTROS_TRIGGER_H

#include "commands/trigger.h"
#include "fmgr.h"

/* The trigger's data; raises 39P01 unless fcinfo is a trigger call. */
static inline TriggerData *
vn_check_trigger(FunctionCallInfo fcinfo, const char *funcname)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager", funcname),
				 errhint("Attach it with CREATE TRIGGER; it is not called directly.")));
	return (TriggerData *) fcinfo->context;
}

#endif /* VENTROS_TRIGGER_H */
