/*
 * guard.c
 *	  Slow and greedy clients.
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that
 * sends one header byte every few seconds never trips it, and a few
 * hundred such connections hold every slot while nobody else is served.
 * Three bounds close that, none of which needs credentials to be useful:
 *
 *	- a deadline per request (VENTROS_HTTP_REQUEST_TIMEOUT): from the first
 *	  byte of a request to its last (headers and body), and again from the
 *	  answer's first byte to its last, however steadily bytes trickle;
 *	- connections per client address (VENTROS_HTTP_PER_IP_LIMIT), counted
 *	  over every loop;
 *	- a share of each loop's slots (VENTROS_HTTP_RESERVE, percent) that
 *	  only an address holding fewer than VN_GUARD_FEW connections may take
 *	  (a new client, or one with a keep-alive connection or two): when the
 *	  rest are full, whoever holds them cannot take these too.
 *
 * The first byte of a request is seen in the kernel's TCP_INFO
 * (tcpi_last_data_recv: data arrived after the connection went idle),
 * because libmicrohttpd says nothing before a request line is whole, and
 * a request line can trickle too.  A connection past its deadline is shut
 * down under libmicrohttpd (shutdown(2) on its socket): it reads the end
 * of the stream and closes the connection itself, as for any client that
 * hung up.  A connection whose request is being served is never cut:
 * statement_timeout bounds that.
 *
 * Everything per connection belongs to the loop thread of its daemon
 * (callbacks and tick run there); only the per-address counts are shared
 * between loops, under a mutex.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "guard.h"
#include "loop.h"

#define VN_GUARD_BUCKETS 1024
/* "new" clients, for the reserved share: addresses holding fewer connections */
#define VN_GUARD_FEW 4
#define VN_GUARD_TICK_MS 200

typedef struct VnAddr
{
	unsigned char b[16];
	unsigned char len;
} VnAddr;

typedef struct VnAddrCount
{
	VnAddr				addr;
	int					count;
	struct VnAddrCount *next;
} VnAddrCount;

typedef struct VnSock
{
	int			   fd;
	VnAddr		   addr;
	VnPhase		   phase;
	long long	   since_ms; /* the phase's start (CLOCK_MONOTONIC) */
	bool		   cut;
	struct VnSock *prev;
	struct VnSock *next;
} VnSock;

struct VnGuard
{
	VnGuardConfig cfg;
	unsigned int  mark; /* slots open to everyone; the rest to new addresses */
	unsigned int  nconns;
	VnSock		 *socks;
	long long	  last_tick_ms;
};

static VnAddrCount	  *addr_counts[VN_GUARD_BUCKETS];
static pthread_mutex_t addr_lock = PTHREAD_MUTEX_INITIALIZER;

static bool
addr_of(const struct sockaddr *sa, VnAddr *a)
{
	memset(a, 0, sizeof(*a));
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET)
	{
		memcpy(a->b, &((const struct sockaddr_in *) sa)->sin_addr, 4);
		a->len = 4;
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		memcpy(a->b, &((const struct sockaddr_in6 *) sa)->sin6_addr, 16);
		a->len = 16;
		return true;
	}
	return false;
}

static unsigned int
addr_hash(const VnAddr *a)
{
	return vn_hash_bytes(a->b, a->len) % VN_GUARD_BUCKETS;
}

/* adds delta to the address's count; returns the count before */
static int
addr_count(const VnAddr *a, int delta)
{
	VnAddrCount **link = &addr_counts[addr_hash(a)];
	int			  before = 0;

	pthread_mutex_lock(&addr_lock);
	while (*link && !((*link)->addr.len == a->len && memcmp((*link)->addr.b, a->b, a->len) == 0))
		link = &(*link)->next;
	if (*link)
		before = (*link)->count;
	if (delta > 0 && *link == NULL)
	{
		*link = vn_alloc(sizeof(VnAddrCount));
		(*link)->addr = *a;
	}
	if (*link)
	{
		(*link)->count += delta;
		if ((*link)->count <= 0)
		{
			VnAddrCount *gone = *link;

			*link = gone->next;
			free(gone);
		}
	}
	pthread_mutex_unlock(&addr_lock);
	return before;
}

