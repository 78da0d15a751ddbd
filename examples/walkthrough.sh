#!/bin/sh
# The pushgate walkthrough: every call a client makes, against a running pushgate-local and the
# fake providers (README, "Without Apple or Google accounts"). It prints each request and each
# answer, and stops with a message at the first answer it did not expect. tests/walkthrough runs
# it against freshly built binaries (part of ./tests/run), so it stays true.
#
#   sh examples/walkthrough.sh
#
# It reads from the environment:
#   PUSHGATE_ACCOUNT_ID, PUSHGATE_AUTH_TOKEN  the account pushgate-local was started with
#   PUSHGATE_URL                              pushgate-local (default http://127.0.0.1:3000)
#   FAKE_PROVIDERS_DIR                        where pushgate-fake-providers wrote the credential
#                                             files (default ./fake-providers)
#
# POSIX sh (no bash features, no GNU-only flags: checked with dash and `shellcheck -s sh`). It
# needs curl, sed and awk; ids are read from pushgate's compact JSON answers with sed, so jq is
# not needed.
set -eu

PUSHGATE_URL=${PUSHGATE_URL:-http://127.0.0.1:3000}
FAKE_PROVIDERS_DIR=${FAKE_PROVIDERS_DIR:-./fake-providers}

# Device tokens. The fakes accept any APNs token of 64 hex digits and any FCM token; pushgate
# accepts APNs tokens of 32 to 200 hex digits, so the 32-digit one passes pushgate's checks and
# the fake APNs refuses it as Apple would (400 BadDeviceToken).
APN_TOKEN=0000000000000000000000000000000000000000000000000000000000000001
APN_TOKEN_2=0000000000000000000000000000000000000000000000000000000000000002
FCM_TOKEN=fcm-demo-token-1
REFUSED_APN_TOKEN=0123456789abcdef0123456789abcdef

# ---- helpers -------------------------------------------------------------------------------------

die() {
  printf '\nwalkthrough: FAILED: %s\n' "$*" >&2
  exit 1
}

[ -n "${PUSHGATE_ACCOUNT_ID:-}" ] || die "set PUSHGATE_ACCOUNT_ID (the account pushgate-local runs with)"
[ -n "${PUSHGATE_AUTH_TOKEN:-}" ] || die "set PUSHGATE_AUTH_TOKEN (the account's auth token)"
command -v curl >/dev/null 2>&1 || die "curl is required"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# curl reads the account from a file (mode 600), not from its command line, where `ps` shows
# it; nothing below prints the auth token.
(
  umask 077
  printf 'user = "%s:%s"\n' "$PUSHGATE_ACCOUNT_ID" \
    "$(printf '%s' "$PUSHGATE_AUTH_TOKEN" | sed 's/[\\"]/\\&/g')" >"$work/auth"
)

# show TEXT: prints JSON indented when jq or python3 is at hand, anything else as it is.
show() {
  if command -v jq >/dev/null 2>&1 && printf '%s\n' "$1" | jq . 2>/dev/null; then
    return
  elif command -v python3 >/dev/null 2>&1 && printf '%s\n' "$1" | python3 -m json.tool 2>/dev/null; then
    return
  fi
  printf '%s\n' "$1"
}

# request METHOD PATH [BODY]: one call to pushgate. BODY is JSON text, or @FILE for a file.
# Sets $status (the HTTP status code) and $answer (the body, compact JSON on one line).
request() {
  if [ $# -ge 3 ]; then
    case $3 in
      @*) body_file=${3#@} ;;
      *) body_file=$work/request.json && printf '%s' "$3" >"$body_file" ;;
    esac
    status=$(curl -sS --max-time 10 -K "$work/auth" -X "$1" -H 'Content-Type: application/json' \
      --data-binary "@$body_file" -o "$work/answer.json" -w '%{http_code}' "$PUSHGATE_URL$2") ||
      die "no answer from pushgate at $PUSHGATE_URL ($1 $2)"
  else
    status=$(curl -sS --max-time 10 -K "$work/auth" -X "$1" \
      -o "$work/answer.json" -w '%{http_code}' "$PUSHGATE_URL$2") ||
      die "no answer from pushgate at $PUSHGATE_URL ($1 $2)"
  fi
  answer=$(cat "$work/answer.json")
}

