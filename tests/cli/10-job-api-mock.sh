#!/usr/bin/env bash
# job verbs against a scripted stand-in for certfleetd's jobs API (the
# contract of docs/certfleetd.md "Jobs and rotation"): the request
# create-rotation sends, describe's text, cancel's answers (200, 404, 409),
# and watch's plain lines, progress bar on a terminal, exit codes and
# --timeout. The real daemon is covered by tests/e2e/04-job-cli.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cf_init "$T/data" --api-port "$PORT"

cat >"$T/mock.py" <<'PY'
import json, sys, http.server
port, reqlog = int(sys.argv[1]), sys.argv[2]
polls = {}

def counts(**kw):
    c = {s: 0 for s in ("QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED",
                        "REMOVED", "CANCELED")}
    c.update(kw)
    return c

def ex(thing, status, n=1, v=2, reason=None):
    e = {"thing": thing, "status": status, "executionNumber": n, "versionNumber": v,
         "statusDetails": {"reason": reason} if reason else {}, "lastUpdatedAt": "2027-01-01T00:00:00Z"}
    return e

def job(jid, status, c, execs, total=None):
    return {"jobId": jid, "operation": "ROTATE_CERTIFICATE", "status": status,
            "targetSelection": "SNAPSHOT", "document": {"keyAlgorithm": "ED25519", "signingAlgorithm": "ED25519"},
            "targets": {"things": ["a", "b"], "groups": ["fleet"]},
            "config": {"rollout": {"maxPerMinute": 10, "exponentialRate": {"baseRatePerMinute": 2,
                       "incrementFactor": 1.5, "rateIncreaseCriteria": {"numberOfSucceededThings": 4}}},
                       "abort": [{"failureType": "FAILED", "thresholdPercentage": 20, "minNumberOfExecutedThings": 5}],
                       "retry": [{"failureType": "TIMED_OUT", "numberOfRetries": 2}],
                       "timeouts": {"inProgressSeconds": 3600, "stepSeconds": 90},
                       "schedule": {"startTime": "2027-01-01T00:00:00Z", "endTime": "2027-01-08T00:00:00Z",
                                    "endBehavior": "CANCEL", "maintenanceWindows": ["sat@22:00+240"]}},
            "comment": "quarterly", "createdAt": "2027-01-01T00:00:00Z", "updatedAt": "2027-01-01T00:01:00Z",
            "completedAt": None, "forceCanceled": False, "counts": c,
            "targetCount": {"total": total if total is not None else len(execs), "unreleased": 0,
                            "released": len(execs), "removed": 0},
            "executions": execs}

