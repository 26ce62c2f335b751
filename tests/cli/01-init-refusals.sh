#!/usr/bin/env bash
# init refusals: a second init into the same directory, no passphrase without
# a terminal, an empty or missing passphrase file; the root is never the issuer.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(umask 077; printf 'root-%s\n' "$(openssl rand -hex 16)" >"$PASS_FILE")
ROOT_PASS=$(head -n1 "$PASS_FILE")

# ---- no passphrase and no terminal: fails, creates nothing
cfraw init --dir "$T/nopass" --ca-key-algorithm ECDSA-P256
expect_fail "init without --passphrase-file and without a terminal fails"
expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
check_not "  ... and creates no certfleet.conf" test -e "$T/nopass/certfleet.conf"
check_not "  ... and creates no certfleet.db" test -e "$T/nopass/certfleet.db"
check "  ... and leaves no directory behind (or an empty one)" \
	bash -c "[ ! -e '$T/nopass' ] || [ -z \"\$(ls -A '$T/nopass')\" ]"

# ---- empty passphrase file: refused
: >"$T/empty.pass"
chmod 600 "$T/empty.pass"
cfraw init --dir "$T/emptypass" --passphrase-file "$T/empty.pass" --ca-key-algorithm ECDSA-P256
expect_fail "init with an empty passphrase file fails"
expect_match "  ... saying it is about the passphrase" "$ERR" "[Pp]assphrase"
check "  ... and creates nothing" \
	bash -c "[ ! -e '$T/emptypass' ] || [ -z \"\$(ls -A '$T/emptypass')\" ]"
printf '\n' >"$T/newline.pass"
cfraw init --dir "$T/nlpass" --passphrase-file "$T/newline.pass" --ca-key-algorithm ECDSA-P256
expect_fail "init with a passphrase file holding only a newline fails"

# ---- missing passphrase file
cfraw init --dir "$T/missingpass" --passphrase-file "$T/does-not-exist.pass" --ca-key-algorithm ECDSA-P256
expect_fail "init with a missing passphrase file fails"
check "  ... and creates nothing" \
	bash -c "[ ! -e '$T/missingpass' ] || [ -z \"\$(ls -A '$T/missingpass')\" ]"

# ---- bad option values are usage errors, nothing created
cfraw init --dir "$T/badalg" --passphrase-file "$PASS_FILE" --ca-key-algorithm RSA-1024
expect_rc "init --ca-key-algorithm RSA-1024 is a usage error (exit 2)" 2
expect_match "  ... naming the value" "$ERR" "RSA-1024"
check_not "  ... and creates no certfleet.db" test -e "$T/badalg/certfleet.db"
cfraw init --dir "$T/baddays" --passphrase-file "$PASS_FILE" --ca-validity-days notanumber
expect_rc "init --ca-validity-days notanumber is a usage error (exit 2)" 2
check_not "  ... and creates no certfleet.db" test -e "$T/baddays/certfleet.db"

# ---- a good init, then a second one into the same directory
cf_init "$T/data"
ok "init into a fresh directory"
BEFORE=$(tree_digest "$D")
cfraw init --dir "$D" --passphrase-file "$PASS_FILE" --ca-key-algorithm ECDSA-P256 --intermediate-name other
expect_rc "a second init into the same directory exits 1" 1
expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
expect_eq "  ... and leaves every file byte-identical" "$(tree_digest "$D")" "$BEFORE"
cfraw ca init --dir "$D" --passphrase-file "$PASS_FILE" --ca-key-algorithm ECDSA-P256
expect_rc "'ca init' into the same directory exits 1 too" 1
expect_eq "  ... and leaves every file byte-identical" "$(tree_digest "$D")" "$BEFORE"

# a directory holding only a certfleet.db (no conf) is refused as well
mkdir "$T/dbonly"
echo "not a database" >"$T/dbonly/certfleet.db"
DB_SUM=$(sha256sum <"$T/dbonly/certfleet.db")
cfraw init --dir "$T/dbonly" --passphrase-file "$PASS_FILE" --ca-key-algorithm ECDSA-P256
expect_rc "init into a directory holding a certfleet.db exits 1" 1
expect_eq "  ... and leaves that file alone" "$(sha256sum <"$T/dbonly/certfleet.db")" "$DB_SUM"
check_not "  ... and writes no certfleet.conf" test -e "$T/dbonly/certfleet.conf"

# ---- 'ca init' is the same as init
cfraw ca init --dir "$T/cainit" --passphrase-file "$PASS_FILE" --ca-key-algorithm ECDSA-P256
expect_rc "'ca init --dir NEW' exits 0" 0
check "  ... and writes the same layout" test -s "$T/cainit/ca/root.key" -a -s "$T/cainit/certfleet.db"

# ---- the issuer can never be the root (the daemon must not hold a root key)
cfrun ca set-issuer root
expect_rc "ca set-issuer root exits 1" 1
expect_match "  ... saying a root cannot issue" "$ERR" "[Rr]oot"
cfrun ca list --json
expect_eq "  ... and $INT stays the issuer" \
	"$(jpy '[c["name"] for c in d if c["issuer"]]' <<<"$OUT")" "[\"$INT\"]"
check_not "certfleet.conf does not name the root key" grep -q 'root\.key' "$D/certfleet.conf"
cfrun ca set-issuer no-such-ca
expect_rc "ca set-issuer of an unknown CA exits 1" 1

# the online signer refuses a root key named in certfleet.conf (docs/config.md: issuer_key)
cp "$D/certfleet.conf" "$T/conf.orig"
grep -v '^[[:space:]]*issuer_key[[:space:]]*=' "$T/conf.orig" >"$D/certfleet.conf" || true
echo "issuer_key = ca/root.key" >>"$D/certfleet.conf"
cfrun thing create via-root --bundle "$T/via-root"
expect_rc "thing create with issuer_key = ca/root.key exits 1" 1
expect_match "  ... refusing to load the root's key" "$ERR" "refus.*root"
check_not "  ... and writes no bundle" test -e "$T/via-root/device.crt"
cfrun thing describe via-root
expect_rc "  ... and leaves no thing behind" 1
# the same key under another name, with its passphrase: refused once loaded (public half is the root's)
cp "$D/ca/root.key" "$D/ca/disguised.key"
cp "$PASS_FILE" "$D/private/disguised.pass"
chmod 600 "$D/private/disguised.pass"
grep -vE '^[[:space:]]*issuer_(key|passphrase_file)[[:space:]]*=' "$T/conf.orig" >"$D/certfleet.conf" || true
printf 'issuer_key = ca/disguised.key\nissuer_passphrase_file = private/disguised.pass\n' >>"$D/certfleet.conf"
cfrun thing create via-disguised --bundle "$T/via-disguised"
expect_rc "thing create with the root key copied to ca/disguised.key exits 1" 1
expect_match "  ... naming the root" "$ERR" "[Rr]oot"
check_not "  ... and writes no bundle" test -e "$T/via-disguised/device.crt"
cfrun cert list --json
expect_eq "  ... and no certificate was issued by either" "$(jpy 'len(d)' <<<"$OUT")" 0
cp "$T/conf.orig" "$D/certfleet.conf"
rm -f "$D/ca/disguised.key" "$D/private/disguised.pass"
cfrun thing create via-int --bundle "$T/via-int"
expect_rc "with the configuration restored, thing create works" 0

# the passphrase never reached the configuration or any file
check_not "the root passphrase is in no file under DIR" grep -rqaF "$ROOT_PASS" "$D"

finish
