/*
 * auth.h
 *	  JWT verification and signing for ventros-http: HS256, or RS256 when a
 *	  public key or a JWK set is configured (one algorithm, pinned).
 */
#ifndef VN_HTTP_AUTH_H
#define VN_HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define VN_JWKS_MAX 16

typedef struct VnAuthConfig
{
	unsigned char *secret; /* HS256 */
	size_t		   secret_len;
	bool		   rs256;	   /* RS256 pinned instead (VENTROS_JWT_PUBLIC_KEY_FILE) */
	void		  *public_key; /* EVP_PKEY * */
	char		  *public_pem;
	void		  *private_key; /* EVP_PKEY *, for signing grants; NULL: sign-in off */
	int			   njwks;		/* VENTROS_JWT_JWKS_FILE: keys chosen by kid */
	void		 **jwks_keys;	/* EVP_PKEY * */
	char		 **jwks_pems;
	char		 **jwks_kids;  /* NULL: a key without kid */
	char		  *audience;   /* NULL: aud not checked (but refused if present and unexpected) */
	long		   leeway;	   /* seconds of clock skew allowed on exp/nbf */
	const char	  *anon_role;  /* a request without a token (db-anon-role) */
	const char	  *role_claim; /* the claim naming the role (jwt-role-claim-key, without its dot) */
	int			   nroles;	   /* VENTROS_HTTP_DB_ROLES: roles a token may name besides Ventros' */
	char		 **roles;
} VnAuthConfig;

typedef struct VnIdentity
{
	char  role[64];
	char  tenant[130];
	char *claims; /* JSON text of the claims, malloc'd; NULL for anonymous */
} VnIdentity;

extern bool vn_auth_load_secret(VnAuthConfig *cfg, char **error);
/* verify a bearer token; false with a reason (no secrets in it) on refusal */
extern bool vn_auth_verify(const VnAuthConfig *cfg, const char *token, VnIdentity *id, const char **reason);
/* sign claims (a JSON object) with exp = now + ttl; malloc'd token or NULL */
extern char *vn_auth_sign(const VnAuthConfig *cfg, const char *claims_json, long ttl);
extern bool	 vn_auth_role_known(const VnAuthConfig *cfg, const char *role);

#endif
