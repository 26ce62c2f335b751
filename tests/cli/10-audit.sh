#!/usr/bin/env bash
# audit: run, findings filters, suppress/unsuppress, export formats
# (JSON parses, CSV columns, HTML escaping of a hostile client id), bad
# input refused with nothing written, and mitigation (idempotent,
# recorded, a suppressed finding refused, quarantine).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
DB=$D/certfleet.db
cfok thing create ok1 --bundle "$T/ok1"
cfok thing create short --validity-days 5 --bundle "$T/short"
cfok thing create bare
SHORT=$(cert_id_of "$T/short/device.crt")
OK1=$(cert_id_of "$T/ok1/device.crt")
# A hostile client id used concurrently by two certificates (as certfleetd would record it).
python3 - "$DB" "$OK1" "$SHORT" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1]); now = int(time.time())
for i, p in enumerate(sys.argv[2:4]):
    db.execute("INSERT INTO connections(ref, client_id, principal, kind, peer, connected_at) "
               "VALUES (?, ?, ?, 'device', ?, ?)", ("r-%d" % i, "<script>alert(1)</script>", p,
               "10.0.0.%d:1000" % i, now - 60 + i))
db.commit()
PY

audits() { cfrun audit list --json; jpy 'len(d)' <<<"$OUT"; }

# ---- run
cfrun audit run --json
expect_rc "audit run --json exits 0" 0
AUDIT=$(jpy 'd["audit_id"]' <<<"$OUT")
expect_eq "audit run: 2 certificates checked in the one pass" "$(jpy 'd["certificates"]' <<<"$OUT")" 2
cfrun audit findings --json
expect_rc "audit findings exits 0" 0
expect_eq "the 5-day certificate is CERTIFICATE_EXPIRING (MEDIUM)" \
	"$(jpy "[(f['reason_code'], f['severity']) for f in d if f['resource_id'] == '$SHORT' and f['check'] == 'DEVICE_CERTIFICATE_EXPIRING_CHECK']" <<<"$OUT")" \
	'[["CERTIFICATE_EXPIRING", "MEDIUM"]]'
expect_eq "the 90-day certificate is not expiring" \
	"$(jpy "[f for f in d if f['resource_id'] == '$OK1' and f['check'] == 'DEVICE_CERTIFICATE_EXPIRING_CHECK']" <<<"$OUT")" '[]'
expect_eq "thing 'bare' has no active certificate" \
	"$(jpy "[f['reason_code'] for f in d if f['resource_id'] == 'bare']" <<<"$OUT")" '["THING_WITHOUT_ACTIVE_CERTIFICATE"]'
expect_eq "the hostile client id is a CONFLICTING_CLIENT_IDS finding" \
	"$(jpy "[f['reason_code'] for f in d if f['check'] == 'CONFLICTING_CLIENT_IDS_CHECK']" <<<"$OUT")" '["CLIENT_ID_CONCURRENT_PRINCIPALS"]'
EXP_ID=$(jpy "[f['id'] for f in d if f['resource_id'] == '$SHORT' and f['check'] == 'DEVICE_CERTIFICATE_EXPIRING_CHECK'][0]" <<<"$OUT")

# ---- filters
cfrun audit findings --check DEVICE_CERTIFICATE_EXPIRING_CHECK --json
expect_eq "--check: only that check" "$(jpy 'sorted(set(f["check"] for f in d))' <<<"$OUT")" '["DEVICE_CERTIFICATE_EXPIRING_CHECK"]'
cfrun audit findings --severity low --json
expect_eq "--severity low: only LOW" "$(jpy 'sorted(set(f["severity"] for f in d))' <<<"$OUT")" '["LOW"]'
cfrun audit findings --audit "$AUDIT" --severity CRITICAL --json
expect_eq "--audit ID --severity CRITICAL: none here" "$(jpy 'len(d)' <<<"$OUT")" 0
cfrun audit run --checks THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK --json
expect_eq "--checks: only the named check reports" "$(jpy 'sorted(d["by_check"])' <<<"$OUT")" '["THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK"]'
expect_eq "--checks without a certificate check: no pass over certificates" "$(jpy 'd["certificates"]' <<<"$OUT")" 0

# ---- bad input: named, exit 2, nothing written
N=$(audits)
cfrun audit run --checks NOPE_CHECK
expect_rc "audit run --checks NOPE_CHECK: usage error" 2
expect_match "  ... names the bad check" "$ERR" 'NOPE_CHECK'
cfrun audit run --param DEVICE_CERTIFICATE_EXPIRING_CHECK=-3
expect_rc "audit run --param ...=-3: usage error" 2
expect_eq "no audit was written by refused runs" "$(audits)" "$N"
cfrun audit findings --severity SEVERE
expect_rc "audit findings --severity SEVERE: usage error" 2
cfrun audit findings --audit 999
expect_rc "audit findings --audit 999 (unknown): exit 1" 1
cfrun audit suppress --check DEVICE_CERTIFICATE_EXPIRING_CHECK
expect_rc "audit suppress without --resource: usage error" 2
cfrun audit suppress --check DEVICE_CERTIFICATE_EXPIRING_CHECK --resource "$SHORT" --until 2001-01-01
expect_rc "audit suppress --until in the past: usage error" 2
cfrun audit suppress --check DEVICE_CERTIFICATE_EXPIRING_CHECK --resource "$SHORT" --until 2999-01-01 --forever
expect_rc "audit suppress --until and --forever: usage error" 2
cfrun audit export --format pdf
expect_rc "audit export --format pdf: usage error" 2
expect_match "  ... names the format" "$ERR" 'pdf'

