#!/usr/bin/env bash
# thing create --csr: a device's own CSR is issued when its subject is the
# thing; another thing's CSR, a broken signature, malformed PEM, a weak key
# or a SHA-1 signature are refused and leave no thing behind.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"

# pem_of_cert ID FILE — the issued certificate through cert describe --pem.
pem_of_cert() {
	cfrun cert describe "$1" --pem
	printf '%s\n' "$OUT" | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$2"
}

# accepted NAME CSRFILE KEYFILE — the CSR is issued as NAME's certificate.
accepted() {
	local name=$1 csr=$2 key=$3
	cfrun thing create "$name" --csr "$csr"
	expect_rc "thing create $name --csr ($4) exits 0" 0
	[ "$RC" -eq 0 ] || return 0
	local id
	id=$(cert_id_for_thing "$name")
	pem_of_cert "$id" "$T/$name.crt"
	check "$name: cert describe --pem prints the certificate" openssl x509 -in "$T/$name.crt" -noout
	expect_eq "$name: its id is the SHA-256 of its DER" "$(cert_id_of "$T/$name.crt")" "$id"
	check "$name: it verifies through root + $INT" \
		openssl verify -CAfile "$D/ca/root.crt" -untrusted "$D/ca/$INT.crt" "$T/$name.crt"
	check "$name: it certifies the CSR's key" \
		bash -c "diff <(openssl pkey -in '$key' -pubout) <(openssl x509 -in '$T/$name.crt' -noout -pubkey)"
	expect_match "$name: subject CN is the thing" \
		"$(openssl x509 -in "$T/$name.crt" -noout -subject -nameopt RFC2253)" "^subject=(.*,)?CN=$name(,|$)"
	local ext
	ext=$(openssl x509 -in "$T/$name.crt" -noout -ext subjectAltName,extendedKeyUsage 2>&1)
	expect_match "$name: SAN URI urn:certfleet:thing:$name" "$ext" "URI:urn:certfleet:thing:$name"
	expect_match "$name: EKU clientAuth" "$ext" "TLS Web Client Authentication"
	cfrun cert list --thing "$name" --json
	expect_eq "$name: the certificate is ACTIVE" "$(jpy '[c["status"] for c in d]' <<<"$OUT")" '["ACTIVE"]'
}

# refused NAME CSRFILE WHAT [STDERR_ERE] — exit 1, no thing NAME afterwards.
refused() {
	local name=$1 csr=$2 what=$3 ere=${4:-}
	local before
	before=$(thing_names)
	cfrun thing create "$name" --csr "$csr"
	expect_rc "thing create $name --csr ($what) exits 1" 1
	expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
	[ -n "$ere" ] && expect_match "  ... saying why" "$ERR" "$ere"
	expect_eq "  ... and leaves no thing $name behind" "$(thing_names)" "$before"
}

# ---- good CSRs
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/p256.key" 2>/dev/null
openssl req -new -key "$T/p256.key" -subj /CN=c-ec -out "$T/c-ec.csr"
accepted c-ec "$T/c-ec.csr" "$T/p256.key" "ECDSA P-256"

openssl genpkey -algorithm ED25519 -out "$T/ed.key"
openssl req -new -key "$T/ed.key" -subj /CN=c-ed -out "$T/c-ed.csr"
accepted c-ed "$T/c-ed.csr" "$T/ed.key" "Ed25519"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/rsa.key" 2>/dev/null
openssl req -new -key "$T/rsa.key" -subj /CN=c-pss -sigopt rsa_padding_mode:pss -sha256 -out "$T/c-pss.csr"
check "the RSA-PSS CSR really is rsassaPss" \
	bash -c "openssl req -in '$T/c-pss.csr' -noout -text | quiet_grep rsassaPss"
accepted c-pss "$T/c-pss.csr" "$T/rsa.key" "RSA-2048, RSA-PSS signature"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$T/p384.key" 2>/dev/null
openssl req -new -key "$T/p384.key" -subj "/O=Acme Devices/CN=c-p384" -sha384 -out "$T/c-p384.csr"
accepted c-p384 "$T/c-p384.csr" "$T/p384.key" "ECDSA P-384 with an O= too"

# ---- a CSR cannot ask for more than a device certificate
openssl req -new -key "$T/p256.key" -subj /CN=c-greedy -out "$T/c-greedy.csr" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-addext "extendedKeyUsage=serverAuth,codeSigning" \
	-addext "subjectAltName=URI:urn:certfleet:thing:other,DNS:broker.example.com"
cfrun thing create c-greedy --csr "$T/c-greedy.csr"
if [ "$RC" -eq 0 ]; then
	ok "thing create --csr with CA/keyCertSign/serverAuth/foreign SAN requests: issued (requests ignored)"
	pem_of_cert "$(cert_id_for_thing c-greedy)" "$T/c-greedy.crt"
	ext=$(openssl x509 -in "$T/c-greedy.crt" -noout -ext basicConstraints,keyUsage,extendedKeyUsage,subjectAltName 2>&1)
	expect_nomatch "  ... the certificate is not a CA" "$ext" "CA:TRUE"
	expect_nomatch "  ... it may not sign certificates or CRLs" "$ext" "Certificate Sign|CRL Sign"
	expect_nomatch "  ... it has no serverAuth or codeSigning EKU" "$ext" "Server Authentication|Code Signing"
	expect_nomatch "  ... it carries no SAN from the CSR" "$ext" "thing:other|broker\.example\.com"
	expect_match "  ... only its own SAN URI" "$ext" "URI:urn:certfleet:thing:c-greedy"
