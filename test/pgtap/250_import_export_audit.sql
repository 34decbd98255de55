-- Contact import (all or nothing, errors per line), export, and the audit trail.
BEGIN;
SELECT plan(16);
SELECT ventros.create_tenant('t_import', 'Import');
SELECT ventros.create_tenant('t_import2', 'Import 2');
SET LOCAL ventros.tenant = 't_import';
SET LOCAL ROLE ventros_admin;

SELECT is(ARRAY(SELECT fields::text FROM ventros.parse_csv(E'a,"b ""q"", c",\r\n"multi\nline",x\n')),
          ARRAY['{a,"b \"q\", c",NULL}', E'{"multi\nline",x}'], 'CSV parser: quotes, commas, CRLF, newlines in quotes, empty as NULL');
SELECT throws_ok($$SELECT * FROM ventros.parse_csv('"open')$$, '22P02', NULL, 'unterminated quote');

-- a bad file: nothing is written, every bad line is reported
SELECT results_eq(
    $$SELECT line, sqlstate FROM ventros.import_contacts(E'name,phone,email,tags\nAna,+5511911112222,ana@example.com,vip;lead\nBad Phone,12,,\n,,x@example.com,\nDup,+5511911112222,,\n') ORDER BY line$$,
    $$VALUES (3, '22P02'), (4, '23502'), (5, '23505')$$,
    'each failing line with its SQLSTATE');
SELECT is((SELECT count(*)::integer FROM ventros.contacts), 0, 'nothing half-imported');
SELECT is((SELECT count(*)::integer FROM ventros.outbox WHERE tenant_id = 't_import' AND event_type = 'contact.created'), 0,
          'no events either');
SELECT throws_ok($$SELECT * FROM ventros.import_contacts(E'name,password\nA,b\n')$$, '22023', 'unknown import column "password"', 'unknown column');
SELECT throws_ok($$SELECT * FROM ventros.import_contacts(E'phone\n+5511911112222\n')$$, '22023', 'import CSV has no name column', 'name required');

-- a good file
SELECT is((SELECT count(contact_id)::integer FROM ventros.import_contacts(
    E'Name,Phone,Email,Tags,Language\nAna,+5511911112222,ana@example.com,vip;lead,pt\n"Silva, Bea",,bea@example.com,,\n')), 2, 'two imported');
SELECT is((ventros.find_contact(email => 'ana@example.com')).tags, '{lead,vip}', 'tags split on ;');

-- export, and the export imports elsewhere
SELECT is((SELECT count(*)::integer FROM ventros.export_contacts()), 2, 'export rows');
SELECT matches(ventros.export_contacts_csv(), E'^id,name,phone,email,external_id,language,timezone,tags,source_channel,created_at\n.*"Silva, Bea"',
               'CSV export quotes fields');
CREATE TEMP TABLE exported AS SELECT ventros.export_contacts_csv() AS csv;
SET LOCAL ventros.tenant = 't_import2';
SELECT is((SELECT count(contact_id)::integer FROM ventros.import_contacts((SELECT csv FROM exported))), 2, 'round trip into another tenant');

-- COPY path: a staging table OF ventros.contact_import_row
CREATE TEMP TABLE staging OF ventros.contact_import_row;
INSERT INTO staging (name, email) VALUES ('Cid', 'cid@example.com'), ('Dee', 'not-an-email');
SELECT results_eq($$SELECT line, sqlstate FROM ventros.import_contacts_from('staging')$$, $$VALUES (3, '22P02')$$,
                  'staging import reports the bad line');
SELECT throws_ok($$SELECT * FROM ventros.import_contacts_from('exported')$$, '22023', NULL, 'staging table must be OF the row type');

-- audit trail
SET LOCAL ventros.tenant = 't_import';
SELECT ventros.update_contact(c.id, c.version, '{"name": "Ana Maria", "language": "es"}') FROM ventros.find_contact(email => 'ana@example.com') c;
CREATE TEMP TABLE ana AS SELECT id FROM ventros.find_contact(email => 'ana@example.com');
SELECT results_eq(
    $$SELECT field, old_value, new_value, actor = session_user FROM ventros.audit_trail('contact', (SELECT id FROM ana))
      WHERE event_type = 'contact.updated' ORDER BY field$$,
    $$VALUES ('language', '"pt"'::jsonb, '"es"'::jsonb, true), ('name', '"Ana"', '"Ana Maria"', true)$$,
    'who changed which field, old and new value');
SELECT is((SELECT count(*)::integer FROM ventros.audit_trail('contact', field => 'name')), 3, 'field filter: two creations and one change');
SELECT * FROM finish();
ROLLBACK;
