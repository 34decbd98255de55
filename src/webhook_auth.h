/*-------------------------------------------------------------------------
 *
 * webhook_auth.h
 *	  Constant-time comparison of webhook signatures and tokens.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_WEBHOOK_AUTH_H
#define VENTROS_WEBHOOK_AUTH_H

#include <stddef.h>

/* in webhook_auth.c */
extern bool vn_webhook_auth_equal(const unsigned char *a, const unsigned char *b,
								  size_t len);

#endif /* VENTROS_WEBHOOK_AUTH_H */
