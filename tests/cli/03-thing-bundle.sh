#!/usr/bin/env bash
# thing create --bundle for every key algorithm: the bundle files, their
# modes, the chain, subject/SAN/EKU/serial, key pair match, certificate id;
# mismatched and unknown algorithm names are usage errors that leave nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
MAX_SERIAL_BITS=0

# check_bundle NAME DIR KEYALG KEYTEXT_ERE — every property of a written bundle.
check_bundle() {
	local name=$1 b=$2 alg=$3 keytext=$4 f
	for f in device.key device.crt ca-chain.crt agent.conf; do
		check "$name: $f written" test -s "$b/$f"
	done
	[ -s "$b/device.crt" ] || return 0
	expect_eq "$name: device.key is mode 0600" "$(stat -c %a "$b/device.key")" 600
	check "$name: device.crt verifies (CAfile root, untrusted $INT)" \
		openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/$INT.crt" "$b/device.crt"
	check "$name: device.crt verifies against the bundle's ca-chain.crt" \
		openssl verify -CAfile "$b/ca-chain.crt" "$b/device.crt"
	check "$name: the bundle's ca-chain.crt equals DIR/ca-chain.crt" cmp "$b/ca-chain.crt" "$D/ca-chain.crt"
	expect_match "$name: subject CN is the thing name" \
		"$(openssl x509 -in "$b/device.crt" -noout -subject -nameopt RFC2253)" "^subject=(.*,)?CN=$name(,|$)"
	local ext
	ext=$(openssl x509 -in "$b/device.crt" -noout -ext subjectAltName,extendedKeyUsage,basicConstraints 2>&1)
	expect_match "$name: SAN URI urn:certfleet:thing:$name" "$ext" "URI:urn:certfleet:thing:$name(,|$| )"
	expect_match "$name: EKU clientAuth" "$ext" "TLS Web Client Authentication"
	expect_nomatch "$name: not a CA" "$ext" "CA:TRUE"
	local serial bits
	serial=$(serial_of "$b/device.crt")
	bits=$(python3 -c "print(int('$serial', 16).bit_length())")
	check "$name: serial is random and long ($bits bits >= 96)" test "$bits" -ge 96
	[ "$bits" -gt "$MAX_SERIAL_BITS" ] && MAX_SERIAL_BITS=$bits
	check "$name: device.key is the key of device.crt" \
		bash -c "diff <(openssl pkey -in '$b/device.key' -pubout) <(openssl x509 -in '$b/device.crt' -noout -pubkey)"
	expect_match "$name: the key is $alg" "$(openssl pkey -in "$b/device.key" -noout -text 2>&1)" "$keytext"
	cfrun cert list --thing "$name" --json
	expect_rc "$name: cert list --thing --json exits 0" 0
	expect_eq "$name: one certificate, ACTIVE, keyAlgorithm $alg" \
		"$(jpy '[[c["status"], c["keyAlgorithm"], c["thing"]] for c in d]' <<<"$OUT")" "[[\"ACTIVE\", \"$alg\", \"$name\"]]"
	expect_eq "$name: certificate id = SHA-256 of the DER" "$(jpy 'd[0]["id"]' <<<"$OUT")" "$(cert_id_of "$b/device.crt")"
	expect_eq "$name: serial in the registry matches the certificate" \
		"$(jpy 'd[0]["serial"]' <<<"$OUT" | norm_serial)" "$serial"
	expect_match "$name: agent.conf names device.key and device.crt" "$(cat "$b/agent.conf")" "device\.key"
	expect_match "$name: agent.conf names device.crt" "$(cat "$b/agent.conf")" "device\.crt"
}

# create_bundle NAME KEYALG [SIGALG] — thing create NAME --bundle with that algorithm.
create_bundle() {
	local name=$1 alg=$2 sig=${3:-}
	if [ -n "$sig" ]; then
		cfrun thing create "$name" --key-algorithm "$alg" --signing-algorithm "$sig" --bundle "$T/$name"
	else
		cfrun thing create "$name" --key-algorithm "$alg" --bundle "$T/$name"
	fi
	expect_rc "thing create $name --key-algorithm $alg${sig:+ --signing-algorithm $sig} --bundle exits 0" 0
}

create_bundle d-rsa2048 RSA-2048
check_bundle d-rsa2048 "$T/d-rsa2048" RSA-2048 "Private-Key: \(2048 bit"
create_bundle d-rsa3072 RSA-3072
check_bundle d-rsa3072 "$T/d-rsa3072" RSA-3072 "Private-Key: \(3072 bit"
create_bundle d-p256 ECDSA-P256
check_bundle d-p256 "$T/d-p256" ECDSA-P256 "prime256v1|P-256"
create_bundle d-p384 ECDSA-P384
check_bundle d-p384 "$T/d-p384" ECDSA-P384 "secp384r1|P-384"
create_bundle d-p521 ECDSA-P521 ECDSA-WITH-SHA512
check_bundle d-p521 "$T/d-p521" ECDSA-P521 "secp521r1|P-521"
create_bundle d-ed25519 ED25519 ED25519
check_bundle d-ed25519 "$T/d-ed25519" ED25519 "ED25519"
create_bundle d-pss RSA-2048 SHA256WITHRSAANDMGF1
check_bundle d-pss "$T/d-pss" RSA-2048 "Private-Key: \(2048 bit"
create_bundle d-pss512 RSA-2048 SHA512WITHRSAANDMGF1
cfrun thing create d-default --bundle "$T/d-default"
expect_rc "thing create d-default --bundle (no algorithm) exits 0" 0
check_bundle d-default "$T/d-default" ECDSA-P256 "prime256v1|P-256"
check "the longest serial has >= 120 bits (got $MAX_SERIAL_BITS)" test "$MAX_SERIAL_BITS" -ge 120
expect_eq "every certificate has a different serial" \
	"$(for b in "$T"/d-*/device.crt; do serial_of "$b"; done | sort -u | wc -l)" \
	"$(ls "$T"/d-*/device.crt | wc -l)"

