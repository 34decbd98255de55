# shellcheck shell=bash
# Sourced by scripts/up (after http.sh): one demo channel per inbound
# provider in the demo tenant, ready to take signed webhooks at
# ventros-http's POST /webhooks/<provider>/<channel_id> (docs/webhook-endpoint.md):
#   waha       the demo tenant's WAHA channel (demo.sql's) with a webhook_secret
#   whatsapp   "Demo WhatsApp Cloud": phone_number_id, waba_id, app_secret, verify_token
#   instagram  "Demo Instagram": ig_account_id, app_secret, verify_token
#   messenger  "Demo Messenger": page_id, app_secret, verify_token
# The three Meta channels share one demo Meta app (one app secret, one
# verify token).  Secrets and ids are made once and kept in
# $RUN/demo_channels (mode 600), so reruns keep the same values.  Adds to
# .run/env: VENTROS_DEMO_CHANNEL_<P>, VENTROS_DEMO_<P>_WEBHOOK_URL for each
# provider, VENTROS_DEMO_WAHA_WEBHOOK_SECRET, VENTROS_DEMO_META_APP_SECRET,
# VENTROS_DEMO_META_VERIFY_TOKEN, VENTROS_DEMO_WHATSAPP_PHONE_NUMBER_ID,
# VENTROS_DEMO_INSTAGRAM_ACCOUNT_ID and VENTROS_DEMO_MESSENGER_PAGE_ID.

_vn_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
_vn_digits() { head -c 64 /dev/urandom | od -An -tu1 | tr -s ' \n' '\n' | sed '/^$/d' | awk -v n="$1" '{ s = s ($1 % 10) } END { print "1" substr(s, 1, n - 1) }'; }
if [ ! -s "$RUN/demo_channels" ]; then
	(
		umask 077
		cat >"$RUN/demo_channels" <<EOF
WAHA_WEBHOOK_SECRET=$(_vn_hex 24)
META_APP_SECRET=$(_vn_hex 16)
META_VERIFY_TOKEN=$(_vn_hex 12)
WHATSAPP_PHONE_NUMBER_ID=$(_vn_digits 15)
WHATSAPP_WABA_ID=$(_vn_digits 15)
INSTAGRAM_ACCOUNT_ID=1784$(_vn_digits 13)
MESSENGER_PAGE_ID=$(_vn_digits 15)
EOF
	)
fi
# shellcheck disable=SC1091
. "$RUN/demo_channels"

_vn_channels=$(psql_admin -d ventros -v ON_ERROR_STOP=1 -tA -F ' ' -v tenant="$DEMO_TENANT" \
	-v waha_secret="$WAHA_WEBHOOK_SECRET" -v app_secret="$META_APP_SECRET" -v verify_token="$META_VERIFY_TOKEN" \
	-v phone_number_id="$WHATSAPP_PHONE_NUMBER_ID" -v waba_id="$WHATSAPP_WABA_ID" \
	-v ig_account_id="$INSTAGRAM_ACCOUNT_ID" -v page_id="$MESSENGER_PAGE_ID" <<'SQL'
-- The demo tenant's first live channel of a type gets the given config keys
-- (kept keys it already has stay); made when there is none.
CREATE FUNCTION pg_temp.demo_channel(kind text, name text, wanted jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    ch ventros.channels;
BEGIN
    SELECT * INTO ch FROM ventros.channels c WHERE c.type = kind AND c.deleted_at IS NULL ORDER BY c.created_at, c.id LIMIT 1;
    IF ch.id IS NULL THEN
        ch := ventros.create_channel(name, kind, config => wanted);
    ELSIF NOT ch.config @> wanted THEN
        ch := ventros.update_channel(ch.id, ch.version, jsonb_build_object('config', ch.config || wanted));
    END IF;
    RETURN ch.id;
END
$$;
BEGIN;
SELECT set_config('ventros.tenant', :'tenant', true) \g /dev/null
SELECT 'WAHA', pg_temp.demo_channel('waha', 'WhatsApp (WAHA)',
    jsonb_build_object('webhook_secret', :'waha_secret'))
UNION ALL
SELECT 'WHATSAPP', pg_temp.demo_channel('whatsapp', 'Demo WhatsApp Cloud',
    jsonb_build_object('phone_number_id', :'phone_number_id', 'waba_id', :'waba_id', 'access_token', 'demo-access-token',
                       'app_secret', :'app_secret', 'verify_token', :'verify_token'))
UNION ALL
SELECT 'INSTAGRAM', pg_temp.demo_channel('instagram', 'Demo Instagram',
    jsonb_build_object('ig_account_id', :'ig_account_id', 'access_token', 'demo-access-token',
                       'app_secret', :'app_secret', 'verify_token', :'verify_token'))
UNION ALL
SELECT 'MESSENGER', pg_temp.demo_channel('messenger', 'Demo Messenger',
    jsonb_build_object('page_id', :'page_id', 'access_token', 'demo-access-token',
                       'app_secret', :'app_secret', 'verify_token', :'verify_token'));
COMMIT;
SQL
) || die "demo channels failed"

while read -r _vn_p _vn_id; do
	[ -n "$_vn_id" ] || continue
	ENV_EXTRA+="VENTROS_DEMO_CHANNEL_$_vn_p='$_vn_id'
VENTROS_DEMO_${_vn_p}_WEBHOOK_URL='http://127.0.0.1:$HTTP_PORT/webhooks/${_vn_p,,}/$_vn_id'
"
done <<<"$_vn_channels"
ENV_EXTRA+="VENTROS_DEMO_WAHA_WEBHOOK_SECRET='$WAHA_WEBHOOK_SECRET'
VENTROS_DEMO_META_APP_SECRET='$META_APP_SECRET'
VENTROS_DEMO_META_VERIFY_TOKEN='$META_VERIFY_TOKEN'
VENTROS_DEMO_WHATSAPP_PHONE_NUMBER_ID='$WHATSAPP_PHONE_NUMBER_ID'
VENTROS_DEMO_INSTAGRAM_ACCOUNT_ID='$INSTAGRAM_ACCOUNT_ID'
VENTROS_DEMO_MESSENGER_PAGE_ID='$MESSENGER_PAGE_ID'
"
log "demo channels: waha, whatsapp, instagram, messenger (webhook URLs in $RUN/env)"
unset _vn_channels _vn_p _vn_id WAHA_WEBHOOK_SECRET META_APP_SECRET META_VERIFY_TOKEN WHATSAPP_PHONE_NUMBER_ID \
	WHATSAPP_WABA_ID INSTAGRAM_ACCOUNT_ID MESSENGER_PAGE_ID
