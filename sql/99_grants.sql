-- Function privileges, granted per role after every function exists.
-- Nothing is executable by PUBLIC; reads go to the viewer (and so to agents
-- and admins), writes to the roles that own them.

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ventros FROM PUBLIC;

-- Everyone with a Ventros role: tenancy and the helpers the policies and
-- commands call.
GRANT EXECUTE ON FUNCTION
    ventros.current_tenant(), ventros.actor(), ventros.session_is_trusted(), ventros.include_deleted(),
    ventros.require_tenant(), ventros.is_valid_event_name(text), ventros.envelope(ventros.outbox),
    ventros.normalize_phone(text), ventros.normalize_email(text), ventros.check_length(text, integer, text),
    ventros.check_page_size(integer), ventros.is_distinct_array(text[])
TO ventros_viewer, ventros_anon, ventros_authenticator, ventros_platform_admin;

-- Reads.
GRANT EXECUTE ON FUNCTION
    ventros.default_project(), ventros.get_project(uuid), ventros.list_projects(),
    ventros.get_contact(uuid), ventros.find_contact(text, text, uuid),
    ventros.list_contacts(text, text, text, text, text, uuid, integer),
    ventros.get_channel(uuid), ventros.list_channels(text, text)
TO ventros_viewer;

-- Writes by agents (contacts) and admins (everything of their tenant).
GRANT EXECUTE ON FUNCTION
    ventros.apply_changes(anyelement, text, uuid, integer, jsonb, text[]),
    ventros.delete_row(regclass, text, uuid, integer),
    ventros.emit(text, text, uuid, jsonb, integer),
    ventros.normalize_contact_changes(jsonb), ventros.raise_contact_duplicate(text, text, text, text),
    ventros.create_contact(text, text, text, uuid, text, text, text, text, text[]),
    ventros.update_contact(uuid, integer, jsonb)
TO ventros_agent;
GRANT EXECUTE ON FUNCTION
    ventros.delete_contact(uuid, integer),
    ventros.create_project(text, text, integer, jsonb), ventros.update_project(uuid, integer, jsonb),
    ventros.delete_project(uuid, integer),
    ventros.create_channel(text, text, uuid, jsonb, text, uuid, integer),
    ventros.update_channel(uuid, integer, jsonb), ventros.set_channel_status(uuid, integer, text),
    ventros.delete_channel(uuid, integer)
TO ventros_admin;

-- Platform administration.
GRANT EXECUTE ON FUNCTION
    ventros.require_platform_admin(), ventros.create_tenant(text, text, text),
    ventros.bind_login(name, text, name, text), ventros.register_event_type(text, text),
    ventros.register_aggregate(text, regclass, text, name, jsonb, name[], jsonb, text)
TO ventros_platform_admin;
