/*-------------------------------------------------------------------------
 *
 * ventros.c
 *	  Module entry point: _PG_init calls each module's init, nothing else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "automation_worker.h"
#include "direct_writes.h"
#include "emit.h"
#include "engine.h"
#include "guc.h"
#include "http_worker.h"
#include "inbox_worker.h"
#include "outbox_worker.h"
#include "plan_guard.h"
#include "shmem.h"
#include "tenant.h"
#include "webhook_fanout.h"
#include "worker.h"

PG_MODULE_MAGIC;

void _PG_init(void);

void
_PG_init(void)
{
	vn_shmem_init();
	vn_guc_init();
	vn_tenant_init();
	vn_emit_init();
	vn_worker_init();
	vn_http_worker_init();
	vn_inbox_worker_init();
	vn_automation_worker_init();
	vn_engine_init();
	vn_direct_writes_init();
	vn_outbox_init();
	vn_webhook_fanout_init();
	vn_plan_guard_init();
	MarkGUCPrefixReserved("ventros");
}