# ---- suppression
cfrun audit suppress --check DEVICE_CERTIFICATE_EXPIRING_CHECK --resource "$SHORT" --comment "known, renewing"
expect_rc "audit suppress --forever (default)" 0
cfrun audit run --json
expect_eq "the run counts one suppressed finding" "$(jpy 'd["suppressed"]' <<<"$OUT")" 1
cfrun audit findings --check DEVICE_CERTIFICATE_EXPIRING_CHECK --json
expect_eq "the suppressed finding is stored with suppressed=true" "$(jpy '[f["suppressed"] for f in d]' <<<"$OUT")" '[true]'
SUP_ID=$(jpy 'd[0]["id"]' <<<"$OUT")
cfrun mitigate --finding "$SUP_ID" --action deactivate
expect_rc "mitigate a suppressed finding: refused (exit 1)" 1
expect_match "  ... says it is suppressed" "$ERR" 'suppressed'
cfrun cert describe "$SHORT" --json
expect_eq "  ... and the certificate is untouched" "$(jpy 'd["status"]' <<<"$OUT")" ACTIVE
cfrun audit unsuppress --check DEVICE_CERTIFICATE_EXPIRING_CHECK --resource "$SHORT"
expect_rc "audit unsuppress" 0
cfrun audit unsuppress --check DEVICE_CERTIFICATE_EXPIRING_CHECK --resource "$SHORT"
expect_rc "audit unsuppress again: nothing to remove (exit 1)" 1
cfrun events list --json
expect_eq "events: suppression.created and .removed, audit.started and .finished" \
	"$(jpy 'sorted(set(e["type"] for e in d if e["type"].split(".")[0] in ("audit", "suppression")))' <<<"$OUT")" \
	'["audit.finished", "audit.started", "suppression.created", "suppression.removed"]'
cfrun audit run --json
LAST=$(jpy 'd["audit_id"]' <<<"$OUT")
expect_eq "after unsuppress nothing is suppressed" "$(jpy 'd["suppressed"]' <<<"$OUT")" 0

# ---- export
cfrun audit export --format json --out "$T/r.json"
expect_rc "export json to a file" 0
expect_eq "  ... parses, is the latest audit, has its findings" \
	"$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["audit"]["id"], len(d["findings"]) > 0)' "$T/r.json")" "$LAST True"
cfrun audit export --format csv --audit "$AUDIT"
expect_rc "export csv" 0
expect_eq "  ... every row has the header's 9 columns" \
	"$(python3 -c 'import csv,sys; r=list(csv.reader(sys.stdin)); print(len(r) > 1, set(len(x) for x in r))' <<<"$OUT")" "True {9}"
cfrun audit export --format html --out "$T/r.html"
expect_rc "export html" 0
check "  ... escapes the hostile client id" grep -q '&lt;script&gt;alert(1)&lt;/script&gt;' "$T/r.html"
check_not "  ... never writes it raw" grep -q '<script>' "$T/r.html"
check "  ... is one self-contained page" grep -q '</html>' "$T/r.html"

# ---- mitigation
cfrun audit findings --audit "$LAST" --check DEVICE_CERTIFICATE_EXPIRING_CHECK --json
F=$(jpy 'd[0]["id"]' <<<"$OUT")
cfrun mitigate --finding "$F" --action deactivate --action quarantine --json
expect_rc "mitigate deactivate + quarantine" 0
expect_eq "  ... both succeeded" "$(jpy '[a["status"] for a in d]' <<<"$OUT")" '["succeeded", "succeeded"]'
cfrun cert describe "$SHORT" --json
expect_eq "  ... the certificate is INACTIVE" "$(jpy 'd["status"]' <<<"$OUT")" INACTIVE
cfrun group list --json
expect_match "  ... the thing is in the quarantine group" "$OUT" 'quarantine'
cfrun mitigate --finding "$F" --action deactivate --action quarantine --json
expect_eq "mitigate again: both noop (idempotent)" "$(jpy '[a["status"] for a in d]' <<<"$OUT")" '["noop", "noop"]'
cfrun mitigate --finding "$F" --action deactivate-ca
expect_rc "deactivate-ca on a certificate finding fails (exit 1)" 1
cfrun mitigate --finding "$F" --action teleport
expect_rc "mitigate --action teleport: usage error" 2
cfrun mitigate --finding 99999 --action deactivate
expect_rc "mitigate an unknown finding: exit 1" 1
python3 - "$DB" "$F" <<'PY' >"$T/m.txt"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print([r for r in db.execute("SELECT action, status FROM mitigation_actions WHERE finding_id = ? ORDER BY id", (int(sys.argv[2]),))])
PY
expect_eq "every execution is recorded with its outcome" "$(cat "$T/m.txt")" \
	"[('deactivate', 'succeeded'), ('quarantine', 'succeeded'), ('deactivate', 'noop'), ('quarantine', 'noop'), ('deactivate-ca', 'failed')]"

finish
