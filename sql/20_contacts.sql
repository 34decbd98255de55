-- Aggregate 1, Contact (CRM): a person the business talks to.
-- Phones are stored in E.164 and emails lowercased; both are unique among the
-- live contacts of a project.

CREATE TABLE ventros.contacts (
    id                         uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                  text        NOT NULL,
    version                    integer     NOT NULL DEFAULT 1,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    deleted_at                 timestamptz,
    project_id                 uuid        NOT NULL DEFAULT ventros.default_project(),
    name                       text        NOT NULL,
    email                      text,
    phone                      text,
    external_id                text,
    source_channel             text,
    language                   text        NOT NULL DEFAULT 'en',
    timezone                   text,
    tags                       text[]      NOT NULL DEFAULT '{}',
    profile_picture_url        text,
    profile_picture_fetched_at timestamptz,
    first_interaction_at       timestamptz,
    last_interaction_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, project_id) REFERENCES ventros.projects (tenant_id, id),
    CONSTRAINT contacts_name_not_blank CHECK (btrim(name) <> '' AND length(name) <= 200),
    CONSTRAINT contacts_phone_e164 CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    CONSTRAINT contacts_email_normalized CHECK (email = lower(email) AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s.]+$'),
    CONSTRAINT contacts_tags_distinct CHECK (ventros.is_distinct_array(tags)),
    CONSTRAINT contacts_language_format CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    CONSTRAINT contacts_text_sizes CHECK (length(external_id) <= 200 AND length(source_channel) <= 50
                                          AND length(timezone) <= 64 AND length(profile_picture_url) <= 2048)
);
CREATE UNIQUE INDEX contacts_unique_phone ON ventros.contacts (tenant_id, project_id, phone)
    WHERE deleted_at IS NULL AND phone IS NOT NULL;
CREATE UNIQUE INDEX contacts_unique_email ON ventros.contacts (tenant_id, project_id, email)
    WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE UNIQUE INDEX contacts_unique_external_id ON ventros.contacts (tenant_id, project_id, external_id)
    WHERE deleted_at IS NULL AND external_id IS NOT NULL;
CREATE INDEX contacts_by_name ON ventros.contacts (tenant_id, lower(name), id) WHERE deleted_at IS NULL;
CREATE INDEX contacts_by_tags ON ventros.contacts USING gin (tags);
-- Lists in their usual order (newest first) read an index, not a sort of
-- every contact of the tenant: not partial, since the tenant policies hide
-- deleted rows with an OR the planner cannot match to a predicate.
CREATE INDEX contacts_by_created ON ventros.contacts (tenant_id, created_at DESC, id DESC);
COMMENT ON TABLE ventros.contacts IS 'Contact: a person the business talks to over any channel';

SELECT ventros.register_aggregate('contact', 'ventros.contacts', 'crm',
    description => 'A person the business talks to over any channel');

-- normalize_contact: the contact's own rules on every write, whoever writes:
-- the name trimmed, the phone in E.164, the email lowercased (22P02 when they
-- are not one), tags distinct and sorted, sizes checked (54000), the language
-- 'en' unless given.  create_contact and update_contact store the same, so a
-- direct write is the same as them (register_writes below).  Fires before
-- the engine (trigger names sort), which then sees the stored values.
CREATE FUNCTION ventros.normalize_contact() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name THEN
        NEW.name := ventros.check_length(btrim(NEW.name), 200, 'contact name');
    END IF;
    IF TG_OP = 'INSERT' OR NEW.phone IS DISTINCT FROM OLD.phone THEN
        NEW.phone := ventros.normalize_phone(NEW.phone);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.email IS DISTINCT FROM OLD.email THEN
        NEW.email := ventros.normalize_email(NEW.email);
    END IF;
    IF TG_OP = 'INSERT' OR NEW.external_id IS DISTINCT FROM OLD.external_id THEN
        NEW.external_id := ventros.check_length(NEW.external_id, 200, 'contact external id');
    END IF;
    IF NEW.tags IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.tags IS DISTINCT FROM OLD.tags) THEN
        NEW.tags := ARRAY(SELECT DISTINCT t FROM unnest(NEW.tags) t ORDER BY t);
    END IF;
    IF TG_OP = 'INSERT' THEN
        NEW.language := coalesce(NEW.language, 'en');
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION ventros.normalize_contact() IS
    'Trigger: trims the name, normalises phone (E.164) and email, makes tags distinct and sorted, on every write of a contact';
CREATE TRIGGER contacts_normalize BEFORE INSERT ON ventros.contacts
    FOR EACH ROW EXECUTE FUNCTION ventros.normalize_contact();
