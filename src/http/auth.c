/*
 * auth.c
 *	  Bearer tokens: HS256 JWT verification and signing.
 *
 * Verification is ours before it is libjwt's: the header must name the one
 * pinned algorithm exactly (HS256, or RS256 when VENTROS_JWT_PUBLIC_KEY_FILE
 * or VENTROS_JWT_JWKS_FILE is set; no "none", no switching; with a JWK set
 * the header's kid picks the key), and the signature is checked with
 * OpenSSL: HS256 recomputed with HMAC and compared with CRYPTO_memcmp, in
 * constant time; RS256 with EVP_DigestVerify.  Only then does libjwt parse the claims.  exp is required,
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
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "auth.h"
#include "buf.h"
#include "json.h"

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
	char	  *token;
	VnIdentity id;
	long	   exp;
	long	   nbf;
} VnCachedToken;

static VnCachedToken   token_cache[VN_TOKEN_CACHE];
static pthread_mutex_t token_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static bool
cache_lookup(const VnAuthConfig *cfg, const char *token, VnIdentity *id)
{
	VnCachedToken *e = &token_cache[vn_hash_string(token) % VN_TOKEN_CACHE];
	time_t		   now = time(NULL);
	bool		   hit = false;

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
	VnCachedToken *e = &token_cache[vn_hash_string(token) % VN_TOKEN_CACHE];

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

/*
 * A role a token may name: one of Ventros' tenant roles, the anonymous
 * role, or one of VENTROS_HTTP_DB_ROLES (the roles of another exposed
 * schema).  PostgreSQL would refuse a role the authenticator is not a
 * member of anyway; this list keeps a login granted more (by mistake) from
 * becoming a way up.
 */
bool
vn_auth_role_known(const VnAuthConfig *cfg, const char *role)
{
	for (int i = 0; known_roles[i]; i++)
		if (strcmp(role, known_roles[i]) == 0)
			return true;
	if (cfg->anon_role && strcmp(role, cfg->anon_role) == 0)
		return true;
	for (int i = 0; i < cfg->nroles; i++)
		if (strcmp(role, cfg->roles[i]) == 0)
			return true;
	return false;
}

static char *
read_file(const char *path)
{
	FILE  *f = fopen(path, "r");
	VnBuf  b;
	char   chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	vn_buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < 65536)
		vn_buf_addn(&b, chunk, n);
	fclose(f);
	return b.data;
}

static bool load_jwks(VnAuthConfig *cfg, const char *file, char **error);

/* VENTROS_JWT_PRIVATE_KEY_FILE: the key our own grants are signed RS256 with */
static bool
load_private(VnAuthConfig *cfg, char **error)
{
	char *pem = read_file(getenv("VENTROS_JWT_PRIVATE_KEY_FILE"));
	BIO	 *bio;

	if (pem == NULL)
	{
		*error = vn_strdup("cannot read VENTROS_JWT_PRIVATE_KEY_FILE");
		return false;
	}
	bio = BIO_new_mem_buf(pem, -1);
	cfg->private_key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	free(pem);
	if (cfg->private_key == NULL)
	{
		*error = vn_strdup("VENTROS_JWT_PRIVATE_KEY_FILE is not a private key in PEM");
		return false;
	}
	return true;
}

/*
 * RS256: tokens from an issuer that holds the private key; ours are signed
 * only when VENTROS_JWT_PRIVATE_KEY_FILE is given too.
 */
static bool
load_rsa(VnAuthConfig *cfg, const char *public_file, char **error)
{
	const char *private_file = getenv("VENTROS_JWT_PRIVATE_KEY_FILE");
	BIO		   *bio;

	cfg->public_pem = read_file(public_file);
	if (cfg->public_pem == NULL)
	{
		*error = vn_strdup("cannot read VENTROS_JWT_PUBLIC_KEY_FILE");
		return false;
	}
	bio = BIO_new_mem_buf(cfg->public_pem, -1);
	cfg->public_key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (cfg->public_key == NULL || EVP_PKEY_base_id(cfg->public_key) != EVP_PKEY_RSA)
	{
		*error = vn_strdup("VENTROS_JWT_PUBLIC_KEY_FILE is not an RSA public key in PEM");
		return false;
	}
	if (private_file && *private_file && !load_private(cfg, error))
		return false;
	cfg->rs256 = true;
	return true;
}

