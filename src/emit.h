/*-------------------------------------------------------------------------
 *
 * emit.h
 *	  Writing domain events into ventros.outbox, in the caller's transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_EMIT_H
#define VENTROS_EMIT_H

#include "utils/jsonb.h"
#include "utils/uuid.h"

typedef struct VnEvent
{
	const char *tenant_id;
	const char *event_type;
	const char *aggregate_type;
	pg_uuid_t  *aggregate_id;
	int32		aggregate_version; /* 0 when unknown */
	Jsonb	   *payload;
} VnEvent;

/* in emit.c */
extern void vn_emit_init(void);
extern void vn_emit(const VnEvent *event);
extern void vn_require_event_type(const char *event_type, const char *aggregate_type);
extern void vn_catalog_invalidate(Oid relid);
extern Oid	vn_relid(const char *relname);

#endif /* VENTROS_EMIT_H */
