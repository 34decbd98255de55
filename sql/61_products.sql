-- Aggregate 32, Product (core): the product line a feature belongs to.  An
-- enumeration only, used in billing and subscription metadata; no table and
-- no events.

CREATE TYPE ventros.product AS ENUM ('crm', 'bi', 'automation');
COMMENT ON TYPE ventros.product IS 'Product line of a feature (crm, bi, automation), used by billing metadata';

CREATE FUNCTION ventros.list_products() RETURNS SETOF ventros.product
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT unnest(enum_range(NULL::ventros.product)) $$;
COMMENT ON FUNCTION ventros.list_products() IS 'The product lines, in declaration order';

GRANT USAGE ON TYPE ventros.product TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.list_products() TO ventros_viewer, ventros_anon;
