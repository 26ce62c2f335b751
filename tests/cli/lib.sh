# tests/cli/lib.sh — shared helpers for the CLI scenarios (sourced, not run).
#
# A scenario does:
#   source "$(dirname "$0")/lib.sh"
#   cf_init "$T/data"            # a fresh data directory in D (ECDSA CAs, fast)
#   cfrun thing create dev1 --bundle "$T/b1"
#   expect_rc "thing create succeeds" 0
#   ...
#   finish                       # prints "N passed, M failed", exits 1 if any failed
#
# Environment (set by CTest, defaults for a manual run from the repository):
#   CF_SOURCE_DIR  the repository root
#   CF_BIN_DIR     the directory holding the certfleet binary (may be an ASan build)
#
# Every certfleet call runs detached from any terminal (setsid -w, stdin
# /dev/null) so that a missing --passphrase-file fails instead of prompting,
# and under a timeout so that a hang fails the check instead of the whole run.
# A sanitizer report on stderr is a failed check on its own.

set -euo pipefail

CF_SOURCE_DIR=${CF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CF_BIN_DIR=${CF_BIN_DIR:-$CF_SOURCE_DIR/build/bin}
CF=$CF_BIN_DIR/certfleet
CF_TIMEOUT=${CF_TIMEOUT:-120}
export LC_ALL=C

if [ ! -x "$CF" ]; then
	echo "FATAL: $CF is missing or not executable (build first: make)" >&2
	exit 1
fi
for tool in openssl python3 sqlite3 setsid timeout sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || { echo "FATAL: $tool is required" >&2; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/cf-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
D=$T/data            # the scenario's data directory (cf_init fills it)
PASS_FILE=$T/root.pass
INT=int1             # the first intermediate's name (cf_init passes it)
PASSED=0
FAILED=0
RC=0
OUT=
ERR=

# quiet_grep ARGS... — grep -q that reads all of its input. With pipefail, grep
# -q's early exit can kill the writer (SIGPIPE) and fail the pipeline at random.
quiet_grep() { grep "$@" >/dev/null; }
export -f quiet_grep # also for the checks that run under bash -c

# ---- reporting -------------------------------------------------------------

ok() {
	PASSED=$((PASSED + 1))
	echo "ok - $*"
}

notok() { # notok MSG [DETAIL...]
	FAILED=$((FAILED + 1))
	echo "not ok - $1"
	shift
	local line
	for line in "$@"; do
		printf '%s\n' "$line" | sed 's/^/#   /'
	done
}

die() {
	echo "FATAL: $*" >&2
	[ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/#   stdout: /' >&2
	[ -n "$ERR" ] && printf '%s\n' "$ERR" | sed 's/^/#   stderr: /' >&2
	echo "$PASSED passed, $((FAILED + 1)) failed"
	exit 1
}

finish() {
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

# ---- running certfleet -----------------------------------------------------

# cfraw ARGS... — runs certfleet with exactly ARGS; sets RC, OUT, ERR.
cfraw() {
	set +e
	timeout -k 5 "$CF_TIMEOUT" setsid -w "$CF" "$@" </dev/null >"$T/.out" 2>"$T/.err"
	RC=$?
	set -e
	cat "$T/.out" "$T/.err" >>"$T/.all-output"
	OUT=$(cat "$T/.out")
	ERR=$(cat "$T/.err")
	if [ "$RC" -eq 124 ]; then
		notok "certfleet $* finished within ${CF_TIMEOUT}s (timed out)"
	fi
	if grep -qE 'Sanitizer|runtime error:' "$T/.err"; then
		notok "certfleet $* ran clean under the sanitizers" "$ERR"
	fi
	return 0
}

# cfrun ARGS... — certfleet --dir "$D" ARGS...
cfrun() { cfraw --dir "$D" "$@"; }

# cfok ARGS... — a setup step: certfleet --dir "$D" ARGS... must succeed, else the scenario stops.
cfok() {
	cfrun "$@"
	[ "$RC" -eq 0 ] || die "setup step 'certfleet $*' exited $RC"
}

# all_output — everything every certfleet call of this scenario printed so far.
all_output() { cat "$T/.all-output" 2>/dev/null || true; }

# ---- checks ------------------------------------------------------------------

show() { # the last command's output, for a failure message
	echo "exit $RC"
	[ -n "$OUT" ] && printf 'stdout: %s\n' "$OUT" | head -20
	[ -n "$ERR" ] && printf 'stderr: %s\n' "$ERR" | head -20
	return 0
}

# expect_rc MSG WANT — the last certfleet call exited WANT.
expect_rc() {
	if [ "$RC" -eq "$2" ]; then ok "$1"; else notok "$1 (want exit $2)" "$(show)"; fi
}

# expect_fail MSG — the last certfleet call exited non-zero (and did not crash).
expect_fail() {
	if [ "$RC" -ne 0 ] && [ "$RC" -lt 124 ]; then ok "$1"; else notok "$1 (want a failure exit)" "$(show)"; fi
}

# expect_rc_in MSG CODE... — the last certfleet call exited with one of CODEs.
expect_rc_in() {
	local msg=$1 c
	shift
	for c in "$@"; do
		if [ "$RC" -eq "$c" ]; then ok "$msg"; return 0; fi
	done
	notok "$msg (want exit in: $*)" "$(show)"
}

# expect_eq MSG ACTUAL EXPECTED
expect_eq() {
	if [ "$2" == "$3" ]; then ok "$1"; else notok "$1" "expected: $3" "actual:   $2"; fi
}

expect_ne() {
	if [ "$2" != "$3" ]; then ok "$1"; else notok "$1" "both: $2"; fi
}

# expect_match MSG TEXT ERE — TEXT matches the extended regex (grep -E, any line).
expect_match() {
	if printf '%s\n' "$2" | quiet_grep -E -- "$3"; then ok "$1"; else notok "$1" "pattern: $3" "text: $(printf '%s' "$2" | head -c 1500)"; fi
}

expect_nomatch() {
	if printf '%s\n' "$2" | quiet_grep -E -- "$3"; then notok "$1" "unexpected pattern: $3" "text: $(printf '%s' "$2" | head -c 1500)"; else ok "$1"; fi
}

# check MSG CMD... — CMD succeeds.
check() {
	local msg=$1
	shift
	if "$@" >"$T/.chk" 2>&1; then ok "$msg"; else notok "$msg" "command: $*" "$(head -c 1500 "$T/.chk")"; fi
}

# check_not MSG CMD... — CMD fails.
check_not() {
	local msg=$1
	shift
	if "$@" >"$T/.chk" 2>&1; then notok "$msg" "command unexpectedly succeeded: $*" "$(head -c 1500 "$T/.chk")"; else ok "$msg"; fi
}

# expect_error_line MSG — stderr of the last call is the contract's "certfleet: <what>: <why>".
expect_error_line() {
	if printf '%s\n' "$ERR" | quiet_grep -E '^certfleet: .+: .+'; then ok "$1"; else notok "$1 (want 'certfleet: <what>: <why>' on stderr)" "$(show)"; fi
}

# ---- JSON --------------------------------------------------------------------

# jpy EXPR — evaluates a Python expression over the JSON on stdin (bound to d).
# Prints strings bare, booleans as true/false, None as null, lists/dicts as JSON.
# Invalid JSON prints "<invalid JSON ...>" (so comparisons fail with a message).
jpy() {
	python3 -c '
import json, sys
raw = sys.stdin.read()
try:
    d = json.loads(raw)
except Exception as e:
    print("<invalid JSON: %s: %r>" % (e, raw[:200])); sys.exit(0)
try:
    r = eval(sys.argv[1])
except Exception as e:
    print("<error evaluating %s: %r>" % (sys.argv[1], e)); sys.exit(0)
if isinstance(r, bool): print("true" if r else "false")
elif r is None: print("null")
elif isinstance(r, (list, dict)): print(json.dumps(r, sort_keys=True))
else: print(r)
' "$1"
}

# ---- data directory and PKI helpers -------------------------------------------

# cf_init DIR [EXTRA INIT ARGS...] — a fresh data directory (D=DIR) with ECDSA CAs.
cf_init() {
	D=$1
	shift
	if [ ! -f "$PASS_FILE" ]; then
		(umask 077; printf 'root-%s\n' "$(openssl rand -hex 16)" >"$PASS_FILE")
	fi
	cfraw init --dir "$D" --passphrase-file "$PASS_FILE" --ca-key-algorithm ECDSA-P256 \
		--intermediate-name "$INT" --device-validity-days 90 "$@"
	[ "$RC" -eq 0 ] || die "certfleet init --dir $D exited $RC"
}

# a wrong root passphrase file
wrong_pass_file() {
	local f=$T/wrong.pass
	(umask 077; echo "not-the-root-passphrase-$$" >"$f")
	echo "$f"
}

# cert_id_of PEMFILE — lowercase hex SHA-256 of the certificate's DER.
cert_id_of() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }

# serial_of PEMFILE — the serial, lowercase hex, no leading zeros.
serial_of() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | norm_serial; echo; }

# crl_number CRLFILE — the CRL number in decimal (0 if none or unreadable).
crl_number() {
	local n
	n=$(openssl crl -in "$1" -noout -crlnumber 2>/dev/null | cut -d= -f2)
	python3 -c 'import sys; print(int(sys.argv[1], 0) if sys.argv[1].startswith("0x") else int(sys.argv[1] or "0", 16))' "${n:-0}" 2>/dev/null || echo 0
}

# norm_serial — stdin serial (hex, maybe with colons or 0x) to lowercase hex without leading zeros.
norm_serial() { tr -d ':\n ' | tr 'A-F' 'a-f' | sed -e 's/^0x//' -e 's/^0*//'; }

# crl_serials CRLFILE — the revoked serials in a CRL, normalised, one per line.
crl_serials() {
	{ openssl crl -in "$1" -noout -text 2>/dev/null || true; } | sed -n 's/^ *Serial Number: *//p' | while read -r s; do
		printf '%s' "$s" | norm_serial
		echo
	done
}

# pub_of_key KEY / pub_of_cert CRT — the SPKI in PEM, to compare.
pub_of_key() { openssl pkey -in "$1" -pubout; }
pub_of_cert() { openssl x509 -in "$1" -noout -pubkey; }

# cert_id_for_thing NAME — the first certificate id of a thing from `cert list --json`.
cert_id_for_thing() {
	cfrun cert list --thing "$1" --json
	[ "$RC" -eq 0 ] || die "cert list --thing $1 exited $RC"
	jpy 'd[0]["id"] if d else ""' <<<"$OUT"
}

# tree_digest DIR — names, modes and contents of every file under DIR, one line each.
tree_digest() {
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum
	 cd "$1" && find . -printf '%p %m %y\n' | sort)
}

# thing_names — the names from `thing list --json`, sorted, space-separated.
thing_names() {
	cfrun thing list --json
	[ "$RC" -eq 0 ] || die "thing list exited $RC"
	jpy '" ".join(sorted(t["name"] for t in d))' <<<"$OUT"
}
