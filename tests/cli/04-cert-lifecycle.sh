#!/usr/bin/env bash
# cert: list filters, describe by prefix, deactivate/activate, revoke with a
# reason (terminal), the issuing CA's CRL and openssl verify -crl_check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
status_of() { # status_of ID
	cfrun cert describe "$1" --json
	jpy 'd["status"]' <<<"$OUT"
}

cfok thing create d1 --bundle "$T/d1"
cfok thing create d2 --key-algorithm ED25519 --bundle "$T/d2"
cfok thing create d3 --key-algorithm RSA-2048 --bundle "$T/d3"
cfok thing create short --validity-days 5 --bundle "$T/short"
ID1=$(cert_id_of "$T/d1/device.crt")
ID2=$(cert_id_of "$T/d2/device.crt")
ID3=$(cert_id_of "$T/d3/device.crt")
IDS=$(cert_id_of "$T/short/device.crt")
INT_ID=$(cert_id_of "$D/ca/$INT.crt")

# ---- list and filters
cfrun cert list --json
expect_rc "cert list --json exits 0" 0
expect_eq "cert list: 4 certificates" "$(jpy 'len(d)' <<<"$OUT")" 4
expect_eq "cert list: the ids are the bundles' fingerprints" \
	"$(jpy 'sorted(c["id"] for c in d)' <<<"$OUT")" \
	"$(python3 -c 'import json,sys; print(json.dumps(sorted(sys.argv[1:])))' "$ID1" "$ID2" "$ID3" "$IDS")"
expect_eq "cert list: every certificate has the documented keys" \
	"$(jpy 'all({"id","serial","caId","thing","status","notBefore","notAfter","keyAlgorithm","keyBits","signatureAlgorithm","createdAt"} <= set(c) for c in d)' <<<"$OUT")" true
expect_eq "cert list: keyBits of d3 (RSA-2048) is 2048" \
	"$(jpy '[c["keyBits"] for c in d if c["thing"] == "d3"]' <<<"$OUT")" '[2048]'
expect_eq "cert list: notAfter of d1 matches the certificate" \
	"$(jpy '[c["notAfter"] for c in d if c["thing"] == "d1"][0]' <<<"$OUT")" \
	"$(date -u -d "$(openssl x509 -in "$T/d1/device.crt" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)"
cfrun cert list --thing d2 --json
expect_eq "cert list --thing d2: only d2's certificate" "$(jpy '[c["id"] for c in d]' <<<"$OUT")" "[\"$ID2\"]"
cfrun cert list --thing nosuch --json
expect_rc_in "cert list --thing of an unknown thing: empty list or exit 1" 0 1
[ "$RC" -eq 0 ] && expect_eq "  ... (empty)" "$(jpy 'len(d)' <<<"$OUT")" 0
cfrun cert list --ca "$INT" --json
expect_eq "cert list --ca $INT (by name): all 4" "$(jpy 'len(d)' <<<"$OUT")" 4
cfrun cert list --ca "$INT_ID" --json
expect_eq "cert list --ca <id>: all 4" "$(jpy 'len(d)' <<<"$OUT")" 4
cfok ca create-intermediate int2 --passphrase-file "$PASS_FILE"
cfrun cert list --ca int2 --json
expect_eq "cert list --ca int2 (issued nothing): empty" "$(jpy 'len(d)' <<<"$OUT")" 0
cfrun cert list --expiring-within 30 --json
expect_eq "cert list --expiring-within 30: only the 5-day certificate" "$(jpy '[c["thing"] for c in d]' <<<"$OUT")" '["short"]'
cfrun cert list --expiring-within 120 --json
expect_eq "cert list --expiring-within 120: all 4 (90-day default)" "$(jpy 'len(d)' <<<"$OUT")" 4
cfrun cert list --expiring-within soon
expect_rc "cert list --expiring-within soon is a usage error (exit 2)" 2
cfrun cert list --status BOGUS
expect_rc "cert list --status BOGUS is a usage error (exit 2)" 2
cfrun cert list
expect_rc "cert list (text) exits 0" 0
expect_match "  ... shows d1's id (or its prefix)" "$OUT" "${ID1:0:8}"

