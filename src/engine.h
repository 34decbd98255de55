/*-------------------------------------------------------------------------
 *
 * engine.h
 *	  The aggregate engine: per-relation metadata and the row triggers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_ENGINE_H
#define VENTROS_ENGINE_H

#include "access/attnum.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "payload.h"
#include "utils/relcache.h"

typedef struct VnTransition
{
	char *from_state; /* NULL: an allowed initial state */
	char *to_state;
	char *event_type; /* NULL: the aggregate's updated event */
} VnTransition;

/*
 * The declared outcome of a direct write of one operation (INSERT, UPDATE,
 * DELETE) by a tenant role: ventros.aggregate_writes, see direct_writes.c.
 */
#define VN_WRITE_OPERATIONS 3

typedef struct VnWriteRule
{
	bool  declared;		 /* false: no row, refused */
	bool  direct;		 /* the same as the command: allowed */
	char *commands;		 /* "ventros.x() or ventros.y()"; NULL: none */
	char *first_command; /* "ventros.x()": the one a direct write is */
	bool *columns;		 /* per attribute, may be set (INSERT) or
								 * changed (UPDATE); NULL: any */
} VnWriteRule;

/*
 * What the engine knows of one registered aggregate table.  Built from
 * ventros.aggregates and ventros.aggregate_transitions on first use, kept in
 * its own context under CacheMemoryContext, dropped on a relcache
 * invalidation of the table (or of the catalog).
 */
typedef struct VnAggregate
{
	Oid			  relid; /* hash key */
	bool		  valid;
	MemoryContext cxt;
	char		 *name;
	char		 *event_created;
	char		 *event_updated;
	char		 *event_deleted;
	int			  natts;
	AttrNumber	  att_id;
	AttrNumber	  att_tenant;
	AttrNumber	  att_version;
	AttrNumber	  att_created;
	AttrNumber	  att_updated;
	AttrNumber	  att_deleted;
	AttrNumber	  att_state;	  /* InvalidAttrNumber: no state machine */
	bool		 *in_payload;	  /* per attribute: part of event payloads */
	bool		 *quiet;		  /* per attribute: changes alone keep the version */
	char		**field_events;	  /* per attribute: the event naming its change, or NULL */
	char		**previous_names; /* per attribute with a field event: "previous_<column>" */
	bool		  has_field_events;
	char		**colnames;
	VnJsonType	**coltypes;
	FmgrInfo	  state_output;
	bool		  state_is_bool; /* spelled true/false in the catalog */
	int			  ntransitions;
	VnTransition *transitions;
	bool		  has_initial; /* some transition has from_state NULL */
	SPIPlanPtr	  soft_delete_plan;
	VnWriteRule	  writes[VN_WRITE_OPERATIONS]; /* INSERT, UPDATE, DELETE */
} VnAggregate;

/* in engine.c */
extern void vn_engine_init(void);
/*
 * The cached metadata of rel's aggregate, built on first use and rebuilt
 * after a relcache invalidation; the entry asked for last is returned without
 * a hash lookup.  Valid until the next invalidation of rel.
 */
extern VnAggregate *vn_aggregate_for(Relation rel);
extern TriggerData *vn_engine_check_trigger(FunctionCallInfo fcinfo, const char *name, bool before);

/* in state_machine.c */
extern void				   vn_state_machine_load(VnAggregate *agg);
extern const VnTransition *vn_state_transition(const VnAggregate *agg, const char *from_state,
											   const char *to_state, const char *id);

#endif /* VENTROS_ENGINE_H */
