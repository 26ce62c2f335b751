#!/usr/bin/env bash
# certfleetd refuses to start on a bad configuration — before it touches the
# broker or the network — with one clear line and exit 1: a root key as the
# issuer key (the daemon never holds the root), a wrong issuer passphrase, an
# unknown key, a non-loopback API address, a missing data directory.
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
	OUT=$(cat "$T/.dout")
	ERR=$(cat "$T/.derr")
	if grep -qE 'Sanitizer|runtime error:' "$T/.derr"; then
		notok "certfleetd $* ran clean under the sanitizers" "$ERR"
	fi
}

cf_init "$T/data" --mqtt-port 1 --api-port 2
cp "$D/certfleet.conf" "$T/conf.orig"
with_conf() { cp "$T/conf.orig" "$D/certfleet.conf"; printf '%s\n' "$@" >>"$D/certfleet.conf"; }

with_conf "issuer_key = ca/root.key"
daemon --dir "$D"
expect_rc "certfleetd with the root key as issuer key exits 1" 1
expect_match "it says it refuses the root key" "$ERR" "refusing to load .*ca/root.key: it is the key of root CA"

cp "$D/ca/root.key" "$T/innocent-name.key"
with_conf "issuer_key = $T/innocent-name.key" "issuer_passphrase_file = $PASS_FILE"
daemon --dir "$D"
expect_rc "the root key under another name, with the root passphrase, exits 1" 1
expect_match "it is recognised by its public key" "$ERR" "it is the key of root CA"

printf 'not the passphrase\n' >"$T/wrong.pass"
with_conf "issuer_passphrase_file = $T/wrong.pass"
daemon --dir "$D"
expect_rc "a wrong issuer passphrase exits 1" 1
expect_match "it names the passphrase file" "$ERR" "wrong.pass"

with_conf "mqtt_prot = 1883"
daemon --dir "$D"
expect_rc "an unknown configuration key exits 1" 1
expect_match "it names the key and the line" "$ERR" "certfleet.conf:[0-9]+: unknown key 'mqtt_prot'"

with_conf "api_host = 0.0.0.0"
sed -i '/^api_host = 127.0.0.1$/d' "$D/certfleet.conf"
daemon --dir "$D"
expect_rc "a non-loopback API address exits 1" 1

daemon --dir "$T/no-such-dir"
expect_rc "a missing data directory exits 1" 1
check_not "and nothing was created there" test -e "$T/no-such-dir"

for out in "$ERR"; do
	expect_nomatch "no passphrase in the output" "$out" "$(cat "$PASS_FILE")"
done
finish
