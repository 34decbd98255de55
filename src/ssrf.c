/*-------------------------------------------------------------------------
 *
 * ssrf.c
 *	  The SSRF guard of the HTTP dispatcher (docs/dispatcher.md, design
 *	  channels.md section 6.3).
 *
 * A URL is allowed when, in this order:
 *	1. its scheme is http or https (http only for allow-listed targets);
 *	2. it carries no userinfo and no IPv6 zone, and its host is ASCII;
 *	3. its host is not localhost, *.localhost, metadata or
 *	   metadata.google.internal;
 *	4. every address the host resolves to (getaddrinfo, A and AAAA) lies
 *	   outside the refused IPv4 and IPv6 ranges below (for IPv6: inside
 *	   global unicast 2000::/3 and none of its special ranges); IPv4
 *	   embedded in IPv6 (mapped, NAT64, 6to4) is checked as IPv4.
 * The operator allow-list ventros.http_allow_hosts (superuser only) names
 * hosts (exact, or "*.suffix") that skip rules 1, 3 and 4, and CIDRs whose
 * addresses skip rule 4 (and rule 1 when every address is covered).
 *
 * The URL is parsed by libcurl's own URL parser, so the guard sees the host
 * exactly as the transfer will (numeric spellings such as 0x7f000001 or
 * 127.1 are normalised by it or by getaddrinfo; either way the check runs
 * on the resolved addresses, never on the text).  The dispatcher then pins
 * the connection to the checked addresses (CURLOPT_RESOLVE) and checks the
 * real peer again in its open-socket callback (vn_ssrf_check_peer), which
 * closes DNS rebinding.
 *
 * Everything here returns a palloc'd reason instead of raising, so it can
 * run inside libcurl callbacks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "ssrf.h"

typedef struct VnRange4
{
	uint32		net;
	int			bits;
	const char *label;
} VnRange4;

/* Refused IPv4 ranges (host byte order). */
static const VnRange4 refused4[] = {
	{0x00000000, 8, "\"this network\" (0.0.0.0/8)"},
	{0x0A000000, 8, "private (10.0.0.0/8)"},
	{0x64400000, 10, "carrier-grade NAT (100.64.0.0/10)"},
	{0x7F000000, 8, "loopback (127.0.0.0/8)"},
	{0xA9FEA9FE, 32, "cloud metadata (169.254.169.254)"},
	{0xA9FE0000, 16, "link-local (169.254.0.0/16)"},
	{0xAC100000, 12, "private (172.16.0.0/12)"},
	{0xC0000000, 24, "IETF protocol assignments (192.0.0.0/24)"},
	{0xC0000200, 24, "documentation (192.0.2.0/24)"},
	{0xC0586300, 24, "6to4 relay anycast (192.88.99.0/24)"},
	{0xC0A80000, 16, "private (192.168.0.0/16)"},
	{0xC6120000, 15, "benchmarking (198.18.0.0/15)"},
	{0xC6336400, 24, "documentation (198.51.100.0/24)"},
	{0xCB007100, 24, "documentation (203.0.113.0/24)"},
	{0xE0000000, 4, "multicast (224.0.0.0/4)"},
	{0xFFFFFFFF, 32, "broadcast (255.255.255.255)"},
	{0xF0000000, 4, "reserved (240.0.0.0/4)"},
};

static char *vn_http_allow_hosts = NULL;

static bool
check_allow_hosts(char **newval, void **extra, GucSource source);

/* ---- address classification ---------------------------------------------- */

static const char *
classify4(uint32 a)
{
	int i;

	for (i = 0; i < lengthof(refused4); i++)
	{
		uint32 mask = refused4[i].bits == 0 ? 0 :
											  (uint32) (0xFFFFFFFFu << (32 - refused4[i].bits));

		if ((a & mask) == refused4[i].net)
			return refused4[i].label;
	}
	return NULL;
}

