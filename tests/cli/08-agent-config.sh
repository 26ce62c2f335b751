#!/usr/bin/env bash
# certfleet-agent --config: a bundle from `thing create --bundle` passes
# --check; every mismatched or unknown algorithm pair, an unknown key, a
# missing key file, a key file readable by others and out-of-range optional
# keys (trim_memory, keepalive_s ...) are refused (exit 1, the message naming
# the values) — all before any broker is contacted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AGENT=$CF_BIN_DIR/certfleet-agent
[ -x "$AGENT" ] || die "$AGENT is missing (build first: make)"

# agent ARGS... — certfleet-agent detached, under a timeout, like cfraw.
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
	return 0
}

cf_init "$T/data"
cfok thing create dev1 --bundle "$T/b"
B=$T/b

agent --config "$B/agent.conf" --check
expect_rc "the bundle's agent.conf passes --check" 0

# with_conf KEY VALUE — a copy of the bundle's agent.conf with KEY set to VALUE (or deleted if VALUE is -).
with_conf() {
	local key=$1 value=$2
	grep -v "^$key *=" "$B/agent.conf" >"$B/test.conf"
	[ "$value" = - ] || printf '%s = %s\n' "$key" "$value" >>"$B/test.conf"
}

# refuse NAME KEYALG SIGALG — the pair is refused, both names in the message.
refuse_pair() {
	local k=$1 s=$2
	grep -vE '^(key_algorithm|signing_algorithm) *=' "$B/agent.conf" >"$B/test.conf"
	printf 'key_algorithm = %s\nsigning_algorithm = %s\n' "$k" "$s" >>"$B/test.conf"
	agent --config "$B/test.conf" --check
	expect_rc "$k + $s: --check refused" 1
	expect_match "$k + $s: the message names $k" "$ERR" "$k"
	expect_match "$k + $s: the message names $s" "$ERR" "$s"
	# and without --check: refused before connecting (nothing listens; it would retry forever)
	agent --config "$B/test.conf"
	expect_rc "$k + $s: refused at start" 1
	expect_match "$k + $s: start names both" "$ERR" "$k.*$s|$s.*$k"
}
refuse_pair RSA-2048 ECDSA-WITH-SHA256
refuse_pair ECDSA-P256 SHA256WITHRSA
refuse_pair ED25519 SHA256WITHRSAANDMGF1
refuse_pair ECDSA-P384 ED25519
refuse_pair RSA-3072 ECDSA-WITH-SHA384
refuse_pair ECDSA-P256 NO-SUCH-SIG
refuse_pair NO-SUCH-KEY ECDSA-WITH-SHA256
check "nothing was adopted or journaled by the refusals" test ! -e "$B/current" -a ! -e "$B/state"

with_conf key_algorithm -
agent --config "$B/test.conf" --check
expect_rc "a missing key_algorithm is refused" 1
expect_match "the message names key_algorithm" "$ERR" "key_algorithm"

cp "$B/agent.conf" "$B/test.conf"
printf 'broker_hots = example\n' >>"$B/test.conf"
agent --config "$B/test.conf" --check
expect_rc "an unknown key is refused" 1
expect_match "the message names the key and file:line" "$ERR" "test.conf:[0-9]+.*broker_hots"

with_conf broker_port 70000
agent --config "$B/test.conf" --check
expect_rc "broker_port out of range is refused" 1
expect_match "the message names broker_port" "$ERR" "broker_port"

with_conf topic_prefix 'cf/#/'
agent --config "$B/test.conf" --check
expect_rc "a topic_prefix with a wildcard is refused" 1

with_conf hook 'echo switched'
printf 'hook_timeout_s = 10\nconnect_timeout_s = 5\nresponse_timeout_s = 20\nmax_attempts = 4\nreconnect_max_s = 30\ntopic_prefix = fleet/\n' >>"$B/test.conf"
printf 'trim_memory = no\ntrim_memory_after_s = 30\nkeepalive_s = 120\n' >>"$B/test.conf"
agent --config "$B/test.conf" --check
expect_rc "every optional key is accepted" 0

# trim_memory is yes or no; trim_memory_after_s 1-3600; keepalive_s 5-3600 (libmosquitto's minimum).
for bad in 'trim_memory maybe' 'trim_memory 1' 'trim_memory_after_s 0' 'trim_memory_after_s 3601' \
    'keepalive_s 4' 'keepalive_s 3601' 'keepalive_s 60s'; do
	with_conf ${bad% *} "${bad#* }"
	agent --config "$B/test.conf" --check
	expect_rc "${bad% *} = ${bad#* } is refused" 1
	expect_match "the message names ${bad% *}" "$ERR" "${bad% *}"
done
with_conf trim_memory yes
agent --config "$B/test.conf" --check
expect_rc "trim_memory = yes is accepted" 0

with_conf key_file missing.key
agent --config "$B/test.conf" --check
expect_rc "a missing key file is refused" 1
expect_match "the message names the key file" "$ERR" "missing.key"

agent --config "$T/nope.conf" --check
expect_rc "a missing config file is refused" 1

chmod 0644 "$B/device.key"
agent --config "$B/agent.conf" --check
expect_rc "a key file readable by others is refused (--check)" 1
expect_match "the message says why" "$ERR" "never holds a key in a file readable by others"
agent --config "$B/agent.conf"
expect_rc "a key file readable by others is refused at start" 1
expect_match "at start too" "$ERR" "never holds a key in a file readable by others"
check "the refused bundle was not adopted" test ! -e "$B/current"
chmod 0600 "$B/device.key"

agent
expect_rc "no --config is a usage error" 2
agent --config "$B/agent.conf" --bogus
expect_rc "an unknown option is a usage error" 2

finish
