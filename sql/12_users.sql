-- Aggregate 29, User (core): a login identity, a person or an API client, of
-- one home tenant.  Passwords are bcrypt hashes (pgcrypto); API keys and
-- refresh tokens are stored as SHA-256 hashes only.  The hashes never reach
-- an event payload (redacted_columns) nor the api views (sql/95_api.sql
-- leaves redacted columns out).
--
-- Sign-in is served over HTTP by the api functions below.  They return
-- api.auth_grant: the claims of the access token and a refresh token; the
-- front adds exp/iat/aud and signs the claims with its secret, which never
-- enters the database.  Refresh tokens rotate: each use revokes the token and
-- issues the next of its family; using a revoked token again revokes the
-- whole family (a stolen token is useless once its owner refreshed).

-- pgcrypto's functions, reached through its schema whatever it is.
DO $pgcrypto$
DECLARE
    s text := (SELECT n.nspname FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgcrypto');
BEGIN
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.hash_password(password text) RETURNS text
        LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
        AS 'SELECT %1$I.crypt(password, %1$I.gen_salt(''bf'', 8))'$f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.password_matches(password text, password_hash text) RETURNS boolean
        LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp
        AS 'SELECT %1$I.crypt(password, password_hash) = password_hash'$f$, s);
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION ventros.random_token(prefix text) RETURNS text
        LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pg_temp
        AS 'SELECT prefix || translate(encode(%1$I.gen_random_bytes(32), ''base64''), ''+/='', ''-_'')'$f$, s);
END
$pgcrypto$;
COMMENT ON FUNCTION ventros.hash_password(text) IS 'A bcrypt hash of a password (pgcrypto, cost 8)';
COMMENT ON FUNCTION ventros.password_matches(text, text) IS 'Whether a password matches its bcrypt hash';
COMMENT ON FUNCTION ventros.random_token(text) IS 'A prefix and 256 random bits, URL-safe base64: refresh tokens and API keys';

CREATE FUNCTION ventros.token_hash(token text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(token, 'UTF8')), 'hex') $$;
COMMENT ON FUNCTION ventros.token_hash(text) IS 'SHA-256 (hex) of a token: what is stored of refresh tokens and API keys';

CREATE TABLE ventros.users (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     text        NOT NULL,
    version       integer     NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    name          text        NOT NULL,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    status        text        NOT NULL DEFAULT 'active',
    role          text        NOT NULL DEFAULT 'user',
    settings      jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT users_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT users_email_normalized CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT users_status_known CHECK (status IN ('active', 'inactive', 'suspended')),
    CONSTRAINT users_role_known CHECK (role IN ('admin', 'manager', 'user', 'readonly')),
    CONSTRAINT users_settings_object CHECK (jsonb_typeof(settings) = 'object')
);
-- Email is the login: unique among all live users, whatever their tenant.
CREATE UNIQUE INDEX users_unique_email ON ventros.users (email) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_id ON ventros.users (id);
COMMENT ON TABLE ventros.users IS 'User: a login identity (person or API client) of one home tenant';