# times are UTC whatever the local time zone
cfrun cert list --thing d1 --json
UTC_NA=$(jpy 'd[0]["notAfter"]' <<<"$OUT")
export TZ=Asia/Kolkata
cfrun cert list --thing d1 --json
expect_eq "cert list --json under TZ=Asia/Kolkata gives the same UTC notAfter" "$(jpy 'd[0]["notAfter"]' <<<"$OUT")" "$UTC_NA"
unset TZ

# ---- describe by id and prefix
cfrun cert describe "$ID1" --json
expect_rc "cert describe ID --json exits 0" 0
expect_eq "  ... the object for d1" "$(jpy '[d["id"], d["thing"], d["caId"]]' <<<"$OUT")" "[\"$ID1\", \"d1\", \"$INT_ID\"]"
cfrun cert describe "${ID1:0:8}" --json
expect_rc "cert describe by an 8-character prefix exits 0" 0
expect_eq "  ... and finds d1's certificate" "$(jpy 'd["id"]' <<<"$OUT")" "$ID1"
cfrun cert describe "${ID1:0:7}"
expect_fail "cert describe by a 7-character prefix fails"
cfrun cert describe "$ID1" --pem
expect_rc "cert describe --pem exits 0" 0
printf '%s\n' "$OUT" | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$T/d1-described.crt"
check "  ... prints d1's device.crt" \
	bash -c "diff <(openssl x509 -in '$T/d1/device.crt' -outform DER | od -An -tx1) <(openssl x509 -in '$T/d1-described.crt' -outform DER | od -An -tx1)"
cfrun cert describe 0000000000000000000000000000000000000000000000000000000000000000
expect_rc "cert describe of an unknown id exits 1" 1
cfrun cert describe zzzzzzzzzz
expect_fail "cert describe of a non-hex id fails"

# ---- status transitions
cfrun cert deactivate "$ID1"
expect_rc "cert deactivate exits 0" 0
expect_eq "  ... d1 is INACTIVE" "$(status_of "$ID1")" INACTIVE
cfrun cert list --status INACTIVE --json
expect_eq "cert list --status INACTIVE: d1 only" "$(jpy '[c["id"] for c in d]' <<<"$OUT")" "[\"$ID1\"]"
cfrun cert list --status ACTIVE --json
expect_eq "cert list --status ACTIVE: the other 3" "$(jpy 'len(d)' <<<"$OUT")" 3
cfrun cert activate "$ID1"
expect_rc "cert activate exits 0" 0
expect_eq "  ... d1 is ACTIVE again" "$(status_of "$ID1")" ACTIVE
cfrun cert activate "${ID1:0:10}"
expect_rc "cert activate of an ACTIVE certificate (by prefix) exits 0 (no-op)" 0
cfrun cert deactivate 0000000000000000000000000000000000000000000000000000000000000000
expect_rc "cert deactivate of an unknown id exits 1" 1

# ---- revoke
cfrun cert revoke "$ID1" --reason notAReason
expect_fail "cert revoke --reason notAReason fails"
expect_match "  ... naming the reason" "$ERR" "notAReason"
expect_eq "  ... and d1 stays ACTIVE" "$(status_of "$ID1")" ACTIVE
cfrun cert revoke "$ID1" --reason keyCompromise
expect_rc "cert revoke --reason keyCompromise exits 0" 0
cfrun cert describe "$ID1" --json
expect_eq "  ... d1 is REVOKED with reason keyCompromise" \
	"$(jpy '[d["status"], d.get("revokeReason")]' <<<"$OUT")" '["REVOKED", "keyCompromise"]'
