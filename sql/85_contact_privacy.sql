-- Data-subject rights for contacts: erasure of a contact's personal data
-- everywhere in one transaction (ventros.erase_contact), and a subject
-- export as one JSON document (ventros.export_contact_data).
--
-- Erasure finds the contact's data three ways:
--   1. rows that belong to the contact (every table with a contact_id or
--      other_contact_id column, found in the catalog, so tables added later
--      are covered): free-text content is blanked by per-table rules,
--      identities, custom fields and merge suggestions are removed, and
--      every remaining text, jsonb and text[] value is redacted;
--   2. the contact's distinctive values (email, phone and its digits,
--      external id, provider ids, custom-field strings) in every text, jsonb
--      and text[] column of every tenant table, outbox payloads included;
--   3. its name, in the rows of (1) and in the outbox events of those rows.
-- It runs as the extension owner (SECURITY DEFINER): the outbox has no write
-- policy and the activity log is append-only for everyone else.  It sets
-- session_replication_role = replica so that the engine does not write new
-- events carrying the old values; it bumps version and updated_at itself,
-- and writes one contact.erased event with counts only.  Every statement
-- filters by the acting tenant explicitly, because RLS does not bind the
-- owner.  Events already published to RabbitMQ cannot be recalled; consumers
-- should honour contact.erased.

SELECT ventros.register_event_type('contact.erased', 'The personal data of a contact was erased everywhere.');

