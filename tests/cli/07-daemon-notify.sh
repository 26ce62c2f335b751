#!/usr/bin/env bash
# certfleetd refuses a bad notification configuration (docs/notifications.md)
# at start — before it touches the broker or the network — with one clear
# line and exit 1: a webhook without a secret file, a secret file readable by
# others, an empty or missing secret file, a secret file without a webhook, a
# URL that is not http:// or https://, out-of-range numbers. The secret never
# appears in what it prints.
source "$(dirname "$0")/lib.sh"

DAEMON=$CF_BIN_DIR/certfleetd
[ -x "$DAEMON" ] || die "$DAEMON is missing (build first: make)"

# daemon ARGS... — runs certfleetd with a timeout; sets RC and ERR. Every case
# here must exit by itself, long before the timeout.
daemon() {
	set +e
	timeout -k 2 10 "$DAEMON" "$@" </dev/null >"$T/.dout" 2>"$T/.derr"
	RC=$?
	set -e
	ERR=$(cat "$T/.derr")
	ALL_ERR="$ALL_ERR$ERR"
	if grep -qE 'Sanitizer|runtime error:' "$T/.derr"; then
		notok "certfleetd $* ran clean under the sanitizers" "$ERR"
	fi
}
ALL_ERR=

cf_init "$T/data" --mqtt-port 1 --api-port 2
cp "$D/certfleet.conf" "$T/conf.orig"
with_conf() { cp "$T/conf.orig" "$D/certfleet.conf"; printf '%s\n' "$@" >>"$D/certfleet.conf"; }

SECRET="whsec-$(openssl rand -hex 16)"
(umask 077; printf '%s\n' "$SECRET" >"$T/webhook.secret")

with_conf "notify_webhook_url = http://127.0.0.1:9/hook"
daemon --dir "$D"
expect_rc "a webhook without notify_webhook_secret_file exits 1" 1
expect_match "it says the secret file is required" "$ERR" \
	"notify_webhook_url is set but notify_webhook_secret_file is not"

cp "$T/webhook.secret" "$T/open.secret"
chmod 644 "$T/open.secret"
with_conf "notify_webhook_url = http://127.0.0.1:9/hook" "notify_webhook_secret_file = $T/open.secret"
daemon --dir "$D"
expect_rc "a world-readable secret file exits 1" 1
expect_match "it names the file and its mode" "$ERR" "open.secret has mode 0644: .*not be readable by others"

with_conf "notify_webhook_url = ftp://127.0.0.1/hook" "notify_webhook_secret_file = $T/webhook.secret"
daemon --dir "$D"
expect_rc "an ftp:// webhook URL exits 1" 1
expect_match "it says which schemes are allowed" "$ERR" "notify_webhook_url 'ftp://127.0.0.1/hook' must start with http:// or https://"

with_conf "notify_webhook_url = 127.0.0.1:8080/hook" "notify_webhook_secret_file = $T/webhook.secret"
daemon --dir "$D"
expect_rc "a webhook URL without a scheme exits 1" 1

with_conf "notify_webhook_url = http://127.0.0.1:9/hook" "notify_webhook_secret_file = $T/missing.secret"
daemon --dir "$D"
expect_rc "a missing secret file exits 1" 1
expect_match "it names the missing file" "$ERR" "missing.secret: No such file"

(umask 077; : >"$T/empty.secret")
with_conf "notify_webhook_url = http://127.0.0.1:9/hook" "notify_webhook_secret_file = $T/empty.secret"
daemon --dir "$D"
expect_rc "an empty secret file exits 1" 1
expect_match "it says the secret is empty" "$ERR" "must hold a secret"

with_conf "notify_webhook_secret_file = $T/webhook.secret"
daemon --dir "$D"
expect_rc "a secret file without a webhook URL exits 1" 1
expect_match "it says the URL is missing" "$ERR" "notify_webhook_url is not"

with_conf "notify_exec = true" "notify_max_attempts = 0"
daemon --dir "$D"
expect_rc "notify_max_attempts = 0 exits 1" 1
expect_match "it names the key" "$ERR" "notify_max_attempts"

with_conf "notify_exec = true" "notify_backoff = -1"
daemon --dir "$D"
expect_rc "a negative notify_backoff exits 1" 1
expect_match "it names the key" "$ERR" "notify_backoff"

with_conf "notify_webhok_url = http://127.0.0.1:9/hook"
daemon --dir "$D"
expect_rc "a misspelt notify key exits 1" 1
expect_match "it names the key and the line" "$ERR" "certfleet.conf:[0-9]+: unknown key 'notify_webhok_url'"

expect_nomatch "the secret never appears in what certfleetd printed" "$ALL_ERR" "$SECRET"
finish
