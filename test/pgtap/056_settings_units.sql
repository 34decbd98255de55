-- Every Ventros setting that is a duration or a size carries its unit, so
-- '5s' and '1MB' are accepted in every worker's settings, and SQL reads the
-- number in its base unit through ventros.setting_number().
BEGIN;
SELECT plan(9);

SELECT cmp_ok((SELECT count(*)::int FROM pg_settings WHERE name LIKE 'ventros.%'
               AND name ~ '(_timeout|_interval|_backoff_(min|max)|_retention|_after_max|_heartbeat)$'),
              '>=', 12, 'the walk finds the duration settings');
SELECT is(array(SELECT name || ' (' || vartype || ', unit ' || coalesce(unit, 'none') || ')' FROM pg_settings
                WHERE name LIKE 'ventros.%'
                  AND name ~ '(_timeout|_interval|_backoff_(min|max)|_retention|_after_max|_heartbeat)$'
                  AND (vartype <> 'integer' OR coalesce(unit, '') NOT IN ('ms', 's', 'min')) ORDER BY 1),
          '{}'::text[], 'every duration setting is an integer with a time unit');
SELECT is(array(SELECT name || ' (unit ' || coalesce(unit, 'none') || ')' FROM pg_settings
                WHERE name LIKE 'ventros.%' AND name ~ '_size$' AND name !~ '(batch|page)_size$'
                  AND coalesce(unit, '') NOT IN ('B', 'kB', 'MB') ORDER BY 1),
          '{}'::text[], 'every size setting has a byte unit');

SELECT set_config('ventros.inbox_lock_timeout', '5s', true);
SELECT is(ventros.setting_number('ventros.inbox_lock_timeout'), 5000::bigint, '''5s'' is 5000 ms');
SELECT is(current_setting('ventros.inbox_lock_timeout'), '5s', 'current_setting() shows the unit');
SELECT set_config('ventros.media_max_size', '1MB', true);
SELECT is(ventros.setting_number('ventros.media_max_size'), 1048576::bigint, '''1MB'' is 1048576 bytes');
SELECT is(ventros.setting_number('ventros.http_timeout'), (SELECT setting::bigint FROM pg_settings WHERE name = 'ventros.http_timeout'),
          'a reloadable setting reads in its base unit');
SELECT throws_ok($$SELECT ventros.setting_number('work_mem')$$, '22023', NULL, 'only Ventros'' settings are read');
SELECT throws_ok($$SELECT ventros.setting_number('ventros.amqp_url')$$, '22023', NULL, 'a setting that is not a number is refused');

SELECT * FROM finish();
ROLLBACK;
