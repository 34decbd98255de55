/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Ventros' shared memory: one pair of hooks for every module's segment.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_SHMEM_H
#define VENTROS_SHMEM_H

/* Called once, in the postmaster, when the segment is first created. */
typedef void (*VnShmemInit)(void *segment);

/* Finds the latch of the worker to wake (NULL: none running), in a backend. */
typedef struct Latch *(*VnFindLatch)(void);

/* in shmem.c */
extern void vn_shmem_init(void);
extern void vn_shmem_register(const char *name, Size size, void **segment, VnShmemInit init);
extern int	vn_wake_register(VnFindLatch find_latch);
extern void vn_wake_at_commit(int target);

#endif /* VENTROS_SHMEM_H */
