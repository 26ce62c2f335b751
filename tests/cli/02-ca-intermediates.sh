#!/usr/bin/env bash
# ca: create-intermediate (root passphrase), set-issuer, revoke an
# intermediate (root CRL lists it), ca crl --out.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
WRONG=$(wrong_pass_file)
ROOT_ID=$(cert_id_of "$D/ca/root.crt")
ca_field() { # ca_field NAME FIELD — from ca list --json
	cfrun ca list --json
	jpy "[c[\"$2\"] for c in d if c[\"name\"] == \"$1\"]" <<<"$OUT"
}

# ---- create-intermediate with a wrong root passphrase: nothing changes
FILES_BEFORE=$(cd "$D" && find ca private crl -type f 2>/dev/null | sort)
cfrun ca create-intermediate int2 --passphrase-file "$WRONG"
expect_rc "ca create-intermediate with a wrong root passphrase exits 1" 1
expect_match "  ... saying the passphrase is wrong" "$ERR" "[Pp]assphrase"
cfrun ca list --json
expect_eq "  ... and ca list still has 2 CAs" "$(jpy 'len(d)' <<<"$OUT")" 2
expect_eq "  ... and no file was added under ca/, private/, crl/" \
	"$(cd "$D" && find ca private crl -type f 2>/dev/null | sort)" "$FILES_BEFORE"

cfrun ca create-intermediate int2
expect_fail "ca create-intermediate without a passphrase file (no terminal) fails"
cfrun ca list --json
expect_eq "  ... and ca list still has 2 CAs" "$(jpy 'len(d)' <<<"$OUT")" 2

# ---- create-intermediate with the right one
cfrun ca create-intermediate int2 --passphrase-file "$PASS_FILE" --key-algorithm ECDSA-P384 --validity-days 400
expect_rc "ca create-intermediate int2 with the root passphrase exits 0" 0
check "ca/int2.crt written" test -s "$D/ca/int2.crt"
check "ca/int2.key written" test -s "$D/ca/int2.key"
expect_eq "ca/int2.key is mode 0600" "$(stat -c %a "$D/ca/int2.key")" 600
expect_eq "private/int2.pass is mode 0600" "$(stat -c %a "$D/private/int2.pass")" 600
check "int2.crt verifies against the root" openssl verify -CAfile "$D/ca/root.crt" "$D/ca/int2.crt"
check "ca/int2.key opens with private/int2.pass and is P-384" \
	bash -c "openssl pkey -in '$D/ca/int2.key' -passin 'file:$D/private/int2.pass' -noout -text | quiet_grep 'NIST CURVE: P-384'"
check_not "ca/int2.key does not open without a passphrase" \
	openssl pkey -in "$D/ca/int2.key" -passin pass: -noout
cfrun ca list --json
expect_eq "ca list has 3 CAs" "$(jpy 'len(d)' <<<"$OUT")" 3
expect_eq "int2: intermediate, ACTIVE, not the issuer, parent = root" \
	"$(jpy '[[c["role"], c["status"], c["issuer"], c["parentId"]] for c in d if c["name"] == "int2"]' <<<"$OUT")" \
	"[[\"intermediate\", \"ACTIVE\", false, \"$ROOT_ID\"]]"
expect_eq "int2: keyAlgorithm ECDSA-P384" "$(ca_field int2 keyAlgorithm)" '["ECDSA-P384"]'
days=$(( ($(date -d "$(openssl x509 -in "$D/ca/int2.crt" -noout -enddate | cut -d= -f2)" +%s) - \
	$(date -d "$(openssl x509 -in "$D/ca/int2.crt" -noout -startdate | cut -d= -f2)" +%s)) / 86400 ))
check "--validity-days 400 gives int2 399..401 days (got $days)" test "$days" -ge 399 -a "$days" -le 401

cfrun ca create-intermediate int2 --passphrase-file "$PASS_FILE"
expect_rc "a second intermediate named int2 exits 1" 1
cfrun ca create-intermediate "bad name" --passphrase-file "$PASS_FILE"
expect_rc_in "an intermediate named 'bad name' is refused" 1 2
cfrun ca list --json
expect_eq "  ... and ca list still has 3 CAs" "$(jpy 'len(d)' <<<"$OUT")" 3

# ---- set-issuer
cfrun ca set-issuer int2
expect_rc "ca set-issuer int2 exits 0" 0
cfrun ca list --json
expect_eq "int2 is now the only issuer" "$(jpy '[c["name"] for c in d if c["issuer"]]' <<<"$OUT")" '["int2"]'
cfrun thing create dev-int2 --bundle "$T/dev-int2"
expect_rc "thing create while int2 issues exits 0" 0
check "dev-int2 chains to root through int2" \
	openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/int2.crt" "$T/dev-int2/device.crt"
