/*-------------------------------------------------------------------------
 *
 * payload.h
 *	  Event payloads: SQL values and rows turned into jsonb, as to_jsonb()
 *	  would, with the per-column type information looked up once.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_PAYLOAD_H
#define VENTROS_PAYLOAD_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "utils/jsonb.h"

/* How one type becomes JSON; built once per column and kept in a cache. */
typedef enum VnJsonKind
{
	VN_JSON_BOOL,
	VN_JSON_INTEGER,
	VN_JSON_FLOAT,
	VN_JSON_NUMERIC,
	VN_JSON_DATETIME,
	VN_JSON_JSONB,
	VN_JSON_JSON,
	VN_JSON_ARRAY,
	VN_JSON_TEXT /* anything else: its text output */
} VnJsonKind;

typedef struct VnJsonType
{
	Oid		   typid; /* base type (domains resolved) */
	VnJsonKind kind;
	FmgrInfo   output; /* for VN_JSON_TEXT and floats */
	/* arrays only */
	int16			   elmlen;
	bool			   elmbyval;
	char			   elmalign;
	struct VnJsonType *element;
} VnJsonType;

/* in payload.c */
extern VnJsonType *vn_json_type_for(Oid typid, MemoryContext cxt);
extern void		   vn_json_push_datum(JsonbParseState **state, JsonbIteratorToken token,
									  Datum value, bool isnull, const VnJsonType *type);
extern void		   vn_json_push_key(JsonbParseState **state, const char *key);

#endif /* VENTROS_PAYLOAD_H */
