-- Contact import and export as CSV.
--
-- Export: ventros.export_contacts() returns rows shaped for
--     COPY (SELECT * FROM ventros.export_contacts()) TO STDOUT WITH (FORMAT csv, HEADER)
-- and ventros.export_contacts_csv() returns the same as one CSV text (HTTP).
-- Import: all or nothing.  Every row is validated by ventros.create_contact
-- in a subtransaction; if any row fails, everything is rolled back and the
-- result lists each failing line with its SQLSTATE and message; otherwise it
-- lists each line with the new contact's id.  Two entry points:
--     SELECT * FROM ventros.import_contacts(<csv text>);          -- HTTP, psql
--     CREATE TEMP TABLE staging OF ventros.contact_import_row;   -- COPY
--     \copy staging FROM 'contacts.csv' WITH (FORMAT csv, HEADER)
--     SELECT * FROM ventros.import_contacts_from('staging');
-- Columns: name, phone, email, external_id, language, timezone, tags
-- (separated by ";") and source_channel; an export's id and created_at
-- columns are accepted and ignored, so an export imports into another tenant.

CREATE TYPE ventros.contact_import_row AS (
    name           text,
    phone          text,
    email          text,
    external_id    text,
    language       text,
    timezone       text,
    tags           text,
    source_channel text
);
COMMENT ON TYPE ventros.contact_import_row IS 'One CSV row of a contact import (tags separated by ";")';

CREATE TYPE ventros.import_result AS (
    line       integer,
    contact_id uuid,
    sqlstate   text,
    error      text
);
COMMENT ON TYPE ventros.import_result IS
    'One line of an import''s outcome: the new contact, or (when the import was refused) the line''s error';

-- parse_csv: RFC 4180 records (quoted fields, doubled quotes, newlines in
-- quotes, CRLF or LF).  line is the record's first line number.
CREATE FUNCTION ventros.parse_csv(csv text)
RETURNS TABLE (line integer, fields text[])
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos integer := 1;
    len integer := length(csv);
    ch text;
    field text := '';
    record text[] := '{}';
    in_quotes boolean := false;
    line_no integer := 1;
    record_line integer := 1;
    quoted boolean := false;
BEGIN
    IF csv IS NULL THEN
        RETURN;
    END IF;
    WHILE pos <= len LOOP
        ch := substr(csv, pos, 1);
        IF in_quotes THEN
            IF ch = '"' THEN
                IF substr(csv, pos + 1, 1) = '"' THEN
                    field := field || '"';
                    pos := pos + 1;
                ELSE
                    in_quotes := false;
                END IF;
            ELSE
                IF ch = E'\n' THEN
                    line_no := line_no + 1;
                END IF;
                field := field || ch;
            END IF;
        ELSIF ch = '"' AND field = '' AND NOT quoted THEN
            in_quotes := true;
            quoted := true;
        ELSIF ch = ',' THEN
            record := record || CASE WHEN field = '' AND NOT quoted THEN NULL ELSE field END;
            field := '';
            quoted := false;
        ELSIF ch = E'\r' AND substr(csv, pos + 1, 1) = E'\n' THEN
            NULL;               -- the LF ends the record
        ELSIF ch = E'\n' THEN
            record := record || CASE WHEN field = '' AND NOT quoted THEN NULL ELSE field END;
            IF NOT (cardinality(record) = 1 AND record[1] IS NULL) THEN
                line := record_line;
                fields := record;
                RETURN NEXT;
            END IF;
            record := '{}';
            field := '';
            quoted := false;
            line_no := line_no + 1;
            record_line := line_no;
        ELSE
            field := field || ch;
        END IF;
        pos := pos + 1;
    END LOOP;
    IF in_quotes THEN
        RAISE EXCEPTION 'unterminated quoted field in CSV line %', record_line USING ERRCODE = '22P02';
    END IF;
    IF field <> '' OR quoted OR cardinality(record) > 0 THEN
        line := record_line;
        fields := record || CASE WHEN field = '' AND NOT quoted THEN NULL ELSE field END;
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION ventros.parse_csv(text) IS 'Parses RFC 4180 CSV text into records (empty unquoted fields are NULL)';

