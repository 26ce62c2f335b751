#!/usr/bin/env bash
# certfleet provision …: templates are validated by the parser certfleetd
# uses (bad patterns, values and option combinations are usage errors, exit
# 2, and store nothing); a claim bundle holds a claim attached to no thing
# and an agent.conf the agent accepts with --param; disable/enable record
# claim.status events with the reason.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AGENT=$CF_BIN_DIR/certfleet-agent

cf_init "$T/data"
printf '# serials\n100\n101\n' >"$T/allow"

cfrun provision template-create sensors --name-pattern 'sensor-{SerialNumber}' --group fleet \
	--attr model=x1 --allow-file "$T/allow" --rate-per-minute 10 --window-start 2026-01-01 \
	--window-end 2030-01-01 --max-count 5 --max-denials 3 --max-concurrent 2 --json
expect_rc "template-create with every option" 0
expect_eq "the spec holds the allow-list" "$(printf '%s' "$OUT" | jpy 'd["spec"]["allowList"]')" '["100", "101"]'
expect_eq "the spec holds the limits" "$(printf '%s' "$OUT" | jpy '[d["spec"][k] for k in ("ratePerMinute","maxCount","maxDenials","maxConcurrent")]')" '[10, 5, 3, 2]'

for bad in 'sensor' 'sensor-{' 'sensor/{S}' '{9}' ''; do
	cfrun provision template-create t1 --name-pattern "$bad"
	expect_rc "name pattern '$bad' is a usage error" 2
done
cfrun provision template-create t1
expect_rc "--name-pattern is required" 2
cfrun provision template-create 'a/b' --name-pattern 'x-{S}'
expect_rc "a bad template name is a usage error" 2
cfrun provision template-create t1 --name-pattern 'x-{S}' --hook-timeout 60 --allow-hook true
expect_rc "a hook timeout over 10 s is a usage error" 2
cfrun provision template-create t1 --name-pattern 'x-{S}' --window-start 2030-01-01 --window-end 2020-01-01
expect_rc "a window ending before it starts is a usage error" 2
printf 'ok\nnot ok\n' >"$T/bad-allow"
cfrun provision template-create t1 --name-pattern 'x-{S}' --allow-file "$T/bad-allow"
expect_rc "an allow-list line that is no value is a usage error" 2
expect_match "the message names the line" "$ERR" 'line 2'
cfrun provision template-create sensors --name-pattern 'x-{S}'
expect_rc "a duplicate template fails" 1
cfrun provision template-list --json
expect_eq "only the good template was stored" "$(printf '%s' "$OUT" | jpy '[t["name"] for t in d]')" '["sensors"]'

cfrun provision claim-create nope --bundle "$T/c0"
expect_rc "a claim for an unknown template fails" 1
check_not "and leaves no bundle" test -e "$T/c0"
cfrun provision claim-create sensors
expect_rc "--bundle is required" 2
cfrun provision claim-create sensors --bundle "$T/claim" --json
expect_rc "claim-create" 0
ID=$(printf '%s' "$OUT" | jpy 'd["certificateId"]')
check "the bundle has the claim's key, certificate, chain and agent.conf" \
	test -f "$T/claim/device.key" -a -f "$T/claim/device.crt" -a -f "$T/claim/ca-chain.crt" -a -f "$T/claim/agent.conf"
expect_eq "the key is 0600" "$(stat -c %a "$T/claim/device.key")" 600
cfrun cert describe "$ID" --json
expect_eq "the claim certificate is attached to no thing" "$(printf '%s' "$OUT" | jpy 'd.get("thing") or ""')" ""
expect_match "agent.conf names the template" "$(cat "$T/claim/agent.conf")" '^provision_template = sensors$'

if [ -x "$AGENT" ]; then
	set +e
	timeout 30 setsid -w "$AGENT" --config "$T/claim/agent.conf" --param SerialNumber=100 --check </dev/null >"$T/.ag" 2>&1
	RC=$?
	set -e
	expect_rc "certfleet-agent --check accepts the claim bundle with --param" 0
	expect_match "and names the thing it will be" "$(cat "$T/.ag")" 'thing sensor-100'
	set +e
	timeout 30 setsid -w "$AGENT" --config "$T/claim/agent.conf" --check </dev/null >"$T/.ag" 2>&1
	RC=$?
	set -e
	expect_fail "without the parameter the agent refuses to start"
	expect_match "naming the parameter" "$(cat "$T/.ag")" 'SerialNumber'
fi

cfrun provision claim-disable "${ID:0:12}" --reason "batch recalled"
expect_rc "claim-disable by id prefix" 0
cfrun provision claim-list --json
expect_eq "the claim is DISABLED with the reason" "$(printf '%s' "$OUT" | jpy '[d[0]["status"], d[0]["reason"]]')" '["DISABLED", "batch recalled"]'
cfrun provision claim-disable "$ID"
expect_rc "disabling twice is not an error" 0
expect_match "and says so" "$OUT" 'unchanged'
cfrun provision claim-enable "$ID"
expect_rc "claim-enable" 0
cfrun events list --json
expect_eq "two claim.status events" "$(printf '%s' "$OUT" | jpy 'len([e for e in d if e["type"] == "claim.status"])')" 2
cfrun provision claim-disable 0000000000000000
expect_rc "an unknown claim fails" 1

finish
