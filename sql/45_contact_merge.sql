-- Contact merge (CRM): the others' sessions, messages, notes, pipeline
-- history, identities, custom fields, consents, chat memberships, list
-- memberships (when ventros.contact_list_members exists) and tags move to
-- the primary contact; the others are soft-deleted; contact.merged is
-- emitted on the primary.
--
-- Locking: every contact involved is locked FOR UPDATE in id order before
-- anything moves, so two merges over overlapping contacts cannot deadlock,
-- and an update of any of them waits: it then fails with P0002 (a merged
-- contact is deleted) or VN001 (the primary's version moved on).

SELECT ventros.register_event_type('contact.merged', 'Contacts were merged into a primary contact.');

CREATE FUNCTION ventros.merge_contacts(primary_id uuid, merged_ids uuid[], strategy text DEFAULT 'keep_primary',
                                       expected_version integer DEFAULT NULL)
RETURNS ventros.contacts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    p ventros.contacts;
    other ventros.contacts;
    locked integer;
    s ventros.sessions;
    moved_sessions integer := 0;
    moved_messages integer := 0;
    moved_notes integer := 0;
    moved_lists integer := 0;
    n integer;
    all_tags text[];
    fill jsonb := '{}';
    result ventros.contacts;
BEGIN
    IF primary_id IS NULL OR merged_ids IS NULL OR cardinality(merged_ids) = 0 THEN
        RAISE EXCEPTION 'a merge needs a primary contact and at least one other' USING ERRCODE = '23502';
    END IF;
    IF primary_id = ANY (merged_ids) OR NOT ventros.is_distinct_array(merged_ids::text[]) THEN
        RAISE EXCEPTION 'merged contacts must be distinct and other than the primary' USING ERRCODE = '22023';
    END IF;
    IF cardinality(merged_ids) > 100 THEN
        RAISE EXCEPTION 'at most 100 contacts are merged at once' USING ERRCODE = '54000';
    END IF;
    IF strategy NOT IN ('keep_primary', 'fill_empty') THEN
        RAISE EXCEPTION 'unknown merge strategy "%"', left(strategy, 32) USING ERRCODE = '22023',
            HINT = 'Use keep_primary (the primary''s fields win) or fill_empty (empty fields of the primary are filled).';
    END IF;
    SELECT count(*) INTO locked FROM (
        SELECT c.id FROM ventros.contacts c
        WHERE c.tenant_id = tenant AND (c.id = primary_id OR c.id = ANY (merged_ids))
        ORDER BY c.id FOR UPDATE) l;
    IF locked <> 1 + cardinality(merged_ids) THEN
        RAISE EXCEPTION 'contact % not found', (SELECT x FROM unnest(primary_id || merged_ids) x
                                                WHERE NOT EXISTS (SELECT 1 FROM ventros.contacts c
                                                                  WHERE c.tenant_id = tenant AND c.id = x) LIMIT 1)
            USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO p FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = primary_id;
    PERFORM ventros.require_version('contact', primary_id, expected_version, p.version);
    all_tags := p.tags;

    FOR other IN SELECT * FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = ANY (merged_ids) ORDER BY c.created_at, c.id LOOP
        -- Sessions: an open one (active or snoozed) where the primary has one on the same channel ends first.
        FOR s IN SELECT * FROM ventros.sessions x
                 WHERE x.tenant_id = tenant AND x.contact_id = other.id AND x.status IN ('active', 'snoozed')
                   AND EXISTS (SELECT 1 FROM ventros.sessions y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                               AND y.channel_id = x.channel_id AND y.status IN ('active', 'snoozed'))
                 FOR UPDATE LOOP
            PERFORM ventros.finish_session(s, 'system_close', now());
        END LOOP;
        UPDATE ventros.sessions x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_sessions := moved_sessions + n;
        UPDATE ventros.messages x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_messages := moved_messages + n;
        UPDATE ventros.notes x SET contact_id = p.id, version = x.version WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        GET DIAGNOSTICS n = ROW_COUNT; moved_notes := moved_notes + n;
        -- Pipeline stays: the primary's open row in a pipeline wins; the other's closes.
        UPDATE ventros.contact_pipeline_statuses x
        SET exited_at = greatest(now(), x.entered_at), duration = extract(epoch FROM greatest(now(), x.entered_at) - x.entered_at)::bigint,
            version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id AND x.exited_at IS NULL
          AND EXISTS (SELECT 1 FROM ventros.contact_pipeline_statuses y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.pipeline_id = x.pipeline_id AND y.exited_at IS NULL);
        UPDATE ventros.contact_pipeline_statuses x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        -- Identities, custom fields, consents: what the primary lacks moves, duplicates go.
        DELETE FROM ventros.contact_identities x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_identities y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.identity_type = x.identity_type AND y.value = x.value);
        UPDATE ventros.contact_identities x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        DELETE FROM ventros.contact_custom_fields x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_custom_fields y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.field_key = x.field_key);
        UPDATE ventros.contact_custom_fields x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        -- Consent: an opt-out of either contact survives.
        UPDATE ventros.contact_consents y SET status = 'opted_out', source = 'manual', reason = 'merged', version = y.version
        WHERE y.tenant_id = tenant AND y.contact_id = p.id AND y.status = 'opted_in'
          AND EXISTS (SELECT 1 FROM ventros.contact_consents x WHERE x.tenant_id = tenant AND x.contact_id = other.id
                      AND x.channel_id IS NOT DISTINCT FROM y.channel_id AND x.status = 'opted_out');
        DELETE FROM ventros.contact_consents x WHERE x.tenant_id = tenant AND x.contact_id = other.id
          AND EXISTS (SELECT 1 FROM ventros.contact_consents y WHERE y.tenant_id = tenant AND y.contact_id = p.id
                      AND y.channel_id IS NOT DISTINCT FROM x.channel_id);
        UPDATE ventros.contact_consents x SET contact_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.contact_id = other.id;
        UPDATE ventros.chat_participants x SET participant_id = p.id, version = x.version
        WHERE x.tenant_id = tenant AND x.participant_id = other.id AND x.participant_type = 'contact'
          AND NOT EXISTS (SELECT 1 FROM ventros.chat_participants y WHERE y.tenant_id = tenant AND y.chat_id = x.chat_id
                          AND y.participant_id = p.id AND y.left_at IS NULL);
        -- List memberships belong to another part of the domain; moved when it is installed.
        IF to_regclass('ventros.contact_list_members') IS NOT NULL THEN
            EXECUTE 'DELETE FROM ventros.contact_list_members x WHERE x.tenant_id = $1 AND x.contact_id = $2
                     AND EXISTS (SELECT 1 FROM ventros.contact_list_members y WHERE y.tenant_id = $1
                                 AND y.contact_id = $3 AND y.contact_list_id = x.contact_list_id)'
                USING tenant, other.id, p.id;
            EXECUTE 'UPDATE ventros.contact_list_members x SET contact_id = $3, version = x.version
                     WHERE x.tenant_id = $1 AND x.contact_id = $2'
                USING tenant, other.id, p.id;
            GET DIAGNOSTICS n = ROW_COUNT; moved_lists := moved_lists + n;
        END IF;
        UPDATE ventros.contact_merge_suggestions x SET status = 'accepted', version = x.version
        WHERE x.tenant_id = tenant AND x.status = 'open'
          AND ((x.contact_id = least(p.id, other.id) AND x.other_contact_id = greatest(p.id, other.id)));
        all_tags := all_tags || other.tags;
        IF strategy = 'fill_empty' THEN
            fill := jsonb_strip_nulls(jsonb_build_object(
                        'email', CASE WHEN p.email IS NULL AND NOT fill ? 'email' THEN other.email END,
                        'phone', CASE WHEN p.phone IS NULL AND NOT fill ? 'phone' THEN other.phone END,
                        'external_id', CASE WHEN p.external_id IS NULL AND NOT fill ? 'external_id' THEN other.external_id END,
                        'timezone', CASE WHEN p.timezone IS NULL AND NOT fill ? 'timezone' THEN other.timezone END)) || fill;
        END IF;
        DELETE FROM ventros.contacts c WHERE c.tenant_id = tenant AND c.id = other.id;
    END LOOP;

    UPDATE ventros.contacts c
    SET tags = ARRAY(SELECT DISTINCT t FROM unnest(all_tags) t ORDER BY t),
        email = coalesce(c.email, fill->>'email'), phone = coalesce(c.phone, fill->>'phone'),
        external_id = coalesce(c.external_id, fill->>'external_id'), timezone = coalesce(c.timezone, fill->>'timezone'),
        first_interaction_at = (SELECT min(m."timestamp") FROM ventros.messages m WHERE m.tenant_id = tenant AND m.contact_id = p.id),
        last_interaction_at = (SELECT max(m."timestamp") FROM ventros.messages m WHERE m.tenant_id = tenant AND m.contact_id = p.id),
        version = p.version
    WHERE c.tenant_id = tenant AND c.id = p.id
    RETURNING * INTO result;
    PERFORM ventros.emit('contact.merged', 'contact', p.id,
                         jsonb_build_object('primary_id', p.id, 'merged_ids', to_jsonb(merged_ids), 'strategy', strategy,
                                            'moved', jsonb_build_object('sessions', moved_sessions, 'messages', moved_messages,
                                                                        'notes', moved_notes, 'list_memberships', moved_lists)),
                         result.version);
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.merge_contacts(uuid, uuid[], text, integer) IS
    'Merges contacts into a primary: moves sessions (ending an active one that would collide), messages, notes, pipeline history, identities, custom fields, consents (an opt-out survives), chat and list memberships, unions tags; soft-deletes the others; emits contact.merged (and the moved rows'' events, contact.deleted per merged contact)';

GRANT EXECUTE ON FUNCTION ventros.merge_contacts(uuid, uuid[], text, integer) TO ventros_admin;
