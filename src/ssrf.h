/*-------------------------------------------------------------------------
 *
 * ssrf.h
 *	  The SSRF guard: which URLs and peer addresses the dispatcher may use.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VENTROS_SSRF_H
#define VENTROS_SSRF_H

#include <sys/socket.h>

#define VN_SSRF_MAX_ADDRS 16

/* A URL that passed the guard: what libcurl must be pinned to. */
typedef struct VnSsrfTarget
{
	char					host[256]; /* as libcurl's URL parser sees it, no brackets */
	int						port;
	bool					host_is_literal; /* an IP address, nothing to resolve */
	bool					host_allowed;	 /* named by ventros.http_allow_hosts */
	int						naddrs;
	struct sockaddr_storage addrs[VN_SSRF_MAX_ADDRS];
} VnSsrfTarget;

/* in ssrf.c */
extern void	 vn_ssrf_init(void);
extern char *vn_ssrf_check_url(const char *url, VnSsrfTarget *target,
							   bool *transient);
extern char *vn_ssrf_check_peer(const struct sockaddr *sa, bool host_allowed);
extern void	 vn_ssrf_format_addr(const struct sockaddr *sa, char *buf,
								 size_t len);

#endif /* VENTROS_SSRF_H */
