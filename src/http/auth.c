/*
 * auth.c
 *	  Bearer tokens: HS256 JWT verification and signing.
 *
 * Verification is ours before it is libjwt's: the header must name HS256
 * exactly (no "none", no algorithm switching), and the signature is
 * recomputed with OpenSSL's HMAC and compared with CRYPTO_memcmp, in
 * constant time.  Only then does libjwt parse the claims.  exp is required,
 * nbf and aud are checked, the role claim must be one of Ventros' tenant
 * roles (anything else, including ventros_authenticator or a superuser name,
 * is refused: no role escalation), and tenant_id must look like a tenant id.
 * There is no bypass of any kind.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "buf.h"

/*
 * Verified tokens, remembered until they expire: a client sends the same
 * token with every request, and checking it again (HMAC, base64, JSON) costs
 * more than the lookup.  Keyed by the whole token text, so a token that
 * differs in any byte is verified afresh; entries keep exp and nbf and are
 * checked against the clock on every hit.
 */
#define VN_TOKEN_CACHE 512

typedef struct VnCachedToken
{
	char	   *token;
	VnIdentity	id;
	long		exp;
	long		nbf;
} VnCachedToken;

static VnCachedToken token_cache[VN_TOKEN_CACHE];
static pthread_mutex_t token_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned long
token_hash(const char *s)
{
	unsigned long h = 1469598103934665603UL;

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211UL;
	return h;
}

static bool
cache_lookup(const VnAuthConfig *cfg, const char *token, VnIdentity *id)
{
	VnCachedToken *e = &token_cache[token_hash(token) % VN_TOKEN_CACHE];
	time_t		now = time(NULL);
	bool		hit = false;

	pthread_mutex_lock(&token_cache_lock);
	if (e->token && strcmp(e->token, token) == 0 && now < e->exp + cfg->leeway && now + cfg->leeway >= e->nbf)
	{
		*id = e->id;
		id->claims = vn_strdup(e->id.claims);
		hit = true;
	}
	pthread_mutex_unlock(&token_cache_lock);
	return hit;
}

static void
cache_store(const char *token, const VnIdentity *id, long exp, long nbf)
{
	VnCachedToken *e = &token_cache[token_hash(token) % VN_TOKEN_CACHE];

	pthread_mutex_lock(&token_cache_lock);
	free(e->token);
	free(e->id.claims);
	e->token = vn_strdup(token);
	e->id = *id;
	e->id.claims = vn_strdup(id->claims);
	e->exp = exp;
	e->nbf = nbf;
	pthread_mutex_unlock(&token_cache_lock);
}

static const char *known_roles[] = {"ventros_admin", "ventros_agent", "ventros_viewer", "ventros_anon", NULL};

bool
vn_auth_role_known(const char *role)
{
	for (int i = 0; known_roles[i]; i++)
		if (strcmp(role, known_roles[i]) == 0)
			return true;
	return false;
}

bool
vn_auth_load_secret(VnAuthConfig *cfg, char **error)
{
	const char *file = getenv("VENTROS_JWT_SECRET_FILE");
	const char *env = getenv("VENTROS_JWT_SECRET");
	char		buf[4096];
	size_t		n = 0;

	if (file && *file)
	{
		FILE	   *f = fopen(file, "r");

		if (f == NULL)
		{
			*error = vn_strdup("cannot open VENTROS_JWT_SECRET_FILE");
			return false;
		}
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
	}
	else if (env && *env)
	{
		n = strlen(env);
		if (n >= sizeof(buf))
			n = sizeof(buf) - 1;
		memcpy(buf, env, n);
	}
	if (n < 32)
	{
		*error = vn_strdup("the JWT secret (VENTROS_JWT_SECRET_FILE or VENTROS_JWT_SECRET) must have at least 32 bytes");
		return false;
	}
	cfg->secret = vn_alloc(n + 1);
	memcpy(cfg->secret, buf, n);
	cfg->secret_len = n;
	return true;
}

/* base64url without padding; returns decoded length or -1 */
static long
b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap)
{
	char	   *tmp;
	size_t		padded = (len + 3) / 4 * 4;
	int			n;

	if (padded / 4 * 3 > outcap)
		return -1;
	tmp = vn_alloc(padded + 1);
	for (size_t i = 0; i < len; i++)
	{
		char		c = in[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
		{
			free(tmp);
			return -1;
		}
		tmp[i] = c;
	}
	for (size_t i = len; i < padded; i++)
		tmp[i] = '=';
	n = EVP_DecodeBlock(out, (unsigned char *) tmp, (int) padded);
	free(tmp);
	if (n < 0)
		return -1;
	return n - (long) (padded - len);
}

static void
b64url_encode(const unsigned char *in, size_t len, char *out)
{
	int			n = EVP_EncodeBlock((unsigned char *) out, in, (int) len);

	for (int i = 0; i < n; i++)
	{
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
		else if (out[i] == '=')
		{
			out[i] = '\0';
			return;
		}
	}
	out[n] = '\0';
}

/* does the JSON header say "alg":"HS256" and nothing else for alg? */
static bool
header_is_hs256(const char *json)
{
	const char *p = strstr(json, "\"alg\"");
	const char *q;

	if (p == NULL)
		return false;
	q = strstr(p + 5, "\"alg\"");
	if (q != NULL)
		return false;			/* duplicated alg: refuse rather than guess */
	p += 5;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p++ != ':')
		return false;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return strncmp(p, "\"HS256\"", 7) == 0;
}

static bool
tenant_id_valid(const char *t)
{
	size_t		n = strlen(t);

	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		char		c = t[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '_' || c == '.' || c == '-'))))
			return false;
	}
	return true;
}