static uint32
v4_at(const unsigned char *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

static bool
prefix_eq(const unsigned char *a, const unsigned char *p, int bits)
{
	int bytes = bits / 8;
	int rest = bits % 8;

	if (memcmp(a, p, bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[bytes] ^ p[bytes]) & (0xFF << (8 - rest)) & 0xFF) == 0;
}

/*
 * classify6
 *		The refused range an IPv6 address lies in, or NULL.  *embedded gets
 *		the IPv4 address carried inside it when there is one.
 */
static const char *
classify6(const unsigned char *a, uint32 *embedded, bool *has_embedded)
{
	static const unsigned char zero[16] = {0};
	static const unsigned char loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
	static const unsigned char nat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
	static const unsigned char nat64local[6] = {0, 0x64, 0xFF, 0x9B, 0, 1};
	static const unsigned char sixtofour[2] = {0x20, 0x02};
	static const unsigned char teredo[4] = {0x20, 0x01, 0, 0};
	static const unsigned char doc[4] = {0x20, 0x01, 0x0D, 0xB8};
	static const unsigned char discard[8] = {0x01, 0, 0, 0, 0, 0, 0, 0};
	static const unsigned char ula[1] = {0xFC};
	static const unsigned char linklocal[2] = {0xFE, 0x80};
	static const unsigned char sitelocal[2] = {0xFE, 0xC0};
	static const unsigned char mcast[1] = {0xFF};

	*has_embedded = false;
	if (memcmp(a, zero, 16) == 0)
		return "unspecified (::)";
	if (memcmp(a, loop, 16) == 0)
		return "loopback (::1)";
	if (prefix_eq(a, mapped, 96))
	{
		*has_embedded = true;
		*embedded = v4_at(a + 12);
		return NULL;
	}
	if (prefix_eq(a, zero, 96))
	{
		/* IPv4-compatible ::a.b.c.d, deprecated: refuse outright */
		return "IPv4-compatible (::/96)";
	}
	if (prefix_eq(a, nat64, 96))
	{
		*has_embedded = true;
		*embedded = v4_at(a + 12);
		return NULL;
	}
	if (prefix_eq(a, nat64local, 48))
		return "local-use NAT64 (64:ff9b:1::/48)";
	if (prefix_eq(a, sixtofour, 16))
	{
		*has_embedded = true;
		*embedded = v4_at(a + 2);
		return NULL;
	}
	if (prefix_eq(a, teredo, 32))
		return "Teredo (2001::/32)";
	if (prefix_eq(a, doc, 32))
		return "documentation (2001:db8::/32)";
	if (prefix_eq(a, discard, 64))
		return "discard-only (100::/64)";
	if (prefix_eq(a, ula, 7))
		return "unique local (fc00::/7)";
	if (prefix_eq(a, linklocal, 10))
		return "link-local (fe80::/10)";
	if (prefix_eq(a, sitelocal, 10))
		return "site-local (fec0::/10)";
	if (prefix_eq(a, mcast, 8))
		return "multicast (ff00::/8)";
	/* everything else outside global unicast is reserved or unassigned */
	if ((a[0] & 0xE0) != 0x20)
		return "not global unicast (outside 2000::/3)";
	return NULL;
}

/* ---- the allow-list ---------------------------------------------------------- */

typedef struct VnAllowEntry
{
	bool		  is_cidr;
	int			  family;
	int			  bits;
	unsigned char addr[16];
	char		  name[256];
} VnAllowEntry;

/*
 * wildcard_too_broad
 *		Whether "*.suffix" would cover more than the subdomains of one
 *		registrable name: "*." (every host), "*.com" (a whole top-level
 *		domain), a suffix with an empty label, or one ending in digits
 *		("*.0.1" would name 127.0.0.1: no top-level domain is numeric).
 *		Two labels are the least a registrable name has; a two-label public
 *		suffix ("co.uk") needs the public suffix list to be told apart, which
 *		we do not ship: docs/security.md asks operators not to list one.
 */
static bool
wildcard_too_broad(const char *suffix)
{
	const char *last;
	int			labels = 1;

	if (suffix[0] == '\0' || suffix[0] == '.' || strstr(suffix, "..") != NULL)
		return true;
	for (const char *p = suffix; *p; p++)
		if (*p == '.')
			labels++;
	last = strrchr(suffix, '.');
	last = last ? last + 1 : suffix;
	if (strspn(last, "0123456789") == strlen(last))
		return true;
	return labels < 2;
}

/*
 * parse_entry
 *		One allow-list entry: a CIDR (a.b.c.d[/n], x::y[/n]) or a host name
 *		("api.example.com", "*.example.com").  False when malformed or, for
 *		a wildcard, too broad (*too_broad set).
 */
static bool
parse_entry(const char *text, VnAllowEntry *e, bool *too_broad)
{
	char   buf[256];
	char  *slash;
	size_t len = strlen(text);

	memset(e, 0, sizeof(*e));
	if (len == 0 || len >= sizeof(buf))
		return false;
	strlcpy(buf, text, sizeof(buf));
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, e->addr) == 1)
		e->family = AF_INET, e->bits = 32;
	else if (inet_pton(AF_INET6, buf, e->addr) == 1)
		e->family = AF_INET6, e->bits = 128;
	if (e->family != 0)
	{
		e->is_cidr = true;
		if (slash)
		{
			char *end;
			long  b = strtol(slash + 1, &end, 10);

			if (*end != '\0' || end == slash + 1 || b < 0 || b > e->bits)
				return false;
			e->bits = (int) b;
		}
		return true;
	}
	if (slash)
		return false;
	for (char *p = buf; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '.' ||
			  (*p == '*' && p == buf && p[1] == '.')))
			return false;
		*p = pg_tolower((unsigned char) *p);
	}
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '.')
		buf[len - 1] = '\0';
	if (buf[0] == '*' && wildcard_too_broad(buf + 1 + (buf[1] == '.')))
	{
		if (too_broad)
			*too_broad = true;
		return false;
	}
	strlcpy(e->name, buf, sizeof(e->name));
	return e->name[0] != '\0';
}

