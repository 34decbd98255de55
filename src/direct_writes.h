/*-------------------------------------------------------------------------
 *
 * direct_writes.h
 *	  Commands versus direct writes of aggregate tables (direct_writes.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_DIRECT_WRITES_H
#define VENTROS_DIRECT_WRITES_H

#include "commands/trigger.h"
#include "utils/relcache.h"

struct VnAggregate;

extern void vn_direct_writes_init(void);

/* The engine's own nested writes (a soft delete's UPDATE) are the system's. */
extern void vn_system_write_begin(void);
extern void vn_system_write_end(void);

/* While the engine loads an aggregate (SPI connected). */
extern void vn_direct_writes_load(struct VnAggregate *agg, Relation rel);


#endif /* VENTROS_DIRECT_WRITES_H */