bool
vn_auth_load_secret(VnAuthConfig *cfg, char **error)
{
	const char *file = getenv("VENTROS_JWT_SECRET_FILE");
	const char *env = getenv("VENTROS_JWT_SECRET");
	const char *public_file = getenv("VENTROS_JWT_PUBLIC_KEY_FILE");
	const char *jwks_file = getenv("VENTROS_JWT_JWKS_FILE");
	char		buf[4096];
	size_t		n = 0;

	if (jwks_file && *jwks_file)
	{
		/* signing our own grants, when a private key is given too */
		if (!load_jwks(cfg, jwks_file, error))
			return false;
		return !(getenv("VENTROS_JWT_PRIVATE_KEY_FILE") && *getenv("VENTROS_JWT_PRIVATE_KEY_FILE")) ||
			   load_private(cfg, error);
	}
	if (public_file && *public_file)
		return load_rsa(cfg, public_file, error);

	if (file && *file)
	{
		FILE *f = fopen(file, "r");

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
	char  *tmp;
	size_t padded = (len + 3) / 4 * 4;
	int	   n;

	if (padded / 4 * 3 > outcap)
		return -1;
	tmp = vn_alloc(padded + 1);
	for (size_t i = 0; i < len; i++)
	{
		char c = in[i];

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
	int n = EVP_EncodeBlock((unsigned char *) out, in, (int) len);

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

/* does the JSON header name exactly this alg, and only once? */
/*
 * JWKS (VENTROS_JWT_JWKS_FILE): the RSA signing keys of an issuer, as it
 * publishes them ({"keys": [{"kty": "RSA", "kid": ..., "n": ..., "e": ...}]}),
 * RS256 pinned as with one public key.  A token picks its key by the kid of
 * its header; without a kid only a set of one key will do.  Keys of other
 * types or uses are skipped.  The file is the operator's: it is read at
 * start (restart to rotate keys).
 */

/* the string value of member name in a JSON object text, or NULL (malloc'd) */
static char *
json_member_string(const char *obj, size_t len, const char *name)
{
	char		pattern[40];
	const char *p;
	const char *end = obj + len;
	const char *q;

	snprintf(pattern, sizeof(pattern), "\"%s\"", name);
	for (p = obj; p < end && (p = strstr(p, pattern)) != NULL && p < end; p += strlen(pattern))
	{
		q = p + strlen(pattern);
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != ':')
			continue; /* a value that happens to equal the name */
		q++;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != '"')
			return NULL;
		p = q + 1;
		q = p;
		while (q < end && *q != '"' && *q != '\\')
			q++;
		if (q >= end || *q != '"')
			return NULL; /* escapes never occur in the members we read */
		return vn_strndup(p, q - p);
	}
	return NULL;
}

static EVP_PKEY *
rsa_from_jwk(const char *n64, const char *e64)
{
	unsigned char n[1100];
	unsigned char e[16];
	long		  nlen = b64url_decode(n64, strlen(n64), n, sizeof(n));
	long		  elen = b64url_decode(e64, strlen(e64), e, sizeof(e));
	BIGNUM		 *bn_n = NULL,
		   *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM	   *params = NULL;
	EVP_PKEY_CTX   *ctx = NULL;
	EVP_PKEY	   *key = NULL;

	if (nlen < 128 || elen <= 0)
		return NULL; /* RSA keys under 1024 bits are not keys */
	bn_n = BN_bin2bn(n, (int) nlen, NULL);
	bn_e = BN_bin2bn(e, (int) elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn_n && bn_e && bld &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) &&
		(params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
		(ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL &&
		EVP_PKEY_fromdata_init(ctx) == 1)
	{
		if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
			key = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	return key;
}

static char *
pem_of(EVP_PKEY *key)
{
	BIO	 *bio = BIO_new(BIO_s_mem());
	char *data;
	long  n;
	char *pem = NULL;

	if (bio && PEM_write_bio_PUBKEY(bio, key) == 1 && (n = BIO_get_mem_data(bio, &data)) > 0)
		pem = vn_strndup(data, (size_t) n);
	BIO_free(bio);
	return pem;
}

static bool
load_jwks(VnAuthConfig *cfg, const char *file, char **error)
{
	char	   *text = read_file(file);
	const char *p;
	int			depth = 0;
	const char *start = NULL;
	bool		in_string = false;

	if (text == NULL)
	{
		*error = vn_strdup("cannot read VENTROS_JWT_JWKS_FILE");
		return false;
	}
	p = strstr(text, "\"keys\"");
	p = p ? strchr(p, '[') : NULL;
	if (p == NULL)
	{
		free(text);
		*error = vn_strdup("VENTROS_JWT_JWKS_FILE is not a JWK set (no \"keys\" array)");
		return false;
	}
	cfg->jwks_keys = vn_alloc(sizeof(void *) * VN_JWKS_MAX);
	cfg->jwks_pems = vn_alloc(sizeof(char *) * VN_JWKS_MAX);
	cfg->jwks_kids = vn_alloc(sizeof(char *) * VN_JWKS_MAX);
	/* each object of the array, found by its braces (strings skipped) */
	for (p++; *p && !(depth == 0 && *p == ']'); p++)
	{
		if (in_string)
		{
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_string = false;
			continue;
		}
		if (*p == '"')
			in_string = true;
		else if (*p == '{' && depth++ == 0)
			start = p;
		else if (*p == '}' && --depth == 0 && start)
		{
			size_t	  len = p + 1 - start;
			char	 *kty = json_member_string(start, len, "kty");
			char	 *use = json_member_string(start, len, "use");
			char	 *alg = json_member_string(start, len, "alg");
			char	 *n = json_member_string(start, len, "n");
			char	 *e = json_member_string(start, len, "e");
			char	 *kid = json_member_string(start, len, "kid");
			EVP_PKEY *key = NULL;

			if (kty && strcmp(kty, "RSA") == 0 && (use == NULL || strcmp(use, "sig") == 0) &&
				(alg == NULL || strcmp(alg, "RS256") == 0) && n && e && cfg->njwks < VN_JWKS_MAX)
				key = rsa_from_jwk(n, e);
			if (key)
			{
				cfg->jwks_keys[cfg->njwks] = key;
				cfg->jwks_pems[cfg->njwks] = pem_of(key);
				cfg->jwks_kids[cfg->njwks] = kid;
				kid = NULL;
				if (cfg->jwks_pems[cfg->njwks])
					cfg->njwks++;
			}
			free(kty);
			free(use);
			free(alg);
			free(n);
			free(e);
			free(kid);
			start = NULL;
		}
	}
	free(text);
	if (cfg->njwks == 0)
	{
		*error = vn_strdup("VENTROS_JWT_JWKS_FILE holds no RSA signing key (kty RSA, alg RS256 or none, use sig or none)");
		return false;
	}
	cfg->rs256 = true;
	return true;
}

/* the kid of a token header, or NULL; *dup when the header names two */
static char *
header_kid(const char *json, bool *dup)
{
	const char *p = strstr(json, "\"kid\"");

	*dup = p != NULL && strstr(p + 5, "\"kid\"") != NULL;
	return p ? json_member_string(json, strlen(json), "kid") : NULL;
}

static bool
header_alg_is(const char *json, const char *alg)
{
	const char *p = strstr(json, "\"alg\"");
	const char *q;

	if (p == NULL)
		return false;
	q = strstr(p + 5, "\"alg\"");
	if (q != NULL)
		return false; /* duplicated alg: refuse rather than guess */
	p += 5;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p++ != ':')
		return false;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p[0] == '"' && strncmp(p + 1, alg, strlen(alg)) == 0 && p[1 + strlen(alg)] == '"';
}

static bool
tenant_id_valid(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > 128)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		char c = t[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '_' || c == '.' || c == '-'))))
			return false;
	}
	return true;
}

