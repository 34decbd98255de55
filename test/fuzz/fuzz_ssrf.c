/*
 * fuzz_ssrf.c
 *	  The SSRF guard of the dispatcher (src/ssrf.c, included, on pg_shim.c):
 *	  the allow-list parser, URL checks through libcurl's URL parser, the
 *	  address classification and the peer check.
 *
 * Input: the ventros.http_allow_hosts value, a NUL, the URL, a NUL, then
 * the addresses the name "resolves" to: getaddrinfo is replaced by a
 * resolver reading them from the input (a byte whose low bit chooses IPv4,
 * 4 bytes, or IPv6, 16 bytes, repeated), so no lookup leaves the process
 * and every address is reachable.
 *
 * The oracle is a second classification written independently below
 * (must_refuse: loopback, private, link-local, metadata, unique-local and
 * their IPv4-in-IPv6 forms): with an empty allow-list, no address it names
 * may be pinned for an accepted URL or pass the peer check.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

static const uint8_t *fake_addrs;
static size_t		  fake_naddrs;
static int			  fuzz_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
									   struct addrinfo **res);
static void			  fuzz_freeaddrinfo(struct addrinfo *res);

#define getaddrinfo fuzz_getaddrinfo
#define freeaddrinfo fuzz_freeaddrinfo
#include "../../src/ssrf.c"
#undef getaddrinfo
#undef freeaddrinfo

#include "pg_shim.h"

#define FUZZ_ASSERT(cond) \
	do \
	{ \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz invariant failed: %s (line %d)\n", #cond, __LINE__); \
			abort(); \
		} \
	} while (0)

static struct addrinfo *
fake_entry(int family, const uint8_t *bytes)
{
	struct addrinfo			*ai = calloc(1, sizeof(*ai));
	struct sockaddr_storage *ss = calloc(1, sizeof(*ss));

	ai->ai_family = family;
	ai->ai_socktype = SOCK_STREAM;
	ai->ai_addr = (struct sockaddr *) ss;
	if (family == AF_INET)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, bytes, 4);
		ai->ai_addrlen = sizeof(*sin);
	}
	else
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, bytes, 16);
		ai->ai_addrlen = sizeof(*sin6);
	}
	return ai;
}

/* a literal resolves to itself; any other name to the input's addresses */
static int
fuzz_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
				 struct addrinfo **res)
{
	unsigned char	  lit[16];
	struct addrinfo	 *head = NULL;
	struct addrinfo **tail = &head;
	size_t			  i = 0;
	int				  n = 0;

	if (inet_pton(AF_INET, node, lit) == 1)
		*res = fake_entry(AF_INET, lit);
	else if (inet_pton(AF_INET6, node, lit) == 1)
		*res = fake_entry(AF_INET6, lit);
	else
	{
		while (i < fake_naddrs && n < 24)
		{
			bool   v4 = (fake_addrs[i] & 1) == 0;
			size_t len = v4 ? 4 : 16;

			if (i + 1 + len > fake_naddrs)
				break;
			*tail = fake_entry(v4 ? AF_INET : AF_INET6, fake_addrs + i + 1);
			tail = &(*tail)->ai_next;
			i += 1 + len;
			n++;
		}
		if (head == NULL)
			return EAI_NONAME;
		*res = head;
	}
	return 0;
}

static void
fuzz_freeaddrinfo(struct addrinfo *res)
{
	while (res)
	{
		struct addrinfo *next = res->ai_next;

		free(res->ai_addr);
		free(res);
		res = next;
	}
}

/* the oracle: IPv4 ranges no guard may let through (host byte order) */
static bool
v4_must_refuse(uint32 a)
{
	return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 24) == 0 ||
		   (a >> 16) == 0xA9FE ||			   /* 169.254/16, metadata included */
		   (a >> 20) == 0xAC1 ||			   /* 172.16/12 */
		   (a >> 16) == 0xC0A8 ||			   /* 192.168/16 */
		   (a >> 22) == (0x64400000u >> 22) || /* 100.64/10 */
		   (a >> 28) >= 0xE;				   /* multicast, reserved, broadcast */
}

static bool
must_refuse(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return v4_must_refuse(ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
	else
	{
		const unsigned char		  *b = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
		static const unsigned char nat64[12] = {0, 0x64, 0xFF, 0x9B};
		int						   zeros = 0;

		for (int i = 0; i < 15; i++)
			zeros += b[i] == 0;
		if (zeros == 15 && b[15] <= 1)
			return true; /* :: and ::1 */
		if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
			return v4_must_refuse(v4_at(b + 12));
		if (b[0] == 0x20 && b[1] == 0x02)
			return v4_must_refuse(v4_at(b + 2)); /* 6to4 */
		return (b[0] & 0xFE) == 0xFC || (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) || b[0] == 0xFF;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char  *text = malloc(size + 2);
	char  *allow = text;
	char  *url;
	size_t alen,
		ulen;
	VnSsrfTarget target;
	bool		 transient;
	char		*reason;
	bool		 allow_ok;

	memcpy(text, data, size);
	text[size] = text[size + 1] = '\0';
	alen = strlen(allow);
	url = allow + alen + (alen < size ? 1 : 0);
	ulen = strlen(url);
	if ((size_t) (url + ulen - text) < size)
	{
		fake_addrs = data + (url + ulen - text) + 1;
		fake_naddrs = size - (size_t) (url + ulen - text) - 1;
	}
	else
	{
		fake_addrs = NULL;
		fake_naddrs = 0;
	}

	{
		char *value = pstrdup(allow);

		allow_ok = check_allow_hosts(&value, NULL, PGC_S_SESSION);
	}
	vn_http_allow_hosts = allow_ok ? allow : "";

	reason = vn_ssrf_check_url(url, &target, &transient);
	if (reason == NULL)
	{
		FUZZ_ASSERT(target.naddrs >= 1 && target.naddrs <= VN_SSRF_MAX_ADDRS);
		FUZZ_ASSERT(target.host[0] != '\0' && strlen(target.host) < sizeof(target.host));
		FUZZ_ASSERT(!transient);
		for (int i = 0; i < target.naddrs; i++)
		{
			char buf[INET6_ADDRSTRLEN];

			vn_ssrf_format_addr((struct sockaddr *) &target.addrs[i], buf, sizeof(buf));
			FUZZ_ASSERT(strlen(buf) < sizeof(buf));
			if (vn_http_allow_hosts[0] == '\0')
				FUZZ_ASSERT(!must_refuse((struct sockaddr *) &target.addrs[i]));
		}
	}
	else
		FUZZ_ASSERT(reason[0] != '\0');

	/* the peer check on each input address, with and without the host allowed */
	for (size_t i = 0; fake_addrs && i < fake_naddrs;)
	{
		bool			 v4 = (fake_addrs[i] & 1) == 0;
		size_t			 len = v4 ? 4 : 16;
		struct addrinfo *ai;
		char			*peer;

		if (i + 1 + len > fake_naddrs)
			break;
		ai = fake_entry(v4 ? AF_INET : AF_INET6, fake_addrs + i + 1);
		peer = vn_ssrf_check_peer(ai->ai_addr, false);
		if (vn_http_allow_hosts[0] == '\0' && must_refuse(ai->ai_addr))
			FUZZ_ASSERT(peer != NULL);
		FUZZ_ASSERT(vn_ssrf_check_peer(ai->ai_addr, true) == NULL);
		fuzz_freeaddrinfo(ai);
		i += 1 + len;
	}
	shim_reset();
	free(text);
	return 0;
}
