-- Prefer: count=planned/estimated are answered with the exact count (planner
-- estimates reveal other tenants' values): the estimate function goes.
DROP FUNCTION ventros.http_plan_rows(text);
