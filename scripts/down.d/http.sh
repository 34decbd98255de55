# shellcheck shell=bash
# Sourced by scripts/down (and by scripts/test on exit): stops ventros-http.
if [ -s "$RUN/http.pid" ]; then
	_vn_http_pid=$(cat "$RUN/http.pid")
	kill "$_vn_http_pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$_vn_http_pid" 2>/dev/null || break; sleep 0.1; done
	rm -f "$RUN/http.pid"
	unset _vn_http_pid
fi
