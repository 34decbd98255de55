/*-------------------------------------------------------------------------
 *
 * tenant.h
 *	  Which tenant a transaction acts for, and who may choose it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_TENANT_H
#define VENTROS_TENANT_H

/* in tenant.c */
extern void		   vn_tenant_init(void);
extern const char *vn_current_tenant(void);
extern const char *vn_require_tenant(void);
extern const char *vn_current_actor(void);
extern bool		   vn_session_is_trusted(void);

#endif /* VENTROS_TENANT_H */
