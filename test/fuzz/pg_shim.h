/*
 * pg_shim.h
 *	  The few backend functions the extension's parsers call, reimplemented
 *	  for a libFuzzer process (no server, no memory contexts): see pg_shim.c.
 */
#ifndef VN_PG_SHIM_H
#define VN_PG_SHIM_H

/* frees everything palloc'd since the last call: one input's "context" */
extern void shim_reset(void);

#endif