-- import_contact_rows: the all-or-nothing core of both import entry points.
CREATE FUNCTION ventros.import_contact_rows(lines integer[], rows ventros.contact_import_row[], project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.import_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r ventros.contact_import_row;
    i integer;
    created ventros.import_result[] := '{}';
    failed ventros.import_result[] := '{}';
    c ventros.contacts;
    state text;
    message text;
    maximum CONSTANT integer := 100000;
BEGIN
    IF cardinality(rows) > maximum THEN
        RAISE EXCEPTION 'an import holds at most % rows', maximum USING ERRCODE = '54000',
            DETAIL = format('This one has %s.', cardinality(rows)), HINT = 'Split the file.';
    END IF;
    BEGIN
        FOR i IN 1 .. coalesce(cardinality(rows), 0) LOOP
            r := rows[i];
            BEGIN
                c := ventros.create_contact(r.name, phone => r.phone, email => r.email, project_id => project_id,
                                            external_id => r.external_id, source_channel => r.source_channel,
                                            language => coalesce(r.language, 'en'), timezone => r.timezone,
                                            tags => coalesce(ARRAY(SELECT btrim(t) FROM unnest(string_to_array(r.tags, ';')) t
                                                                   WHERE btrim(t) <> ''), '{}'));
                created := created || ROW(lines[i], c.id, NULL, NULL)::ventros.import_result;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
                failed := failed || ROW(lines[i], NULL, state, message)::ventros.import_result;
            END;
        END LOOP;
        IF cardinality(failed) > 0 THEN
            -- undo every row of this import: nothing half-imported
            RAISE EXCEPTION 'import refused' USING ERRCODE = 'VN900';
        END IF;
    EXCEPTION WHEN SQLSTATE 'VN900' THEN
        RETURN QUERY SELECT * FROM unnest(failed);
        RETURN;
    END;
    RETURN QUERY SELECT * FROM unnest(created);
END
$$;
COMMENT ON FUNCTION ventros.import_contact_rows(integer[], ventros.contact_import_row[], uuid) IS
    'Creates a contact per row, all or nothing: the new ids, or each failing line''s SQLSTATE and message with nothing written';

CREATE FUNCTION ventros.import_contacts(csv text, project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.import_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    header text[];
    known CONSTANT text[] := ARRAY['name', 'phone', 'email', 'external_id', 'language', 'timezone', 'tags', 'source_channel'];
    ignored CONSTANT text[] := ARRAY['id', 'created_at', 'updated_at'];
    unknown text;
    lines integer[];
    rows ventros.contact_import_row[];
BEGIN
    IF csv IS NULL THEN
        RAISE EXCEPTION 'import CSV must not be null' USING ERRCODE = '23502';
    END IF;
    PERFORM ventros.check_length(csv, 64 * 1024 * 1024, 'import CSV');
    SELECT ARRAY(SELECT lower(btrim(f)) FROM unnest(p.fields) f) INTO header
    FROM ventros.parse_csv(csv) p ORDER BY p.line LIMIT 1;
    IF header IS NULL THEN
        RAISE EXCEPTION 'import CSV is empty' USING ERRCODE = '22023', HINT = 'The first line names the columns.';
    END IF;
    SELECT h INTO unknown FROM unnest(header) h WHERE h IS NULL OR NOT (h = ANY (known) OR h = ANY (ignored)) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown import column "%"', coalesce(left(unknown, 64), '')
            USING ERRCODE = '22023', HINT = format('Columns: %s.', array_to_string(known, ', '));
    END IF;
    IF NOT 'name' = ANY (header) THEN
        RAISE EXCEPTION 'import CSV has no name column' USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(p.line ORDER BY p.line),
           array_agg(ROW(p.fields[array_position(header, 'name')], p.fields[array_position(header, 'phone')],
                         p.fields[array_position(header, 'email')], p.fields[array_position(header, 'external_id')],
                         p.fields[array_position(header, 'language')], p.fields[array_position(header, 'timezone')],
                         p.fields[array_position(header, 'tags')], p.fields[array_position(header, 'source_channel')]
                        )::ventros.contact_import_row ORDER BY p.line)
    INTO lines, rows
    FROM ventros.parse_csv(csv) p WHERE p.line > (SELECT min(q.line) FROM ventros.parse_csv(csv) q);
    RETURN QUERY SELECT * FROM ventros.import_contact_rows(coalesce(lines, '{}'), coalesce(rows, '{}'), project_id);
END
$$;
COMMENT ON FUNCTION ventros.import_contacts(text, uuid) IS
    'Imports contacts from CSV text with a header line, all or nothing (errors per line); emits contact.created per contact';

CREATE FUNCTION ventros.import_contacts_from(staging regclass, project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.import_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lines integer[];
    rows ventros.contact_import_row[];
BEGIN
    IF (SELECT reloftype FROM pg_class WHERE oid = staging) IS DISTINCT FROM 'ventros.contact_import_row'::regtype THEN
        RAISE EXCEPTION 'table % is not OF ventros.contact_import_row', staging USING ERRCODE = '22023',
            HINT = 'CREATE TEMP TABLE staging OF ventros.contact_import_row, then COPY into it.';
    END IF;
    -- Line numbers count the header line, as a spreadsheet does.
    EXECUTE format('SELECT array_agg(n + 1 ORDER BY n), array_agg(r ORDER BY n) FROM '
                   '(SELECT row_number() OVER ()::integer AS n, ROW(s.*)::ventros.contact_import_row AS r FROM %s s) x',
                   staging)
        INTO lines, rows;
    RETURN QUERY SELECT * FROM ventros.import_contact_rows(coalesce(lines, '{}'), coalesce(rows, '{}'), project_id);
END
$$;
COMMENT ON FUNCTION ventros.import_contacts_from(regclass, uuid) IS
    'Imports contacts from a table OF ventros.contact_import_row filled by COPY, all or nothing (errors per line)';

CREATE FUNCTION ventros.export_contacts(project_id uuid DEFAULT NULL, tag text DEFAULT NULL)
RETURNS TABLE (id uuid, name text, phone text, email text, external_id text, language text, timezone text,
               tags text, source_channel text, created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, c.name, c.phone, c.email, c.external_id, c.language, c.timezone, array_to_string(c.tags, ';'),
           c.source_channel, c.created_at
    FROM ventros.contacts c
    WHERE c.tenant_id = ventros.require_tenant()
      AND (export_contacts.project_id IS NULL OR c.project_id = export_contacts.project_id)
      AND (tag IS NULL OR c.tags @> ARRAY[tag])
    ORDER BY c.created_at, c.id
$$;
COMMENT ON FUNCTION ventros.export_contacts(uuid, text) IS
    'Live contacts as CSV-shaped rows for COPY (SELECT * FROM ventros.export_contacts()) TO STDOUT WITH (FORMAT csv, HEADER)';

CREATE FUNCTION ventros.csv_field(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN value IS NULL THEN ''
                WHEN value ~ '[",\r\n]' OR value <> pg_catalog.btrim(value) OR value = ''
                    THEN '"' || pg_catalog.replace(value, '"', '""') || '"'
                ELSE value END
$$;
COMMENT ON FUNCTION ventros.csv_field(text) IS 'One CSV field, quoted when it needs to be (NULL is empty)';

CREATE FUNCTION ventros.export_contacts_csv(project_id uuid DEFAULT NULL, tag text DEFAULT NULL)
RETURNS ventros."text/csv"
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'id,name,phone,email,external_id,language,timezone,tags,source_channel,created_at' || E'\n' ||
           coalesce(string_agg(concat_ws(',', e.id, ventros.csv_field(e.name), ventros.csv_field(e.phone),
                                         ventros.csv_field(e.email), ventros.csv_field(e.external_id),
                                         ventros.csv_field(e.language), ventros.csv_field(e.timezone),
                                         ventros.csv_field(e.tags), ventros.csv_field(e.source_channel),
                                         to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
                               E'\n' ORDER BY e.created_at, e.id) || E'\n', '')
    FROM ventros.export_contacts(project_id, tag) e
$$;
COMMENT ON FUNCTION ventros.export_contacts_csv(uuid, text) IS 'Live contacts as one CSV document with a header line';

GRANT USAGE ON TYPE ventros.contact_import_row, ventros.import_result TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.parse_csv(text), ventros.csv_field(text) TO ventros_viewer, ventros_anon;
GRANT EXECUTE ON FUNCTION ventros.export_contacts(uuid, text), ventros.export_contacts_csv(uuid, text) TO ventros_admin;
GRANT EXECUTE ON FUNCTION ventros.import_contact_rows(integer[], ventros.contact_import_row[], uuid),
    ventros.import_contacts(text, uuid), ventros.import_contacts_from(regclass, uuid)
    TO ventros_agent;