expect_match "  ... with a revokedAt time" "$(jpy 'd.get("revokedAt")' <<<"$OUT")" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T'
cfrun cert list --status REVOKED --json
expect_eq "cert list --status REVOKED: d1 only" "$(jpy '[c["id"] for c in d]' <<<"$OUT")" "[\"$ID1\"]"

cfrun cert revoke "$ID1" --reason keyCompromise
if [ "$RC" -eq 0 ]; then
	ok "revoking again is a no-op that exits 0"
else
	expect_rc "revoking again fails clearly with exit 1" 1
	expect_match "  ... saying it is already revoked" "$ERR" "REVOKED|[Rr]evoked"
fi
expect_eq "  ... and d1 is still REVOKED, reason unchanged" \
	"$(cfrun cert describe "$ID1" --json; jpy '[d["status"], d.get("revokeReason")]' <<<"$OUT")" '["REVOKED", "keyCompromise"]'
cfrun cert activate "$ID1"
expect_rc "cert activate after revoke exits 1" 1
expect_match "  ... naming the illegal transition (REVOKED)" "$ERR" "REVOKED"
cfrun cert deactivate "$ID1"
expect_rc "cert deactivate after revoke exits 1" 1
expect_eq "  ... and d1 is still REVOKED" "$(status_of "$ID1")" REVOKED

# ---- the CRL of the issuing CA
CRL=$D/crl/$INT.crl.pem
check "crl/$INT.crl.pem exists after the revocation" test -s "$CRL"
check "  ... signed by $INT" bash -c "openssl crl -in '$CRL' -CAfile '$D/ca/$INT.crt' -noout 2>&1 | quiet_grep 'verify OK'"
SERIALS=$(crl_serials "$CRL")
expect_match "  ... lists d1's serial" "$SERIALS" "^$(serial_of "$T/d1/device.crt")\$"
expect_nomatch "  ... does not list d2's serial" "$SERIALS" "^$(serial_of "$T/d2/device.crt")\$"
expect_match "  ... with the reason Key Compromise" "$(openssl crl -in "$CRL" -noout -text)" "Key Compromise"
check_not "openssl verify -crl_check rejects the revoked d1" \
	openssl verify -crl_check -CRLfile "$CRL" -CAfile "$D/ca/root.crt" -untrusted "$D/ca/$INT.crt" "$T/d1/device.crt"
expect_match "  ... because it is revoked" \
	"$(openssl verify -crl_check -CRLfile "$CRL" -CAfile "$D/ca/root.crt" -untrusted "$D/ca/$INT.crt" "$T/d1/device.crt" 2>&1 || true)" \
	"certificate revoked"
check "openssl verify -crl_check accepts the good d2" \
	openssl verify -crl_check -CRLfile "$CRL" -CAfile "$D/ca/root.crt" -untrusted "$D/ca/$INT.crt" "$T/d2/device.crt"

# a second revocation rewrites the CRL with both serials and a higher number
N1=$(crl_number "$CRL")
cfrun cert deactivate "$ID3"
cfrun cert revoke "$ID3" --reason superseded
expect_rc "cert revoke of an INACTIVE certificate (--reason superseded) exits 0" 0
SERIALS=$(crl_serials "$CRL")
expect_match "the rewritten CRL lists d1" "$SERIALS" "^$(serial_of "$T/d1/device.crt")\$"
expect_match "the rewritten CRL lists d3" "$SERIALS" "^$(serial_of "$T/d3/device.crt")\$"
N2=$(crl_number "$CRL")
check "  ... with a higher CRL number ($N1 -> $N2)" test "$N2" -gt "$N1"
cfrun cert revoke "$IDS"
expect_rc "cert revoke without --reason exits 0" 0
expect_eq "  ... REVOKED" "$(status_of "$IDS")" REVOKED
cfrun cert revoke
expect_rc "cert revoke without an id is a usage error (exit 2)" 2
cfrun thing delete d1
expect_rc "thing delete d1 (its only certificate REVOKED) exits 0" 0

finish