-- An update calls it only when a field it would change changed: a name
-- already trimmed and short enough is kept as it is, so a bulk rename of
-- clean names runs no PL/pgSQL per row (bench/engine.sh, bulk update).
CREATE TRIGGER contacts_normalize_changes BEFORE UPDATE ON ventros.contacts
    FOR EACH ROW WHEN ((NEW.name IS DISTINCT FROM OLD.name
                        AND (NEW.name <> pg_catalog.btrim(NEW.name) OR pg_catalog.length(NEW.name) > 200))
                       OR NEW.phone IS DISTINCT FROM OLD.phone OR NEW.email IS DISTINCT FROM OLD.email
                       OR NEW.external_id IS DISTINCT FROM OLD.external_id OR NEW.tags IS DISTINCT FROM OLD.tags)
    EXECUTE FUNCTION ventros.normalize_contact();

-- Normalises the fields of a contact change set (phone, email, name, tags).
CREATE FUNCTION ventros.normalize_contact_changes(changes jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result jsonb := changes;
BEGIN
    IF jsonb_typeof(changes) IS DISTINCT FROM 'object' THEN
        RETURN changes;  -- apply_changes reports it
    END IF;
    IF changes ? 'name' AND jsonb_typeof(changes->'name') = 'string' THEN
        result := jsonb_set(result, '{name}', to_jsonb(ventros.check_length(btrim(changes->>'name'), 200, 'contact name')));
    END IF;
    IF changes ? 'phone' AND jsonb_typeof(changes->'phone') = 'string' THEN
        result := jsonb_set(result, '{phone}', to_jsonb(ventros.normalize_phone(changes->>'phone')));
    END IF;
    IF changes ? 'email' AND jsonb_typeof(changes->'email') = 'string' THEN
        result := jsonb_set(result, '{email}', to_jsonb(ventros.normalize_email(changes->>'email')));
    END IF;
    IF changes ? 'tags' AND jsonb_typeof(changes->'tags') = 'array' THEN
        result := jsonb_set(result, '{tags}',
            coalesce((SELECT jsonb_agg(DISTINCT t) FROM jsonb_array_elements_text(changes->'tags') t), '[]'));
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION ventros.normalize_contact_changes(jsonb) IS
    'Normalises phone (E.164), email (lowercase), name (trimmed) and tags (distinct) in a contact change set';

-- Re-raises a unique violation of the contacts table with a message that
-- names the duplicate.
CREATE FUNCTION ventros.raise_contact_duplicate(constraint_name text, phone text, email text, external_id text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '%', CASE constraint_name
            WHEN 'contacts_unique_phone' THEN format('a contact with phone %s already exists', phone)
            WHEN 'contacts_unique_email' THEN format('a contact with email %s already exists', email)
            WHEN 'contacts_unique_external_id' THEN format('a contact with external id %s already exists', external_id)
            ELSE format('duplicate contact (%s)', constraint_name) END
        USING ERRCODE = '23505', CONSTRAINT = constraint_name,
              HINT = 'Look the contact up with ventros.find_contact() and update it instead.';
END
$$;
COMMENT ON FUNCTION ventros.raise_contact_duplicate(text, text, text, text) IS
    'Raises 23505 naming the duplicate phone, email or external id of a contact';

CREATE FUNCTION ventros.create_contact(
    name           text,
    phone          text    DEFAULT NULL,
    email          text    DEFAULT NULL,
    project_id     uuid    DEFAULT NULL,
    external_id    text    DEFAULT NULL,
    source_channel text    DEFAULT NULL,
    language       text    DEFAULT 'en',
    timezone       text    DEFAULT NULL,
    tags           text[]  DEFAULT '{}')
RETURNS ventros.contacts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result ventros.contacts;
    constraint_name text;
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'contact name must not be null' USING ERRCODE = '23502';
    END IF;
    -- The plan's limit of active contacts (VN020) is held by the insert's
    -- statement trigger, for this command and direct writes alike
    -- (ventros.contacts_plan_limit, sql/65_usage_metering.sql).
    INSERT INTO ventros.contacts (project_id, name, phone, email, external_id, source_channel,
                                  language, timezone, tags)
    VALUES (coalesce(project_id, ventros.default_project()),
            ventros.check_length(btrim(name), 200, 'contact name'),
            ventros.normalize_phone(phone), ventros.normalize_email(email),
            ventros.check_length(external_id, 200, 'contact external id'), source_channel,
            coalesce(language, 'en'), timezone,
            ARRAY(SELECT DISTINCT t FROM unnest(coalesce(tags, '{}')) t ORDER BY t))
    RETURNING * INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
    PERFORM ventros.raise_contact_duplicate(constraint_name, ventros.normalize_phone(phone),
                                            ventros.normalize_email(email), external_id);
END
$$;
COMMENT ON FUNCTION ventros.create_contact(text, text, text, uuid, text, text, text, text, text[]) IS
    'Creates a contact in the acting tenant (default project unless given); VN020 once the plan''s limit of active contacts is reached; emits contact.created';

CREATE FUNCTION ventros.update_contact(contact_id uuid, expected_version integer, changes jsonb)
RETURNS ventros.contacts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    normalized jsonb := ventros.normalize_contact_changes(changes);
    constraint_name text;
BEGIN
    RETURN ventros.apply_changes(NULL::ventros.contacts, 'contact', contact_id, expected_version, normalized,
        ARRAY['name', 'email', 'phone', 'external_id', 'source_channel', 'language', 'timezone', 'tags',
              'profile_picture_url', 'profile_picture_fetched_at', 'first_interaction_at', 'last_interaction_at']);
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME;
    PERFORM ventros.raise_contact_duplicate(constraint_name, normalized->>'phone', normalized->>'email',
                                            normalized->>'external_id');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION ventros.update_contact(uuid, integer, jsonb) IS
    'Changes fields of a contact (a JSON object of field -> value) if expected_version is current; emits contact.updated';

CREATE FUNCTION ventros.delete_contact(contact_id uuid, expected_version integer DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.delete_row('ventros.contacts', 'contact', contact_id, expected_version) $$;
COMMENT ON FUNCTION ventros.delete_contact(uuid, integer) IS
    'Soft-deletes a contact (P0002 if absent, VN001 if expected_version is stale); emits contact.deleted';

CREATE FUNCTION ventros.get_contact(contact_id uuid) RETURNS ventros.contacts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ventros.get_row(NULL::ventros.contacts, 'contact', contact_id) $$;
COMMENT ON FUNCTION ventros.get_contact(uuid) IS 'A live contact of the acting tenant, or P0002';

-- find_contact: the one contact with this phone or email (normalised first).
CREATE FUNCTION ventros.find_contact(phone text DEFAULT NULL, email text DEFAULT NULL,
                                     project_id uuid DEFAULT NULL)
RETURNS SETOF ventros.contacts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.contacts c
    WHERE c.tenant_id = ventros.require_tenant()
      AND c.project_id = coalesce(find_contact.project_id, ventros.default_project())
      AND (find_contact.phone IS NULL OR c.phone = ventros.normalize_phone(find_contact.phone))
      AND (find_contact.email IS NULL OR c.email = ventros.normalize_email(find_contact.email))
      AND (find_contact.phone IS NOT NULL OR find_contact.email IS NOT NULL)
    LIMIT 1
$$;
COMMENT ON FUNCTION ventros.find_contact(text, text, uuid) IS
    'The live contact with this phone and/or email (normalised), or no row';

-- list_contacts: lookup by name prefix, phone, email or tag with keyset paging
-- in (lower(name), id) order.  Pass the last row's name and id as after_name
-- and after_id for the next page.
CREATE FUNCTION ventros.list_contacts(
    name_prefix text    DEFAULT NULL,
    phone       text    DEFAULT NULL,
    email       text    DEFAULT NULL,
    tag         text    DEFAULT NULL,
    after_name  text    DEFAULT NULL,
    after_id    uuid    DEFAULT NULL,
    page_size   integer DEFAULT 50)
RETURNS SETOF ventros.contacts
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.* FROM ventros.contacts c
    WHERE c.tenant_id = ventros.require_tenant()
      AND (name_prefix IS NULL
           OR lower(c.name) LIKE replace(replace(replace(lower(name_prefix), '\', '\\'), '%', '\%'), '_', '\_') || '%')
      AND (list_contacts.phone IS NULL OR c.phone = ventros.normalize_phone(list_contacts.phone))
      AND (list_contacts.email IS NULL OR c.email = ventros.normalize_email(list_contacts.email))
      AND (tag IS NULL OR c.tags @> ARRAY[tag])
      AND (after_id IS NULL OR (lower(c.name), c.id) > (lower(after_name), after_id))
    ORDER BY lower(c.name), c.id
    LIMIT ventros.check_page_size(page_size)
$$;
COMMENT ON FUNCTION ventros.list_contacts(text, text, text, text, text, uuid, integer) IS
    'Live contacts by name prefix, phone, email or tag, in name order, one keyset page at a time';

GRANT EXECUTE ON FUNCTION ventros.get_contact(uuid), ventros.find_contact(text, text, uuid),
    ventros.list_contacts(text, text, text, text, text, uuid, integer)
    TO ventros_viewer;
GRANT EXECUTE ON FUNCTION ventros.normalize_contact_changes(jsonb), ventros.raise_contact_duplicate(text, text, text, text),
    ventros.create_contact(text, text, text, uuid, text, text, text, text, text[]),
    ventros.update_contact(uuid, integer, jsonb)
    TO ventros_agent;
GRANT EXECUTE ON FUNCTION ventros.delete_contact(uuid, integer) TO ventros_admin;

-- Direct writes of contact by tenant roles: the same as the first
-- command named, or refused naming them (docs/sql.md, "Direct writes").
SELECT ventros.register_writes('contact', inserts => '{create_contact}', updates => '{update_contact,merge_contacts,erase_contact}', deletes => '{delete_contact,merge_contacts}',
    direct => '{INSERT,UPDATE,DELETE}',
    insert_columns => '{name,phone,email,project_id,external_id,source_channel,language,timezone,tags}',
    update_columns => '{name,email,phone,external_id,source_channel,language,timezone,tags,profile_picture_url,profile_picture_fetched_at,first_interaction_at,last_interaction_at}');
