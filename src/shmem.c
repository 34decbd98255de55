/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Requests and attaches the shared memory segments of Ventros' modules.
 *
 * Each module that needs shared memory (the outbox publisher, the HTTP
 * dispatcher) registers its segment from its init function, during
 * _PG_init in the postmaster: a name, a size, where to store the pointer,
 * and how to initialise it.  One shmem_request_hook asks for the sum, one
 * shmem_startup_hook creates or attaches every segment under
 * AddinShmemInitLock, running the initialiser only when the segment is new
 * (found = false), as pg_stat_statements does.  Both hooks chain to the
 * previous ones.  The registry is filled before any backend exists and never
 * changes after.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
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
static int	vn_nsegments = 0;

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
		VnSegment  *s = &vn_segments[i];
		bool		found;

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

/*
 * vn_shmem_init
 *		Install the hooks; _PG_init calls it before the modules register.
 */
void
vn_shmem_init(void)
{
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
