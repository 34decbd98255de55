/*
 * fuzz_jwt.c
 *	  JWT handling of ventros-http around libjwt (src/http/auth.c, included
 *	  for its static helpers): verification of bearer tokens, the header
 *	  checks done before libjwt sees a token, base64url, the JSON member
 *	  reader and the JWK-set loader.
 *
 * Byte 0 chooses what the rest of the input is:
 *	 0	a bearer token, verified as is (HS256);
 *	 1	"header\0claims": the harness signs them with the HS256 secret, so
 *		that libjwt and the claim checks run on inputs past the signature;
 *	 2	the same, signed RS256 and verified against the public key, or
 *		against a JWK set of one key with kid "k1";
 *	 3	claims JSON signed by vn_auth_sign, then verified;
 *	 4	bytes for base64url: encode, decode, compare;
 *	 5	a JWT header (alg, kid checks and json_member_string);
 *	 6	a JWK set file (load_jwks).
 * A token accepted must carry a known role and a tenant that passes
 * tenant_id_valid; the bytes decoded must be the bytes encoded.
 */
#define _GNU_SOURCE
#include "../../src/http/auth.c"

#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

static VnAuthConfig hs;
static VnAuthConfig rs;
static VnAuthConfig rs_jwks;
static const char	secret[] = "fuzzing-secret-of-at-least-32-bytes!";

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);

	hs.secret = (unsigned char *) vn_strdup(secret);
	hs.secret_len = strlen(secret);
	hs.leeway = 30;
	rs.rs256 = true;
	rs.public_key = key;
	rs.private_key = key;
	rs.public_pem = pem_of(key);
	rs.audience = "ventros";
	rs_jwks = rs;
	rs_jwks.njwks = 1;
	rs_jwks.jwks_keys = vn_alloc(sizeof(void *));
	rs_jwks.jwks_pems = vn_alloc(sizeof(char *));
	rs_jwks.jwks_kids = vn_alloc(sizeof(char *));
	rs_jwks.jwks_keys[0] = key;
	rs_jwks.jwks_pems[0] = rs.public_pem;
	rs_jwks.jwks_kids[0] = vn_strdup("k1");
	FUZZ_CHECK(key != NULL && rs.public_pem != NULL);
	return 0;
}

static void
verify(const VnAuthConfig *cfg, const char *token)
{
	VnIdentity	id;
	const char *reason = NULL;

	if (vn_auth_verify(cfg, token, &id, &reason))
	{
		FUZZ_CHECK(vn_auth_role_known(cfg, id.role));
		FUZZ_CHECK(id.tenant[0] == '\0' || tenant_id_valid(id.tenant));
		FUZZ_CHECK(id.claims != NULL);
		free(id.claims);
	}
	else
		FUZZ_CHECK(reason != NULL && id.claims == NULL);
}

/* b64url(header).b64url(claims).signature */
static void
signed_token(const VnAuthConfig *cfg, const char *header, size_t hlen, const char *claims, size_t clen)
{
	VnBuf		  t;
	char		 *enc = vn_alloc(4 * (hlen + clen + 1024) / 3 + 8);
	unsigned char sig[1024];
	unsigned int  siglen = 0;
	size_t		  rlen = sizeof(sig);

	vn_buf_init(&t);
	b64url_encode((const unsigned char *) header, hlen, enc);
	vn_buf_add(&t, enc);
	vn_buf_addc(&t, '.');
	b64url_encode((const unsigned char *) claims, clen, enc);
	vn_buf_add(&t, enc);
	if (cfg->rs256)
	{
		EVP_MD_CTX *md = EVP_MD_CTX_new();

		FUZZ_CHECK(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, cfg->private_key) == 1 &&
				   EVP_DigestSignUpdate(md, t.data, t.len) == 1 &&
				   EVP_DigestSignFinal(md, sig, &rlen) == 1);
		EVP_MD_CTX_free(md);
		siglen = (unsigned int) rlen;
	}
	else
		HMAC(EVP_sha256(), cfg->secret, (int) cfg->secret_len, (const unsigned char *) t.data, t.len, sig, &siglen);
	b64url_encode(sig, siglen, enc);
	vn_buf_addc(&t, '.');
	vn_buf_add(&t, enc);
	verify(cfg, t.data);
	free(enc);
	vn_buf_free(&t);
}