# ---- mismatched pairs and unknown names: usage errors (exit 2) naming both, nothing created
THINGS_BEFORE=$(thing_names)
CERTS_BEFORE=$(cfrun cert list --json; jpy 'len(d)' <<<"$OUT")
bad_pair() { # bad_pair KEYALG SIGALG
	cfrun thing create bad-thing --key-algorithm "$1" --signing-algorithm "$2" --bundle "$T/bad-bundle"
	expect_rc "thing create --key-algorithm $1 --signing-algorithm $2 is a usage error (exit 2)" 2
	expect_match "  ... naming $1 in stderr" "$ERR" "$1"
	expect_match "  ... naming $2 in stderr" "$ERR" "$2"
	check_not "  ... and writes no bundle directory" test -e "$T/bad-bundle"
}
bad_pair RSA-2048 ECDSA-WITH-SHA256
bad_pair ECDSA-P256 SHA256WITHRSA
bad_pair ED25519 SHA256WITHRSAANDMGF1
bad_pair ECDSA-P384 ED25519
bad_pair RSA-3072 ED25519
bad_pair ED25519 ECDSA-WITH-SHA256

cfrun thing create bad-thing --key-algorithm RSA-1024 --bundle "$T/bad-bundle"
expect_rc "an unknown key algorithm RSA-1024 is a usage error (exit 2)" 2
expect_match "  ... naming it" "$ERR" "RSA-1024"
cfrun thing create bad-thing --key-algorithm ECDSA-P256 --signing-algorithm MD5WITHRSA --bundle "$T/bad-bundle"
expect_rc "an unknown signing algorithm MD5WITHRSA is a usage error (exit 2)" 2
expect_match "  ... naming it" "$ERR" "MD5WITHRSA"
cfrun thing create bad-thing --key-algorithm secp256k1 --bundle "$T/bad-bundle"
expect_rc "an unknown key algorithm secp256k1 is a usage error (exit 2)" 2
check_not "no bundle directory after the refused algorithms" test -e "$T/bad-bundle"
expect_eq "thing list unchanged after the refused algorithms" "$(thing_names)" "$THINGS_BEFORE"
cfrun cert list --json
expect_eq "cert list unchanged after the refused algorithms" "$(jpy 'len(d)' <<<"$OUT")" "$CERTS_BEFORE"

# ---- the bundle directory must not exist or be empty
mkdir "$T/full"
echo keep >"$T/full/device.key"
cfrun thing create d-full --bundle "$T/full"
expect_rc "thing create --bundle into a non-empty directory exits 1" 1
expect_eq "  ... and leaves its file alone" "$(cat "$T/full/device.key")" keep
expect_eq "  ... and creates no thing" "$(thing_names)" "$THINGS_BEFORE"
mkdir "$T/emptydir"
cfrun thing create d-emptydir --bundle "$T/emptydir"
expect_rc "thing create --bundle into an existing empty directory exits 0" 0
check "  ... and writes device.crt there" test -s "$T/emptydir/device.crt"

# ---- a bundle that cannot be written leaves nothing behind (one transaction, files renamed last)
echo "a file, not a directory" >"$T/notadir"
cfrun thing create d-unwritable --bundle "$T/notadir/bundle"
expect_rc "thing create --bundle under a regular file (cannot be written) exits 1" 1
cfrun thing describe d-unwritable
expect_rc "  ... and leaves no thing d-unwritable" 1
cfrun cert list --json
expect_eq "  ... and no certificate" "$(jpy 'len([c for c in d if c["thing"] == "d-unwritable"])' <<<"$OUT")" 0

# ---- validity: a device certificate never outlives its issuing CA
cfrun thing create d-long --validity-days 36500 --bundle "$T/d-long"
if [ "$RC" -eq 0 ]; then
	DEV_END=$(date -d "$(openssl x509 -in "$T/d-long/device.crt" -noout -enddate | cut -d= -f2)" +%s)
	CA_END=$(date -d "$(openssl x509 -in "$D/ca/$INT.crt" -noout -enddate | cut -d= -f2)" +%s)
	check "thing create --validity-days 36500: notAfter clamped to the issuer's ($(date -u -d "@$DEV_END" +%F) <= $(date -u -d "@$CA_END" +%F))" \
		test "$DEV_END" -le "$CA_END"
else
	expect_rc "thing create --validity-days 36500 (beyond the issuer's validity) is refused with exit 1" 1
fi
cfrun thing create d-zero --validity-days 0
expect_rc "thing create --validity-days 0 is a usage error (exit 2)" 2

# ---- --bundle and --csr together is a usage error
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/k.pem" \
	-subj /CN=d-both -out "$T/both.csr" 2>/dev/null
cfrun thing create d-both --bundle "$T/both" --csr "$T/both.csr"
expect_rc "thing create --bundle DIR --csr FILE is a usage error (exit 2)" 2
check_not "  ... and writes no bundle" test -e "$T/both"

finish
