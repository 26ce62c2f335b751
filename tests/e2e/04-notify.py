#!/usr/bin/python3
"""04-notify — notifications from certfleetd (docs/notifications.md), on the real stack.

certfleet.conf gets a webhook pointing at a real HTTP receiver (http.server on 127.0.0.1, a free
port, in a thread) and an exec hook (a shell script that saves its stdin and environment), with
notify_max_attempts = 3 and notify_backoff = 1. Test notifications come from
POST /v1/notifications/test and `certfleet notify test`.

Checked: the signature verifies with the secret and not with another one; the headers; the payload
(fields, RFC 3339 time, no absent members, no key material); the receiver answering 500 twice then
200 → DELIVERED on attempt 3, the attempts spaced by the backoff (>= 1 s, then >= 2 s); the
receiver down → GAVE_UP after 3 attempts with the error recorded; the exec hook gets the JSON on
stdin and CERTFLEET_NOTIFY_KIND / _ID; a failing hook (exit 1) is retried and then DELIVERED;
the CLI verbs and the API's argument checks; the secret never in the daemon's log. The startup
refusals (no secret file, world-readable secret, bad URL) are tests/cli/07-daemon-notify.sh.
"""
import hashlib
import hmac
import http.server
import json
import os
import re
import threading
import time

import cfe2e as e

S = e.Stack("data")
HOOK_PORT = e.free_ports(1)[0]
SECRET = b"whsec-" + os.urandom(16).hex().encode()
EXEC_OUT = os.path.join(S.tmp, "exec-out")
EXEC_CTL = os.path.join(S.tmp, "exec-ctl")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
WAIT = 30          # generous deadline for any delivery


# ---- the receiver -------------------------------------------------------------------

class Receiver:
    """Records every POST (monotonic time, path, headers, body); answers the codes in plan
    (one per request), then 200."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.requests = []
        self.plan = []
        self.server = None
        self.thread = None

    def start(self):
        rcv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rcv.lock:
                    code = rcv.plan.pop(0) if rcv.plan else 200
                    rcv.requests.append({"t": time.monotonic(), "path": self.path,
                                         "headers": dict(self.headers.items()),
                                         "body": body, "code": code})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, fmt, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def for_notice(self, nid):
        with self.lock:
            return [r for r in self.requests if json.loads(r["body"]).get("id") == nid]


R = Receiver(HOOK_PORT)
e.on_exit(R.stop)


def verify(secret, body, header):
    """The receiver's check (docs/notifications.md): constant-time compare of the HMAC."""
    want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, header or "")


# ---- helpers ---------------------------------------------------------------------------

def rows(state=None):
    q = "/v1/notifications?limit=1000" + ("&state=" + state if state else "")
    return S.api_json(q)


def row(rid):
    for r in rows():
        if r["id"] == rid:
            return r
    return None


def send_test():
    """POST /v1/notifications/test → {sink: row} for the rows it queued, and the notice id."""
    st, body = S.api_post("/v1/notifications/test", {})
    e.check(st == 202, "POST /v1/notifications/test answers 202", "%s: %s" % (st, body))
    ids = json.loads(body)["ids"]
    e.check(len(ids) == 2, "one outbox row per sink (webhook, exec)", body)
    by_sink = {}
    for rid in ids:
        r = row(rid)
        e.check(r is not None, "row %d is listed" % rid)
        by_sink[r["sink"]] = r
    e.check(set(by_sink) == {"webhook", "exec"}, "the sinks are webhook and exec", by_sink)
    nid = by_sink["webhook"]["payload"]["id"]
    e.check(by_sink["exec"]["payload"]["id"] == nid, "both rows carry the same notice id")
    return by_sink, nid


def wait_state(rid, state, timeout=WAIT):
    got = e.wait_for(lambda: (lambda r: r if r and r["state"] == state else None)(row(rid)),
                     timeout, interval=0.2)
    e.check(got is not None, "row %d reaches %s within %d s" % (rid, state, timeout),
            "now: %s" % json.dumps(row(rid)))
    return got


def wait_no_pending(timeout=WAIT):
    e.check(e.wait_for(lambda: rows("PENDING") == [], timeout, interval=0.2),
            "the outbox drains (nothing PENDING)", json.dumps(rows("PENDING"))[:600])


def exec_file(nid):
    return os.path.join(EXEC_OUT, nid + ".json")


# ---- setup ------------------------------------------------------------------------------

