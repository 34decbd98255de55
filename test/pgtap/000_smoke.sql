BEGIN;
SELECT plan(2);
SELECT has_schema('ventros');
SELECT ok(ventros.is_valid_event_name('contact.created'), 'contact.created is a valid event name');
SELECT * FROM finish();
ROLLBACK;