static List *
allow_entries(void)
{
	char	 *raw = pstrdup(vn_http_allow_hosts ? vn_http_allow_hosts : "");
	List	 *items = NIL;
	List	 *result = NIL;
	ListCell *lc;

	if (!SplitGUCList(raw, ',', &items))
		return NIL;
	foreach(lc, items)
	{
		VnAllowEntry *e = palloc(sizeof(VnAllowEntry));

		if (parse_entry((const char *) lfirst(lc), e, NULL))
			result = lappend(result, e);
	}
	return result;
}

static bool
check_allow_hosts(char **newval, void **extra, GucSource source)
{
	char		*raw = pstrdup(*newval ? *newval : "");
	List		*items = NIL;
	ListCell	*lc;
	VnAllowEntry e;

	if (!SplitGUCList(raw, ',', &items))
	{
		GUC_check_errdetail("List syntax is invalid.");
		return false;
	}
	foreach(lc, items)
	{
		bool too_broad = false;

		if (!parse_entry((const char *) lfirst(lc), &e, &too_broad))
		{
			if (too_broad)
				GUC_check_errdetail("\"%s\" covers more than the subdomains of one registrable name.",
									(const char *) lfirst(lc));
			else
				GUC_check_errdetail("\"%s\" is neither a CIDR nor a host name.",
									(const char *) lfirst(lc));
			return false;
		}
	}
	return true;
}

static bool
host_allowed(List *entries, const char *host)
{
	ListCell *lc;
	size_t	  hlen = strlen(host);

	foreach(lc, entries)
	{
		VnAllowEntry *e = lfirst(lc);

		if (e->is_cidr)
			continue;
		if (e->name[0] == '*')
		{
			size_t slen = strlen(e->name + 1); /* ".suffix" */

			if (hlen > slen && strcmp(host + hlen - slen, e->name + 1) == 0)
				return true;
		}
		else if (strcmp(host, e->name) == 0)
			return true;
	}
	return false;
}