static bool
has_key(char **keys, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(keys[i], name) == 0)
			return true;
	return false;
}

static void
free_keys(char **keys, int n)
{
	for (int i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

/*
 * The JSON of the header and of the claims, as we read them: each one
 * object with every key once (a parser keeping the first of two "role"
 * keys and one keeping the last would see two different tokens), and no
 * "crit" header (RFC 7515 4.1.11: a token whose critical extensions the
 * recipient does not implement is refused; we implement none).  *claims
 * gets the claims' keys.
 */
static bool
token_json_sound(const char *token, const char *dot1, const char *dot2, const unsigned char *header,
				 long hlen, char ***claims, int *nclaims, const char **reason)
{
	char		 **keys;
	int			   n;
	size_t		   plen = dot2 - dot1 - 1;
	unsigned char *payload;
	long		   len;
	bool		   crit;

	*claims = NULL;
	*nclaims = 0;
	if (!vn_json_object_keys((const char *) header, (size_t) hlen, &keys, &n))
	{
		*reason = "the token's header is not a JSON object with distinct keys";
		return false;
	}
	crit = has_key(keys, n, "crit");
	free_keys(keys, n);
	if (crit)
	{
		*reason = "the token names critical extensions (crit) this API does not implement";
		return false;
	}
	payload = vn_alloc(plen + 4);
	len = b64url_decode(dot1 + 1, plen, payload, plen + 3);
	if (len <= 0 || !vn_json_object_keys((const char *) payload, (size_t) len, claims, nclaims))
	{
		free(payload);
		*reason = "the token's claims are not a JSON object with distinct keys";
		return false;
	}
	free(payload);
	return true;
}

/*
 * A NumericDate claim (exp, nbf, iat): absent (*v = dflt), or an integer.
 * libjwt reads a string or a fraction as 0 without saying so, so the
 * claim's JSON text is looked at first.
 */
static bool
numeric_date(jwt_t *jwt, char **keys, int n, const char *name, long dflt, long *v)
{
	char *text;
	char *end;
	bool  ok;

	*v = dflt;
	if (!has_key(keys, n, name))
		return true;
	text = jwt_get_grants_json(jwt, name);
	ok = text != NULL && (text[0] == '-' || (text[0] >= '0' && text[0] <= '9'));
	if (ok)
	{
		errno = 0;
		*v = strtol(text, &end, 10);
		ok = errno == 0 && *end == '\0';
	}
	free(text);
	return ok;
}

bool
vn_auth_verify(const VnAuthConfig *cfg, const char *token, VnIdentity *id, const char **reason)
{
	const char	 *dot1 = strchr(token, '.');
	const char	 *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	unsigned char header[1024];
	unsigned char sig[1024]; /* RSA up to 8192 bits */
	unsigned char expected[EVP_MAX_MD_SIZE];
	unsigned int  explen = 0;
	long		  hlen,
		slen;
	jwt_t	   *jwt = NULL;
	const char *role;
	const char *tenant;
	long		exp,
		nbf,
		iat;
	time_t now = time(NULL);
	char  *aud_json;
	char **keys = NULL;
	int	   nkeys = 0;

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
	if (!header_alg_is((const char *) header, cfg->rs256 ? "RS256" : "HS256"))
	{
		*reason = cfg->rs256 ? "the token's algorithm is not RS256" : "the token's algorithm is not HS256";
		return false;
	}
	slen = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig));
	if (cfg->rs256)
	{
		EVP_MD_CTX *md;
		bool		good;
		void	   *public_key = cfg->public_key;
		const char *public_pem = cfg->public_pem;

		if (cfg->njwks > 0)
		{
			bool  dup;
			char *kid = header_kid((const char *) header, &dup);
			int	  k = -1;

			for (int i = 0; i < cfg->njwks && !dup; i++)
				if (kid ? (cfg->jwks_kids[i] && strcmp(kid, cfg->jwks_kids[i]) == 0) : cfg->njwks == 1)
					k = i;
			free(kid);
			if (k < 0)
			{
				*reason = "the token's key (kid) is not one of the issuer's";
				return false;
			}
			public_key = cfg->jwks_keys[k];
			public_pem = cfg->jwks_pems[k];
		}
		md = EVP_MD_CTX_new();
		good = md != NULL && slen > 0 &&
			   EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, public_key) == 1 &&
			   EVP_DigestVerifyUpdate(md, token, dot2 - token) == 1 &&
			   EVP_DigestVerifyFinal(md, sig, (size_t) slen) == 1;

		EVP_MD_CTX_free(md);
		if (!good)
		{
			*reason = "invalid signature";
			return false;
		}
		if (jwt_decode(&jwt, token, (const unsigned char *) public_pem, (int) strlen(public_pem)) != 0 ||
			jwt == NULL)
			return false;
		if (jwt_get_alg(jwt) != JWT_ALG_RS256)
		{
			*reason = "the token's algorithm is not RS256";
			goto refuse;
		}
	}
	else
	{
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
	}
	if (!token_json_sound(token, dot1, dot2, header, hlen, &keys, &nkeys, reason))
		goto refuse;
	if (!has_key(keys, nkeys, "exp") || !numeric_date(jwt, keys, nkeys, "exp", 0, &exp))
	{
		*reason = "the token has no exp claim";
		goto refuse;
	}
	if (now >= exp + cfg->leeway)
	{
		*reason = "JWT expired";
		goto refuse;
	}
	/* a string nbf is not "no nbf": the issuer meant something we cannot read */
	if (!numeric_date(jwt, keys, nkeys, "nbf", 0, &nbf) || !numeric_date(jwt, keys, nkeys, "iat", 0, &iat))
	{
		*reason = "the token's nbf or iat claim is not a number";
		goto refuse;
	}
	if (now + cfg->leeway < nbf)
	{
		*reason = "the token is not valid yet (nbf)";
		goto refuse;
	}
	aud_json = jwt_get_grants_json(jwt, "aud");
	if (aud_json != NULL || cfg->audience != NULL)
	{
		bool ok = false;

		if (aud_json != NULL && cfg->audience != NULL)
		{
			VnBuf want;

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
	/* the claim named by VENTROS_HTTP_JWT_ROLE_CLAIM_KEY (PostgREST's jwt-role-claim-key) */
	role = jwt_get_grant(jwt, cfg->role_claim ? cfg->role_claim : "role");
	if (role == NULL)
		role = cfg->anon_role ? cfg->anon_role : "ventros_anon";
	if (!vn_auth_role_known(cfg, role))
	{
		*reason = "the token's role is not a role of this API";
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
	free_keys(keys, nkeys);
	cache_store(token, id, exp, nbf);
	return true;

refuse:
	jwt_free(jwt);
	free_keys(keys, nkeys);
	return false;
}

char *
vn_auth_sign(const VnAuthConfig *cfg, const char *claims_json, long ttl)
{
	const char	 *header_json = cfg->rs256 ? "{\"alg\":\"RS256\",\"typ\":\"JWT\"}" : "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	VnBuf		  payload;
	VnBuf		  token;
	char		 *enc;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int  maclen = 0;
	time_t		  now = time(NULL);
	size_t		  n = strlen(claims_json);

	/* claims_json is a JSON object from PostgreSQL: splice exp, iat and aud in */
	if (n < 2 || claims_json[0] != '{' || (cfg->rs256 && cfg->private_key == NULL))
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
	enc = vn_alloc(4 * (payload.len + strlen(header_json) + 1024) / 3 + 8);
	b64url_encode((const unsigned char *) header_json, strlen(header_json), enc);
	vn_buf_add(&token, enc);
	vn_buf_addc(&token, '.');
	b64url_encode((const unsigned char *) payload.data, payload.len, enc);
	vn_buf_add(&token, enc);
	if (cfg->rs256)
	{
		unsigned char rsig[1024];
		size_t		  rlen = sizeof(rsig);
		EVP_MD_CTX	 *md = EVP_MD_CTX_new();
		bool		  good = md != NULL &&
					EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, cfg->private_key) == 1 &&
					EVP_DigestSignUpdate(md, token.data, token.len) == 1 &&
					EVP_DigestSignFinal(md, rsig, &rlen) == 1;

		EVP_MD_CTX_free(md);
		if (!good)
		{
			free(enc);
			vn_buf_free(&payload);
			vn_buf_free(&token);
			return NULL;
		}
		b64url_encode(rsig, rlen, enc);
	}
	else
	{
		HMAC(EVP_sha256(), cfg->secret, (int) cfg->secret_len, (const unsigned char *) token.data, token.len,
			 mac, &maclen);
		b64url_encode(mac, maclen, enc);
	}
	vn_buf_addc(&token, '.');
	vn_buf_add(&token, enc);
	free(enc);
	vn_buf_free(&payload);
	return token.data;
}