-- redact_text: value with every secret replaced by [erased].
CREATE FUNCTION ventros.redact_text(value text, secrets text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    FOREACH s IN ARRAY secrets LOOP
        value := replace(value, s, '[erased]');
    END LOOP;
    RETURN value;
END
$$;
COMMENT ON FUNCTION ventros.redact_text(text, text[]) IS 'Replaces every occurrence of each secret in value with [erased]';

-- redact_jsonb: the same inside every string, number and key of a document.
CREATE FUNCTION ventros.redact_jsonb(value jsonb, secrets text[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE jsonb_typeof(value)
        WHEN 'object' THEN (SELECT coalesce(jsonb_object_agg(ventros.redact_text(key, secrets), ventros.redact_jsonb(v, secrets)), '{}')
                            FROM jsonb_each(value) AS e(key, v))
        WHEN 'array' THEN (SELECT coalesce(jsonb_agg(ventros.redact_jsonb(v, secrets) ORDER BY n), '[]')
                           FROM jsonb_array_elements(value) WITH ORDINALITY AS e(v, n))
        WHEN 'string' THEN to_jsonb(ventros.redact_text(value #>> '{}', secrets))
        WHEN 'number' THEN CASE WHEN ventros.redact_text(value::text, secrets) = value::text THEN value
                                ELSE to_jsonb(ventros.redact_text(value::text, secrets)) END
        ELSE value END;
END
$$;
COMMENT ON FUNCTION ventros.redact_jsonb(jsonb, text[]) IS 'Redacts secrets in every string, number and key of a JSON document';

-- The text-bearing columns of every Ventros table that has tenant rows.
CREATE FUNCTION ventros.text_columns()
RETURNS TABLE (table_name regclass, column_name name, kind text, not_null boolean, has_contact boolean, has_other_contact boolean,
               has_version boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, a.attname,
           CASE WHEN a.atttypid = 'jsonb'::regtype THEN 'jsonb' WHEN a.atttypid = 'text[]'::regtype THEN 'text[]'
                ELSE 'text' END,
           a.attnotnull,
           EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attname = 'contact_id' AND NOT x.attisdropped),
           EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attname = 'other_contact_id' AND NOT x.attisdropped),
           EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = c.oid AND x.attname = 'version' AND NOT x.attisdropped)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE n.nspname = 'ventros' AND c.relkind IN ('r', 'p')
      AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'jsonb'::regtype, 'text[]'::regtype)
      AND a.attgenerated = ''
      AND a.attname NOT IN ('tenant_id')
      AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.oid AND t.attname = 'tenant_id' AND NOT t.attisdropped)
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION ventros.text_columns() IS
    'Every text, varchar, char, jsonb and text[] column of the tenant tables of schema ventros (erasure scans these)';

-- redact_column: one column of one table, in the rows chosen by scope
-- ('tenant': every row of the tenant; 'contact': the contact's own rows;
-- 'outbox': events of the given aggregate ids).  Returns rows changed.
CREATE FUNCTION ventros.redact_column(tenant text, rel regclass, col name, kind text, has_version boolean,
                                      secrets text[], scope text, contact_id uuid, related uuid[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    patterns text[];
    setter text;
    filter text;
    n bigint;
BEGIN
    IF cardinality(secrets) = 0 THEN
        RETURN 0;
    END IF;
    -- LIKE patterns of each secret, plain and as JSON escapes it.
    SELECT array_agg(DISTINCT '%' || replace(replace(replace(p, '\', '\\'), '%', '\%'), '_', '\_') || '%')
    INTO patterns
    FROM unnest(secrets) s, LATERAL (VALUES (s), (substr(to_jsonb(s)::text, 2, length(to_jsonb(s)::text) - 2))) v(p);
    setter := CASE kind
        WHEN 'jsonb' THEN format('%I = ventros.redact_jsonb(%I, $2)', col, col)
        WHEN 'text[]' THEN format('%I = ARRAY(SELECT ventros.redact_text(x, $2) FROM unnest(%I) WITH ORDINALITY u(x, i) ORDER BY i)', col, col)
        ELSE format('%I = ventros.redact_text(%I, $2)', col, col) END;
    IF has_version THEN
        setter := setter || ', version = version + 1, updated_at = now()';
    END IF;
    filter := CASE scope
        WHEN 'tenant' THEN ''
        WHEN 'contact' THEN CASE WHEN rel = 'ventros.contacts'::regclass THEN ' AND id = $4'
                                 ELSE ' AND (contact_id = $4' ||
                                      CASE WHEN EXISTS (SELECT 1 FROM pg_attribute x WHERE x.attrelid = rel
                                                        AND x.attname = 'other_contact_id')
                                           THEN ' OR other_contact_id = $4)' ELSE ')' END END
        WHEN 'outbox' THEN ' AND aggregate_id = ANY ($5)' END;
    EXECUTE format('UPDATE %s SET %s WHERE tenant_id = $1%s AND %I::text LIKE ANY ($3)', rel, setter, filter, col)
        USING tenant, secrets, patterns, contact_id, related;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
EXCEPTION WHEN check_violation OR unique_violation OR not_null_violation OR invalid_text_representation THEN
    -- The redacted value breaks a rule of the column (an email or URL format):
    -- the column's value goes instead, or the row when the column is required.
    IF NOT (SELECT attnotnull FROM pg_attribute WHERE attrelid = rel AND attname = col) THEN
        EXECUTE format('UPDATE %s SET %I = NULL%s WHERE tenant_id = $1%s AND %I::text LIKE ANY ($3)', rel, col,
                       CASE WHEN has_version THEN ', version = version + 1, updated_at = now()' ELSE '' END, filter, col)
            USING tenant, secrets, patterns, contact_id, related;
    ELSE
        EXECUTE format('DELETE FROM %s WHERE tenant_id = $1%s AND %I::text LIKE ANY ($3)', rel, filter, col)
            USING tenant, secrets, patterns, contact_id, related;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION ventros.redact_column(text, regclass, name, text, boolean, text[], text, uuid, uuid[]) IS
    'Erasure step: redacts secrets in one column of one table for a tenant, a contact''s rows or some aggregates'' events';

-- blank_contact_content: per-table rules for the contact's free text, which
-- may hold personal data that matches no known value.  Tables of parts not
-- installed are skipped.
CREATE FUNCTION ventros.blank_contact_content(tenant text, contact_id uuid) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule text[];
    n bigint;
    total bigint := 0;
BEGIN
    FOREACH rule SLICE 1 IN ARRAY ARRAY[
        ['ventros.messages', 'text = CASE WHEN content_type IN (''text'', ''system'') THEN ''[erased]'' END, '
                             'media_url = CASE WHEN media_url IS NOT NULL THEN ''https://erased.invalid/'' END, '
                             'metadata = NULL, mentions = ''{}'', error = NULL'],
        ['ventros.sessions', 'summary = NULL, topics = NULL, next_steps = NULL, key_entities = NULL, outcome_tags = NULL'],
        ['ventros.notes', 'content = ''[erased]'', attachments = ''{}'''],
        ['ventros.contact_events', 'title = NULL, description = NULL, payload = ''{}'', metadata = ''{}'''],
        ['ventros.event_log', 'payload = ''{}'''],
        ['ventros.trackings', 'ad_url = NULL, click_id = NULL, conversion_data = NULL, utm_term = NULL, utm_content = NULL, metadata = ''{}'''],
        ['ventros.contact_consents', 'reason = NULL'],
        ['ventros.agent_ai_interactions', 'concatenated_content = ''[erased]'', ai_response = NULL'],
        ['ventros.message_enrichments', 'extracted_text = NULL, media_url = ''https://erased.invalid/'', metadata = NULL'],
        ['ventros.broadcast_executions', 'error = NULL']]
    LOOP
        IF to_regclass(rule[1]) IS NULL THEN
            CONTINUE;
        END IF;
        BEGIN
            EXECUTE format('UPDATE %s SET %s, version = version + 1, updated_at = now() WHERE tenant_id = $1 AND contact_id = $2',
                           rule[1], rule[2]) USING tenant, contact_id;
            GET DIAGNOSTICS n = ROW_COUNT;
            total := total + n;
        EXCEPTION WHEN undefined_column OR not_null_violation OR check_violation THEN
            NULL;               -- the table's shape differs from the rule's: the value scan still covers it
        END;
    END LOOP;
    -- Identities, custom fields and merge suggestions are personal data
    -- themselves: they go.
    FOREACH rule SLICE 1 IN ARRAY ARRAY[['ventros.contact_identities', 'contact_id = $2'],
                                        ['ventros.contact_custom_fields', 'contact_id = $2'],
                                        ['ventros.contact_merge_suggestions', '(contact_id = $2 OR other_contact_id = $2)'],
                                        ['ventros.inbox', 'contact_id = $2']]
    LOOP
        IF to_regclass(rule[1]) IS NOT NULL THEN
            EXECUTE format('DELETE FROM %s WHERE tenant_id = $1 AND %s', rule[1], rule[2]) USING tenant, contact_id;
            GET DIAGNOSTICS n = ROW_COUNT;
            total := total + n;
        END IF;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION ventros.blank_contact_content(text, uuid) IS
    'Erasure step: blanks a contact''s messages, notes, summaries, timeline and activity payloads; removes identities, custom fields and merge suggestions';

CREATE FUNCTION ventros.erase_contact(contact_id uuid, reason text DEFAULT 'data subject request')
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    c ventros.contacts;
    distinctive text[];
    all_secrets text[];
    related uuid[] := ARRAY[contact_id];
    ids uuid[];
    t record;
    n bigint;
    blanked bigint;
    redacted bigint := 0;
    events bigint := 0;
BEGIN
    SELECT * INTO c FROM ventros.contacts x WHERE x.tenant_id = tenant AND x.id = erase_contact.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;

    -- The contact's distinctive values; short ones would redact unrelated text.
    SELECT coalesce(array_agg(DISTINCT v ORDER BY v) FILTER (WHERE length(v) >= 5), '{}') INTO distinctive
    FROM (SELECT unnest(ARRAY[c.email, c.phone, ltrim(c.phone, '+'), c.external_id, c.profile_picture_url]) v
          UNION ALL
          SELECT unnest(ARRAY[i.value, split_part(i.value, '@', 1)]) FROM ventros.contact_identities i
          WHERE to_regclass('ventros.contact_identities') IS NOT NULL AND i.tenant_id = tenant AND i.contact_id = c.id
          UNION ALL
          SELECT f.field_value #>> '{}' FROM ventros.contact_custom_fields f
          WHERE to_regclass('ventros.contact_custom_fields') IS NOT NULL AND f.tenant_id = tenant AND f.contact_id = c.id
            AND jsonb_typeof(f.field_value) IN ('string', 'number')
          UNION ALL
          -- earlier values, from the contact's own events
          SELECT unnest(ARRAY[p->>'email', p->>'phone', ltrim(p->>'phone', '+'), p->>'external_id', p->>'profile_picture_url'])
          FROM ventros.outbox o, LATERAL (VALUES (o.payload), (o.payload->'previous'), (o.payload->'changed')) AS x(p)
          WHERE o.tenant_id = tenant AND o.aggregate_id = c.id AND o.aggregate_type = 'contact') s
    WHERE v IS NOT NULL AND v <> '[erased]';
    SELECT distinctive || coalesce(array_agg(DISTINCT v) FILTER (WHERE length(v) >= 2 AND v <> '[erased]'), '{}')
    INTO all_secrets
    FROM (SELECT c.name AS v
          UNION ALL
          SELECT p->>'name' FROM ventros.outbox o,
               LATERAL (VALUES (o.payload), (o.payload->'previous'), (o.payload->'changed')) AS x(p)
          WHERE o.tenant_id = tenant AND o.aggregate_id = c.id AND o.aggregate_type = 'contact') names;

    -- Ids of the contact's rows, whose outbox events are redacted too.
    FOR t IN SELECT DISTINCT table_name FROM ventros.text_columns() WHERE has_contact LOOP
        EXECUTE format('SELECT array_agg((to_jsonb(x)->>''id'')::uuid) FROM %s x WHERE tenant_id = $1 AND contact_id = $2', t.table_name)
            INTO ids USING tenant, c.id;
        related := related || coalesce(ids, '{}');
    END LOOP;

    blanked := ventros.blank_contact_content(tenant, c.id);

    UPDATE ventros.contacts x
    SET name = '[erased]', email = NULL, phone = NULL, external_id = NULL, timezone = NULL, tags = '{}',
        source_channel = NULL, profile_picture_url = NULL, profile_picture_fetched_at = NULL,
        deleted_at = coalesce(x.deleted_at, now()), version = x.version + 1, updated_at = now()
    WHERE x.tenant_id = tenant AND x.id = c.id;

    FOR t IN SELECT * FROM ventros.text_columns() LOOP
        IF t.table_name = 'ventros.outbox'::regclass THEN
            n := ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, false, all_secrets, 'outbox', c.id, related)
               + ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, false, distinctive, 'tenant', c.id, related);
            events := events + n;
        ELSE
            n := ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, t.has_version, distinctive, 'tenant', c.id, related);
            IF t.has_contact OR t.table_name = 'ventros.contacts'::regclass THEN
                n := n + ventros.redact_column(tenant, t.table_name, t.column_name, t.kind, t.has_version, all_secrets,
                                               'contact', c.id, related);
            END IF;
        END IF;
        redacted := redacted + n;
    END LOOP;

    PERFORM ventros.emit('contact.erased', 'contact', c.id,
        jsonb_build_object('reason', ventros.check_length(reason, 500, 'erasure reason'), 'rows_blanked', blanked,
                           'values_redacted', redacted, 'events_redacted', events),
        c.version + 1);
    RETURN jsonb_build_object('contact_id', c.id, 'rows_blanked', blanked, 'values_redacted', redacted,
                              'events_redacted', events);
END
$$;
COMMENT ON FUNCTION ventros.erase_contact(uuid, text) IS
    'Erases a contact''s personal data in every table and in the outbox, in one transaction; the contact stays as a soft-deleted [erased] row; emits contact.erased (counts only)';

-- export_contact_data: everything Ventros holds about a contact, as one JSON
-- document: the contact, every row of every table that has a contact_id
-- (soft-deleted rows included), and the events about the contact and those
-- rows.  Runs with the caller's rights: RLS keeps it to the acting tenant.
CREATE FUNCTION ventros.export_contact_data(contact_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET ventros.include_deleted = on
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    contact jsonb;
    doc jsonb;
    t record;
    rows jsonb;
    related uuid[] := ARRAY[contact_id];
    ids uuid[];
BEGIN
    SELECT to_jsonb(x) INTO contact FROM ventros.contacts x WHERE x.tenant_id = tenant AND x.id = export_contact_data.contact_id;
    IF contact IS NULL THEN
        PERFORM ventros.not_found('contact', contact_id);
    END IF;
    doc := jsonb_build_object('format', 'ventros.subject_export.v1', 'tenant_id', tenant, 'exported_at', now(),
                              'contact', contact);
    FOR t IN SELECT DISTINCT table_name FROM ventros.text_columns() WHERE has_contact ORDER BY 1 LOOP
        BEGIN
            EXECUTE format('SELECT jsonb_agg(to_jsonb(x) ORDER BY to_jsonb(x)->>''created_at'', to_jsonb(x)->>''id''), '
                           'array_agg((to_jsonb(x)->>''id'')::uuid) FROM %s x '
                           'WHERE x.tenant_id = $1 AND x.contact_id = $2', t.table_name)
                INTO rows, ids USING tenant, contact_id;
        EXCEPTION WHEN insufficient_privilege THEN
            CONTINUE;           -- a table the caller may not read
        END;
        IF rows IS NOT NULL THEN
            doc := doc || jsonb_build_object(split_part(t.table_name::text, '.', 2), rows);
            related := related || ids;
        END IF;
    END LOOP;
    SELECT coalesce(jsonb_agg(jsonb_build_object('seq', o.seq, 'event_type', o.event_type, 'aggregate_type', o.aggregate_type,
                                                 'aggregate_id', o.aggregate_id, 'occurred_at', o.occurred_at,
                                                 'actor', o.actor, 'payload', o.payload) ORDER BY o.seq), '[]')
    INTO rows
    FROM ventros.outbox o WHERE o.tenant_id = tenant AND o.aggregate_id = ANY (related);
    RETURN doc || jsonb_build_object('events', rows);
END
$$;
COMMENT ON FUNCTION ventros.export_contact_data(uuid) IS
    'One JSON document with a contact, its rows in every table with a contact_id (deleted ones too) and the events about them';

GRANT EXECUTE ON FUNCTION ventros.redact_text(text, text[]), ventros.redact_jsonb(jsonb, text[]), ventros.text_columns()
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.erase_contact(uuid, text), ventros.export_contact_data(uuid) TO ventros_admin;
REVOKE EXECUTE ON FUNCTION ventros.redact_column(text, regclass, name, text, boolean, text[], text, uuid, uuid[]),
    ventros.blank_contact_content(text, uuid) FROM PUBLIC;
