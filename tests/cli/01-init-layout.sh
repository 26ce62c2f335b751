#!/usr/bin/env bash
# init: the data directory layout of docs/cli.md, encrypted CA keys, file
# modes, the passphrase kept out of every output and file, the CA list.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(umask 077; printf 'root-%s\n' "$(openssl rand -hex 16)" >"$PASS_FILE")
ROOT_PASS=$(head -n1 "$PASS_FILE")
D=$T/data
cfraw init --dir "$D" --passphrase-file "$PASS_FILE" --ca-key-algorithm ECDSA-P256 \
	--intermediate-name "$INT" --root-cn "Test Fleet Root" --device-validity-days 90
expect_rc "init --dir DIR --passphrase-file F exits 0" 0
[ "$RC" -eq 0 ] || die "init failed, nothing more to check"
INIT_OUTPUT="$OUT$ERR"

# ---- layout
for f in certfleet.conf certfleet.db ca/root.crt ca/root.key "ca/$INT.crt" "ca/$INT.key" \
	"private/$INT.pass" ca-chain.crt; do
	check "init created $f" test -s "$D/$f"
done
check "init created private/ as a directory" test -d "$D/private"
expect_eq "private/ is mode 0700" "$(stat -c %a "$D/private")" 700
for f in "$D"/ca/*.key "$D"/private/*; do
	expect_eq "${f#"$D"/} is mode 0600" "$(stat -c %a "$f")" 600
done
check "certfleet.db is an SQLite database" \
	bash -c "head -c 16 '$D/certfleet.db' | quiet_grep 'SQLite format 3'"

# ---- the root key: PKCS#8, encrypted with the root passphrase
expect_eq "ca/root.key starts with BEGIN ENCRYPTED PRIVATE KEY" \
	"$(head -n1 "$D/ca/root.key")" "-----BEGIN ENCRYPTED PRIVATE KEY-----"
check_not "ca/root.key does not open with a wrong passphrase" \
	openssl pkey -in "$D/ca/root.key" -passin pass:wrong -noout
check "ca/root.key opens with the root passphrase" \
	openssl pkey -in "$D/ca/root.key" -passin "file:$PASS_FILE" -noout
check "ca/root.key is encrypted with AES-256" \
	bash -c "openssl asn1parse -in '$D/ca/root.key' | quiet_grep aes-256"
check "ca/root.key is the key of ca/root.crt" \
	bash -c "diff <(openssl pkey -in '$D/ca/root.key' -passin 'file:$PASS_FILE' -pubout) \
	              <(openssl x509 -in '$D/ca/root.crt' -noout -pubkey)"

# ---- the intermediate key: encrypted with private/<name>.pass
expect_eq "ca/$INT.key starts with BEGIN ENCRYPTED PRIVATE KEY" \
	"$(head -n1 "$D/ca/$INT.key")" "-----BEGIN ENCRYPTED PRIVATE KEY-----"
check_not "ca/$INT.key does not open with the root passphrase" \
	openssl pkey -in "$D/ca/$INT.key" -passin "file:$PASS_FILE" -noout
check "ca/$INT.key opens with private/$INT.pass" \
	openssl pkey -in "$D/ca/$INT.key" -passin "file:$D/private/$INT.pass" -noout
check "ca/$INT.key is the key of ca/$INT.crt" \
	bash -c "diff <(openssl pkey -in '$D/ca/$INT.key' -passin 'file:$D/private/$INT.pass' -pubout) \
	              <(openssl x509 -in '$D/ca/$INT.crt' -noout -pubkey)"
expect_ne "the generated intermediate passphrase differs from the root's" \
	"$(head -n1 "$D/private/$INT.pass")" "$ROOT_PASS"

# ---- certificates
check "root.crt is self-signed and verifies" openssl verify -CAfile "$D/ca/root.crt" "$D/ca/root.crt"
check "$INT.crt verifies against root.crt" openssl verify -CAfile "$D/ca/root.crt" "$D/ca/$INT.crt"
expect_match "root.crt carries the --root-cn" \
	"$(openssl x509 -in "$D/ca/root.crt" -noout -subject)" "CN ?= ?Test Fleet Root"
expect_match "root.crt is a CA (basicConstraints CA:TRUE)" \
	"$(openssl x509 -in "$D/ca/root.crt" -noout -ext basicConstraints)" "CA:TRUE"
expect_match "$INT.crt is a CA (basicConstraints CA:TRUE)" \
	"$(openssl x509 -in "$D/ca/$INT.crt" -noout -ext basicConstraints)" "CA:TRUE"
expect_match "$INT.crt may sign certificates and CRLs" \
	"$(openssl x509 -in "$D/ca/$INT.crt" -noout -ext keyUsage)" "Certificate Sign.*CRL Sign|CRL Sign.*Certificate Sign"
expect_eq "ca-chain.crt holds two certificates" "$(grep -c 'BEGIN CERTIFICATE' "$D/ca-chain.crt")" 2
expect_eq "ca-chain.crt is the intermediate then the root" \
	"$(openssl crl2pkcs7 -nocrl -certfile "$D/ca-chain.crt" | openssl pkcs7 -print_certs -noout | grep '^subject' | tr '\n' '|')" \
	"$(openssl x509 -in "$D/ca/$INT.crt" -noout -subject)|$(openssl x509 -in "$D/ca/root.crt" -noout -subject)|"

# ---- the root passphrase never appears in output or in any file of DIR
expect_nomatch "the root passphrase is not in init's output" "$INIT_OUTPUT" "$ROOT_PASS"
check_not "the root passphrase is not in certfleet.conf" grep -qF "$ROOT_PASS" "$D/certfleet.conf"
check_not "the root passphrase is in no file under DIR" grep -rqaF "$ROOT_PASS" "$D"

# ---- ca list
cfrun ca list --json
expect_rc "ca list --json exits 0" 0
LIST=$OUT
expect_eq "ca list has 2 CAs" "$(jpy 'len(d)' <<<"$LIST")" 2
expect_eq "ca list: one root named root" \
	"$(jpy '[c["name"] for c in d if c["role"] == "root"]' <<<"$LIST")" '["root"]'
expect_eq "ca list: one intermediate named $INT" \
	"$(jpy '[c["name"] for c in d if c["role"] == "intermediate"]' <<<"$LIST")" "[\"$INT\"]"
expect_eq "ca list: $INT is the issuer, the root is not" \
	"$(jpy '{c["name"]: c["issuer"] for c in d}' <<<"$LIST")" "{\"$INT\": true, \"root\": false}"
expect_eq "ca list: both ACTIVE" "$(jpy '[c["status"] for c in d]' <<<"$LIST")" '["ACTIVE", "ACTIVE"]'
expect_eq "ca list: root id is the SHA-256 of root.crt's DER" \
	"$(jpy '[c["id"] for c in d if c["role"] == "root"][0]' <<<"$LIST")" "$(cert_id_of "$D/ca/root.crt")"
expect_eq "ca list: $INT id is the SHA-256 of $INT.crt's DER" \
	"$(jpy '[c["id"] for c in d if c["role"] != "root"][0]' <<<"$LIST")" "$(cert_id_of "$D/ca/$INT.crt")"
expect_eq "ca list: $INT's parentId is the root's id" \
	"$(jpy '[c["parentId"] for c in d if c["role"] != "root"][0]' <<<"$LIST")" "$(cert_id_of "$D/ca/root.crt")"
expect_eq "ca list: serial of $INT matches its certificate" \
	"$(jpy '[c["serial"] for c in d if c["role"] != "root"][0]' <<<"$LIST" | norm_serial)" \
	"$(serial_of "$D/ca/$INT.crt")"
expect_eq "ca list: keyAlgorithm ECDSA-P256 (--ca-key-algorithm)" \
	"$(jpy 'sorted(set(c["keyAlgorithm"] for c in d))' <<<"$LIST")" '["ECDSA-P256"]'
expect_match "ca list: notAfter is an RFC 3339 UTC time" \
	"$(jpy 'd[0]["notAfter"]' <<<"$LIST")" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
cfrun ca list
expect_rc "ca list (text) exits 0" 0
expect_match "ca list (text) names $INT" "$OUT" "$INT"

# ---- the other commands find the directory through CERTFLEET_DIR and --dir after the verb
set +e
CERTFLEET_DIR=$D timeout 60 setsid -w "$CF" ca list --json </dev/null >"$T/env.out" 2>"$T/env.err"
rc=$?
set -e
expect_eq "CERTFLEET_DIR=DIR ca list exits 0" "$rc" 0
expect_eq "CERTFLEET_DIR=DIR ca list sees the same 2 CAs" "$(jpy 'len(d)' <"$T/env.out")" 2
cfraw ca list --json --dir "$D"
expect_rc "--dir accepted after the verb" 0

# ---- a thing issued right after init is signed by the intermediate
cfrun thing create probe --bundle "$T/probe"
expect_rc "thing create right after init exits 0" 0
check "the first device verifies through root + $INT" \
	openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/$INT.crt" "$T/probe/device.crt"
days=$(( ($(date -d "$(openssl x509 -in "$T/probe/device.crt" -noout -enddate | cut -d= -f2)" +%s) - \
	$(date -d "$(openssl x509 -in "$T/probe/device.crt" -noout -startdate | cut -d= -f2)" +%s)) / 86400 ))
check "--device-validity-days 90 gives a device certificate of 89..91 days (got $days)" \
	test "$days" -ge 89 -a "$days" -le 91

# ---- --intermediate-passphrase-file is used for the intermediate's key
(umask 077; echo "int-$(openssl rand -hex 12)" >"$T/int.pass")
umask 000 # the modes of secrets must not depend on the caller's umask
cfraw init --dir "$T/data2" --passphrase-file "$PASS_FILE" --intermediate-passphrase-file "$T/int.pass" \
	--ca-key-algorithm ECDSA-P384 --intermediate-name issuing
expect_rc "init --intermediate-passphrase-file F --ca-key-algorithm ECDSA-P384 exits 0" 0
check "the intermediate's key opens with the given passphrase" \
	openssl pkey -in "$T/data2/ca/issuing.key" -passin "file:$T/int.pass" -noout
check "  ... and is P-384" \
	bash -c "openssl x509 -in '$T/data2/ca/issuing.crt' -noout -text | quiet_grep 'NIST CURVE: P-384'"
check "  ... and the root's is P-384 too" \
	bash -c "openssl x509 -in '$T/data2/ca/root.crt' -noout -text | quiet_grep 'NIST CURVE: P-384'"
expect_eq "under umask 000: private/ is still 0700" "$(stat -c %a "$T/data2/private")" 700
for f in "$T"/data2/ca/*.key "$T"/data2/private/*; do
	expect_eq "under umask 000: ${f#"$T/data2"/} is still 0600" "$(stat -c %a "$f")" 600
done
cfraw --dir "$T/data2" thing create umask-dev --bundle "$T/umask-dev"
expect_rc "under umask 000: thing create --bundle exits 0" 0
expect_eq "under umask 000: device.key is still 0600" "$(stat -c %a "$T/umask-dev/device.key")" 600
check_not "under umask 000: certfleet.db is not world-writable" \
	bash -c "[ \$(( 0\$(stat -c %a '$T/data2/certfleet.db') & 2 )) -ne 0 ]"
umask 022

finish