cfrun cert list --thing dev-int2 --json
expect_eq "dev-int2's certificate has caId = int2's id" "$(jpy 'd[0]["caId"]' <<<"$OUT")" "$(cert_id_of "$D/ca/int2.crt")"
expect_eq "dev-int2's bundle ca-chain.crt starts with int2" \
	"$(openssl x509 -in "$T/dev-int2/ca-chain.crt" -noout -subject)" "$(openssl x509 -in "$D/ca/int2.crt" -noout -subject)"
cfrun ca set-issuer "$INT"
expect_rc "ca set-issuer $INT (back) exits 0" 0
cfrun ca list --json
expect_eq "$INT is the issuer again" "$(jpy '[c["name"] for c in d if c["issuer"]]' <<<"$OUT")" "[\"$INT\"]"

# ---- create-intermediate --set-issuer
cfrun ca create-intermediate int3 --passphrase-file "$PASS_FILE" --set-issuer
expect_rc "ca create-intermediate int3 --set-issuer exits 0" 0
cfrun ca list --json
expect_eq "int3 is the issuer" "$(jpy '[c["name"] for c in d if c["issuer"]]' <<<"$OUT")" '["int3"]'
cfok ca set-issuer "$INT"

# ---- revoke an intermediate
INT2_SERIAL=$(serial_of "$D/ca/int2.crt")
cfrun ca revoke int2 --reason keyCompromise --passphrase-file "$WRONG"
expect_rc "ca revoke with a wrong root passphrase exits 1" 1
expect_eq "  ... and int2 stays ACTIVE" "$(ca_field int2 status)" '["ACTIVE"]'

cfrun ca revoke int2 --reason keyCompromise --passphrase-file "$PASS_FILE"
expect_rc "ca revoke int2 --reason keyCompromise exits 0" 0
expect_match "  ... saying the broker refuses its devices" "$OUT" "refused by the broker"
expect_eq "int2 is REVOKED" "$(ca_field int2 status)" '["REVOKED"]'
check "crl/root.crl.pem written" test -s "$D/crl/root.crl.pem"
check "the root CRL is signed by the root" \
	bash -c "openssl crl -in '$D/crl/root.crl.pem' -CAfile '$D/ca/root.crt' -noout 2>&1 | quiet_grep 'verify OK'"
ROOT_CRL_SERIALS=$(crl_serials "$D/crl/root.crl.pem")
expect_match "the root CRL lists int2's serial ($INT2_SERIAL)" "$ROOT_CRL_SERIALS" "^$INT2_SERIAL\$"
expect_nomatch "the root CRL does not list $INT's serial" "$ROOT_CRL_SERIALS" "^$(serial_of "$D/ca/$INT.crt")\$"
expect_match "the root CRL gives the reason Key Compromise" \
	"$(openssl crl -in "$D/crl/root.crl.pem" -noout -text)" "Key Compromise"
expect_match "the root CRL has a CRL number" \
	"$(openssl crl -in "$D/crl/root.crl.pem" -noout -text)" "X509v3 CRL Number"
check_not "openssl verify -crl_check rejects int2 against the root CRL" \
	openssl verify -crl_check -CRLfile "$D/crl/root.crl.pem" -CAfile "$D/ca/root.crt" "$D/ca/int2.crt"
check "openssl verify -crl_check accepts $INT against the root CRL" \
	openssl verify -crl_check -CRLfile "$D/crl/root.crl.pem" -CAfile "$D/ca/root.crt" "$D/ca/$INT.crt"

cfrun ca set-issuer int2
expect_rc "ca set-issuer of the revoked int2 exits 1" 1
cfok ca create-intermediate int4 --passphrase-file "$PASS_FILE"
cfrun ca revoke root --passphrase-file "$PASS_FILE"
expect_fail "ca revoke root fails (the root revokes intermediates only)"
expect_eq "  ... and the root stays ACTIVE" "$(ca_field root status)" '["ACTIVE"]'
cfrun ca revoke no-such-ca --passphrase-file "$PASS_FILE"
expect_rc "ca revoke of an unknown CA exits 1" 1
cfrun ca revoke int4 --reason notAReason --passphrase-file "$PASS_FILE"
expect_fail "ca revoke with an unknown reason fails"
expect_eq "  ... and int4 stays ACTIVE" "$(ca_field int4 status)" '["ACTIVE"]'

# ---- an Ed25519 intermediate issues verifiable device certificates
cfrun ca create-intermediate int-ed --key-algorithm ED25519 --passphrase-file "$PASS_FILE" --set-issuer
expect_rc "ca create-intermediate int-ed --key-algorithm ED25519 --set-issuer exits 0" 0
cfrun thing create dev-ed-ca --key-algorithm RSA-2048 --bundle "$T/dev-ed-ca"
expect_rc "  ... thing create under it exits 0" 0
check "  ... and the device verifies through root + int-ed" \
	openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/int-ed.crt" "$T/dev-ed-ca/device.crt"
