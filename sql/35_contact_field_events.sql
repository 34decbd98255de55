-- Granular contact events: besides contact.updated (which keeps its
-- changed/previous payload), a change of a contact's field emits the event
-- that names it, in the transaction of the change, so automation rules and
-- sequences can trigger on "a tag was added" without reading change sets.
-- The engine and a trigger, not the commands: every writer (update_contact,
-- merge, inbound profiles, a direct UPDATE) gets them alike.  Soft deletes and erasure emit
-- none (contact.deleted / contact.erased say it).  last_interaction_at and
-- first_interaction_at are quiet columns: their change is the message's event.
-- These events carry no aggregate_version (NULL, as business events emitted
-- without one): the contact's engine events keep consecutive versions, which
-- consumers check (docs/outbox.md).

-- The fields: declared to the engine, which writes their events after
-- contact.updated (src/engine.c, ventros.register_field_events).
SELECT ventros.register_field_events('contact', jsonb_build_object(
    'name', 'contact.name_changed',
    'email', 'contact.email_set',
    'phone', 'contact.phone_set',
    'external_id', 'contact.external_id_set',
    'source_channel', 'contact.source_channel_set',
    'language', 'contact.language_changed',
    'timezone', 'contact.timezone_set',
    'profile_picture_url', 'contact.profile_picture_updated'), jsonb_build_object(
    'contact.name_changed', 'A contact''s name changed.',
    'contact.email_set', 'A contact''s email was set, changed or cleared.',
    'contact.phone_set', 'A contact''s phone was set, changed or cleared.',
    'contact.external_id_set', 'A contact''s external id was set, changed or cleared.',
    'contact.source_channel_set', 'A contact''s source channel was set or changed.',
    'contact.language_changed', 'A contact''s language changed.',
    'contact.timezone_set', 'A contact''s timezone was set, changed or cleared.',
    'contact.profile_picture_updated', 'A contact''s profile picture URL changed.'));

SELECT ventros.register_event_type(e, d) FROM (VALUES
    ('contact.tag_added', 'A tag was added to a contact (one event per tag, also at creation).'),
    ('contact.tag_removed', 'A tag was removed from a contact (one event per tag).'),
    ('contact.tags_cleared', 'Every tag of a contact was removed at once.'),
    ('contact.custom_field_set', 'A custom field of a contact was set or changed.'),
    ('contact.lead_qualified', 'A contact qualified as a lead of a pipeline (score at or above its min_score).')) v(e, d);

-- The tag events of one contact row whose tags changed (an insert: every tag
-- is added).  Tags are a set, one event per element: not a field event.
CREATE FUNCTION ventros.emit_contact_tag_events() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        FOR t IN SELECT x FROM unnest(NEW.tags) x ORDER BY x LOOP
            PERFORM ventros.emit('contact.tag_added', 'contact', NEW.id, jsonb_build_object('tag', t));
        END LOOP;
        RETURN NULL;
    END IF;
    FOR t IN SELECT x FROM unnest(NEW.tags) x EXCEPT SELECT y FROM unnest(OLD.tags) y ORDER BY 1 LOOP
        PERFORM ventros.emit('contact.tag_added', 'contact', NEW.id, jsonb_build_object('tag', t));
    END LOOP;
    FOR t IN SELECT y FROM unnest(OLD.tags) y EXCEPT SELECT x FROM unnest(NEW.tags) x ORDER BY 1 LOOP
        PERFORM ventros.emit('contact.tag_removed', 'contact', NEW.id, jsonb_build_object('tag', t));
    END LOOP;
    IF cardinality(NEW.tags) = 0 AND cardinality(OLD.tags) > 0 THEN
        PERFORM ventros.emit('contact.tags_cleared', 'contact', NEW.id,
                             jsonb_build_object('previous_tags', to_jsonb(OLD.tags)));
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.emit_contact_tag_events() IS
    'Trigger: emits contact.tag_added/.tag_removed (one per tag) and .tags_cleared for a live contact''s changed tags (tag_added also at creation)';
