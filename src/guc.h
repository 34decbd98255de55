/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  Settings that only SQL reads (limits and visibility); the C modules
 *	  register their own settings in their init functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_GUC_H
#define VENTROS_GUC_H

/* in guc.c */
extern void vn_guc_init(void);

#endif /* VENTROS_GUC_H */
