/*
 * guard.h
 *	  Slow and greedy clients: a deadline on receiving a request and on
 *	  sending its answer, connections per client address, and a share of
 *	  each loop's connection slots kept for clients that hold few.
 */
#ifndef VN_HTTP_GUARD_H
#define VN_HTTP_GUARD_H

#include <sys/socket.h>

#include <microhttpd.h>

typedef struct VnGuardConfig
{
	int request_timeout; /* seconds from a request's first byte to its last, and to send an answer */
	int per_ip;			 /* connections per client address, 0: no limit */
	int reserve_pct;	 /* share of a loop's slots for addresses holding few */
} VnGuardConfig;

/* where a connection is: only receiving and sending have a deadline */
typedef enum VnPhase
{
	VN_PHASE_WAITING,	/* before a request's first byte (the idle timeout's) */
	VN_PHASE_RECEIVING, /* headers and body */
	VN_PHASE_SERVING,	/* the request's task (statement_timeout's) */
	VN_PHASE_SENDING	/* the answer */
} VnPhase;

typedef struct VnGuard VnGuard;

/* one per loop, for a daemon of that many connection slots */
extern VnGuard *vn_guard_create(const VnGuardConfig *cfg, unsigned int slots);
/* MHD_OPTION_APC_... callback (cls: the guard): may this address connect? */
extern enum MHD_Result vn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
/* MHD_OPTION_NOTIFY_CONNECTION callback (cls: the guard) */
extern void vn_guard_notify(void *cls, struct MHD_Connection *con, void **socket_context,
							enum MHD_ConnectionNotificationCode toe);
/* the request handling of main.c says where a connection is */
extern void vn_guard_phase(struct MHD_Connection *con, VnPhase phase);
/* from the loop, often: cuts connections past their deadline (arg: the guard) */
extern void vn_guard_tick(void *arg);

#endif
