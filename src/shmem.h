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
typedef void (*VnShmemInit) (void *segment);

/* in shmem.c */
extern void vn_shmem_init(void);
extern void vn_shmem_register(const char *name, Size size, void **segment, VnShmemInit init);

#endif							/* VENTROS_SHMEM_H */