-- Named to fire after ventros_engine_after (triggers fire in name order):
-- contact.updated and the field events come first in the stream, then the tags'.
CREATE TRIGGER ventros_events_contact_tags AFTER INSERT ON ventros.contacts
    FOR EACH ROW WHEN (cardinality(NEW.tags) > 0)
    EXECUTE FUNCTION ventros.emit_contact_tag_events();
CREATE TRIGGER ventros_events_contact_tags_changed AFTER UPDATE ON ventros.contacts
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NULL AND OLD.tags IS DISTINCT FROM NEW.tags)
    EXECUTE FUNCTION ventros.emit_contact_tag_events();

-- contact.custom_field_set: on the contact's stream, whoever wrote the field.
CREATE FUNCTION ventros.emit_contact_custom_field_set() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.field_value IS NOT DISTINCT FROM OLD.field_value
       AND NEW.field_type IS NOT DISTINCT FROM OLD.field_type THEN
        RETURN NULL;
    END IF;
    PERFORM ventros.emit('contact.custom_field_set', 'contact', NEW.contact_id,
                         jsonb_build_object('field_key', NEW.field_key, 'field_type', NEW.field_type,
                                            'value', NEW.field_value,
                                            'previous_value', CASE WHEN TG_OP = 'UPDATE' THEN OLD.field_value END));
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.emit_contact_custom_field_set() IS
    'Trigger: emits contact.custom_field_set (key, type, value, previous value) on the contact when a live custom field is written with a new value';
CREATE TRIGGER ventros_events_contact_custom_field AFTER INSERT OR UPDATE ON ventros.contact_custom_fields
    FOR EACH ROW WHEN (NEW.deleted_at IS NULL)
    EXECUTE FUNCTION ventros.emit_contact_custom_field_set();

-- qualify_contact_lead: records the score of a contact against a pipeline's
-- lead qualification (its min_score, 0-10); at or above it, the contact is a
-- qualified lead: contact.lead_qualified.  Returns whether it qualified.
CREATE FUNCTION ventros.qualify_contact_lead(contact_id uuid, pipeline_id uuid, score numeric,
                                             answers jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant text := ventros.require_tenant();
    config jsonb;
    min_score numeric;
BEGIN
    IF score IS NULL OR score < 0 OR score > 10 THEN
        RAISE EXCEPTION 'lead score must be between 0 and 10' USING ERRCODE = '22023';
    END IF;
    IF answers IS NOT NULL AND jsonb_typeof(answers) <> 'object' THEN
        RAISE EXCEPTION 'lead qualification answers must be a JSON object' USING ERRCODE = '22023';
    END IF;
    SELECT p.lead_qualification INTO config FROM ventros.pipelines p
    WHERE p.tenant_id = tenant AND p.id = qualify_contact_lead.pipeline_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline % not found', pipeline_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT coalesce((config->>'enabled')::boolean, false) THEN
        RAISE EXCEPTION 'pipeline % has no lead qualification enabled', pipeline_id USING ERRCODE = 'VN002',
            HINT = 'Enable it with update_pipeline(..., ''{"lead_qualification": {"enabled": true, "min_score": 7}}'').';
    END IF;
    PERFORM 1 FROM ventros.contacts c
    WHERE c.tenant_id = tenant AND c.id = qualify_contact_lead.contact_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'contact % not found', contact_id USING ERRCODE = 'P0002';
    END IF;
    min_score := coalesce((config->>'min_score')::numeric, 0);
    IF score < min_score THEN
        RETURN false;
    END IF;
    PERFORM ventros.emit('contact.lead_qualified', 'contact', contact_id,
                         jsonb_build_object('pipeline_id', pipeline_id, 'score', score, 'min_score', min_score,
                                            'answers', coalesce(answers, '{}')));
    RETURN true;
END
$$;
COMMENT ON FUNCTION ventros.qualify_contact_lead(uuid, uuid, numeric, jsonb) IS
    'Scores a contact against a pipeline''s lead qualification (VN002 when not enabled); at or above min_score emits contact.lead_qualified and returns true';

GRANT EXECUTE ON FUNCTION ventros.qualify_contact_lead(uuid, uuid, numeric, jsonb) TO ventros_agent;
