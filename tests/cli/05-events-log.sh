#!/usr/bin/env bash
# events: the log records issuance, status change and revocation in order,
# forms a hash chain, filters by --since/--limit, and events verify says intact.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
cfok thing create e1 --bundle "$T/e1"
cfok thing create e2 --bundle "$T/e2"
ID1=$(cert_id_of "$T/e1/device.crt")
cfok cert deactivate "$ID1"
cfok cert activate "$ID1"
cfok cert revoke "$ID1" --reason keyCompromise

cfrun events list --json
expect_rc "events list --json exits 0" 0
EV=$OUT
N=$(jpy 'len(d)' <<<"$EV")
check "the log holds at least 7 events (CAs, things, issuance, 3 status changes) (got $N)" test "$N" -ge 7
expect_eq "every event has seq, time, type, subject, detail, prevHash, hash" \
	"$(jpy 'all({"seq","time","type","subject","detail","prevHash","hash"} <= set(e) for e in d)' <<<"$EV")" true
expect_eq "seq runs 1..N without gaps" "$(jpy '[e["seq"] for e in d] == list(range(1, len(d) + 1))' <<<"$EV")" true
expect_eq "the first prevHash is 64 zeros" "$(jpy 'd[0]["prevHash"]' <<<"$EV")" "$(printf '0%.0s' $(seq 1 64))"
expect_eq "every prevHash is the previous event's hash" \
	"$(jpy 'all(d[i]["prevHash"] == d[i-1]["hash"] for i in range(1, len(d)))' <<<"$EV")" true
expect_eq "every hash is 64 lowercase hex characters, all distinct" \
	"$(jpy 'all(len(e["hash"]) == 64 and all(c in "0123456789abcdef" for c in e["hash"]) for e in d) and len(set(e["hash"] for e in d)) == len(d)' <<<"$EV")" true
expect_eq "every detail is an object" "$(jpy 'all(isinstance(e["detail"], dict) for e in d)' <<<"$EV")" true
expect_eq "times are RFC 3339 UTC and never go backwards" \
	"$(jpy '__import__("re") and all(__import__("re").fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]) for e in d) and [e["time"] for e in d] == sorted(e["time"] for e in d)' <<<"$EV")" true
expect_eq "the CAs' creation is logged (an event about root and one about $INT)" \
	"$(jpy "any('root' in json.dumps(e) for e in d) and any('$INT' in json.dumps(e) for e in d)" <<<"$EV")" true
expect_eq "the things' creation is logged (an event whose subject is e2)" \
	"$(jpy 'any(e["subject"] == "e2" for e in d)' <<<"$EV")" true

# the events about e1's certificate, in order: issued, INACTIVE, ACTIVE, REVOKED
ABOUT=$(jpy "[e for e in d if e['subject'] == '$ID1' or ('$ID1' in json.dumps(e['detail']) and not e['type'].startswith('thing'))]" <<<"$EV")
jpy '"\n".join("#   about e1: %s %s %s" % (e["seq"], e["type"], json.dumps(e["detail"])) for e in d)' <<<"$ABOUT"
expect_eq "e1's certificate has at least 4 events (issued + 3 status changes)" \
	"$(jpy 'len(d) >= 4' <<<"$ABOUT")" true
expect_match "  ... the first is the issuance" "$(jpy 'd[0]["type"]' <<<"$ABOUT")" "issu"
# the state each later event moves to: detail.to if present, else the strongest status named
TO_STATES='[e["detail"].get("to") or e["detail"].get("status") or ("REVOKED" if "revok" in e["type"] or "REVOKED" in json.dumps(e) else "INACTIVE" if "INACTIVE" in json.dumps(e) else "ACTIVE" if "ACTIVE" in json.dumps(e) else "?") for e in d[1:]]'
expect_eq "  ... then INACTIVE, then ACTIVE, then REVOKED, in that order" \
	"$(jpy "$TO_STATES" <<<"$ABOUT")" '["INACTIVE", "ACTIVE", "REVOKED"]'
expect_match "  ... the revocation carries the reason" "$(jpy 'json.dumps(d[-1])' <<<"$ABOUT")" 'keyCompromise|"reason": ?1[,}]' 

# ---- filters
cfrun events list --limit 2 --json
expect_eq "events list --limit 2: the first two" "$(jpy '[e["seq"] for e in d]' <<<"$OUT")" '[1, 2]'
cfrun events list --since 2099-01-01T00:00:00Z --json
expect_rc "events list --since (future RFC 3339) exits 0" 0
expect_eq "  ... and lists nothing" "$(jpy 'len(d)' <<<"$OUT")" 0
cfrun events list --since 2000-01-01 --json
expect_eq "events list --since 2000-01-01 (a date): all $N" "$(jpy 'len(d)' <<<"$OUT")" "$N"
cfrun events list --since 0 --json
expect_eq "events list --since 0 (epoch seconds): all $N" "$(jpy 'len(d)' <<<"$OUT")" "$N"
cfrun events list --since "$(( $(date +%s) + 86400 ))" --json
expect_eq "events list --since tomorrow (epoch seconds): none" "$(jpy 'len(d)' <<<"$OUT")" 0
cfrun events list --since yesterday-ish
expect_rc "events list --since garbage is a usage error (exit 2)" 2
cfrun events list --limit -1
expect_rc "events list --limit -1 is a usage error (exit 2)" 2
cfrun events list
expect_rc "events list (text) exits 0" 0
expect_eq "  ... prints at least one line per event" "$(( $(printf '%s\n' "$OUT" | wc -l) >= N ))" 1

# ---- verify
cfrun events verify
expect_rc "events verify exits 0 on an untouched log" 0
expect_eq "  ... and says intact with the count and head" "$OUT" \
	"event log intact: $N events, head $(jpy 'd[-1]["hash"]' <<<"$EV")"

# concurrent writers: six thing creates at once all succeed and keep one chain
pids=()
for i in 1 2 3 4 5 6; do
	timeout 120 setsid -w "$CF" --dir "$D" thing create "par$i" --bundle "$T/par$i" </dev/null >"$T/par$i.out" 2>&1 &
	pids+=($!)
done
fails=0
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { fails=$((fails + 1)); cat "$T/par$((i + 1)).out"; }; done
expect_eq "six concurrent thing create --bundle all exit 0" "$fails" 0
cfrun cert list --json
expect_eq "  ... and six certificates exist for them" "$(jpy 'len([c for c in d if c["thing"].startswith("par")])' <<<"$OUT")" 6
cfrun events verify
expect_rc "  ... and events verify still exits 0" 0
cfrun events list --json
EV=$OUT
N=$(jpy 'len(d)' <<<"$EV")
expect_eq "  ... with seq 1..N and every link intact" \
	"$(jpy '[e["seq"] for e in d] == list(range(1, len(d) + 1)) and all(d[i]["prevHash"] == d[i-1]["hash"] for i in range(1, len(d)))' <<<"$EV")" true

# reads do not add events; a refused request leaves the chain intact
cfok cert list
cfrun events list --json
expect_eq "read-only commands add no events" "$(jpy 'len(d)' <<<"$OUT")" "$N"
cfrun cert activate "$ID1"
cfrun events verify
expect_rc "events verify still exits 0 after a refused transition" 0

finish
