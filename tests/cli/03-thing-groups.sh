#!/usr/bin/env bash
# groups: static create/add/list, thing create --group, dynamic groups by
# attribute query, and the refusals (add to a dynamic group, unknowns, dups).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"
members() { # members GROUP — sorted member names from group list --json
	cfrun group list --json
	jpy "sorted([g for g in d if g[\"name\"] == \"$1\"][0][\"members\"]) if any(g[\"name\"] == \"$1\" for g in d) else \"<no group $1>\"" <<<"$OUT"
}

cfok thing create a --attr model=x1 --attr site=berlin
cfok thing create b --attr model=x1 --attr site=paris
cfok thing create c --attr model=x2 --attr site=berlin

# ---- static groups
cfrun group create lab
expect_rc "group create lab (static) exits 0" 0
cfrun group add lab a c
expect_rc "group add lab a c exits 0" 0
expect_eq "lab has a and c" "$(members lab)" '["a", "c"]'
cfrun group add lab a
expect_rc "adding a member again exits 0 (no-op)" 0
expect_eq "  ... and lab still has a and c once each" "$(members lab)" '["a", "c"]'
cfrun group list --json
expect_rc "group list --json exits 0" 0
expect_eq "lab's type is static" "$(jpy '[g["type"] for g in d if g["name"] == "lab"]' <<<"$OUT")" '["static"]'
cfrun thing describe a --json
expect_eq "thing describe a lists the group lab" "$(jpy 'd["groups"]' <<<"$OUT")" '["lab"]'
cfrun thing create d --group lab --bundle "$T/d"
expect_rc "thing create d --group lab --bundle exits 0" 0
expect_eq "lab now has a, c and d" "$(members lab)" '["a", "c", "d"]'
cfrun group list
expect_rc "group list (text) exits 0" 0
expect_match "  ... names lab" "$OUT" "lab"

# ---- dynamic groups
cfrun group create x1s --query model=x1
expect_rc "group create x1s --query model=x1 exits 0" 0
expect_eq "x1s has the things with model=x1 (a, b)" "$(members x1s)" '["a", "b"]'
cfrun group list --json
expect_eq "x1s is dynamic with its query" \
	"$(jpy '[[g["type"], g["query"]] for g in d if g["name"] == "x1s"]' <<<"$OUT")" '[["dynamic", "model=x1"]]'
cfrun group create x1berlin --query "model=x1,site=berlin"
expect_rc "group create x1berlin --query 'model=x1,site=berlin' exits 0" 0
expect_eq "x1berlin has only a (every term must match)" "$(members x1berlin)" '["a"]'
cfok thing create e --attr model=x1 --attr site=berlin
expect_eq "a new thing with model=x1 joins x1s at once" "$(members x1s)" '["a", "b", "e"]'
expect_eq "  ... and x1berlin" "$(members x1berlin)" '["a", "e"]'
cfrun thing describe e --json
expect_eq "thing describe e lists its dynamic groups" "$(jpy 'sorted(d["groups"])' <<<"$OUT")" '["x1berlin", "x1s"]'

cfrun group add x1s c
expect_rc "group add to a dynamic group exits 1" 1
expect_match "  ... saying it is dynamic" "$ERR" "[Dd]ynamic"
expect_eq "  ... and x1s is unchanged" "$(members x1s)" '["a", "b", "e"]'

# ---- refusals
cfrun group create lab
expect_rc "a duplicate group name exits 1" 1
cfrun group create x1s --query model=x2
expect_rc "a duplicate dynamic group name exits 1" 1
expect_eq "  ... and x1s keeps its query" "$(members x1s)" '["a", "b", "e"]'
cfrun group add lab nosuchthing
expect_rc "group add of an unknown thing exits 1" 1
cfrun group add lab b nosuchthing
expect_rc "group add lab b nosuchthing (one unknown) exits 1" 1
expect_eq "  ... and adds nothing, not even b (one transaction)" "$(members lab)" '["a", "c", "d"]'
cfrun group add nosuchgroup a
expect_rc "group add to an unknown group exits 1" 1
cfrun group create badq --query "model"
expect_rc_in "a query without '=' is refused" 1 2
cfrun group create "bad group" 
expect_rc_in "a group name with a space is refused" 1 2
cfrun group list --json
expect_eq "the refused groups do not exist" \
	"$(jpy 'sorted(g["name"] for g in d)' <<<"$OUT")" '["lab", "x1berlin", "x1s"]'
cfrun group add lab
expect_rc "group add without things is a usage error (exit 2)" 2
cfrun group create
expect_rc "group create without a name is a usage error (exit 2)" 2

finish
