/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Requests and attaches the shared memory segments of Ventros' modules.
 *
 * Each module that needs shared memory (every kind of background worker,
 * through the worker kit, worker.c) registers its segment from its init
 * function, during _PG_init in the postmaster: a name, a size, where to
 * store the pointer, and how to initialise it.  One shmem_request_hook asks for the sum, one
 * shmem_startup_hook creates or attaches every segment under
 * AddinShmemInitLock, running the initialiser only when the segment is new
 * (found = false), as pg_stat_statements does.  Both hooks chain to the
 * previous ones.  The registry is filled before any backend exists and never
 * changes after.
 *
 * Wake at commit (pg_net's pattern): a worker registers how to find its
 * latch; a transaction that queued work for it calls vn_wake_at_commit(),
 * which only sets a backend-local flag; at XACT_EVENT_COMMIT the flagged
 * workers' latches are set, on abort nothing happens, so a worker is never
 * woken for work that was rolled back.  Polling stays the fallback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "shmem.h"

#define VN_MAX_SEGMENTS 8

typedef struct VnSegment
{
	const char *name;
	Size		size;
	void	  **segment;
	VnShmemInit init;
} VnSegment;

static VnSegment vn_segments[VN_MAX_SEGMENTS];
static int		 vn_nsegments = 0;

#define VN_MAX_WAKE_TARGETS 4

static VnFindLatch vn_wake_targets[VN_MAX_WAKE_TARGETS];
static int		   vn_nwake_targets = 0;
static bool		   vn_wake_pending[VN_MAX_WAKE_TARGETS]; /* this backend's transaction */

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
vn_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	for (int i = 0; i < vn_nsegments; i++)
		RequestAddinShmemSpace(MAXALIGN(vn_segments[i].size));
}

static void
vn_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (int i = 0; i < vn_nsegments; i++)
	{
		VnSegment *s = &vn_segments[i];
		bool	   found;

		*s->segment = ShmemInitStruct(s->name, s->size, &found);
		if (!found)
		{
			memset(*s->segment, 0, s->size);
			if (s->init)
				s->init(*s->segment);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
vn_wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			for (int i = 0; i < vn_nwake_targets; i++)
			{
				struct Latch *latch;

				if (!vn_wake_pending[i])
					continue;
				vn_wake_pending[i] = false;
				latch = vn_wake_targets[i]();
				if (latch != NULL)
					SetLatch(latch);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			memset(vn_wake_pending, 0, sizeof(vn_wake_pending));
			break;
		default:
			break;
	}
}

/*
 * vn_shmem_init
 *		Install the hooks; _PG_init calls it before the modules register.
 */
void
vn_shmem_init(void)
{
	RegisterXactCallback(vn_wake_xact_callback, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = vn_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = vn_shmem_startup;
}

/*
 * vn_shmem_register
 *		Ask for a zeroed segment of size bytes named name; *segment points to
 *		it in every process once shared memory is attached.  Only from
 *		_PG_init while preloading.
 */
void
vn_shmem_register(const char *name, Size size, void **segment, VnShmemInit init)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	if (vn_nsegments >= VN_MAX_SEGMENTS)
		elog(ERROR, "too many Ventros shared memory segments");
	vn_segments[vn_nsegments].name = name;
	vn_segments[vn_nsegments].size = size;
	vn_segments[vn_nsegments].segment = segment;
	vn_segments[vn_nsegments].init = init;
	vn_nsegments++;
}

/*
 * vn_wake_register
 *		Register a worker to wake at commit; returns its handle for
 *		vn_wake_at_commit (-1 when not preloading: there is no worker).
 */
int
vn_wake_register(VnFindLatch find_latch)
{
	if (!process_shared_preload_libraries_in_progress)
		return -1;
	if (vn_nwake_targets >= VN_MAX_WAKE_TARGETS)
		elog(ERROR, "too many Ventros wake-up targets");
	vn_wake_targets[vn_nwake_targets] = find_latch;
	return vn_nwake_targets++;
}

/*
 * vn_wake_at_commit
 *		Wake the worker registered as target when this transaction commits.
 */
void
vn_wake_at_commit(int target)
{
	if (target >= 0 && target < vn_nwake_targets)
		vn_wake_pending[target] = true;
}
