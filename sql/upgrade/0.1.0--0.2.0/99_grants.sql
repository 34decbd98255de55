-- Last fragment, as sql/99_grants.sql is the last file of the install:
-- nothing in schema ventros is executable by PUBLIC, whatever the fragments
-- before created.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ventros FROM PUBLIC;
