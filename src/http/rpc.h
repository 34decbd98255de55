/*
 * rpc.h
 *	  /rpc/<name>: from a request to the call of the function it names.
 */
#ifndef VN_HTTP_RPC_H
#define VN_HTTP_RPC_H

#include "query_shared.h"

/* true when c->q holds the call's statement; false when it holds an error */
extern bool vn_rpc_build(VnQueryCtx *c);

#endif