static bool
addr_allowed(List *entries, const struct sockaddr *sa)
{
	ListCell *lc;

	foreach(lc, entries)
	{
		VnAllowEntry *e = lfirst(lc);

		if (!e->is_cidr || e->family != sa->sa_family)
			continue;
		if (sa->sa_family == AF_INET &&
			prefix_eq((const unsigned char *) &((const struct sockaddr_in *) sa)->sin_addr,
					  e->addr, e->bits))
			return true;
		if (sa->sa_family == AF_INET6 &&
			prefix_eq((const unsigned char *) &((const struct sockaddr_in6 *) sa)->sin6_addr,
					  e->addr, e->bits))
			return true;
	}
	return false;
}

/* ---- checks -------------------------------------------------------------- */

void
vn_ssrf_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *src = sa->sa_family == AF_INET6 ?
						  (const void *) &((const struct sockaddr_in6 *) sa)->sin6_addr :
						  (const void *) &((const struct sockaddr_in *) sa)->sin_addr;

	if (inet_ntop(sa->sa_family, src, buf, len) == NULL)
		strlcpy(buf, "?", len);
}

/*
 * addr_refusal
 *		The refused range an address lies in (NULL when it may be used);
 *		the allow-list is not consulted here.
 */
static const char *
addr_refusal(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return classify4(ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
	{
		uint32		v4 = 0;
		bool		has_v4;
		const char *r;

		r = classify6((const unsigned char *) &((const struct sockaddr_in6 *) sa)->sin6_addr,
					  &v4, &has_v4);
		if (r == NULL && has_v4)
			r = classify4(v4);
		return r;
	}
	return "not an internet address";
}

/*
 * vn_ssrf_check_peer
 *		The open-socket check: NULL when the dispatcher may connect to this
 *		address, else a palloc'd reason.
 */
char *
vn_ssrf_check_peer(const struct sockaddr *sa, bool host_ok)
{
	const char *r;
	char		a[INET6_ADDRSTRLEN];

	if (host_ok)
		return NULL;
	r = addr_refusal(sa);
	if (r == NULL || addr_allowed(allow_entries(), sa))
		return NULL;
	vn_ssrf_format_addr(sa, a, sizeof(a));
	return psprintf("address %s is %s", a, r);
}

static char *
curl_part(CURLU *u, CURLUPart part, unsigned int flags)
{
	char *s = NULL;
	char *copy;

	if (curl_url_get(u, part, &s, flags) != CURLUE_OK || s == NULL)
		return NULL;
	copy = pstrdup(s);
	curl_free(s);
	return copy;
}

/*
 * vn_ssrf_check_url
 *		NULL when the URL may be called, with *target filled (the host as
 *		libcurl sees it, its port and the checked addresses to pin); else a
 *		palloc'd reason.  *transient tells a refusal that may pass later (the
 *		name did not resolve) from a final one.
 */
char *
vn_ssrf_check_url(const char *url, VnSsrfTarget *target, bool *transient)
{
	CURLU			*u;
	CURLUcode		 rc;
	char			*scheme;
	char			*host;
	char			*port;
	char			*user;
	char			*password;
	char			*zone;
	char			 name[256];
	size_t			 len;
	List			*entries;
	bool			 name_ok;
	bool			 all_covered = true;
	struct addrinfo	 hints;
	struct addrinfo *res = NULL;
	struct addrinfo *ai;
	int				 gai;
	char			*reason = NULL;

	memset(target, 0, sizeof(*target));
	*transient = false;
	u = curl_url();
	if (u == NULL)
		return pstrdup("out of memory parsing the URL");
	rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (rc != CURLUE_OK)
	{
		curl_url_cleanup(u);
		return psprintf("malformed URL: %s", curl_url_strerror(rc));
	}
	scheme = curl_part(u, CURLUPART_SCHEME, 0);
	host = curl_part(u, CURLUPART_HOST, 0);
	port = curl_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
	user = curl_part(u, CURLUPART_USER, 0);
	password = curl_part(u, CURLUPART_PASSWORD, 0);
	zone = curl_part(u, CURLUPART_ZONEID, 0);
	curl_url_cleanup(u);

	if (scheme == NULL || (pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
		return psprintf("scheme \"%s\" is not allowed: only http and https", scheme ? scheme : "");
	if (user != NULL || password != NULL)
		return pstrdup("URLs with userinfo (user:password@) are not allowed");
	if (zone != NULL)
		return pstrdup("IPv6 zone identifiers are not allowed");
	if (host == NULL || host[0] == '\0')
		return pstrdup("the URL has no host");

	/* normalise: no brackets, lowercase, no trailing dot */
	len = strlen(host);
	if (host[0] == '[' && len > 2 && host[len - 1] == ']')
	{
		host[len - 1] = '\0';
		host++;
		target->host_is_literal = true;
	}
	if (strlen(host) >= sizeof(name))
		return pstrdup("host name too long");
	strlcpy(target->host, host, sizeof(target->host));
	for (len = 0; host[len]; len++)
	{
		if ((unsigned char) host[len] >= 0x80)
			return psprintf("host \"%s\" is not ASCII: give internationalized names in punycode", host);
		name[len] = pg_tolower((unsigned char) host[len]);
	}
	name[len] = '\0';
	while (len > 0 && name[len - 1] == '.')
		name[--len] = '\0';
	target->port = port ? atoi(port) : 0;

	entries = allow_entries();
	name_ok = host_allowed(entries, name);
	target->host_allowed = name_ok;
	if (!name_ok)
	{
		if (strcmp(name, "localhost") == 0 ||
			(len > 10 && strcmp(name + len - 10, ".localhost") == 0))
			return psprintf("host \"%s\" is a localhost name", host);
		if (strcmp(name, "metadata") == 0 || strcmp(name, "metadata.google.internal") == 0)
			return psprintf("host \"%s\" is a cloud metadata name", host);
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	gai = getaddrinfo(name, NULL, &hints, &res);
	if (gai != 0)
	{
		*transient = true;
		return psprintf("could not resolve host \"%s\": %s", host, gai_strerror(gai));
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
	{
		const char *r;
		bool		dup = false;
		int			i;

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		for (i = 0; i < target->naddrs; i++)
			if (memcmp(&target->addrs[i], ai->ai_addr, ai->ai_addrlen) == 0)
				dup = true;
		if (dup)
			continue;
		r = addr_refusal(ai->ai_addr);
		if (!name_ok)
		{
			bool covered = addr_allowed(entries, ai->ai_addr);

			if (r != NULL && !covered)
			{
				char a[INET6_ADDRSTRLEN];

				vn_ssrf_format_addr(ai->ai_addr, a, sizeof(a));
				reason = psprintf("host \"%s\" resolves to %s, a %s address", host, a, r);
				break;
			}
			if (!covered)
				all_covered = false;
		}
		if (target->naddrs < VN_SSRF_MAX_ADDRS)
			memcpy(&target->addrs[target->naddrs++], ai->ai_addr, ai->ai_addrlen);
	}
	freeaddrinfo(res);
	if (reason != NULL)
		return reason;
	if (target->naddrs == 0)
	{
		*transient = true;
		return psprintf("host \"%s\" has no internet address", host);
	}
	if (pg_strcasecmp(scheme, "http") == 0 && !name_ok && !all_covered)
		return psprintf("plain http to \"%s\" is not allowed: use https, or add the host to ventros.http_allow_hosts", host);
	return NULL;
}

PG_FUNCTION_INFO_V1(ventros_check_url);

/*
 * ventros.check_url(url text) RETURNS text: NULL when allowed, else why not.
 */
Datum
ventros_check_url(PG_FUNCTION_ARGS)
{
	char		*url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	VnSsrfTarget target;
	bool		 transient;
	char		*reason = vn_ssrf_check_url(url, &target, &transient);

	if (reason == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reason));
}

void
vn_ssrf_init(void)
{
	DefineCustomStringVariable("ventros.http_allow_hosts",
							   "Hosts and CIDRs the HTTP dispatcher may call although the SSRF guard would refuse them.",
							   "Comma-separated: host names (api.example.com, *.example.com) and CIDRs (127.0.0.1/32, ::1/128). Empty by default.",
							   &vn_http_allow_hosts,
							   "",
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   check_allow_hosts, NULL, NULL);
}
