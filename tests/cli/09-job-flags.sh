#!/usr/bin/env bash
# job flags: every bad flag of `job create-rotation`, `job cancel`, `job watch`
# and `job describe` is refused locally with exit 2 and a message naming the
# flag, before any request: no certfleetd runs here, so an error about the
# connection would mean the CLI tried to send. Good flags get as far as the
# connection (exit 1, "not running"), which proves they passed validation.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A port nothing listens on, so that a request that does go out fails fast.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cf_init "$T/data" --api-port "$PORT"

# refused DESC FLAG ARGS... — exit 2, stderr names FLAG, no connection attempted, nothing on stdout.
refused() {
	local desc=$1 flag=$2
	shift 2
	cfrun "$@"
	if [ "$RC" -eq 2 ] && printf '%s\n' "$ERR" | quiet_grep -F -- "$flag" &&
		! printf '%s\n' "$ERR" | quiet_grep -iE 'not running|connect|HTTP' && [ -z "$OUT" ]; then
		ok "$desc: exit 2 naming $flag, nothing sent"
	else
		notok "$desc: exit 2 naming $flag, nothing sent" "$(show)"
	fi
}

R=(job create-rotation --thing dev1)

# ---- targets
refused "a thing name with a space" --thing job create-rotation --thing "dev 1"
refused "an empty group name" --group job create-rotation --group ""
refused "a group name with a slash" --group job create-rotation --group "a/b"
refused "an issuer name with a control character" --issuer job create-rotation --issuer $'int\x01'
refused "--expiring-within 0" --expiring-within job create-rotation --expiring-within 0
refused "--expiring-within -5" --expiring-within job create-rotation --expiring-within -5
refused "--expiring-within abc" --expiring-within job create-rotation --expiring-within abc
refused "--expiring-within beyond 10 years" --expiring-within job create-rotation --expiring-within 99999
cfrun job create-rotation --continuous
expect_rc "no target at all exits 2" 2
expect_match "  ... naming the target flags" "$ERR" "--thing.*--group"

# ---- algorithms
refused "an unknown key algorithm" --key-algorithm "${R[@]}" --key-algorithm DSA-1024
refused "an unknown signing algorithm" --signing-algorithm "${R[@]}" --signing-algorithm MD5WITHRSA
refused "a mismatched algorithm pair" --signing-algorithm "${R[@]}" --key-algorithm RSA-2048 \
	--signing-algorithm ECDSA-WITH-SHA256
expect_match "  ... naming both algorithms" "$ERR" "RSA-2048.*ECDSA-WITH-SHA256|ECDSA-WITH-SHA256.*RSA-2048"

# ---- rollout
refused "--max-per-minute 0" --max-per-minute "${R[@]}" --max-per-minute 0
refused "--max-per-minute 1001" --max-per-minute "${R[@]}" --max-per-minute 1001
refused "--max-per-minute 1.5" --max-per-minute "${R[@]}" --max-per-minute 1.5
refused "--max-per-minute given twice" --max-per-minute "${R[@]}" --max-per-minute 5 --max-per-minute 6
refused "--ramp-base 0" --ramp-base "${R[@]}" --ramp-base 0 --ramp-factor 2 --ramp-after-notified 5
refused "--ramp-factor 1.0 (below 1.1)" --ramp-factor "${R[@]}" --ramp-base 2 --ramp-factor 1.0 --ramp-after-notified 5
refused "--ramp-factor 5.5 (above 5)" --ramp-factor "${R[@]}" --ramp-base 2 --ramp-factor 5.5 --ramp-after-notified 5
refused "--ramp-factor nan" --ramp-factor "${R[@]}" --ramp-base 2 --ramp-factor nan --ramp-after-notified 5
refused "--ramp-after-notified 0" --ramp-after-notified "${R[@]}" --ramp-base 2 --ramp-factor 2 --ramp-after-notified 0
refused "--ramp-after-succeeded x" --ramp-after-succeeded "${R[@]}" --ramp-base 2 --ramp-factor 2 --ramp-after-succeeded x
refused "a ramp without --ramp-base" --ramp-base "${R[@]}" --ramp-factor 2 --ramp-after-notified 5
refused "a ramp without --ramp-factor" --ramp-factor "${R[@]}" --ramp-base 2 --ramp-after-notified 5
refused "a ramp without its criterion" --ramp-after "${R[@]}" --ramp-base 2 --ramp-factor 2
refused "a ramp with both criteria" --ramp-after "${R[@]}" --ramp-base 2 --ramp-factor 2 \
	--ramp-after-notified 5 --ramp-after-succeeded 5