expect_match "  ... signed with ED25519" "$(openssl x509 -in "$T/dev-ed-ca/device.crt" -noout -text)" "Signature Algorithm: ED25519"
cfok ca set-issuer "$INT"

# ---- ca crl
cfrun ca crl --out "$T/issuer.crl"
expect_rc "ca crl --out FILE (the issuer) exits 0" 0
check "the --out file is a PEM CRL openssl parses" openssl crl -in "$T/issuer.crl" -noout
expect_eq "  ... starting with BEGIN X509 CRL" "$(head -n1 "$T/issuer.crl")" "-----BEGIN X509 CRL-----"
expect_eq "  ... issued by $INT" \
	"$(openssl crl -in "$T/issuer.crl" -noout -issuer | sed 's/^issuer=//')" \
	"$(openssl x509 -in "$D/ca/$INT.crt" -noout -subject | sed 's/^subject=//')"
check "  ... signed by $INT" \
	bash -c "openssl crl -in '$T/issuer.crl' -CAfile '$D/ca/$INT.crt' -noout 2>&1 | quiet_grep 'verify OK'"
check "  ... and identical to crl/$INT.crl.pem" cmp "$T/issuer.crl" "$D/crl/$INT.crl.pem"
N1=$(crl_number "$T/issuer.crl")
cfrun ca crl "$INT" --out "$T/issuer2.crl"
expect_rc "ca crl $INT --out exits 0" 0
N2=$(crl_number "$T/issuer2.crl")
check "a regenerated CRL has a higher CRL number ($N1 -> $N2)" test "$N2" -gt "$N1"
expect_eq "ca list: crlNumber of $INT matches the CRL" "$(ca_field "$INT" crlNumber)" "[$N2]"
cfrun ca crl root --out "$T/root.crl" --passphrase-file "$PASS_FILE"
expect_rc "ca crl root --passphrase-file exits 0" 0
expect_match "  ... and it still lists int2" "$(crl_serials "$T/root.crl" 2>&1)" "^$INT2_SERIAL\$"
cfrun ca crl root --out "$T/root-nopass.crl"
expect_fail "ca crl root without the root passphrase fails"
check_not "  ... and writes no --out file" test -s "$T/root-nopass.crl"
cfrun ca crl no-such-ca --out "$T/none.crl"
expect_rc "ca crl of an unknown CA exits 1" 1


# ---- revoking the issuing intermediate: it stops issuing
cfrun ca revoke "$INT" --reason cACompromise --passphrase-file "$PASS_FILE"
expect_rc "ca revoke $INT (the issuer) exits 0" 0
cfrun ca list --json
expect_eq "  ... $INT is REVOKED and no longer the issuer" \
	"$(jpy "[[c['status'], c['issuer']] for c in d if c['name'] == '$INT']" <<<"$OUT")" '[["REVOKED", false]]'
cfrun thing create after-revoke --bundle "$T/after-revoke"
expect_rc "  ... thing create with no issuing CA exits 1" 1
expect_match "  ... saying there is no issuer" "$ERR" "[Ii]ssu"
check_not "  ... and writes no bundle" test -e "$T/after-revoke/device.crt"
cfrun thing describe after-revoke
expect_rc "  ... and leaves no thing" 1
expect_match "the root CRL now lists $INT too" "$(crl_serials "$D/crl/root.crl.pem")" "^$(serial_of "$D/ca/$INT.crt")\$"

# ---- a planned roll-over retires an intermediate (docs/broker.md "Retired CAs")
cfrun ca revoke int3 --reason superseded --passphrase-file "$PASS_FILE"
expect_rc "ca revoke int3 --reason superseded exits 0" 0
expect_match "  ... saying its devices may still connect, rotation-only" "$OUT" "^Retired: .*rotation-only"
expect_eq "  ... int3 is REVOKED" "$(ca_field int3 status)" '["REVOKED"]'
check "  ... with reason superseded in the root CRL" bash -c \
	"openssl crl -in '$D/crl/root.crl.pem' -noout -text | quiet_grep Superseded"
cfrun ca revoke int3 --reason nonsense --passphrase-file "$PASS_FILE"
expect_rc "ca revoke --reason with an unknown reason is a usage error" 2

# the root passphrase appeared in no command output and in no file of DIR
ROOT_PASS=$(head -n1 "$PASS_FILE")
check_not "the root passphrase is in no file under DIR" grep -rqaF "$ROOT_PASS" "$D"
check_not "the root passphrase is in no output of any command of this scenario" grep -qaF "$ROOT_PASS" "$T/.all-output"
check_not "neither is int2's generated passphrase" grep -qaF "$(head -n1 "$D/private/int2.pass")" "$T/.all-output"
finish
