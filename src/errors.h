/*-------------------------------------------------------------------------
 *
 * errors.h
 *	  Ventros' own SQLSTATEs, defined once.
 *
 * Class VN holds only domain outcomes that the standard codes mislabel; every
 * other case uses the standard SQLSTATE that means exactly it (see the table
 * in docs/sql.md).  PL/pgSQL raises these as ERRCODE = 'VN001'.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_ERRORS_H
#define VENTROS_ERRORS_H

#include "utils/elog.h"

/* stale version: the caller's expected version is not the current one */
#define ERRCODE_VN_STALE_VERSION MAKE_SQLSTATE('V', 'N', '0', '0', '1')
/* a status change that the aggregate's state machine does not allow */
#define ERRCODE_VN_TRANSITION_NOT_ALLOWED MAKE_SQLSTATE('V', 'N', '0', '0', '2')
/* a send to a contact who opted out of the channel (consent withheld) */
#define ERRCODE_VN_OPTED_OUT MAKE_SQLSTATE('V', 'N', '0', '1', '0')
/* a use the tenant's plan does not allow in its billing period (quota) */
#define ERRCODE_VN_PLAN_LIMIT_REACHED MAKE_SQLSTATE('V', 'N', '0', '2', '0')

#endif /* VENTROS_ERRORS_H */
