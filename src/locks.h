/*-------------------------------------------------------------------------
 *
 * locks.h
 *	  Heavyweight locks of Ventros' own, out of reach of SQL's advisory
 *	  lock functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_LOCKS_H
#define VENTROS_LOCKS_H

/*
 * LOCKTAG_ADVISORY classes (locktag_field4).  pg_advisory_lock(bigint) uses
 * 1 and pg_advisory_lock(int, int) uses 2; no SQL function takes any other,
 * so a lock of these classes can be taken only through this module.
 */
#define VN_LOCK_CLASS_PUBLISHER 0x7601	/* one outbox publisher per database */
#define VN_LOCK_CLASS_TENANT_KEY 0x7602 /* ventros.lock_tenant_key() */

/* in locks.c */
extern bool vn_lock_publisher_try(void);
extern bool vn_lock_publisher_release(void);

#endif /* VENTROS_LOCKS_H */
