# shellcheck shell=bash
# Sourced by scripts/up (after http.sh): one demo channel per inbound
# provider in the demo tenant (scripts/demo_channels.sql), ready to take
# signed webhooks at ventros-http's POST /webhooks/<provider>/<channel_id>
# (docs/webhook-endpoint.md) and to send through local stand-ins of WAHA and
# the Graph API (scripts/standins.sh: on VENTROS_STANDIN_HOST 127.0.0.2, ports
# VENTROS_WAHA_STANDIN_PORT 3100 and VENTROS_GRAPH_STANDIN_PORT 3101,
# allow-listed for this cluster only, posting delivery statuses back):
#   waha       the demo tenant's WAHA channel (demo.sql's) with a webhook_secret
#   whatsapp   "Demo WhatsApp Cloud": phone_number_id, waba_id, app_secret, verify_token
#   instagram  "Demo Instagram": ig_account_id, app_secret, verify_token
#   messenger  "Demo Messenger": page_id, app_secret, verify_token
# The three Meta channels share one demo Meta app (one app secret, one
# verify token).  Secrets and ids are made once and kept in
# $RUN/demo_channels (mode 600), so reruns keep the same values (all of it
# is scripts/standins.sh's demo_providers_up, which the README round trip
# test runs too).  Adds to
# .run/env: VENTROS_DEMO_CHANNEL_<P>, VENTROS_DEMO_<P>_WEBHOOK_URL for each
# provider, VENTROS_DEMO_WAHA_WEBHOOK_SECRET, VENTROS_DEMO_META_APP_SECRET,
# VENTROS_DEMO_META_VERIFY_TOKEN, VENTROS_DEMO_WHATSAPP_PHONE_NUMBER_ID,
# VENTROS_DEMO_INSTAGRAM_ACCOUNT_ID, VENTROS_DEMO_MESSENGER_PAGE_ID,
# VENTROS_DEMO_AGENT (an agent to reply as) and the stand-ins'
# VENTROS_WAHA_STANDIN_URL, VENTROS_WAHA_STANDIN_LOG, VENTROS_GRAPH_STANDIN_URL
# and VENTROS_GRAPH_STANDIN_LOG.

# shellcheck source=scripts/standins.sh
source "$VENTROS_ROOT/scripts/standins.sh"
_vn_channels=$(demo_providers_up "$RUN" "$DEMO_TENANT" "http://127.0.0.1:$HTTP_PORT" \
	runuser -u postgres -- psql -h "$RUN/sock" -p "$PG_PORT" -U postgres) || die "demo channels failed"
# shellcheck disable=SC1091
. "$RUN/demo_channels"
while read -r _vn_p _vn_id; do
	[ -n "$_vn_id" ] || continue
	if [ "$_vn_p" = AGENT ]; then
		ENV_EXTRA+="VENTROS_DEMO_AGENT='$_vn_id'
"
		continue
	fi
	ENV_EXTRA+="VENTROS_DEMO_CHANNEL_$_vn_p='$_vn_id'
VENTROS_DEMO_${_vn_p}_WEBHOOK_URL='http://127.0.0.1:$HTTP_PORT/webhooks/${_vn_p,,}/$_vn_id'
"
done <<<"$_vn_channels"
log "provider stand-ins: WAHA on $(standin_url "$RUN/standins.json" waha), Graph API on $(standin_url "$RUN/standins.json" graph) (allow-listed: $VENTROS_STANDIN_HOST/32)"
ENV_EXTRA+="VENTROS_WAHA_STANDIN_URL='$(standin_url "$RUN/standins.json" waha)'
VENTROS_WAHA_STANDIN_LOG='$RUN/standin-waha.log'
VENTROS_GRAPH_STANDIN_URL='$(standin_url "$RUN/standins.json" graph)'
VENTROS_GRAPH_STANDIN_LOG='$RUN/standin-graph.log'
"
ENV_EXTRA+="VENTROS_DEMO_WAHA_WEBHOOK_SECRET='$WAHA_WEBHOOK_SECRET'
VENTROS_DEMO_META_APP_SECRET='$META_APP_SECRET'
VENTROS_DEMO_META_VERIFY_TOKEN='$META_VERIFY_TOKEN'
VENTROS_DEMO_WHATSAPP_PHONE_NUMBER_ID='$WHATSAPP_PHONE_NUMBER_ID'
VENTROS_DEMO_INSTAGRAM_ACCOUNT_ID='$INSTAGRAM_ACCOUNT_ID'
VENTROS_DEMO_MESSENGER_PAGE_ID='$MESSENGER_PAGE_ID'
"
log "demo channels: waha, whatsapp, instagram, messenger (webhook URLs in $RUN/env)"
unset _vn_channels _vn_p _vn_id WAHA_WEBHOOK_SECRET META_APP_SECRET META_VERIFY_TOKEN WHATSAPP_PHONE_NUMBER_ID \
	WHATSAPP_WABA_ID INSTAGRAM_ACCOUNT_ID MESSENGER_PAGE_ID WAHA_API_KEY
