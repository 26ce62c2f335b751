#!/usr/bin/env bash
# bad input around the data directory: a missing database is not recreated,
# a corrupted one is a clear error, a missing --dir is an error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
cfok thing create dev1 --bundle "$T/dev1"
cp -a "$D" "$T/pristine"
# reset_dir — D back to the pristine copy
reset_dir() { rm -rf "$T/data"; cp -a "$T/pristine" "$T/data"; D=$T/data; }

# ---- a relative --dir works from its parent
cd "$T"
cfraw --dir data thing list --json
expect_rc "a relative --dir (data, from its parent) exits 0" 0
expect_eq "  ... and lists dev1" "$(jpy '[t["name"] for t in d]' <<<"$OUT")" '["dev1"]'
cd "$CF_SOURCE_DIR"

# ---- missing database
rm -f "$D/certfleet.db" "$D/certfleet.db-wal" "$D/certfleet.db-shm"
for cmd in "cert list" "thing list" "ca list" "events verify" "events list" "group list"; do
	# shellcheck disable=SC2086
	cfrun $cmd
	expect_rc "$cmd with certfleet.db missing exits 1" 1
	expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
	check_not "  ... and does not recreate certfleet.db" test -e "$D/certfleet.db"
done
expect_match "the error names the database" "$ERR" "certfleet\.db|database"
cfrun thing create dev2 --bundle "$T/dev2"
expect_rc "thing create with certfleet.db missing exits 1" 1
check_not "  ... does not recreate certfleet.db" test -e "$D/certfleet.db"
check_not "  ... and writes no bundle" test -e "$T/dev2/device.key"

# ---- corrupted database: first 100 bytes overwritten
reset_dir
python3 - "$D/certfleet.db" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.write(b"\xde\xad\xbe\xef" * 25)
EOF
SUM=$(sha256sum <"$D/certfleet.db")
for cmd in "cert list" "thing list" "events verify"; do
	# shellcheck disable=SC2086
	cfrun $cmd
	expect_rc "$cmd on a database with a garbage header exits 1" 1
	expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
done
expect_eq "the corrupted file is left as it was" "$(sha256sum <"$D/certfleet.db")" "$SUM"

# ---- a file of random bytes
reset_dir
rm -f "$D/certfleet.db-wal" "$D/certfleet.db-shm"
head -c 65536 /dev/urandom >"$D/certfleet.db"
cfrun cert list
expect_rc "cert list on a file of random bytes exits 1" 1
expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
cfrun thing create dev3
expect_rc "thing create on a file of random bytes exits 1" 1

# ---- corruption in the middle of the database (page 2 onwards overwritten)
reset_dir
sqlite3 "$D/certfleet.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
PAGE=$(sqlite3 "$D/certfleet.db" 'PRAGMA page_size;')
python3 - "$D/certfleet.db" "$PAGE" <<'EOF'
import os, sys
path, page = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
with open(path, "r+b") as f:
    f.seek(page)
    f.write(os.urandom(size - page))
EOF
cfrun cert list --json
expect_fail "cert list on a database whose pages are garbage fails"
check "  ... without crashing (exit 1 or 2, not a signal)" test "$RC" -le 2
cfrun events verify
expect_fail "events verify on a database whose pages are garbage fails"

# ---- a valid SQLite file that is not a certfleet database
reset_dir
rm -f "$D/certfleet.db" "$D/certfleet.db-wal" "$D/certfleet.db-shm"
sqlite3 "$D/certfleet.db" 'CREATE TABLE shopping(item TEXT); INSERT INTO shopping VALUES ("milk");'
cfrun cert list
expect_fail "cert list on someone else's SQLite database fails"
expect_eq "  ... and leaves its table alone" "$(sqlite3 "$D/certfleet.db" 'SELECT item FROM shopping;')" milk

# ---- --dir problems
cfraw --dir "$T/no-such-dir" cert list
expect_rc "--dir pointing to a non-existent directory exits 1" 1
expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
check_not "  ... and does not create it" test -e "$T/no-such-dir"
cfraw --dir "$T/no-such-dir" thing create x --bundle "$T/x"
expect_rc "thing create with a non-existent --dir exits 1" 1
check_not "  ... and does not create it" test -e "$T/no-such-dir"
mkdir "$T/emptydir"
cfraw --dir "$T/emptydir" thing list
expect_rc "--dir pointing to an empty directory exits 1" 1
expect_eq "  ... and leaves it empty" "$(ls -A "$T/emptydir")" ""
cfraw --dir "$D/certfleet.conf" thing list
expect_fail "--dir pointing to a file fails"
unset CERTFLEET_DIR
cd "$T/emptydir"
cfraw thing list
cd "$T"
expect_rc "no --dir, no CERTFLEET_DIR, no ./certfleet-data: exits 1" 1
check_not "  ... and does not create ./certfleet-data" test -e "$T/emptydir/certfleet-data"

# ---- unreadable passphrase file for the intermediate (the issuer cannot sign)
reset_dir
mv "$D/private/$INT.pass" "$T/int.pass.away"
cfrun thing create dev4 --bundle "$T/dev4"
expect_rc "thing create with the issuer's passphrase file missing exits 1" 1
check_not "  ... and writes no bundle" test -e "$T/dev4/device.key"
cfrun thing describe dev4
expect_rc "  ... and leaves no thing dev4" 1
echo "wrong-passphrase" >"$D/private/$INT.pass"
chmod 600 "$D/private/$INT.pass"
cfrun thing create dev5 --bundle "$T/dev5"
expect_rc "thing create with a wrong issuer passphrase exits 1" 1
cfrun thing describe dev5
expect_rc "  ... and leaves no thing dev5" 1

finish
