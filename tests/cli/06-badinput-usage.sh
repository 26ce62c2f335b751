#!/usr/bin/env bash
# usage: --help on every verb of docs/cli.md exits 0 with usage on stdout;
# unknown verbs, subverbs and options and missing arguments exit 2 with usage
# on stderr and change nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cf_init "$T/data"

# ---- --help
cfraw --help
expect_rc "certfleet --help exits 0" 0
expect_match "  ... prints usage on stdout" "$OUT" "[Uu]sage"
for v in init thing cert ca group events; do
	expect_match "  ... naming the verb $v" "$OUT" "(^|[^a-z])$v([^a-z]|$)"
done
HELP_VERBS=(
	"init" "ca init" "ca list" "ca create-intermediate" "ca set-issuer" "ca revoke" "ca crl"
	"thing create" "thing list" "thing describe" "thing delete"
	"group create" "group add" "group list"
	"cert list" "cert describe" "cert activate" "cert deactivate" "cert revoke"
	"events list" "events verify"
)
for hv in "${HELP_VERBS[@]}"; do
	# shellcheck disable=SC2086
	cfraw $hv --help
	if [ "$RC" -eq 0 ] && printf '%s\n' "$OUT" | quiet_grep -iE "usage|$hv"; then
		ok "certfleet $hv --help exits 0 with its usage on stdout"
	else
		notok "certfleet $hv --help exits 0 with its usage on stdout" "$(show)"
	fi
done
cfraw thing create --help
expect_match "thing create --help mentions --bundle and --csr" "$OUT" "--bundle"
expect_match "thing create --help mentions --csr" "$OUT" "--csr"
cfraw cert revoke --help
expect_match "cert revoke --help mentions --reason" "$OUT" "--reason"
cfrun thing create newthing --help
expect_rc "thing create NAME --help exits 0" 0
cfrun thing describe newthing
expect_rc "  ... and does not create the thing" 1

# ---- unknown verbs, subverbs, options: exit 2, usage on stderr
BEFORE=$(tree_digest "$D")
usage_error() { # usage_error DESC ARGS...
	local desc=$1
	shift
	cfrun "$@"
	expect_rc "$desc exits 2" 2
	expect_match "  ... with usage or the problem on stderr" "$ERR" "[Uu]sage|unknown|[Uu]nrecognized|missing|invalid|expects|requires"
	expect_eq "  ... and prints nothing on stdout" "$OUT" ""
}
usage_error "an unknown verb (frobnicate)" frobnicate
usage_error "an unknown subverb (thing frobnicate)" thing frobnicate
usage_error "an unknown subverb (ca frobnicate)" ca frobnicate
usage_error "a verb without its subverb (thing)" thing
usage_error "a verb without its subverb (cert)" cert
usage_error "an unknown global option (--frobnicate)" --frobnicate cert list
usage_error "an unknown option (cert list --frobnicate)" cert list --frobnicate
usage_error "an unknown option (thing list --all)" thing list --all
usage_error "thing create without a name" thing create
usage_error "thing describe without a name" thing describe
usage_error "thing delete without a name" thing delete
usage_error "cert describe without an id" cert describe
usage_error "cert activate without an id" cert activate
usage_error "ca set-issuer without a CA" ca set-issuer
usage_error "ca create-intermediate without a name" ca create-intermediate
usage_error "group create without a name" group create
usage_error "an option missing its value (thing create x --key-algorithm)" thing create x --key-algorithm
usage_error "an option missing its value (events list --limit)" events list --limit
usage_error "a malformed number (events list --limit many)" events list --limit many
usage_error "an extra argument (thing list extra)" thing list extra
usage_error "--bundle and --csr together" thing create y --bundle "$T/y" --csr "$T/y.csr"
cfraw
expect_rc "certfleet without arguments exits 2" 2
expect_match "  ... with usage on stderr" "$ERR" "[Uu]sage"
cfraw --dir
expect_rc "--dir without a value exits 2" 2
cfraw cert list --dir
expect_rc "--dir (after the verb) without a value exits 2" 2
cfrun cert list --json extra-arg
expect_rc "cert list with an extra argument exits 2" 2

expect_eq "none of the usage errors changed the data directory" "$(tree_digest "$D")" "$BEFORE"
check_not "none of them created a bundle" test -e "$T/y"

finish