def setup():
    os.makedirs(EXEC_OUT)
    os.makedirs(EXEC_CTL)
    secret_file = os.path.join(S.tmp, "webhook.secret")
    with open(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(SECRET + b"\n")
    hook = os.path.join(S.tmp, "hook.sh")
    with open(hook, "w") as f:
        f.write("""#!/bin/sh
# A failure is asked for by a file named after the kind: it is consumed (one failure each).
if [ -e "%(ctl)s/fail-$CERTFLEET_NOTIFY_KIND" ]; then
	rm -f "%(ctl)s/fail-$CERTFLEET_NOTIFY_KIND"
	echo "hook asked to fail" >&2
	exit 1
fi
cat >"%(out)s/$CERTFLEET_NOTIFY_ID.json.tmp"
printf '%%s\\n' "$CERTFLEET_NOTIFY_KIND" >"%(out)s/$CERTFLEET_NOTIFY_ID.kind"
mv "%(out)s/$CERTFLEET_NOTIFY_ID.json.tmp" "%(out)s/$CERTFLEET_NOTIFY_ID.json"
""" % {"ctl": EXEC_CTL, "out": EXEC_OUT})
    os.chmod(hook, 0o755)
    with open(S.path("certfleet.conf"), "a") as f:
        f.write("notify_webhook_url = http://127.0.0.1:%d/certfleet/hook\n" % HOOK_PORT)
        f.write("notify_webhook_secret_file = %s\n" % secret_file)
        f.write("notify_webhook_timeout = 3\n")
        f.write("notify_exec = %s\n" % hook)
        f.write("notify_exec_timeout = 10\n")
        f.write("notify_max_attempts = 3\n")
        f.write("notify_backoff = 1\n")
    R.start()
    S.up()


# ---- tests ------------------------------------------------------------------------------

def test_webhook_signed_headers_payload():
    by_sink, nid = send_test()
    wait_state(by_sink["webhook"]["id"], "DELIVERED")
    got = R.for_notice(nid)
    e.check(len(got) == 1, "the receiver got the notice once", len(got))
    req = got[0]
    h = {k.lower(): v for k, v in req["headers"].items()}
    e.check(req["path"] == "/certfleet/hook", "POSTed to the configured path", req["path"])
    e.check(h.get("content-type") == "application/json", "Content-Type application/json", h)
    e.check(h.get("x-certfleet-event") == "notification.test", "X-Certfleet-Event is the kind", h)
    sig = h.get("x-certfleet-signature", "")
    e.check(re.match(r"^sha256=[0-9a-f]{64}$", sig), "signature is sha256=<64 lowercase hex>", sig)
    e.check(verify(SECRET, req["body"], sig), "the signature verifies with the secret")
    e.check(not verify(b"not-the-secret", req["body"], sig), "and does not with another secret")
    e.check(not verify(SECRET, req["body"] + b" ", sig), "nor over a changed body")
    p = json.loads(req["body"])
    e.check(p["kind"] == "notification.test", "payload kind", p)
    e.check(p["id"] == nid and re.match(r"^[0-9a-f]{32}$", nid), "payload id: 32 hex", p)
    e.check(RFC3339.match(p.get("time", "")), "payload time is RFC 3339", p)
    e.check(set(p) <= {"id", "kind", "time", "thing", "jobId", "status", "executionNumber",
                       "reason", "oldCertificateId", "newCertificateId"}, "only documented members", p)
    for absent in ("thing", "jobId", "status", "executionNumber", "oldCertificateId",
                   "newCertificateId"):
        e.check(absent not in p, "absent member %s is omitted" % absent, p)
    text = req["body"].decode()
    e.check("PRIVATE KEY" not in text and SECRET.decode() not in text,
            "no key material or secret in the body")
    r = row(by_sink["webhook"]["id"])
    e.check(r["attempts"] == 1, "delivered on the first attempt", r)
    e.check(r["payload"] == p, "the outbox holds exactly what was sent", r)


def test_webhook_retries_with_backoff():
    wait_no_pending()
    with R.lock:
        R.plan = [500, 500]
    by_sink, nid = send_test()
    r = wait_state(by_sink["webhook"]["id"], "DELIVERED")
    e.check(r["attempts"] == 3, "DELIVERED on attempt 3", r)
    got = R.for_notice(nid)
    e.check([x["code"] for x in got] == [500, 500, 200], "the receiver answered 500, 500, 200",
            [x["code"] for x in got])
    e.check(len({x["body"] for x in got}) == 1, "every attempt sends the same body")
    e.check(all(verify(SECRET, x["body"], x["headers"].get("X-Certfleet-Signature"))
                for x in got), "every attempt is signed")
    gap1, gap2 = got[1]["t"] - got[0]["t"], got[2]["t"] - got[1]["t"]
    e.check(gap1 >= 0.95, "second attempt at least notify_backoff (1 s) after the first",
            "%.2f s" % gap1)
    e.check(gap2 >= 1.95, "third attempt at least 2 x notify_backoff after the second",
            "%.2f s" % gap2)


def test_webhook_gives_up_when_receiver_down():
    wait_no_pending()
    R.stop()
    try:
        by_sink, nid = send_test()
        r = wait_state(by_sink["webhook"]["id"], "GAVE_UP")
    finally:
        R.start()
    e.check(r["attempts"] == 3, "GAVE_UP after notify_max_attempts (3) attempts", r)
    e.check(r.get("lastError"), "the error is recorded", r)
    e.check(R.for_notice(nid) == [], "nothing reached the (stopped) receiver")
    e.check(S.wait_log_daemon(r"notification given up.*sink=webhook", WAIT),
            "certfleetd logged giving up", S.tail_logs())
    e.check(S.wait_log_daemon(r"notification not delivered, will retry.*sink=webhook.*error=", 1),
            "and each failed attempt with its error")


def test_exec_hook_gets_json_on_stdin():
    by_sink, nid = send_test()
    wait_state(by_sink["exec"]["id"], "DELIVERED")
    e.check(os.path.exists(exec_file(nid)), "the hook ran for this notice", os.listdir(EXEC_OUT))
    with open(exec_file(nid)) as f:
        got = json.load(f)
    e.check(got == by_sink["exec"]["payload"], "the hook's stdin is the payload", got)
    with open(os.path.join(EXEC_OUT, nid + ".kind")) as f:
        e.check(f.read().strip() == "notification.test", "CERTFLEET_NOTIFY_KIND is the kind")
    e.check(row(by_sink["exec"]["id"])["attempts"] == 1, "delivered on the first attempt")


def test_exec_hook_failure_is_retried():
    wait_no_pending()
    open(os.path.join(EXEC_CTL, "fail-notification.test"), "w").close()
    by_sink, nid = send_test()
    r = wait_state(by_sink["exec"]["id"], "DELIVERED")
    e.check(r["attempts"] == 2, "the failed run (exit 1) was retried once", r)
    e.check(os.path.exists(exec_file(nid)), "the second run got the payload")
    e.check(S.wait_log_daemon(r"will retry.*sink=exec.*exited with status 1", 1),
            "the failure was logged with its exit status", S.tail_logs())


def test_cli_and_api():
    wait_no_pending()
    r = S.cf_ok("notify", "test")
    ids = [int(x) for x in re.findall(r"\d+", r.out.split(":", 1)[1])]
    e.check(r.out.startswith("queued notification.test:") and len(ids) == 2,
            "`certfleet notify test` prints the two outbox ids", r.out)
    for rid in ids:
        wait_state(rid, "DELIVERED")
    j = S.cf_json("notify", "list", "--state", "DELIVERED", "--json")
    e.check({x["id"] for x in j} >= set(ids), "`notify list --state DELIVERED --json` lists them")
    e.check(all(x["state"] == "DELIVERED" for x in j), "only DELIVERED rows")
    j = S.cf_json("notify", "list", "--state", "GAVE_UP", "--json")
    e.check(len(j) >= 1 and all(x["state"] == "GAVE_UP" for x in j), "the GAVE_UP row is listed", j)
    j = S.cf_json("notify", "list", "--limit", "1", "--json")
    e.check(len(j) == 1 and j[0]["id"] == max(ids), "--limit 1: the newest row", j)
    t = S.cf_ok("notify", "list")
    e.check("ID" in t.out and "GAVE_UP" in t.out and "DELIVERED" in t.out, "the table", t.out)
    bad = S.cf("notify", "list", "--state", "LOST")
    e.check(bad.rc == 2, "`notify list --state LOST` is a usage error", bad)
    st, body = S.api("/v1/notifications?state=LOST")
    e.check(st == 400, "GET /v1/notifications?state=LOST answers 400", body)
    st, body = S.api("/v1/notifications?limit=0")
    e.check(st == 400, "limit=0 answers 400", body)
    st, body = S.api("/v1/notifications/test")
    e.check(st == 405, "GET /v1/notifications/test answers 405", body)


def test_secret_never_logged():
    log = S.read("run", "certfleetd.log")
    e.check("notifications on" in log, "certfleetd logged its notification settings")
    e.check(SECRET.decode() not in log, "the webhook secret is not in the daemon's log")


# wait for the daemon log (cfe2e's wait_log reads the broker's)
def _wait_log_daemon(self, pattern, timeout):
    rx = re.compile(pattern)
    return e.wait_for(lambda: rx.search(self.read("run", "certfleetd.log")), timeout, interval=0.2)


e.Stack.wait_log_daemon = _wait_log_daemon

e.run_tests([
    test_webhook_signed_headers_payload,
    test_webhook_retries_with_backoff,
    test_webhook_gives_up_when_receiver_down,
    test_exec_hook_gets_json_on_stdin,
    test_exec_hook_failure_is_retried,
    test_cli_and_api,
    test_secret_never_logged,
], setup=setup, stacks=[S])