SELECT ventros.register_aggregate('user', 'ventros.users', 'core',
    redacted_columns => '{password_hash}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'A login identity of one home tenant');

CREATE TABLE ventros.user_api_keys (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id  text        NOT NULL,
    version    integer     NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    user_id    uuid        NOT NULL,
    name       text        NOT NULL,
    key_hash   text        NOT NULL,
    key_prefix text        NOT NULL,
    active     boolean     NOT NULL DEFAULT true,
    last_used  timestamptz,
    expires_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES ventros.users (tenant_id, id),
    CONSTRAINT user_api_keys_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT user_api_keys_hash_format CHECK (key_hash ~ '^[0-9a-f]{64}$')
);
CREATE UNIQUE INDEX user_api_keys_unique_hash ON ventros.user_api_keys (key_hash);
CREATE INDEX user_api_keys_by_user ON ventros.user_api_keys (tenant_id, user_id);
COMMENT ON TABLE ventros.user_api_keys IS 'An API key of a user for machine clients; only its SHA-256 is kept';

SELECT ventros.register_aggregate('user_api_key', 'ventros.user_api_keys', 'core',
    redacted_columns => '{key_hash}',
    privileges => '{"ventros_viewer": ["SELECT"], "ventros_admin": ["INSERT", "UPDATE", "DELETE"]}',
    description => 'An API key of a user');

-- last_used is marked by the front's requests (api_key_claims): no event each time.
SELECT ventros.register_quiet_columns('user_api_key', '{last_used}');

SELECT ventros.register_event_type('user.registered', 'A user registered.');
SELECT ventros.register_event_type('user.logged_in', 'A user logged in.');
SELECT ventros.register_event_type('user.api_key_generated', 'An API key was generated for a user.');

-- Refresh tokens: not an aggregate (no events, no versions); reached only by
-- the SECURITY DEFINER functions below.
CREATE TABLE ventros.user_refresh_tokens (
    token_hash  text        NOT NULL,
    tenant_id   text        NOT NULL,
    user_id     uuid        NOT NULL,
    family      uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES ventros.users (tenant_id, id)
);
-- a refresh token names no tenant: api.refresh and api.logout find it by
-- its hash alone (random 256 bits: no two tenants share one)
CREATE INDEX user_refresh_tokens_by_hash ON ventros.user_refresh_tokens (token_hash);
CREATE INDEX user_refresh_tokens_by_family ON ventros.user_refresh_tokens (family);
ALTER TABLE ventros.user_refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE ventros.user_refresh_tokens FORCE ROW LEVEL SECURITY;
REVOKE ALL ON ventros.user_refresh_tokens FROM PUBLIC;
-- Administrators may see their tenant's tokens (hashes and dates only); the
-- functions below, as the owner, do the rest.
CREATE POLICY ventros_tenant_select ON ventros.user_refresh_tokens FOR SELECT
    USING (tenant_id = (SELECT ventros.current_tenant()));
GRANT SELECT ON ventros.user_refresh_tokens TO ventros_admin;
COMMENT ON TABLE ventros.user_refresh_tokens IS
    'Refresh tokens (SHA-256 only), rotated on use; a family is revoked when a revoked member is used again';

-- The tenant role of a user role.
CREATE FUNCTION ventros.user_db_role(user_role text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE user_role WHEN 'admin' THEN 'ventros_admin' WHEN 'readonly' THEN 'ventros_viewer'
                          ELSE 'ventros_agent' END
$$;
COMMENT ON FUNCTION ventros.user_db_role(text) IS
    'Maps a user role to its tenant role: admin -> ventros_admin, manager/user -> ventros_agent, readonly -> ventros_viewer';

-- caller_role: the tenant role the caller acts with, as SECURITY DEFINER
-- functions see it: the JWT role claim in a trusted (HTTP front) session,
-- else the role SET by the session, else the login itself.  A claim set by
-- an untrusted session is ignored.
CREATE FUNCTION ventros.caller_role() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN ventros.session_is_trusted() AND coalesce(current_setting('request.jwt.claims', true), '') <> ''
            THEN coalesce(current_setting('request.jwt.claims', true)::jsonb->>'role', 'ventros_anon')
        ELSE coalesce(nullif(current_setting('role'), 'none'), session_user)
    END::name
$$;
COMMENT ON FUNCTION ventros.caller_role() IS
    'The role the caller acts with: the JWT role claim of a trusted session, else the SET role, else the login';

CREATE FUNCTION ventros.caller_is_admin() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ventros.caller_role())
       AND pg_has_role(ventros.caller_role(), 'ventros_admin', 'MEMBER')
$$;
COMMENT ON FUNCTION ventros.caller_is_admin() IS 'Whether the caller acts as (a member of) ventros_admin';

-- create_user: an administrator adds a user to the acting tenant.
CREATE FUNCTION ventros.create_user(name text, email text, password text, role text DEFAULT 'user')
RETURNS ventros.users
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.users;
BEGIN
    IF password IS NULL OR length(password) < 8 OR length(password) > 72 THEN
        RAISE EXCEPTION 'password must have 8 to 72 characters' USING ERRCODE = '22023';
    END IF;
    INSERT INTO ventros.users (tenant_id, name, email, password_hash, role)
    VALUES (ventros.require_tenant(), ventros.check_length(btrim(name), 200, 'user name'),
            ventros.normalize_email(email), ventros.hash_password(password), coalesce(role, 'user'))
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.create_user(text, text, text, text) IS
    'Adds a user to the acting tenant (administrators); emits user.created';

-- user_claims: the one place that decides whether a user may hold a token.
-- Every path that hands out credentials (api.register's "already registered"
-- answer, api.login, api.refresh through issue_grant, and API keys through
-- api_key_claims) builds its claims here, so a suspended, inactive or
-- deleted user gets none, whichever door it knocks on.
CREATE FUNCTION ventros.user_claims(u ventros.users) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF u.id IS NULL OR u.deleted_at IS NOT NULL OR u.status IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'user account is not active' USING ERRCODE = '28000',
            DETAIL = pg_catalog.format('Only active users get tokens; this one is %s.',
                                       CASE WHEN u.deleted_at IS NOT NULL THEN 'deleted' ELSE coalesce(u.status, 'unknown') END);
    END IF;
    RETURN pg_catalog.jsonb_build_object('role', ventros.user_db_role(u.role), 'tenant_id', u.tenant_id,
                                         'sub', u.id::text, 'email', u.email);
END
$$;
COMMENT ON FUNCTION ventros.user_claims(ventros.users) IS
    'The access-token claims of an active user; 28000 for a suspended, inactive or deleted one (every token-issuing path calls it)';

-- issue_grant: claims and a new refresh token (in family, or a new family).
CREATE FUNCTION ventros.issue_grant(u ventros.users, family uuid DEFAULT NULL) RETURNS api.auth_grant
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    token text := ventros.random_token('vnr_');
    result api.auth_grant;
BEGIN
    result.claims := ventros.user_claims(u);
    INSERT INTO ventros.user_refresh_tokens (token_hash, tenant_id, user_id, family, expires_at)
    VALUES (ventros.token_hash(token), u.tenant_id, u.id, coalesce(family, gen_random_uuid()),
            now() + interval '30 days');
    result.refresh_token := token;
    result.expires_in := 900;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.issue_grant(ventros.users, uuid) IS
    'Access-token claims of an active user (ventros.user_claims) and a new refresh token (30 days); the front signs the claims';

CREATE FUNCTION api.register(email text, password text, name text, tenant_name text DEFAULT NULL,
                             payment_method jsonb DEFAULT NULL)
RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized text := ventros.normalize_email(email);
    acting     text := ventros.current_tenant();
    -- the caller's choice of tenant, restored on return (a SET clause would
    -- clear it before acting is read)
    previous   text := current_setting('ventros.tenant', true);
    new_tenant text;
    workspace  text;
    u          ventros.users;
    account    ventros.billing_accounts;
    project    ventros.projects;
    grant_     api.auth_grant;