refused "--ramp-base above --max-per-minute" --ramp-base "${R[@]}" --max-per-minute 10 --ramp-base 20 \
	--ramp-factor 2 --ramp-after-notified 5

# ---- abort
refused "--abort without its fields" --abort "${R[@]}" --abort FAILED
refused "--abort with too many fields" --abort "${R[@]}" --abort FAILED:10:5:1
refused "--abort with an unknown type" --abort "${R[@]}" --abort BROKEN:10:5
refused "--abort at 0 percent" --abort "${R[@]}" --abort FAILED:0:5
refused "--abort above 100 percent" --abort "${R[@]}" --abort FAILED:101:5
refused "--abort with minimum 0" --abort "${R[@]}" --abort FAILED:10:0
refused "--abort given nine times" --abort "${R[@]}" --abort ALL:10:1 --abort ALL:10:2 --abort ALL:10:3 \
	--abort ALL:10:4 --abort ALL:10:5 --abort ALL:10:6 --abort ALL:10:7 --abort ALL:10:8 --abort ALL:10:9

# ---- retry
refused "--retry REJECTED" --retry "${R[@]}" --retry REJECTED:1
refused "--retry with 11 retries" --retry "${R[@]}" --retry FAILED:11
refused "--retry with -1 retries" --retry "${R[@]}" --retry FAILED:-1
refused "--retry without a count" --retry "${R[@]}" --retry FAILED
refused "--retry with one type twice" --retry "${R[@]}" --retry FAILED:1 --retry FAILED:2
refused "--retry with a lowercase type" --retry "${R[@]}" --retry failed:1

# ---- timeouts
refused "--in-progress-timeout 0" --in-progress-timeout "${R[@]}" --in-progress-timeout 0
refused "--in-progress-timeout 8d (over a week)" --in-progress-timeout "${R[@]}" --in-progress-timeout 8d
refused "--in-progress-timeout 10y" --in-progress-timeout "${R[@]}" --in-progress-timeout 10y
refused "--step-timeout 5mm" --step-timeout "${R[@]}" --step-timeout 5mm
refused "--step-timeout -30" --step-timeout "${R[@]}" --step-timeout -30
refused "--step-timeout empty" --step-timeout "${R[@]}" --step-timeout ""

# ---- schedule
refused "--start-at that is not a time" --start-at "${R[@]}" --start-at tomorrow
refused "--start-at with a month 13" --start-at "${R[@]}" --start-at 2027-13-01T00:00:00Z
refused "--end-at that is not a time" --end-at "${R[@]}" --end-at "next week"
refused "--end-at before --start-at" --end-at "${R[@]}" --start-at 2027-01-02T00:00:00Z --end-at 2027-01-01T00:00:00Z
refused "--end-at equal to --start-at" --end-at "${R[@]}" --start-at 2027-01-02T00:00:00Z --end-at 2027-01-02T00:00:00Z
refused "--end-behavior unknown" --end-behavior "${R[@]}" --end-at 2027-01-02T00:00:00Z --end-behavior STOP
refused "--end-behavior without --end-at" --end-behavior "${R[@]}" --end-behavior CANCEL
refused "--window with hour 25" --window "${R[@]}" --window sat@25:00+60
refused "--window with an unknown day" --window "${R[@]}" --window someday@22:00+60
refused "--window without a duration" --window "${R[@]}" --window sat@22:00
refused "--window of 0 minutes" --window "${R[@]}" --window sat@22:00+0

