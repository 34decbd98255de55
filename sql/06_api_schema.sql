-- The exposed schema of the HTTP front (ventros-http, PostgREST's dialect).
--
-- Schema api holds only what HTTP clients may name: views over the
-- aggregates (sql/95_api.sql makes them, one per registered aggregate) and the
-- functions served under /rpc/.  The front resolves every identifier of a
-- request against this schema's catalog entries before it builds SQL.
--
-- api.auth_grant is the result type of the functions that log a user in: the
-- front signs the claims into an access token (the JWT secret never enters
-- the database) and answers {access_token, token_type, expires_in,
-- refresh_token} instead of the row.

CREATE SCHEMA api;
COMMENT ON SCHEMA api IS 'Ventros HTTP API: views over the aggregates and the functions served under /rpc/';
GRANT USAGE ON SCHEMA api TO ventros_admin, ventros_agent, ventros_viewer, ventros_anon, ventros_authenticator;

CREATE TYPE api.auth_grant AS (
    claims        jsonb,
    refresh_token text,
    expires_in    integer
);
COMMENT ON TYPE api.auth_grant IS
    'Claims for the front to sign into an access token, with a refresh token; the front never returns the claims as such';

-- ventros."text/csv": a result that is a document of this media type rather
-- than JSON (PostgREST's media type handlers).  The front answers it as is,
-- with Content-Type text/csv, when the request accepts text/csv or anything
-- (sql/96_http_rpc.sql).
CREATE DOMAIN ventros."text/csv" AS text;
COMMENT ON DOMAIN ventros."text/csv" IS
    'A CSV document: a function returning it answers /rpc/<name> with the document itself (Content-Type text/csv)';
