#!/usr/bin/env bash
# certfleet-agent with key_store = pkcs11 (docs/pkcs11.md): a SoftHSM2 token
# made here (a fresh token directory, SOFTHSM2_CONF) passes --check, and each
# broken setting is refused with a message naming it (exit 1), before any
# broker is contacted and without adopting anything: an unknown key_store,
# pkcs11_* keys with key_store = file, a missing module / token / PIN file,
# a PIN file readable by others, a wrong PIN, an unknown token label, an
# over-long label, a bad object prefix. The PIN never appears in any output.
# Skipped (passes with a note) when SoftHSM2 is not installed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AGENT=$CF_BIN_DIR/certfleet-agent
MODULE=/usr/lib/softhsm/libsofthsm2.so
[ -x "$AGENT" ] || die "$AGENT is missing (build first: make)"
if [ ! -r "$MODULE" ] || ! command -v softhsm2-util >/dev/null; then
	ok "SoftHSM2 is not installed (scripts/install-deps): skipped"
	finish
fi

agent() {
	set +e
	timeout -k 5 30 setsid -w "$AGENT" "$@" </dev/null >"$T/.out" 2>"$T/.err"
	RC=$?
	set -e
	OUT=$(cat "$T/.out")
	ERR=$(cat "$T/.err")
	if [ "$RC" -eq 124 ]; then notok "certfleet-agent $* finished (timed out)"; fi
	if grep -qE 'Sanitizer|runtime error:' "$T/.err"; then
		notok "certfleet-agent $* ran clean under the sanitizers" "$ERR"
	fi
	if grep -q 'S3cret-PIN-77' "$T/.out" "$T/.err"; then
		notok "certfleet-agent $* never prints the PIN"
	fi
	return 0
}

mkdir -p "$T/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$T/tokens" >"$T/softhsm2.conf"
export SOFTHSM2_CONF=$T/softhsm2.conf
softhsm2-util --init-token --free --label dev-token --pin S3cret-PIN-77 --so-pin 87654321 >/dev/null
printf 'S3cret-PIN-77\n' >"$T/pin" && chmod 600 "$T/pin"

cf_init "$T/data"
cfok thing create dev1 --bundle "$T/b"
B=$T/b
grep -v '^key_file *=' "$B/agent.conf" >"$B/p11.conf"
cat >>"$B/p11.conf" <<CONF
key_store = pkcs11
pkcs11_module = $MODULE
pkcs11_token = dev-token
pkcs11_pin_file = $T/pin
CONF

agent --config "$B/p11.conf" --check
expect_rc "key_store = pkcs11 passes --check (the token opens with the PIN)" 0
expect_match "--check names the key store" "$OUT" "key store pkcs11"
check "--check adopted nothing: device.key is still a plain file" test -f "$B/device.key" -a ! -L "$B/device.key"
check "--check made no key store" test ! -e "$B/current"

# with KEY VALUE — p11.conf with KEY set to VALUE (deleted if VALUE is -).
with() {
	grep -v "^$1 *=" "$B/p11.conf" >"$B/test.conf"
	[ "$2" = - ] || printf '%s = %s\n' "$1" "$2" >>"$B/test.conf"
}

# refused WHAT PATTERN — test.conf is refused by --check and at start, the message matching PATTERN.
refused() {
	agent --config "$B/test.conf" --check
	expect_rc "$1: --check refused" 1
	expect_match "$1: the message names it" "$ERR" "$2"
	agent --config "$B/test.conf"
	expect_rc "$1: refused at start" 1
}

with key_store tpm;                      refused "an unknown key_store" "key_store 'tpm'"
with pkcs11_module -;                    refused "a missing pkcs11_module" "pkcs11_module"
with pkcs11_token -;                     refused "a missing pkcs11_token" "pkcs11_token"
with pkcs11_pin_file -;                  refused "a missing pkcs11_pin_file" "pkcs11_pin_file"
with pkcs11_module /nonexistent/p11.so;  refused "a module that does not exist" "pkcs11_module /nonexistent/p11.so"
with pkcs11_token no-such-token;         refused "an unknown token label" "no PKCS#11 token labelled 'no-such-token'"
with pkcs11_token 0123456789012345678901234567890123; refused "a token label over 32 bytes" "longer than a token label"
with pkcs11_object 'a b';                refused "a bad object prefix" "pkcs11_object"
with pkcs11_pin_file "$T/nopin";         refused "a PIN file that does not exist" "$T/nopin"
cp "$T/pin" "$T/pin-open" && chmod 644 "$T/pin-open"
with pkcs11_pin_file "$T/pin-open";      refused "a PIN file readable by others" "mode 0644"
printf 'wrong-pin-1\n' >"$T/pin-bad" && chmod 600 "$T/pin-bad"
with pkcs11_pin_file "$T/pin-bad";       refused "a wrong PIN" "C_Login"
grep -v '^key_store *=' "$B/p11.conf" >"$B/test.conf"
refused "pkcs11_* keys with key_store = file" "needs key_store = pkcs11"
check "nothing was adopted by the refusals" test ! -e "$B/current" -a -f "$B/device.key" -a ! -L "$B/device.key"

# The file key store still works as before.
agent --config "$B/agent.conf" --check
expect_rc "the bundle's own agent.conf (key_store = file) still passes --check" 0
finish