BEGIN
    -- A payment method is Stripe's to confirm (a completed checkout, then
    -- its webhook): one given here would activate an account nobody charged.
    IF payment_method IS NOT NULL THEN
        RAISE EXCEPTION 'a payment method is not taken at sign-up' USING ERRCODE = '22023',
            HINT = 'The billing account is activated when Stripe confirms a checkout (docs/billing.md).';
    END IF;
    IF password IS NULL OR length(password) < 8 OR length(password) > 72 THEN
        RAISE EXCEPTION 'password must have 8 to 72 characters' USING ERRCODE = '22023';
    END IF;
    IF name IS NULL THEN
        RAISE EXCEPTION 'user name must not be null' USING ERRCODE = '23502';
    END IF;
    -- Idempotent by email: the same email and password answer as a login.
    SELECT * INTO u FROM ventros.users x WHERE x.email = normalized AND x.deleted_at IS NULL;
    IF FOUND THEN
        IF ventros.password_matches(password, u.password_hash) THEN
            PERFORM set_config('ventros.tenant', u.tenant_id, true);
            grant_ := ventros.issue_grant(u);
            PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
            RETURN grant_;
        END IF;
        RAISE EXCEPTION 'a user with email % already exists', normalized USING ERRCODE = '23505';
    END IF;
    IF acting IS NOT NULL THEN
        -- An administrator of a tenant adds a user to it.
        IF NOT ventros.caller_is_admin() THEN
            RAISE EXCEPTION 'only administrators add users to a tenant' USING ERRCODE = '42501';
        END IF;
        new_tenant := acting;
    ELSE
        new_tenant := 't' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20);
    END IF;
    PERFORM set_config('ventros.tenant', new_tenant, true);
    INSERT INTO ventros.users (tenant_id, name, email, password_hash, role)
    VALUES (new_tenant, ventros.check_length(btrim(name), 200, 'user name'), normalized,
            ventros.hash_password(password), CASE WHEN acting IS NULL THEN 'admin' ELSE 'user' END)
    RETURNING * INTO u;
    IF acting IS NULL THEN
        -- Sign-up, in this one transaction: what a new tenant needs (domain
        -- 29): the owner's billing account (pending until Stripe confirms a
        -- checkout; its Stripe customer is requested here, through the
        -- dispatcher, when Stripe is configured: sql/66_stripe_outbound.sql),
        -- the default project (under the account once it is active), the
        -- default pipeline, and the owner as a human agent.  API keys are
        -- made on demand (api.create_api_key): one made here could never be
        -- shown.
        workspace := ventros.check_length(coalesce(tenant_name, btrim(name) || '''s workspace'), 200, 'workspace name');
        account := ventros.create_billing_account(workspace, normalized, u.id);
        PERFORM ventros.stripe_customer_request(account);
        INSERT INTO ventros.projects (tenant_id, name, user_id, billing_account_id)
        VALUES (new_tenant, workspace, u.id, CASE WHEN account.payment_status = 'active' THEN account.id END)
        RETURNING * INTO project;
        PERFORM ventros.create_pipeline('Default pipeline', project_id => project.id,
                                        statuses => ARRAY['New', 'In progress', 'Done']);
        PERFORM ventros.create_agent(u.name, 'human', email => u.email, user_id => u.id, role => 'admin',
                                     project_id => project.id);
    END IF;
    PERFORM ventros.emit('user.registered', 'user', u.id, jsonb_build_object('email', u.email, 'role', u.role), u.version);
    grant_ := ventros.issue_grant(u);
    PERFORM set_config('ventros.tenant', coalesce(previous, ''), true);
    RETURN grant_;
END
$$;
COMMENT ON FUNCTION api.register(text, text, text, text, jsonb) IS
    'Registers a user (idempotent by email): anonymous callers sign up a new tenant as its admin, with its billing account (pending until Stripe confirms a checkout; its Stripe customer requested), default project, default pipeline and the owner as a human agent; a tenant admin adds a user to the tenant; a payment method is refused (22023). Returns a login grant';

CREATE FUNCTION api.login(email text, password text) RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    u ventros.users;
BEGIN
    SELECT * INTO u FROM ventros.users x
    WHERE x.email = lower(btrim(login.email)) AND x.deleted_at IS NULL;
    -- The same bcrypt work whether or not the user exists.
    IF NOT coalesce(ventros.password_matches(password, coalesce(u.password_hash,
                    '$2a$08$0000000000000000000000000000000000000000000000000000u')), false)
       OR u.id IS NULL THEN
        RAISE EXCEPTION 'invalid email or password' USING ERRCODE = '28P01';
    END IF;
    PERFORM set_config('ventros.tenant', u.tenant_id, true);
    PERFORM ventros.emit('user.logged_in', 'user', u.id, '{}', u.version);
    RETURN ventros.issue_grant(u);
END
$$;
COMMENT ON FUNCTION api.login(text, text) IS 'Checks email and password (bcrypt); returns a login grant; 28P01 when they do not match';

CREATE FUNCTION api.refresh(refresh_token text) RETURNS api.auth_grant
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET ventros.tenant = ''
AS $$
DECLARE
    t ventros.user_refresh_tokens;
    u ventros.users;
BEGIN
    SELECT * INTO t FROM ventros.user_refresh_tokens r
    WHERE r.token_hash = ventros.token_hash(refresh_token) FOR UPDATE;
    IF NOT FOUND OR t.expires_at < now() THEN
        RAISE EXCEPTION 'invalid or expired refresh token' USING ERRCODE = '28000';
    END IF;
    IF t.revoked_at IS NOT NULL THEN
        -- Reuse of a rotated token: revoke the family.
        UPDATE ventros.user_refresh_tokens SET revoked_at = now() WHERE family = t.family AND revoked_at IS NULL;
        RETURN NULL;  -- committed: the caller gets no grant (the front answers 401 on a null grant)
    END IF;
    UPDATE ventros.user_refresh_tokens SET revoked_at = now() WHERE token_hash = t.token_hash;
    SELECT * INTO u FROM ventros.users x
    WHERE x.tenant_id = t.tenant_id AND x.id = t.user_id AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invalid or expired refresh token' USING ERRCODE = '28000';
    END IF;
    PERFORM set_config('ventros.tenant', u.tenant_id, true);
    RETURN ventros.issue_grant(u, t.family);
END
$$;
COMMENT ON FUNCTION api.refresh(text) IS
    'Rotates a refresh token: revokes it and returns a new grant; a revoked token revokes its whole family and gets none';

CREATE FUNCTION api.logout(refresh_token text) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ventros.user_refresh_tokens SET revoked_at = now()
    WHERE revoked_at IS NULL
      AND family = (SELECT family FROM ventros.user_refresh_tokens WHERE token_hash = ventros.token_hash(refresh_token))
$$;
COMMENT ON FUNCTION api.logout(text) IS 'Revokes a refresh token and every token of its family';

CREATE FUNCTION api.me() RETURNS json
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT json_build_object('id', u.id, 'tenant_id', u.tenant_id, 'name', u.name, 'email', u.email,
                             'role', u.role, 'status', u.status, 'settings', u.settings, 'version', u.version)
    FROM ventros.users u
    WHERE u.tenant_id = ventros.require_tenant()
      AND u.id::text = ventros.actor()
$$;
COMMENT ON FUNCTION api.me() IS 'The user of the access token (no row for API clients without a user)';

CREATE FUNCTION api.create_api_key(name text, expires_at timestamptz DEFAULT NULL) RETURNS json
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    key    text := ventros.random_token('vnk_');
    k      ventros.user_api_keys;
BEGIN
    IF NOT ventros.caller_is_admin() THEN
        RAISE EXCEPTION 'only administrators create API keys' USING ERRCODE = '42501';
    END IF;
    INSERT INTO ventros.user_api_keys (tenant_id, user_id, name, key_hash, key_prefix, expires_at)
    SELECT tenant, u.id, ventros.check_length(create_api_key.name, 200, 'API key name'),
           ventros.token_hash(key), left(key, 12), create_api_key.expires_at
    FROM ventros.users u WHERE u.tenant_id = tenant AND u.id::text = ventros.actor() AND u.deleted_at IS NULL
    RETURNING * INTO k;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'API keys belong to users: log in as a user first' USING ERRCODE = 'P0002';
    END IF;
    PERFORM ventros.emit('user.api_key_generated', 'user', k.user_id, jsonb_build_object('api_key_id', k.id), NULL);
    RETURN json_build_object('id', k.id, 'name', k.name, 'key', key, 'expires_at', k.expires_at);
END
$$;
COMMENT ON FUNCTION api.create_api_key(text, timestamptz) IS
    'Creates an API key for the calling user (admins); the key is shown once, only its hash is kept';

-- api_key_claims: the claims an API key stands for; called by the front in
-- the request's first statement, before SET ROLE.
CREATE FUNCTION ventros.api_key_claims(key text) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claims jsonb;
    api_key  ventros.user_api_keys;
    key_user ventros.users;
BEGIN
    SELECT * INTO api_key FROM ventros.user_api_keys x
    WHERE x.key_hash = ventros.token_hash(key) AND x.active AND x.deleted_at IS NULL
      AND (x.expires_at IS NULL OR x.expires_at > now());
    SELECT * INTO key_user FROM ventros.users x WHERE x.tenant_id = api_key.tenant_id AND x.id = api_key.user_id AND x.deleted_at IS NULL;
    IF api_key.id IS NULL OR key_user.id IS NULL THEN
        RAISE EXCEPTION 'invalid API key' USING ERRCODE = '28000';
    END IF;
    -- the user's status is decided where every token's is (no email: a key
    -- stands for its user without naming them)
    claims := (ventros.user_claims(key_user) - 'email') || jsonb_build_object('api_key_id', api_key.id::text);
    -- last_used, at most once a minute per key (so a busy key is not a write
    -- per request), and never waiting: a request that finds the row locked
    -- by another one marking it leaves the mark to that one.  A quiet
    -- column: no version bump, no event.
    UPDATE ventros.user_api_keys k SET last_used = now(), version = k.version
    WHERE (k.tenant_id, k.id) = (SELECT x.tenant_id, x.id FROM ventros.user_api_keys x
                                 WHERE x.key_hash = ventros.token_hash(key)
                                   AND (x.last_used IS NULL OR x.last_used < now() - interval '1 minute')
                                 FOR UPDATE SKIP LOCKED);
    RETURN claims;
END
$$;
COMMENT ON FUNCTION ventros.api_key_claims(text) IS
    'The JWT-style claims of a valid API key, marking its last_used (at most once a minute); 28000 otherwise';

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA api FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.token_hash(text), ventros.user_db_role(text), ventros.caller_role(),
    ventros.caller_is_admin() TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION api.register(text, text, text, text, jsonb), api.login(text, text), api.refresh(text),
    api.logout(text) TO ventros_anon, ventros_viewer;
GRANT EXECUTE ON FUNCTION api.me() TO ventros_viewer;
GRANT EXECUTE ON FUNCTION api.create_api_key(text, timestamptz),
    ventros.create_user(text, text, text, text), ventros.hash_password(text) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.api_key_claims(text) TO ventros_authenticator;

-- Direct writes of user, user_api_key by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('user', inserts => '{create_user,api.register}', updates => '{}', deletes => '{}');
SELECT ventros.register_writes('user_api_key', inserts => '{api.create_api_key}', updates => '{}', deletes => '{}');
