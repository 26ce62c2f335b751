#!/usr/bin/env bash
# thing create/list/describe/delete: attributes, duplicates, unknown things
# and groups, invalid names, delete refused while a certificate is live.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"

# ---- create, list, describe
cfrun thing create t1 --attr model=x1 --attr site=berlin
expect_rc "thing create t1 --attr model=x1 --attr site=berlin (no certificate) exits 0" 0
cfrun thing describe t1 --json
expect_rc "thing describe t1 --json exits 0" 0
expect_eq "t1: name" "$(jpy 'd["name"]' <<<"$OUT")" t1
expect_eq "t1: attributes" "$(jpy 'd["attributes"]' <<<"$OUT")" '{"model": "x1", "site": "berlin"}'
expect_eq "t1: no certificates" "$(jpy 'd["certificates"]' <<<"$OUT")" '[]'
expect_eq "t1: no groups" "$(jpy 'd["groups"]' <<<"$OUT")" '[]'
cfrun thing describe t1
expect_rc "thing describe t1 (text) exits 0" 0
expect_match "  ... shows the attribute" "$OUT" "model"

cfrun thing create t2 --bundle "$T/t2"
expect_rc "thing create t2 --bundle exits 0" 0
cfrun thing list --json
expect_rc "thing list --json exits 0" 0
expect_eq "thing list: t1 and t2" "$(jpy 'sorted(t["name"] for t in d)' <<<"$OUT")" '["t1", "t2"]'
expect_eq "thing list: t1 has no activeCertificate" \
	"$(jpy '[t["activeCertificate"] for t in d if t["name"] == "t1"][0]' <<<"$OUT")" null
expect_eq "thing list: t2's activeCertificate is its certificate's id" \
	"$(jpy '[t["activeCertificate"] for t in d if t["name"] == "t2"][0]' <<<"$OUT")" "$(cert_id_of "$T/t2/device.crt")"
expect_eq "thing list: entries carry no certificates array" \
	"$(jpy 'any("certificates" in t for t in d)' <<<"$OUT")" false
cfrun thing describe t2 --json
expect_eq "thing describe t2: one certificate with the bundle's id" \
	"$(jpy '[c["id"] for c in d["certificates"]]' <<<"$OUT")" "[\"$(cert_id_of "$T/t2/device.crt")\"]"
cfrun thing list
expect_rc "thing list (text) exits 0" 0
expect_match "  ... names t2" "$OUT" "t2"

# attribute values with quotes, backslashes, '=' and non-ASCII survive as JSON
cfrun thing create tq --attr 'note=he said "hi" \ ok' --attr 'expr=a=b' --attr 'city=Zürich' --attr 'empty='
expect_rc "thing create with quotes, backslash, '=' and UTF-8 in attribute values exits 0" 0
cfrun thing describe tq --json
expect_eq "  ... and thing describe --json returns them exactly" \
	"$(jpy 'd["attributes"] == {"note": "he said \"hi\" \\ ok", "expr": "a=b", "city": "Z\u00fcrich", "empty": ""}' <<<"$OUT")" true
cfrun thing list --json
expect_eq "  ... and thing list --json still parses" "$(jpy '"tq" in [t["name"] for t in d]' <<<"$OUT")" true
cfok thing delete tq

# ---- duplicates and unknowns
BEFORE=$(thing_names)
cfrun thing create t1
expect_rc "a duplicate thing name exits 1" 1
expect_error_line "  ... with a 'certfleet: <what>: <why>' line"
cfrun thing create t2 --bundle "$T/t2-again"
expect_rc "a duplicate thing name with --bundle exits 1" 1
check_not "  ... and writes no bundle" test -e "$T/t2-again/device.key"
cfrun cert list --thing t2 --json
expect_eq "  ... and t2 still has exactly one certificate" "$(jpy 'len(d)' <<<"$OUT")" 1
cfrun thing describe nosuch
expect_rc "thing describe of an unknown thing exits 1" 1
expect_match "  ... naming it" "$ERR" "nosuch"
cfrun thing describe nosuch --json
expect_rc "thing describe --json of an unknown thing exits 1" 1
cfrun thing delete nosuch
expect_rc "thing delete of an unknown thing exits 1" 1
cfrun thing create t3 --group nosuchgroup
expect_rc "thing create --group of an unknown group exits 1" 1
expect_match "  ... naming the group" "$ERR" "nosuchgroup"
cfrun thing create t3 --group nosuchgroup --bundle "$T/t3"
expect_rc "thing create --group unknown --bundle exits 1" 1
check_not "  ... and writes no bundle" test -e "$T/t3/device.key"
expect_eq "no thing created by the refused commands" "$(thing_names)" "$BEFORE"
cfrun cert list --json
expect_eq "  ... and no certificate either" "$(jpy 'len(d)' <<<"$OUT")" 1

# ---- invalid names: usage or failure, nothing created
LONG=$(printf 'a%.0s' $(seq 1 200))
for bad in "has space" "with/slash" "$LONG" "" "semi;colon" "../up" "ünïcode"; do
	cfrun thing create "$bad"
	expect_rc_in "thing create '${bad:0:20}' (invalid name) is refused" 1 2
done
cfrun thing create "with/slash" --bundle "$T/slash"
expect_rc_in "thing create 'with/slash' --bundle is refused" 1 2
check_not "  ... and writes no bundle" test -e "$T/slash/device.key"
expect_eq "no thing created by the invalid names" "$(thing_names)" "$BEFORE"
MAXNAME=$(printf 'b%.0s' $(seq 1 128))
cfrun thing create "$MAXNAME"
expect_rc "a 128-character name (the maximum) is accepted" 0
cfrun thing create "ok_name-1.2:3"
expect_rc "a name using every allowed punctuation (_ - . :) is accepted" 0
cfrun thing create t4 --attr noequals
expect_rc "thing create --attr without '=' is a usage error (exit 2)" 2
cfrun thing create
expect_rc "thing create without a name is a usage error (exit 2)" 2
expect_match "  ... with usage on stderr" "$ERR" "[Uu]sage"
cfrun thing create t5 --validity-days abc
expect_rc "thing create --validity-days abc is a usage error (exit 2)" 2
cfrun thing create t5 --nosuch-option
expect_rc "thing create --nosuch-option is a usage error (exit 2)" 2
check_not "t4 and t5 were not created" bash -c "echo '$(thing_names)' | quiet_grep -w 't[45]'"

# ---- delete
cfrun thing delete t1
expect_rc "thing delete t1 (no certificate) exits 0" 0
cfrun thing describe t1
expect_rc "  ... then thing describe t1 exits 1" 1
T2_ID=$(cert_id_of "$T/t2/device.crt")
cfrun thing delete t2
expect_rc "thing delete t2 while its certificate is ACTIVE exits 1" 1
expect_match "  ... naming the reason (ACTIVE)" "$ERR" "ACTIVE|active"
cfrun thing describe t2 --json
expect_rc "  ... and t2 still exists" 0
cfok cert deactivate "$T2_ID"
cfrun thing delete t2
expect_rc "thing delete t2 after deactivating its certificate exits 0" 0
cfrun thing describe t2
expect_rc "  ... then thing describe t2 exits 1" 1
cfrun cert describe "$T2_ID" --json
expect_rc "  ... and its INACTIVE certificate is kept" 0
expect_eq "  ... detached from the thing and still INACTIVE" "$(jpy '[d["status"], d["thing"] or ""]' <<<"$OUT")" '["INACTIVE", ""]'
cfrun thing create t2
expect_rc "the name t2 can be used again after delete" 0

finish