bool
vn_auth_verify(const VnAuthConfig *cfg, const char *token, VnIdentity *id, const char **reason)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	unsigned char header[1024];
	unsigned char sig[EVP_MAX_MD_SIZE];
	unsigned char expected[EVP_MAX_MD_SIZE];
	unsigned int explen = 0;
	long		hlen,
				slen;
	jwt_t	   *jwt = NULL;
	const char *role;
	const char *tenant;
	long		exp,
				nbf;
	time_t		now = time(NULL);
	char	   *aud_json;

	memset(id, 0, sizeof(*id));
	*reason = "malformed token";
	if (strlen(token) <= 8192 && cache_lookup(cfg, token, id))
		return true;
	if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL || strlen(token) > 8192)
		return false;
	hlen = b64url_decode(token, dot1 - token, header, sizeof(header) - 1);
	if (hlen <= 0)
		return false;
	header[hlen] = '\0';
	if (!header_is_hs256((const char *) header))
	{
		*reason = "the token's algorithm is not HS256";
		return false;
	}
	slen = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig));
	if (!HMAC(EVP_sha256(), cfg->secret, (int) cfg->secret_len, (const unsigned char *) token,
			  dot2 - token, expected, &explen) ||
		slen != (long) explen || CRYPTO_memcmp(sig, expected, explen) != 0)
	{
		*reason = "invalid signature";
		return false;
	}
	if (jwt_decode(&jwt, token, cfg->secret, (int) cfg->secret_len) != 0 || jwt == NULL)
		return false;
	if (jwt_get_alg(jwt) != JWT_ALG_HS256)
	{
		*reason = "the token's algorithm is not HS256";
		goto refuse;
	}
	errno = 0;
	exp = jwt_get_grant_int(jwt, "exp");
	if (errno != 0)
	{
		*reason = "the token has no exp claim";
		goto refuse;
	}
	if (now >= exp + cfg->leeway)
	{
		*reason = "JWT expired";
		goto refuse;
	}
	errno = 0;
	nbf = jwt_get_grant_int(jwt, "nbf");
	if (errno != 0)
		nbf = 0;
	if (now + cfg->leeway < nbf)
	{
		*reason = "the token is not valid yet (nbf)";
		goto refuse;
	}
	aud_json = jwt_get_grants_json(jwt, "aud");
	if (aud_json != NULL || cfg->audience != NULL)
	{
		bool		ok = false;

		if (aud_json != NULL && cfg->audience != NULL)
		{
			VnBuf		want;

			vn_buf_init(&want);
			vn_buf_json_string(&want, cfg->audience);
			/* a string, or an array of strings, holding our audience */
			ok = strcmp(aud_json, want.data) == 0 ||
				(aud_json[0] == '[' && strstr(aud_json, want.data) != NULL);
			vn_buf_free(&want);
		}
		free(aud_json);
		if (!ok)
		{
			*reason = "the token's audience is not this API";
			goto refuse;
		}
	}
	role = jwt_get_grant(jwt, "role");
	if (role == NULL)
		role = "ventros_anon";
	if (!vn_auth_role_known(role))
	{
		*reason = "the token's role is not a Ventros role";
		goto refuse;
	}
	snprintf(id->role, sizeof(id->role), "%s", role);
	tenant = jwt_get_grant(jwt, "tenant_id");
	if (tenant != NULL)
	{
		if (!tenant_id_valid(tenant))
		{
			*reason = "malformed tenant_id claim";
			goto refuse;
		}
		snprintf(id->tenant, sizeof(id->tenant), "%s", tenant);
	}
	id->claims = jwt_get_grants_json(jwt, NULL);
	if (id->claims == NULL)
		goto refuse;
	jwt_free(jwt);
	cache_store(token, id, exp, nbf);
	return true;

refuse:
	jwt_free(jwt);
	return false;
}

char *
vn_auth_sign(const VnAuthConfig *cfg, const char *claims_json, long ttl)
{
	static const char header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	VnBuf		payload;
	VnBuf		token;
	char	   *enc;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	time_t		now = time(NULL);
	size_t		n = strlen(claims_json);

	/* claims_json is a JSON object from PostgreSQL: splice exp, iat and aud in */
	if (n < 2 || claims_json[0] != '{')
		return NULL;
	vn_buf_init(&payload);
	vn_buf_addf(&payload, "{\"iat\":%ld,\"exp\":%ld", (long) now, (long) now + ttl);
	if (cfg->audience)
	{
		vn_buf_add(&payload, ",\"aud\":");
		vn_buf_json_string(&payload, cfg->audience);
	}
	{
		const char *rest = claims_json + 1;

		while (*rest == ' ')
			rest++;
		if (*rest != '}')
			vn_buf_addc(&payload, ',');
		vn_buf_add(&payload, rest);
	}
	vn_buf_init(&token);
	enc = vn_alloc(4 * (payload.len + sizeof(header_json)) / 3 + 8);
	b64url_encode((const unsigned char *) header_json, sizeof(header_json) - 1, enc);
	vn_buf_add(&token, enc);
	vn_buf_addc(&token, '.');
	b64url_encode((const unsigned char *) payload.data, payload.len, enc);
	vn_buf_add(&token, enc);
	HMAC(EVP_sha256(), cfg->secret, (int) cfg->secret_len, (const unsigned char *) token.data, token.len,
		 mac, &maclen);
	b64url_encode(mac, maclen, enc);
	vn_buf_addc(&token, '.');
	vn_buf_add(&token, enc);
	free(enc);
	vn_buf_free(&payload);
	return token.data;
}