VnGuard *
vn_guard_create(const VnGuardConfig *cfg, unsigned int slots)
{
	VnGuard *g = vn_alloc(sizeof(VnGuard));

	g->cfg = *cfg;
	g->mark = slots - slots * (unsigned int) cfg->reserve_pct / 100;
	if (g->mark < 1)
		g->mark = 1;
	return g;
}

enum MHD_Result
vn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	VnGuard *g = cls;
	VnAddr	 a;
	int		 held;

	if (!addr_of(addr, &a))
		return MHD_YES;
	held = addr_count(&a, 0);
	if (g->cfg.per_ip > 0 && held >= g->cfg.per_ip)
		return MHD_NO;
	if (g->nconns >= g->mark && held >= VN_GUARD_FEW)
		return MHD_NO; /* the reserved share is for addresses holding few */
	return MHD_YES;
}

void
vn_guard_notify(void *cls, struct MHD_Connection *con, void **socket_context,
				enum MHD_ConnectionNotificationCode toe)
{
	VnGuard *g = cls;
	VnSock	*s = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *fd = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *ca = MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		int								one = 1;

		s = vn_alloc(sizeof(VnSock));
		s->fd = fd ? fd->connect_fd : -1;
		/*
		 * Answers go out at once: headers and body may leave in two
		 * writes, and Nagle's algorithm would hold the second until the
		 * client acknowledges the first (which it delays): tens of
		 * milliseconds on a keep-alive connection.
		 */
		if (s->fd >= 0)
			setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (ca && addr_of(ca->client_addr, &s->addr))
			addr_count(&s->addr, 1);
		s->phase = VN_PHASE_WAITING;
		s->since_ms = vn_loop_now_ms();
		s->next = g->socks;
		if (g->socks)
			g->socks->prev = s;
		g->socks = s;
		g->nconns++;
		*socket_context = s;
	}
	else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && s != NULL)
	{
		if (s->addr.len)
			addr_count(&s->addr, -1);
		if (s->prev)
			s->prev->next = s->next;
		else
			g->socks = s->next;
		if (s->next)
			s->next->prev = s->prev;
		g->nconns--;
		free(s);
		*socket_context = NULL;
	}
}

void
vn_guard_phase(struct MHD_Connection *con, VnPhase phase)
{
	const union MHD_ConnectionInfo *info = MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	VnSock						   *s = info ? info->socket_context : NULL;

	if (s == NULL)
		return;
	/* a request line seen after its first byte was: the deadline runs from that byte */
	if (phase == VN_PHASE_RECEIVING && s->phase == VN_PHASE_RECEIVING)
		return;
	s->phase = phase;
	s->since_ms = vn_loop_now_ms();
}

/*
 * Has data arrived since the connection went idle?  Then its request
 * started then (to within a tick).  50 ms of slack: the kernel's clock of
 * the last arrival is in jiffies, and the connection's own start is later
 * than the handshake that set it.
 */
static void
notice_first_byte(VnSock *s, long long now)
{
	struct tcp_info ti;
	socklen_t		len = sizeof(ti);

	if (s->fd < 0 || getsockopt(s->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return;
	if ((long long) ti.tcpi_last_data_recv + 50 < now - s->since_ms)
	{
		s->phase = VN_PHASE_RECEIVING;
		s->since_ms = now - ti.tcpi_last_data_recv;
	}
}

void
vn_guard_tick(void *arg)
{
	VnGuard	 *g = arg;
	long long now = vn_loop_now_ms();
	long long limit = (long long) g->cfg.request_timeout * 1000;

	if (now - g->last_tick_ms < VN_GUARD_TICK_MS)
		return;
	g->last_tick_ms = now;
	for (VnSock *s = g->socks; s; s = s->next)
	{
		if (s->cut)
			continue;
		if (s->phase == VN_PHASE_WAITING)
			notice_first_byte(s, now);
		if ((s->phase == VN_PHASE_RECEIVING || s->phase == VN_PHASE_SENDING) && now - s->since_ms > limit)
		{
			shutdown(s->fd, SHUT_RDWR);
			s->cut = true;
		}
	}
}