else
	expect_rc "thing create --csr with CA/keyCertSign/serverAuth/foreign SAN requests: refused with exit 1" 1
	expect_eq "  ... and leaves no thing" "$(cfrun thing describe c-greedy; echo $RC)" 1
fi
openssl req -new -key "$T/p256.key" -subj "/CN=other/CN=c-twocn" -out "$T/c-twocn.csr"
cfrun thing create c-twocn --csr "$T/c-twocn.csr"
if [ "$RC" -eq 0 ]; then
	pem_of_cert "$(cert_id_for_thing c-twocn)" "$T/c-twocn.crt"
	expect_eq "a CSR with two CNs (other, c-twocn): if issued, the certificate has the one CN c-twocn" \
		"$(openssl x509 -in "$T/c-twocn.crt" -noout -subject -nameopt RFC2253,sep_multiline | grep -c 'CN=')/$(openssl x509 -in "$T/c-twocn.crt" -noout -subject -nameopt RFC2253)" \
		"1/subject=CN=c-twocn"
else
	expect_rc "a CSR with two CNs (other, c-twocn) is refused with exit 1" 1
fi

# ---- another thing's CSR
cfok thing create other
openssl req -new -key "$T/p256.key" -subj /CN=other -out "$T/other.csr"
refused c-wrongcn "$T/other.csr" "subject CN is another existing thing"
openssl req -new -key "$T/p256.key" -subj /CN=someone-else -out "$T/else.csr"
refused c-wrongcn2 "$T/else.csr" "subject CN is another name"
cfrun cert list --thing other --json
expect_eq "the thing 'other' got no certificate from its name in a CSR" "$(jpy 'len(d)' <<<"$OUT")" 0

# ---- broken signature: flip the last byte of the DER (inside the signature)
openssl req -new -key "$T/rsa.key" -subj /CN=c-badsig -out "$T/good-badsig.csr"
openssl req -in "$T/good-badsig.csr" -outform DER -out "$T/badsig.der"
python3 - "$T/badsig.der" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-1] ^= 0x01
open(p, "wb").write(bytes(b))
EOF
{ echo "-----BEGIN CERTIFICATE REQUEST-----"; base64 -w 64 "$T/badsig.der"; echo "-----END CERTIFICATE REQUEST-----"; } >"$T/badsig.csr"
check "the tampered CSR still parses" openssl req -in "$T/badsig.csr" -noout
expect_match "openssl rejects the tampered CSR's signature" \
	"$(openssl req -in "$T/badsig.csr" -noout -verify 2>&1 || true)" "verify failure"
refused c-badsig "$T/badsig.csr" "signature does not verify" "[Ss]ignature"
accepted c-badsig "$T/good-badsig.csr" "$T/rsa.key" "the same CSR untampered"

# ---- malformed input
printf -- '-----BEGIN CERTIFICATE REQUEST-----\nthis is not base64 at all!!\n-----END CERTIFICATE REQUEST-----\n' >"$T/garbage.csr"
refused c-garbage "$T/garbage.csr" "garbage inside the PEM markers"
head -n 4 "$T/c-ec.csr" >"$T/truncated.csr"
refused c-trunc "$T/truncated.csr" "PEM cut in the middle"
: >"$T/empty.csr"
refused c-empty "$T/empty.csr" "empty file"
head -c 4096 /dev/urandom >"$T/random.csr"
refused c-random "$T/random.csr" "random bytes"
cp "$T/p256.key" "$T/key-not-csr.csr"
refused c-keyfile "$T/key-not-csr.csr" "a private key, not a CSR"
refused c-missing "$T/does-not-exist.csr" "file does not exist"

# ---- key quality
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out "$T/rsa1024.key" 2>/dev/null
openssl req -new -key "$T/rsa1024.key" -subj /CN=c-rsa1024 -out "$T/c-rsa1024.csr"
refused c-rsa1024 "$T/c-rsa1024.csr" "RSA-1024 key" "RSA_KEY_TOO_SHORT|[Tt]oo short|1024"
openssl req -new -key "$T/rsa.key" -subj /CN=c-sha1 -sha1 -out "$T/c-sha1.csr"
check "the SHA-1 CSR really is sha1WithRSAEncryption" \
	bash -c "openssl req -in '$T/c-sha1.csr' -noout -text | quiet_grep sha1WithRSAEncryption"
refused c-sha1 "$T/c-sha1.csr" "SHA-1 signature" "WEAK_SIGNATURE|SHA-?1|sha1|[Ww]eak"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out "$T/k1.key" 2>/dev/null
openssl req -new -key "$T/k1.key" -subj /CN=c-k1 -out "$T/c-k1.csr"
refused c-k1 "$T/c-k1.csr" "curve secp256k1" "CURVE_NOT_ALLOWED|[Cc]urve|secp256k1"

finish
