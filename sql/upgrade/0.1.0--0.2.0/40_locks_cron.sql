-- Issue 12 (4, 5, 10): locks no tenant can take, scheduled work per tenant,
-- keys leading with tenant_id, and smaller fixes.  Each change is made in
-- sql/ too (see the files named).

-- ---- locks (sql/03_locks.sql, src/locks.c) ----------------------------------
CREATE FUNCTION ventros.lock_tenant_key(key text, tenant text DEFAULT NULL) RETURNS void
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'ventros_lock_tenant_key';
COMMENT ON FUNCTION ventros.lock_tenant_key(text, text) IS
    'Waits for and takes, until the transaction ends, the lock of key within the acting tenant (a lock class SQL''s pg_advisory_* functions cannot take); tenant may only name the acting tenant, or any tenant in a trusted session without one (42501)';

REVOKE EXECUTE ON FUNCTION ventros.lock_tenant_key(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ventros.lock_tenant_key(text, text)
    TO ventros_viewer, ventros_authenticator, ventros_platform_admin;

-- the publisher lock moved to a lock class of its own (same C symbols)
COMMENT ON FUNCTION ventros.outbox_publisher_lock() IS
    'Takes the publisher lock of this database for the rest of the session, without waiting (a session lock of Ventros'' own class, src/locks.c, that pg_advisory_lock cannot take); whether this session holds it (publisher use)';

CREATE OR REPLACE FUNCTION ventros.upsert_contact_by_identity(identity_type text, sender text, name text DEFAULT NULL,
                                                   project_id uuid DEFAULT NULL, channel_id uuid DEFAULT NULL,
                                                   source_channel text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    norm_value text := ventros.normalize_identity(identity_type, sender);
    found_id uuid;
    phone_e164 text;
    c ventros.contacts;
BEGIN
    IF norm_value IS NULL THEN
        RAISE EXCEPTION 'unknown identity type "%"', left(identity_type, 32) USING ERRCODE = '22023';
    END IF;
    -- (the lookup of find_contact_by_identity, inline: the hot path of every inbound message)
    SELECT i.contact_id INTO found_id FROM ventros.contact_identities i
    WHERE i.tenant_id = tenant AND i.identity_type = upsert_contact_by_identity.identity_type AND i.value = norm_value
      AND i.deleted_at IS NULL
    ORDER BY i.created_at, i.contact_id LIMIT 1;
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    PERFORM ventros.lock_tenant_key('identity/' || identity_type || '/' || norm_value);
    found_id := ventros.find_contact_by_identity(identity_type, norm_value);
    IF found_id IS NOT NULL THEN
        RETURN found_id;
    END IF;
    phone_e164 := CASE WHEN identity_type = 'phone' THEN norm_value
                  WHEN identity_type = 'whatsapp' THEN '+' || split_part(norm_value, '@', 1) END;
    -- A contact with that phone but without the identity yet.
    IF phone_e164 IS NOT NULL THEN
        SELECT x.id INTO found_id FROM ventros.contacts x
        WHERE x.tenant_id = tenant AND x.project_id = coalesce(upsert_contact_by_identity.project_id, ventros.default_project())
          AND x.phone = phone_e164 AND x.deleted_at IS NULL;
    END IF;
    IF found_id IS NULL THEN
        c := ventros.create_contact(coalesce(nullif(btrim(name), ''), sender), phone => phone_e164,
                                    email => CASE WHEN identity_type = 'email' THEN norm_value END,
                                    project_id => project_id, source_channel => source_channel);
        found_id := c.id;
    END IF;
    PERFORM ventros.add_contact_identity(found_id, identity_type, norm_value, channel_id);
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION ventros.upsert_contact_by_identity(text, text, text, uuid, uuid, text) IS
    'The contact holding an identity, else one with its phone, else a new contact; race-free per identity (a tenant key lock); emits contact.created and contact_identity.created for a new sender';

CREATE OR REPLACE FUNCTION ventros.inbound_whatsapp_sender(ch ventros.channels, jids text[], name text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    ids text[] := ARRAY(SELECT DISTINCT ventros.canonical_whatsapp_id(j) FROM unnest(jids) j
                        WHERE ventros.canonical_whatsapp_id(j) IS NOT NULL ORDER BY 1);
    phone_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@c.us' LIMIT 1);
    lid_id text := (SELECT i FROM unnest(ids) i WHERE i LIKE '%@lid' LIMIT 1);
    by_phone uuid;
    by_lid uuid;
    x text;
BEGIN
    IF phone_id IS NULL AND lid_id IS NULL THEN
        RAISE EXCEPTION 'no WhatsApp sender id in %', array_to_string(jids, ', ') USING ERRCODE = '22023';
    END IF;
    IF phone_id IS NULL OR lid_id IS NULL THEN
        RETURN coalesce(phone_id, lid_id);      -- one form: receive_message upserts it
    END IF;
    FOREACH x IN ARRAY ARRAY[phone_id, lid_id] LOOP
        PERFORM ventros.lock_tenant_key('identity/' || CASE WHEN x LIKE '%@lid' THEN 'whatsapp_lid' ELSE 'whatsapp' END
                                        || '/' || x);
    END LOOP;
    by_phone := ventros.find_contact_by_identity('whatsapp', phone_id);
    by_lid := ventros.find_contact_by_identity('whatsapp_lid', lid_id);
    IF by_phone IS NULL AND by_lid IS NULL THEN
        by_phone := ventros.upsert_contact_by_identity('whatsapp', phone_id, name, ch.project_id, ch.id, ch.type);
    END IF;
    IF by_phone IS NULL THEN
        PERFORM ventros.add_contact_identity(by_lid, 'whatsapp', phone_id, ch.id);
    ELSIF by_lid IS DISTINCT FROM by_phone THEN
        -- (another contact with the @lid: add_contact_identity opens a merge suggestion)
        PERFORM ventros.add_contact_identity(by_phone, 'whatsapp_lid', lid_id, ch.id);
    END IF;
    RETURN phone_id;
END
$$;
COMMENT ON FUNCTION ventros.inbound_whatsapp_sender(ventros.channels, text[], text) IS
    'Links the phone (@c.us) and privacy (@lid) ids of one WhatsApp sender to one contact (creating it if new); returns the id to record the message under';

CREATE OR REPLACE FUNCTION ventros.event_log_sequence(tenant text, contact_id uuid) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ventros.lock_tenant_key('event_log/' || contact_id::text, tenant);
    SELECT coalesce(max(l.sequence_number), 0) + 1 FROM ventros.event_log l
    WHERE l.tenant_id = tenant AND l.contact_id = event_log_sequence.contact_id
$$;
COMMENT ON FUNCTION ventros.event_log_sequence(text, uuid) IS
    'The next sequence number of a contact''s activity log (locks the contact''s log until commit)';

