#!/usr/bin/env bash
# events verify detects tampering: the table's triggers refuse UPDATE and
# DELETE; with the triggers dropped, an edited middle event and a deleted
# middle event each make verify exit 1 naming that event.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
for i in 1 2 3; do cfok thing create "t$i" --attr "n=$i" --bundle "$T/t$i"; done
cfok cert deactivate "$(cert_id_of "$T/t2/device.crt")"
cfok cert revoke "$(cert_id_of "$T/t3/device.crt")" --reason keyCompromise
cfok events verify
cfrun events list --json
N=$(jpy 'len(d)' <<<"$OUT")
M=$((N / 2))
check "enough events to tamper with the middle one (N=$N, M=$M)" test "$M" -gt 1 -a "$M" -lt "$N"

DB=$D/certfleet.db
# the events table and its sequence column, found through the schema
TABLE=$(sqlite3 "$DB" "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%event%' ORDER BY name='events' DESC, length(name) LIMIT 1;")
check "the database has an events table (found: '$TABLE')" test -n "$TABLE"
COLS=$(sqlite3 "$DB" "SELECT name FROM pragma_table_info('$TABLE');" | tr '\n' ' ')
SEQ=seq
for c in seq id; do case " $COLS " in *" $c "*) SEQ=$c; break ;; esac; done
check "the events table has seq and detail columns (columns: $COLS)" \
	bash -c "case ' $COLS ' in *' $SEQ '*' detail '*|*' detail '*' $SEQ '*) exit 0 ;; *) exit 1 ;; esac"
ROWS=$(sqlite3 "$DB" "SELECT count(*) FROM $TABLE;")
expect_eq "the table holds the $N events" "$ROWS" "$N"

# ---- the triggers protect the table
TRIGGERS=$(sqlite3 "$DB" "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='$TABLE';")
check "the events table has triggers (found: $(echo $TRIGGERS))" test -n "$TRIGGERS"
check_not "with the triggers in place, UPDATE of an event is refused" \
	sqlite3 "$DB" "UPDATE $TABLE SET detail='{\"tampered\":true}' WHERE $SEQ=$M;"
check_not "with the triggers in place, DELETE of an event is refused" \
	sqlite3 "$DB" "DELETE FROM $TABLE WHERE $SEQ=$M;"
expect_eq "  ... and the table still holds $N rows" "$(sqlite3 "$DB" "SELECT count(*) FROM $TABLE;")" "$N"
cfrun events verify
expect_rc "events verify still exits 0 after the refused attempts" 0

# copies for the deletion and time scenarios
cp -a "$D" "$T/copy"
cp -a "$D" "$T/copy-ts"

drop_triggers() { # drop_triggers DB
	local t
	for t in $(sqlite3 "$1" "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='$TABLE';"); do
		sqlite3 "$1" "DROP TRIGGER \"$t\";"
	done
}

# ---- scenario 1: edit the detail of event M
drop_triggers "$DB"
sqlite3 "$DB" "UPDATE $TABLE SET detail='{\"tampered\":true}' WHERE $SEQ=$M;"
expect_eq "the UPDATE went through once the triggers were dropped" \
	"$(sqlite3 "$DB" "SELECT detail FROM $TABLE WHERE $SEQ=$M;")" '{"tampered":true}'
cfrun events verify
expect_rc "events verify exits 1 after an event's detail was edited" 1
expect_match "  ... saying 'event log broken at event #$M'" "$OUT$ERR" "event log broken at event #$M([^0-9]|$)"
expect_nomatch "  ... and not claiming intact" "$OUT" "intact"

# ---- scenario 2: delete event M (in the copy)
D=$T/copy
DB=$D/certfleet.db
cfrun events verify
expect_rc "the copy verifies before the deletion" 0
drop_triggers "$DB"
sqlite3 "$DB" "DELETE FROM $TABLE WHERE $SEQ=$M;"
expect_eq "the DELETE went through once the triggers were dropped" \
	"$(sqlite3 "$DB" "SELECT count(*) FROM $TABLE;")" "$((N - 1))"
cfrun events verify
expect_rc "events verify exits 1 after a middle event was deleted" 1
expect_match "  ... naming the gap (event #$M missing, or #$((M + 1)) whose link breaks)" \
	"$OUT$ERR" "event log broken at event #($M|$((M + 1)))([^0-9]|$)"

# ---- scenario 3: move the time of event M+1 back by an hour (in another copy)
TS_COL=
for c in ts time created_at timestamp; do case " $COLS " in *" $c "*) TS_COL=$c; break ;; esac; done
check "the events table has a time column (columns: $COLS)" test -n "$TS_COL"
D=$T/copy-ts
DB=$D/certfleet.db
drop_triggers "$DB"
sqlite3 "$DB" "UPDATE $TABLE SET $TS_COL = $TS_COL - 3600 WHERE $SEQ=$((M + 1));"
cfrun events verify
expect_rc "events verify exits 1 after an event's time was changed" 1
expect_match "  ... naming event #$((M + 1))" "$OUT$ERR" "event log broken at event #$((M + 1))([^0-9]|$)"

finish