# call EXPECTED METHOD PATH [BODY]: prints the request, makes it, prints the answer, and stops
# the walkthrough unless the status code is EXPECTED.
call() {
  expected=$1
  shift
  printf '\n> %s %s\n' "$1" "$2"
  case ${3:-} in
    '') ;;
    @*) printf '  (body: the file %s)\n' "${3#@}" ;;
    *) printf '%s\n' "$3" ;;
  esac
  request "$@"
  printf '< %s\n' "$status"
  show "$answer"
  [ "$status" = "$expected" ] || die "$1 $2 answered $status, expected $expected: $answer"
}

# json_string KEY / json_number KEY: the value of the last "KEY" in $answer.
json_string() {
  printf '%s\n' "$answer" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"
}
json_number() {
  printf '%s\n' "$answer" | sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p"
}

# wait_for_operation ID STATUS: polls the Operation (a second apart, at most 30 times) until it
# is STATUS, then prints it.
wait_for_operation() {
  tries=0
  while :; do
    request GET "/v1/PushNotifications/Operations/$1"
    [ "$status" = 200 ] || die "GET Operation $1 answered $status: $answer"
    [ "$(json_string status)" = "$2" ] && break
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || die "Operation $1 is not $2 after 30 s: $answer"
    sleep 1
  done
  call 200 GET "/v1/PushNotifications/Operations/$1"
}

# expect_stat NAME COUNT: stops unless the Operation in $answer counted COUNT notifications NAME.
expect_stat() {
  [ "$(json_number "$1")" = "$2" ] || die "expected stats.$1 = $2: $answer"
}

# The time SECONDS from now as RFC 3339 UTC (2026-05-30T17:24:46Z). POSIX has no portable
# `date` for this (`date -d` is GNU, `date -v` BSD): awk's srand() returns the previous seed,
# which srand() had set to the time of day in seconds since the epoch; the civil date is
# computed from the day number (Howard Hinnant's days-to-civil algorithm).
utc_in() {
  awk -v ahead="$1" 'BEGIN {
    srand(); t = srand() + ahead
    days = int(t / 86400); secs = t - days * 86400
    z = days + 719468; era = int(z / 146097); doe = z - era * 146097
    yoe = int((doe - int(doe / 1460) + int(doe / 36524) - int(doe / 146096)) / 365)
    doy = doe - (365 * yoe + int(yoe / 4) - int(yoe / 100)); mp = int((5 * doy + 2) / 153)
    d = doy - int((153 * mp + 2) / 5) + 1; m = mp < 10 ? mp + 3 : mp - 9
    y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    printf "%04d-%02d-%02dT%02d:%02d:%02dZ\n", y, m, d, int(secs / 3600), int(secs % 3600 / 60), secs % 60
  }'
}

# ---- 0. Wait until pushgate-local is ready (it may still be starting) ----------------------------

printf 'walkthrough: waiting for pushgate at %s\n' "$PUSHGATE_URL"
tries=0
until curl -sf --max-time 2 -o /dev/null "$PUSHGATE_URL/health/ready"; do
  tries=$((tries + 1))
  [ "$tries" -lt 30 ] || die "pushgate did not become ready at $PUSHGATE_URL/health/ready within 30 s"
  sleep 1
done

# ---- 1. Credentials: the APNs key and the FCM service account the fake providers wrote -----------
# Both go into the App "demo" (created by the first credential; the first App is the default).
# A pushgate that has the App already (an earlier run) keeps the credentials it has.

request GET /v1/PushNotifications/Apps/demo
if [ "$status" = 200 ]; then
  printf '\nThe App "demo" exists already: using its credentials.\n'
else
  for provider in apn fcm; do
    file=$FAKE_PROVIDERS_DIR/$provider-credential.json
    [ -f "$file" ] || die "no $file: start pushgate-fake-providers (or set FAKE_PROVIDERS_DIR)"
    call 202 POST /v1/PushNotifications/Credentials "@$file"
  done
fi