static void
jwks_file(const char *text, size_t len)
{
	int			 fd = memfd_create("jwks", 0);
	char		 path[64];
	VnAuthConfig cfg;
	char		*error = NULL;

	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(write(fd, text, len) == (ssize_t) len);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	memset(&cfg, 0, sizeof(cfg));
	if (load_jwks(&cfg, path, &error))
	{
		FUZZ_CHECK(cfg.njwks >= 1 && cfg.njwks <= VN_JWKS_MAX && cfg.rs256);
		for (int i = 0; i < cfg.njwks; i++)
			FUZZ_CHECK(cfg.jwks_keys[i] != NULL && cfg.jwks_pems[i] != NULL);
	}
	else
		FUZZ_CHECK(error != NULL);
	for (int i = 0; i < cfg.njwks; i++)
	{
		EVP_PKEY_free(cfg.jwks_keys[i]);
		free(cfg.jwks_pems[i]);
		free(cfg.jwks_kids[i]);
	}
	free(cfg.jwks_keys);
	free(cfg.jwks_pems);
	free(cfg.jwks_kids);
	free(error);
	close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s;
	size_t		n;
	const char *nul;

	if (size < 1 || size > 12000)
		return 0;
	n = size - 1;
	s = malloc(n + 1);
	memcpy(s, data + 1, n);
	s[n] = '\0';
	nul = memchr(s, '\0', n);

	switch (data[0] % 7)
	{
		case 0:
			verify(&hs, s);
			break;
		case 1:
		case 2:
			{
				size_t		hlen = nul ? (size_t) (nul - s) : n;
				const char *claims = nul ? nul + 1 : "";
				size_t		clen = nul ? n - hlen - 1 : 0;

				if (data[0] % 7 == 1)
					signed_token(&hs, s, hlen, claims, clen);
				else
					signed_token((data[0] & 0x80) ? &rs_jwks : &rs, s, hlen, claims, clen);
				break;
			}
		case 3:
			{
				char *token = vn_auth_sign(&hs, s, 60);

				if (token)
				{
					verify(&hs, token);
					free(token);
				}
				break;
			}
		case 4:
			{
				char		  *enc = malloc(4 * n / 3 + 8);
				unsigned char *dec = malloc(n + 4);
				long		   m;

				b64url_encode(data + 1, n, enc);
				FUZZ_CHECK(strlen(enc) <= 4 * n / 3 + 3);
				m = b64url_decode(enc, strlen(enc), dec, n + 4);
				FUZZ_CHECK(m == (long) n || (n == 0 && m <= 0));
				FUZZ_CHECK(n == 0 || memcmp(dec, data + 1, n) == 0);
				/* and the input itself as base64url text */
				m = b64url_decode(s, strlen(s), dec, n + 4);
				FUZZ_CHECK(m <= (long) n + 4);
				free(enc);
				free(dec);
				break;
			}
		case 5:
			{
				bool  dup;
				char *kid = header_kid(s, &dup);
				char *alg = json_member_string(s, n, "alg");

				if (kid)
					FUZZ_CHECK(strstr(s, kid) != NULL);
				if (alg)
					FUZZ_CHECK(memmem(s, n, alg, strlen(alg)) != NULL);
				if (header_alg_is(s, "HS256"))
					FUZZ_CHECK(strstr(s, "\"HS256\"") != NULL);
				free(kid);
				free(alg);
				break;
			}
		case 6:
			jwks_file(s, n);
			break;
	}
	free(s);
	return 0;
}
