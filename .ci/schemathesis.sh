#!/usr/bin/env bash
# Checks both listeners against their own OpenAPI documents with
# schemathesis: no answer may be a 5xx and every answer must conform to the
# document. The server runs in a network namespace of its own with only
# loopback, so the endpoint URLs schemathesis makes up (public addresses
# among them) cannot reach anything off this machine. Fails on a finding.
#
# Usage: .ci/schemathesis.sh   (needs root for `ip netns`; builds the binary)
# ST_MAX_EXAMPLES sets the examples per operation (default 25).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${ST_MAX_EXAMPLES:-25}"
NS="hr-st-$$"
WORK="$(mktemp -d)"
DB="$WORK/hookrelay.db"
PUBLIC="127.0.0.1:8080"
INTERNAL="127.0.0.1:8081"
SERVER_PID=""

echo "== schemathesis: installing it"
python3 -m pip install --quiet --disable-pip-version-check schemathesis standardwebhooks

echo "== schemathesis: building hookrelay"
cargo build --quiet --bin hookrelay
BIN="${CARGO_TARGET_DIR:-target}/debug/hookrelay"

RECEIVER_PID=""
stop() {
  if [ -n "$RECEIVER_PID" ]; then
    kill "$RECEIVER_PID" 2>/dev/null || true
    wait "$RECEIVER_PID" 2>/dev/null || true
  fi
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  ip netns delete "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT

in_ns() { ip netns exec "$NS" "$@"; }

ip netns add "$NS"
in_ns ip link set lo up

INTERNAL_TOKEN="it_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SUBSCRIBER_TOKEN="$("$BIN" token create --database-url "$DB" --marketplace 1 --user 1)"

# A subscriber endpoint inside the namespace: /ok accepts everything,
# /fail accepts only the verification call, so its deliveries become dead
# letters.
cat >"$WORK/receiver.py" <<'PY'
import http.server

class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = self.path == "/ok" or b"verification" in body
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", 9000), Receiver).serve_forever()
PY
# Started with `ip netns exec` itself (not a shell function), so that $!
# is the process: `ip` execs into it.
ip netns exec "$NS" python3 "$WORK/receiver.py" &
RECEIVER_PID=$!

ip netns exec "$NS" "$BIN" serve --database-url "$DB" --public-addr "$PUBLIC" --internal-addr "$INTERNAL" \
  --internal-token "$INTERNAL_TOKEN" --allow-private-endpoints --retry-schedule 1s \
  >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!

# Ready when the receiver answers and /health answers 200, within 30 s
# (a subscription made before the receiver listens fails its
# verification call).
deadline=$((SECONDS + 30))
until in_ns curl -sf -X POST "http://127.0.0.1:9000/ok" >/dev/null \
  && in_ns curl -sf "http://$INTERNAL/health" >/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "hookrelay or the receiver did not become ready; hookrelay's log:" >&2
    cat "$WORK/serve.log" >&2
    exit 1
  fi
  sleep 0.2
done

# Something of each kind, so that answers with items are checked too: an
# event type, a subscription at each receiver path and a removed one, an
# event delivered to one and dead-lettered at the other.
call() { # call <token> <method> <url> [<json body>]
  in_ns curl -sS --fail-with-body -X "$2" "$3" -H "Authorization: Bearer $1" \
    -H "Content-Type: application/json" ${4:+-d "$4"}
}
call "$INTERNAL_TOKEN" PUT "http://$INTERNAL/internal/v1/event-types/revision_status_updated" \
  '{"description":"a revision changed status"}' >/dev/null
subscribe() {
  call "$SUBSCRIBER_TOKEN" POST "http://$PUBLIC/v1/subscription" \
    "{\"event\":\"revision_status_updated\",\"endpoint\":\"http://127.0.0.1:9000/$1\",\"secret\":\"a-schemathesis-secret-1\"}"
}
subscribe ok >/dev/null
subscribe fail >/dev/null
removed="$(subscribe removed | python3 -c 'import json,sys; print(json.load(sys.stdin)["subscriptionId"])')"
call "$SUBSCRIBER_TOKEN" DELETE "http://$PUBLIC/v1/subscription/$removed" >/dev/null
call "$INTERNAL_TOKEN" POST "http://$INTERNAL/internal/v1/events" \
  '{"event":"revision_status_updated","marketplaceId":1,"contextObjectId":1,"contextObjectType":"QUESTION_SET","timestamp":"2026-01-01T00:00:00Z"}' >/dev/null
deadline=$((SECONDS + 60))
until call "$INTERNAL_TOKEN" GET "http://$INTERNAL/internal/v1/dead-letters" | grep -q '"eventId"'; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "no dead letter appeared; the server log:" >&2
    cat "$WORK/serve.log" >&2
    exit 1
  fi
  sleep 0.5
done

status=0
run_schemathesis() {
  local name="$1" addr="$2" token="$3"
  echo "== schemathesis: the $name listener (http://$addr/openapi.json)"
  if ! in_ns schemathesis --no-color run "http://$addr/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 20 \
    --generation-database none; then
    status=1
  fi
}
run_schemathesis public "$PUBLIC" "$SUBSCRIBER_TOKEN"
run_schemathesis internal "$INTERNAL" "$INTERNAL_TOKEN"

if grep -q "internal error" "$WORK/serve.log"; then
  echo "hookrelay logged internal errors:" >&2
  grep "internal error" "$WORK/serve.log" >&2
  status=1
fi
exit "$status"