# ---- 2. Send to two devices, with Liquid templates filled per recipient --------------------------

call 202 POST /v1/PushNotifications '{
  "to": [
    {"token": "'"$APN_TOKEN"'", "provider": "APN", "variables": {"name": "Ada"}},
    {"token": "'"$FCM_TOKEN"'", "provider": "FCM", "variables": {"name": "Bob"}}
  ],
  "content": {"title": "Hi {{ name }}", "body": "Boarding at gate 12"}
}'
operation=$(json_string operationId)
[ -n "$operation" ] || die "no operationId in the answer"

# The send is asynchronous: its Operation is PROCESSING, then COMPLETED with its stats.
wait_for_operation "$operation" COMPLETED
expect_stat sent 2
sent=2

# ---- 3. The PushNotifications of the send: a filtered list, one per page, and one of them --------

call 200 GET "/v1/PushNotifications?operationId=$operation&pageSize=1"
notification=$(json_string id)
page_token=$(json_string next)
if [ -z "$notification" ] || [ -z "$page_token" ]; then
  die "expected one PushNotification and a next page: $answer"
fi
call 200 GET "/v1/PushNotifications/$notification"
[ "$(json_string status)" = SENT ] || die "expected $notification to be SENT: $answer"
# The next page: the list's pagination.next, given back as pageToken.
call 200 GET "/v1/PushNotifications?operationId=$operation&pageSize=1&pageToken=$page_token"

# ---- 4. Register a device: without a userId, pushgate creates a User for it ----------------------

call 202 POST /v1/PushNotifications/DeviceRegistrations '{
  "appName": "demo", "token": "'"$APN_TOKEN_2"'", "provider": "APN"
}'
registration=$(json_string resourceId)
[ -n "$registration" ] || die "no resourceId in the answer"
call 200 GET "/v1/PushNotifications/DeviceRegistrations/$registration"
user=$(json_string userId)
[ -n "$user" ] || die "no userId in the registration"

# ---- 5. Send to the User: pushgate delivers to each of its devices -------------------------------

call 202 POST /v1/PushNotifications '{
  "to": [{"userId": "'"$user"'", "variables": {"name": "Ada"}}],
  "content": {"title": "Hi {{ name }}", "body": "See you soon"}
}'
operation=$(json_string operationId)
wait_for_operation "$operation" COMPLETED
expect_stat sent 1
sent=$((sent + 1))

# ---- 6. Schedule a send 10 minutes ahead, then cancel it before it goes --------------------------

send_at=$(utc_in 600)
call 202 POST /v1/PushNotifications '{
  "to": [{"userId": "'"$user"'"}],
  "content": {"title": "Your gate changed"},
  "schedule": {"sendAt": ["'"$send_at"'"]}
}'
operation=$(json_string operationId)
call 200 GET "/v1/PushNotifications/Operations/$operation"
[ "$(json_string status)" = SCHEDULED ] || die "expected the Operation to be SCHEDULED: $answer"
call 200 PATCH "/v1/PushNotifications/Operations/$operation" '{"status": "CANCELED"}'
call 200 GET "/v1/PushNotifications/Operations/$operation"
[ "$(json_string status)" = CANCELED ] || die "expected the Operation to be CANCELED: $answer"
expect_stat canceled 1

# ---- 7. A device token the provider refuses: the notification FAILS, and the Errors say why ------

call 202 POST /v1/PushNotifications '{
  "to": [{"token": "'"$REFUSED_APN_TOKEN"'", "provider": "APN"}],
  "content": {"title": "Hello"}
}'
operation=$(json_string operationId)
wait_for_operation "$operation" COMPLETED
expect_stat failed 1
# The Operation links to the list of its failures (links.errors, an absolute URL):
errors_url=$(json_string errors)
[ -n "$errors_url" ] || die "expected links.errors in the Operation: $answer"
call 200 GET "/v1/${errors_url#*/v1/}"
[ "$(json_string providerReason)" = BadDeviceToken ] || die "expected the error BadDeviceToken: $answer"

printf '\nwalkthrough: OK — %s notifications SENT, 1 scheduled and canceled, 1 FAILED as expected\n' "$sent"
