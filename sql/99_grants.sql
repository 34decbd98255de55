-- Last file: nothing in schema ventros is executable by PUBLIC.  Each sql/
-- file grants its own functions to the roles that may call them, right after
-- defining them; this revokes what CREATE FUNCTION gave PUBLIC by default.

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ventros FROM PUBLIC;