# ---- job id, comment
refused "--job-id with a slash" --job-id "${R[@]}" --job-id a/b
refused "--job-id of 65 characters" --job-id "${R[@]}" --job-id "$(printf 'j%.0s' $(seq 1 65))"
refused "--comment empty" --comment "${R[@]}" --comment ""
refused "--comment with a newline" --comment "${R[@]}" --comment $'two\nlines'
refused "--comment over 1024 bytes" --comment "${R[@]}" --comment "$(printf 'c%.0s' $(seq 1 1025))"

# ---- unknown options and missing values
refused "an unknown option" --frobnicate "${R[@]}" --frobnicate
refused "--abort without a value" --abort "${R[@]}" --abort

# ---- cancel, watch, describe
refused "job cancel with a bad id" jobId job cancel "bad/id"
refused "job cancel with a bad --comment" --comment job cancel job1 --comment $'a\x07b'
refused "job cancel with an unknown option" --now job cancel job1 --now
cfrun job cancel
expect_rc "job cancel without an id exits 2" 2
refused "job watch --interval 0" --interval job watch job1 --interval 0
refused "job watch --interval abc" --interval job watch job1 --interval abc
refused "job watch --timeout 0" --timeout job watch job1 --timeout 0
refused "job watch --timeout 5x" --timeout job watch job1 --timeout 5x
refused "job watch with a bad id" jobId job watch "a b"
cfrun job watch
expect_rc "job watch without an id exits 2" 2
refused "job describe with a bad id" jobId job describe "x;y"

# ---- --help names the new flags
cfrun job create-rotation --help
expect_rc "job create-rotation --help exits 0" 0
for f in --group --issuer --expiring-within --weak-key --continuous --max-per-minute --ramp-base \
	--ramp-factor --ramp-after-notified --ramp-after-succeeded --abort --retry \
	--in-progress-timeout --step-timeout --start-at --end-at --end-behavior --window --comment; do
	expect_match "  ... names $f" "$OUT" "$f"
done
cfrun job watch --help
expect_match "job watch --help names --interval and --timeout" "$OUT" "--interval.*--timeout"
cfrun job cancel --help
expect_match "job cancel --help names --force" "$OUT" "--force"

# ---- good flags pass validation and only then need the daemon (exit 1, not 2)
passes() { # passes DESC ARGS...
	local desc=$1
	shift
	cfrun "$@"
	if [ "$RC" -eq 1 ] && printf '%s\n' "$ERR" | quiet_grep -F "not running"; then
		ok "$desc: valid, so it tries certfleetd (exit 1, not running)"
	else
		notok "$desc: valid, so it tries certfleetd (exit 1, not running)" "$(show)"
	fi
}
passes "every create-rotation flag at once" job create-rotation --thing dev1 --thing dev2 --group fleet \
	--issuer "$INT" --expiring-within 30 --weak-key --continuous --key-algorithm ED25519 \
	--max-per-minute 100 --ramp-base 5 --ramp-factor 1.5 --ramp-after-succeeded 10 \
	--abort FAILED:20:10 --abort ALL:50:4 --retry FAILED:3 --retry TIMED_OUT:1 \
	--in-progress-timeout 2h --step-timeout 90 --start-at 2027-01-01T00:00:00Z \
	--end-at 2027-01-08T00:00:00Z --end-behavior FORCE_CANCEL --window sat@22:00+240 \
	--window daily@02:00+60 --job-id rot-all-flags --comment "quarterly rotation" --json
passes "a ramp without --max-per-minute" job create-rotation --group fleet --ramp-base 1 \
	--ramp-factor 5 --ramp-after-notified 1
passes "a timeout of exactly a week" job create-rotation --weak-key --in-progress-timeout 7d --step-timeout 604800s
passes "job cancel --force --comment" job cancel job1 --force --comment "stop it"
passes "job watch --interval 0.5 --timeout 1m" job watch job1 --interval 0.5 --timeout 1m
passes "job describe" job describe job1

finish