def state(jid, n):
    if jid.startswith("jok"):   # QUEUED -> IN_PROGRESS -> (same again) -> COMPLETED, all SUCCEEDED
        steps = [job(jid, "IN_PROGRESS", counts(QUEUED=2), [ex("a", "QUEUED"), ex("b", "QUEUED")]),
                 job(jid, "IN_PROGRESS", counts(IN_PROGRESS=1, SUCCEEDED=1), [ex("a", "SUCCEEDED"), ex("b", "IN_PROGRESS")]),
                 job(jid, "IN_PROGRESS", counts(IN_PROGRESS=1, SUCCEEDED=1), [ex("a", "SUCCEEDED"), ex("b", "IN_PROGRESS")]),
                 job(jid, "COMPLETED", counts(SUCCEEDED=2), [ex("a", "SUCCEEDED"), ex("b", "SUCCEEDED")])]
        return steps[min(n, len(steps) - 1)]
    if jid == "jfail":  # b's first attempt TIMED_OUT, its retry FAILED with a hostile reason
        return job(jid, "COMPLETED", counts(SUCCEEDED=1, FAILED=1),
                   [ex("a", "SUCCEEDED"), ex("b", "TIMED_OUT", 1, 3), ex("b", "FAILED", 2, 5, "disk\x1b[31m full")])
    if jid == "jstuck":
        return job(jid, "IN_PROGRESS", counts(QUEUED=1), [ex("a", "QUEUED")], total=3)
    if jid == "jdone":
        return job(jid, "COMPLETED", counts(SUCCEEDED=1), [ex("a", "SUCCEEDED")])
    if jid == "jcancel":
        return job(jid, "CANCELED", counts(CANCELED=2), [ex("a", "CANCELED", v=2), ex("b", "CANCELED", v=2)])
    return None

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        p = self.path.split("/")
        if self.path == "/v1/jobs":
            return self.send(200, {"jobs": [state("jdone", 0)]})
        if len(p) == 4 and p[1:3] == ["v1", "jobs"]:
            n = polls.get(p[3], 0)
            polls[p[3]] = n + 1
            j = state(p[3], n)
            return self.send(200, j) if j else self.send(404, {"error": "job %s not found" % p[3]})
        self.send(404, {"error": "no such path"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        with open(reqlog, "a") as f:
            f.write(json.dumps({"path": self.path, "body": json.loads(body)}) + "\n")
        p = self.path.split("/")
        if self.path == "/v1/jobs":
            j = state("jok", 0)
            j["jobId"] = json.loads(body).get("jobId", "gen-1")
            return self.send(201, j)
        if len(p) == 5 and p[4] == "cancel":
            if p[3] in ("jdone",):
                return self.send(409, {"error": "job jdone is COMPLETED"})
            if p[3] == "jstuck":
                return self.send(200, state("jcancel", 0) | {"jobId": "jstuck"})
            return self.send(404, {"error": "job %s not found" % p[3]})
        self.send(404, {"error": "no such path"})

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$T/mock.py" "$PORT" "$T/requests.log" &
MOCK=$!
trap 'kill "$MOCK" 2>/dev/null || true; rm -rf "$T"' EXIT
for _ in $(seq 1 50); do
	python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$PORT" 2>/dev/null && break
	sleep 0.1
done

# ---- create-rotation: the request body is the contract's
cfrun job create-rotation --thing a --thing a --group fleet --issuer "$INT" --expiring-within 30 \
	--weak-key --continuous --key-algorithm ED25519 --max-per-minute 10 --ramp-base 2 \
	--ramp-factor 1.5 --ramp-after-succeeded 4 --abort FAILED:20:5 --retry TIMED_OUT:2 \
	--in-progress-timeout 1h --step-timeout 90s --start-at 2027-01-01 --end-at 2027-01-08T00:00:00Z \
	--end-behavior CANCEL --window sat@22:00+240 --job-id rot-1 --comment quarterly
expect_rc "create-rotation with every flag exits 0" 0
expect_eq "  ... the first line is the job id" "$(printf '%s\n' "$OUT" | head -1)" "rot-1"
expect_match "  ... then a one-line summary" "$OUT" "ROTATE_CERTIFICATE to ED25519.*SNAPSHOT.*status"
REQ=$(tail -1 "$T/requests.log")
expect_eq "  ... POST /v1/jobs" "$(jpy 'd["path"]' <<<"$REQ")" "/v1/jobs"
expect_eq "  ... targets" "$(jpy 'd["body"]["targets"]' <<<"$REQ")" \
	'{"certificates": {"expiringWithinDays": 30, "issuer": "int1", "weakKey": true}, "groups": ["fleet"], "things": ["a", "a"]}'
expect_eq "  ... selection, algorithms, id, comment" \
	"$(jpy '[d["body"][k] for k in ("targetSelection", "keyAlgorithm", "jobId", "comment")]' <<<"$REQ")" \
	'["CONTINUOUS", "ED25519", "rot-1", "quarterly"]'
expect_eq "  ... no signingAlgorithm unless given" "$(jpy '"signingAlgorithm" in d["body"]' <<<"$REQ")" false
expect_eq "  ... config" "$(jpy 'd["body"]["config"]' <<<"$REQ")" \
	'{"abort": [{"failureType": "FAILED", "minNumberOfExecutedThings": 5, "thresholdPercentage": 20.0}], "retry": [{"failureType": "TIMED_OUT", "numberOfRetries": 2}], "rollout": {"exponentialRate": {"baseRatePerMinute": 2, "incrementFactor": 1.5, "rateIncreaseCriteria": {"numberOfSucceededThings": 4}}, "maxPerMinute": 10}, "schedule": {"endBehavior": "CANCEL", "endTime": "2027-01-08T00:00:00Z", "maintenanceWindows": ["sat@22:00+240"], "startTime": "2027-01-01T00:00:00Z"}, "timeouts": {"inProgressSeconds": 3600, "stepSeconds": 90}}'
cfrun job create-rotation --thing a --json
expect_rc "create-rotation --json exits 0" 0
expect_eq "  ... prints the job JSON" "$(jpy '[d["jobId"], d["status"]]' <<<"$OUT")" '["gen-1", "IN_PROGRESS"]'
expect_eq "  ... a request with only targets, selection and algorithm" \
	"$(jpy 'sorted(d["body"])' <<<"$(tail -1 "$T/requests.log")")" '["keyAlgorithm", "targetSelection", "targets"]'

# ---- list, describe
cfrun job list --json
expect_eq "job list --json is the array of {\"jobs\": [...]}" "$(jpy '[j["jobId"] for j in d]' <<<"$OUT")" '["jdone"]'
cfrun job describe jfail
expect_rc "job describe exits 0" 0
for pat in "status +COMPLETED" "targets +3 total: 3 released" "executions +SUCCEEDED 1 FAILED 1" \
	"rollout +at most 10/min, ramp from 2/min x1.5 after every 4 succeeded" \
	"abort +FAILED >= 20% of >= 5 executed" "retry +TIMED_OUT up to 2 times" \
	"timeouts +in progress 1h step 90s" "schedule +start 2027-01-01T00:00:00Z end 2027-01-08T00:00:00Z \(CANCEL\) windows sat@22:00\+240" \
	"groups +fleet" "^b +2 +FAILED +5 .*disk\?\[31m full"; do
	expect_match "  ... shows /$pat/" "$OUT" "$pat"
done
expect_nomatch "  ... no raw escape character from a device's reason" "$OUT" $'\x1b'
cfrun job describe jfail --json
expect_eq "job describe --json is the job" "$(jpy 'len(d["executions"])' <<<"$OUT")" 3
cfrun job describe nosuch
expect_rc "job describe of an unknown job exits 1" 1
expect_match "  ... with the daemon's reason" "$ERR" "not found.*404"

# ---- cancel
cfrun job cancel jstuck --force --comment "stop"
expect_rc "job cancel exits 0" 0
expect_match "  ... prints the job's status and counts" "$OUT" "jstuck CANCELED \(force\): CANCELED 2"
expect_eq "  ... sends force and comment" "$(jpy 'd' <<<"$(tail -1 "$T/requests.log")")" \
	'{"body": {"comment": "stop", "force": true}, "path": "/v1/jobs/jstuck/cancel"}'
cfrun job cancel jstuck --json
expect_eq "job cancel --json prints the job" "$(jpy 'd["status"]' <<<"$OUT")" CANCELED
expect_eq "  ... force false by default" "$(jpy 'd["body"]["force"]' <<<"$(tail -1 "$T/requests.log")")" false
cfrun job cancel jdone
expect_rc "cancel of a finished job exits 1" 1
expect_match "  ... saying it has already ended" "$ERR" "^certfleet: job cancel: job jdone has already ended.*409"
cfrun job cancel nosuch
expect_rc "cancel of an unknown job exits 1" 1

# ---- watch (no terminal: one plain line per change)
cfrun job watch jok --interval 0.1
expect_rc "watch of a job that completes with every execution SUCCEEDED exits 0" 0
expect_eq "  ... one line per change" "$OUT" "jok IN_PROGRESS 0/2 0% QUEUED 2
jok IN_PROGRESS 1/2 50% IN_PROGRESS 1 SUCCEEDED 1
jok COMPLETED 2/2 100% SUCCEEDED 2"
expect_nomatch "  ... no carriage returns off a terminal" "$OUT" $'\r'
cfrun job watch jfail --interval 0.1
expect_rc "watch of a job with a FAILED execution exits 1" 1
expect_match "  ... names the thing, its status and reason" "$OUT" "^  b FAILED: disk\?\[31m full$"
expect_nomatch "  ... only its latest attempt" "$OUT" "TIMED_OUT"
expect_match "  ... and says so on stderr" "$ERR" "job jfail ended COMPLETED with 1 execution not SUCCEEDED"
cfrun job watch jcancel --interval 0.1
expect_rc "watch of a CANCELED job exits 1" 1
expect_match "  ... listing the canceled executions" "$OUT" "  a CANCELED"
START=$(date +%s%N)
cfrun job watch jstuck --interval 0.2 --timeout 2
END=$(date +%s%N)
expect_rc "watch --timeout of a stuck job exits 1" 1
expect_match "  ... with a clear message" "$ERR" "timed out after 2 s: job jstuck is still IN_PROGRESS \(0/3"
MS=$(((END - START) / 1000000))
check "  ... after about 2 s (${MS} ms)" test "$MS" -ge 1900 -a "$MS" -lt 6000
cfrun job watch nosuch
expect_rc "watch of an unknown job exits 1" 1

# ---- watch on a terminal: one line redrawn with \r
if command -v script >/dev/null 2>&1; then
	set +e
	timeout 20 script -qec "$CF --dir $D job watch jok-tty --interval 0.1" /dev/null >"$T/tty.out" 2>&1
	TRC=$?
	set -e
	expect_eq "watch on a terminal exits 0" "$TRC" 0
	TTY_OUT=$(cat "$T/tty.out")
	expect_match "  ... redraws with \\r and a bar" "$TTY_OUT" $'\r''COMPLETED \[#{20}\] 2/2 100%'
	expect_eq "  ... on one line (a newline only at the end)" "$(tr -cd '\n' <"$T/tty.out" | wc -c)" 1
	check "  ... redrawn at every poll" test "$(tr -cd '\r' <"$T/tty.out" | wc -c)" -ge 4
else
	ok "watch on a terminal: skipped (no script(1))"
fi

finish
