#!/usr/bin/python3
"""05-crash-matrix — kill -9 at every point of a rotation, end to end (DESIGN §6-7, docs/agent.md
"Recovery rules"; issue 4, end-to-end case 8).

Real certfleet-agent processes, certfleetd and Mosquitto with the certfleet plugin, one stack.
One thing (and one rotation job, in-progress timeout 60 s) per crash point, so rows are independent:

  agent.<state>                   certfleet-agent runs with CERTFLEET_FAILPOINTS=agent.<state>:kill
                                  (raise(SIGKILL) right after the durable journal write of that
                                  state, docs/testing.md), is seen to die of SIGKILL with that state
                                  in its journal, and is started again without the failpoint. Every
                                  state after IDLE has a row. ROLLING_BACK and REPORTING_FAILURE are
                                  off the happy path: those agents are held at CERT_RECEIVED
                                  (agent.cert_received:sleep=N) while the test deactivates (one row)
                                  or revokes (the other) the certificate just issued, so the broker
                                  refuses the new pair and the agent rolls back; they end FAILED.
  keystore.before-switch-rename   the same, killed inside activate() (temp link made, not renamed).
  certfleetd.create.before-answer certfleetd restarted with the failpoint; it dies after issuing
  certfleetd.commit.before-answer and committing, before answering; it is started again the way
  certfleetd.terminal             scripts/stack does (same command line and environment) while the
                                  agent keeps running.
  broker restart at <state>       Mosquitto stopped by PID while the agent is held (sleep failpoint)
                                  at CERT_RECEIVED (between create and commit) or CREATE_SENT, started
                                  again with the same config once the agent has moved on.

No row for agent.idle: IDLE is written at every start, so a kill there is a start that dies
before connecting; its restart is the agent.done row's recovery.

Afterwards, for every row: the execution is terminal (SUCCEEDED, or what the row says and why);
the bundle's device.key matches device.crt (public keys compared with openssl) with exactly one
generation left; the device connects with that pair (CONNACK 0); and the thing's ACTIVE
certificates in the registry are exactly {the device's certificate} (an indeterminate rotation
is given time to settle after that connection). The test prints a table: crash point -> outcome.

Rows run concurrently where they cannot disturb each other (all agent rows), the certfleetd and
broker rows one after another. Every process is stopped by its PID.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse

import cfe2e as e

S = e.Stack("data")
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")
KEY_ALG = "ECDSA-P256"
IN_PROGRESS_S = 60         # the jobs' in-progress timeout: a device that never comes back ends TIMED_OUT
RESPONSE_S = 6             # agent.conf response_timeout_s: a lost answer is asked again soon
HOLD_S = 8                 # agent.CERT_RECEIVED:sleep=N for the rows that act while it waits
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED", "CANCELED")

# Every state of the agent's machine after IDLE (src/lib/cf_agent.h), in order. IDLE has no row:
# it is the state a (re)started agent without a rotation is in, before and after all of these.
AGENT_STATES = ["IN_PROGRESS_SENT", "KEY_GENERATED", "CREATE_SENT", "CERT_RECEIVED", "SWITCHED",
                "RECONNECTING_NEW", "VERIFYING", "COMMIT_SENT", "COMMITTED", "CLEANUP",
                "ROLLING_BACK", "REPORTING_FAILURE", "DONE"]
# The states only a failed rotation reaches, and how their row makes the new pair fail: the
# broker refuses a certificate that is not ACTIVE, so RECONNECTING_NEW times out and rolls back.
FAILURE_PATH = {"ROLLING_BACK": "deactivate", "REPORTING_FAILURE": "revoke"}
DAEMON_POINTS = ["certfleetd.create.before-answer", "certfleetd.commit.before-answer",
                 "certfleetd.terminal"]

ROWS = []
_agents = []              # every Agent started (stopped at exit)


def agent_failpoint(state):
    """docs/testing.md "Failpoints": agent.<state in lower case>."""
    return "agent." + state.lower()


KEYSTORE_POINT = "keystore.before-switch-rename"   # activate(): the temp link made, not renamed


# ---- helpers kept here (cfe2e.py belongs to the shared suite) -------------------------------------

def proc_alive(pid, name):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return False


def pub_of(path, cert):
    r = e.run(["openssl", "x509", "-in", path, "-noout", "-pubkey"] if cert else
              ["openssl", "pkey", "-in", path, "-pubout"])
    return r.out if r.rc == 0 else None


class Agent:
    """One certfleet-agent process for a thing's bundle, its output in a log file."""

    def __init__(self, row, failpoints=None):
        self.log = S.scratch("agent-%s.log" % row.thing)
        env = dict(os.environ)
        env.pop("CERTFLEET_FAILPOINTS", None)
        if failpoints:
            env["CERTFLEET_FAILPOINTS"] = failpoints
        with open(self.log, "wb") as f:
            self.p = subprocess.Popen([AGENT, "--config", os.path.join(row.t.dir, "agent.conf"),
                                       "--log-level", "debug"],
                                      stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                      start_new_session=True, env=env)
        self.failpoints = failpoints
        _agents.append(self)

    def text(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_exit(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGTERM by PID; the exit status (None if it had to be killed)."""
        if self.p.poll() is not None:
            return self.p.returncode
        os.kill(self.p.pid, signal.SIGTERM)
        rc = self.wait_exit(15)
        if rc is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(10)
        return rc


@e.on_exit
def _kill_agents():
    for a in _agents:
        if a.p.poll() is None:
            try:
                os.kill(a.p.pid, signal.SIGKILL)
                a.p.wait(10)
            except OSError:
                pass


def api_json_or_none(path):
    st, body = S.api(path)
    if st != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def active_certs(thing):
    """The thing's ACTIVE certificate ids in the registry (None if the API is unreachable)."""
    d = api_json_or_none("/v1/certificates?thing=%s&status=ACTIVE" % urllib.parse.quote(thing))
    if d is None:
        return None
    return sorted(c.get("id") for c in d)


def open_principal(thing):
    try:
        rows = [r for r in S.connections(client_id=thing) if "disconnectedAt" not in r]
    except e.Fail:
        return None
    return rows[0].get("principal") if rows else None


def daemon_healthy():
    st, h = S.health()
    return st == 200 and h.get("mqtt") == "connected"


def stop_service(name, timeout=10):
    """Stops run/<name>.pid's process by PID (SIGTERM, SIGKILL after timeout)."""
    pid = S.pid(name)
    if pid is None or not proc_alive(pid, name):
        return
    os.kill(pid, signal.SIGTERM)
    if not e.wait_for(lambda: not proc_alive(pid, name), timeout, interval=0.1):
        os.kill(pid, signal.SIGKILL)
        e.wait_for(lambda: not proc_alive(pid, name), 5, interval=0.1)


def start_stack(failpoints=""):
    """scripts/stack up: starts whichever of mosquitto and certfleetd is not running, with the
    same command line and environment as always, plus CERTFLEET_FAILPOINTS (empty = none)."""
    r = e.run([e.STACK, "up", S.dir], timeout=90, env={"CERTFLEET_FAILPOINTS": failpoints})
    if r.rc != 0:
        raise e.Fail("scripts/stack up failed: %s\n%s" % (r, S.tail_logs()))
    e.check(e.wait_for(daemon_healthy, 30, interval=0.2), "certfleetd is connected to the broker",
            S.tail_logs())


# ---- one row ----------------------------------------------------------------------------------

class Row:
    def __init__(self, n, point, kind, expect, why=""):
        self.point = point          # the crash point as printed
        self.kind = kind            # agent | daemon | broker
        self.expect = expect        # acceptable execution statuses
        self.why = why              # why a non-SUCCEEDED status is acceptable
        self.thing = "crash-%02d" % n
        self.job = "crash-job-%02d" % n
        self.t = None
        self.old_id = None
        self.agent = None
        self.agents = []
        self.notes = []
        self.errors = []
        self.status = None
        self.device_cert = None
        self.registry = None
        self.killed_in = None       # the journal's state when the agent died
        self.state = point[len("agent."):].upper() if kind == "agent" else None  # ... should be

    # state
    def journal(self):
        try:
            with open(os.path.join(self.t.dir, "state", "agent.journal")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def journal_state(self):
        return self.journal().get("state")

    def execution(self):
        d = api_json_or_none("/v1/jobs/" + self.job)
        if d is None:
            return None
        ex = [x for x in d.get("executions", []) if x.get("thing") == self.thing]
        return max(ex, key=lambda x: x.get("executionNumber", 0)) if ex else None

    def exec_status(self):
        x = self.execution()
        return x.get("status") if x else None

    def fail(self, what):
        self.errors.append(what)
        raise e.Fail(what)

    def need(self, cond, what):
        if not cond:
            self.fail(what)

    # steps
    def start_agent(self, failpoints=None):
        self.agent = Agent(self, failpoints)
        self.agents.append(self.agent)
        return self.agent

    def wait_connected(self, cert_id, timeout=30):
        ok = e.wait_for(lambda: self.agent.p.poll() is None and open_principal(self.thing) == cert_id,
                        timeout, interval=0.25)
        self.need(ok, "the agent connects with certificate %s within %d s (exit %s)"
                  % (cert_id[:12], timeout, self.agent.p.poll()))

    def create_job(self):
        body = {"jobId": self.job, "targets": {"things": [self.thing]}, "keyAlgorithm": KEY_ALG,
                "config": {"timeouts": {"inProgressSeconds": IN_PROGRESS_S}}}
        st, text = S.api_post("/v1/jobs", body)
        self.need(st == 201, "POST /v1/jobs answers 201 (got %s: %s)" % (st, text[:300]))

    def wait_killed(self, timeout=90):
        rc = self.agent.wait_exit(timeout)
        self.killed_in = self.journal_state()
        self.need(rc == -signal.SIGKILL, "the agent dies of SIGKILL at its failpoint (exit %s, journal %s)"
                  % (rc, self.killed_in))
        self.notes.append("agent killed, journal=%s" % self.killed_in)

    def wait_terminal(self, timeout=IN_PROGRESS_S + 30):
        st = e.wait_for(lambda: (self.exec_status() in TERMINAL) and self.exec_status(), timeout,
                        interval=0.5)
        self.status = st or self.exec_status()
        self.need(st, "the execution ends terminal within %d s (it is %s)" % (timeout, self.status))

    def refuse_new_when_held(self, how):
        """Waits until the agent holds at CERT_RECEIVED, then makes the broker refuse the certificate
        just issued: how = "revoke" (POST .../revoke) or "deactivate" (certfleet cert deactivate)."""
        ok = e.wait_for(lambda: self.journal_state() == "CERT_RECEIVED", 60, interval=0.1)
        self.need(ok, "the agent reaches CERT_RECEIVED (journal %s)" % self.journal_state())
        new = self.journal().get("certificateId") or ""
        if not new:
            ids = active_certs(self.thing) or []
            new = ([i for i in ids if i != self.old_id] or [""])[0]
        self.need(new and new != self.old_id, "the new certificate's id is known (%r)" % new)
        if how == "revoke":
            st, text = S.api_post("/v1/certificates/%s/revoke" % new, {"reason": "superseded"})
            self.need(st == 200, "revoking the new certificate answers 200 (%s: %s)" % (st, text[:200]))
        else:
            r = S.cf("cert", "deactivate", new)
            self.need(r.rc == 0, "cert deactivate of the new certificate: %s" % r)
        self.notes.append("held at CERT_RECEIVED, new cert %s: %s" % (new[:12], how))

    # the scenarios
    def run_agent_row(self, state, point):
        fp = "%s:kill" % point
        if state in FAILURE_PATH:
            fp = "%s:sleep=%d,%s" % (agent_failpoint("CERT_RECEIVED"), HOLD_S, fp)
        if point == KEYSTORE_POINT:
            # the first start adopts the plain bundle through the same rename: adopt it first
            self.start_agent()
            self.wait_connected(self.old_id)
            self.need(self.agent.stop() == 0, "the adopting agent stops on SIGTERM")
        self.start_agent(fp)
        self.wait_connected(self.old_id)
        self.create_job()
        if state in FAILURE_PATH:
            self.refuse_new_when_held(FAILURE_PATH[state])
        self.wait_killed()
        self.need(self.killed_in == state, "the journal says %s when the agent died (it says %s)"
                  % (state, self.killed_in))
        self.start_agent()
        self.wait_terminal()

    def run_daemon_row(self, point):
        self.start_agent()
        self.wait_connected(self.old_id)
        stop_service("certfleetd")
        start_stack("%s:kill" % point)
        pid = S.pid("certfleetd")
        out_size = os.path.getsize(S.path("run", "certfleetd.out")) if os.path.exists(
            S.path("run", "certfleetd.out")) else 0
        self.create_job()
        dead = e.wait_for(lambda: not proc_alive(pid, "certfleetd"), 60, interval=0.1)
        self.need(dead, "certfleetd dies at %s (journal %s)" % (point, self.journal_state()))
        said = S.read("run", "certfleetd.out")[out_size:]
        self.need("failpoint %s: kill" % point in said,
                  "certfleetd.out says it was killed at %s (%r)" % (point, said[-300:]))
        self.notes.append("certfleetd killed at %s, agent journal=%s" % (point, self.journal_state()))
        time.sleep(1)
        start_stack("")
        self.need(self.agent.p.poll() is None, "the agent keeps running while certfleetd restarts")
        self.wait_terminal()

    def run_broker_row(self, state):
        """Holds the agent at state (sleep failpoint), stops mosquitto meanwhile, and starts it again
        once the agent has woken and moved on (so it meets a missing broker for a while)."""
        self.start_agent("%s:sleep=%d" % (agent_failpoint(state), HOLD_S))
        self.wait_connected(self.old_id)
        self.create_job()
        ok = e.wait_for(lambda: self.journal_state() == state, 60, interval=0.1)
        self.need(ok, "the agent reaches %s (journal %s)" % (state, self.journal_state()))
        held = time.monotonic()
        bpid = S.pid("mosquitto")
        stop_service("mosquitto")
        self.need(not proc_alive(bpid, "mosquitto"), "mosquitto (pid %s) stopped" % bpid)
        if state == "CERT_RECEIVED":
            e.wait_for(lambda: self.journal_state() not in ("CERT_RECEIVED", "SWITCHED"), HOLD_S + 20,
                       interval=0.2)
        else:                       # the journal stays put: wait out the hold
            time.sleep(max(0, held + HOLD_S + 1 - time.monotonic()))
        self.notes.append("mosquitto stopped at %s, restarted at %s" % (state, self.journal_state()))
        time.sleep(2)
        start_stack("")
        self.need(self.agent.p.poll() is None, "the agent keeps running across the broker restart")
        self.wait_terminal()

    # the invariants
    def verify(self):
        if self.agent is not None:
            rc = self.agent.stop()
            if rc != 0:
                self.notes.append("agent exit %s on SIGTERM" % rc)
        if self.status is None:
            self.status = self.exec_status()
        b = self.t.dir
        self.device_cert = e.cert_id_of(self.t.crt)
        kp, cp = pub_of(self.t.key, False), pub_of(self.t.crt, True)
        self.need(kp is not None and kp == cp, "device.key matches device.crt")
        gens = sorted(f for f in os.listdir(b) if f.startswith("gen-") or f.startswith(".gen-"))
        self.need(len(gens) == 1 and re.match(r"^gen-\d+$", gens[0]),
                  "exactly one generation is left (%s)" % gens)
        c = e.connect(S, self.thing, self.t.crt, self.t.key)
        try:
            self.need(c.connack == 0, "the device connects with its pair: %s" % c.describe())
        finally:
            c.close()
        want = [self.device_cert]
        got = e.wait_for(lambda: active_certs(self.thing) == want and want, 20, interval=0.5)
        self.registry = active_certs(self.thing)
        self.need(got, "the registry's ACTIVE certificates are exactly the device's (%s vs %s)"
                  % ([x[:12] for x in self.registry or []], self.device_cert[:12]))
        self.need(self.status in self.expect, "the execution is %s, expected %s"
                  % (self.status, "/".join(self.expect)))
        if self.status == "SUCCEEDED":
            self.need(self.device_cert != self.old_id, "a SUCCEEDED rotation left a new certificate")
        elif self.status == "FAILED":
            self.need(self.device_cert == self.old_id, "a FAILED rotation left the old certificate")
        for a in self.agents:
            text = a.text()
            self.need(not e.SANITIZER_RE.search(text), "no sanitizer report in %s" % a.log)
            self.need("PRIVATE KEY" not in text, "no key material in %s" % a.log)

    def verdict(self):
        return "ok" if not self.errors else "FAIL"

    def evidence(self):
        out = ["%s (%s): %s" % (self.point, self.thing, "; ".join(self.errors))]
        out.append("  notes: %s" % "; ".join(self.notes))
        x = self.execution()
        out.append("  execution: %s" % (json.dumps(x) if x else None))
        out.append("  journal: %s" % json.dumps(self.journal()))
        for a in self.agents:
            lines = a.text().splitlines()
            out.append("  --- %s (failpoints %s), last lines:" % (a.log, a.failpoints))
            out += ["    " + l for l in lines[-25:]]
        return "\n".join(out)


def _row(n, point, kind, expect=("SUCCEEDED",), why=""):
    r = Row(n, point, kind, expect, why)
    ROWS.append(r)
    return r


for _i, _s in enumerate(AGENT_STATES):
    if _s in FAILURE_PATH:
        _row(_i + 1, agent_failpoint(_s), "agent", ("FAILED",),
             "failure path: new cert %sd while held at CERT_RECEIVED" % FAILURE_PATH[_s])
    else:
        _row(_i + 1, agent_failpoint(_s), "agent")
_n = len(AGENT_STATES) + 1
_row(_n, KEYSTORE_POINT, "agent").state = "SWITCHED"
_row(_n + 1, DAEMON_POINTS[0], "daemon")
# The commit was recorded but its answer lost: the agent resends the identical commit, which gets
# the same answer (a repeated commit is idempotent, docs/certfleetd.md), so the rotation succeeds.
_row(_n + 2, DAEMON_POINTS[1], "daemon")
_row(_n + 3, DAEMON_POINTS[2], "daemon")
# After a broker restart the agent may reconnect (backoff 1-2 s) before certfleetd has resubscribed:
# its first $next/get in VERIFYING is then lost; VERIFYING resends it on its timeout (docs/agent.md),
# so the rotation succeeds.
_row(_n + 4, "broker restart at CERT_RECEIVED", "broker").state = "CERT_RECEIVED"
# Held before the create is sent: the create goes out on a reconnect, may be lost the same way, and
# CREATE_SENT resends it on its timeout - this one must succeed.
_row(_n + 5, "broker restart at CREATE_SENT", "broker").state = "CREATE_SENT"


# CF_CRASH_ONLY=regex runs only the matching rows (debugging; CTest runs them all).
if os.environ.get("CF_CRASH_ONLY"):
    ROWS[:] = [r for r in ROWS if re.search(os.environ["CF_CRASH_ONLY"], r.point)]


def _by_point(p):
    return [r for r in ROWS if r.point == p][0]


# ---- the tests ------------------------------------------------------------------------------------

T0 = [0.0]


def setup():
    T0[0] = time.monotonic()
    for r in ROWS:
        r.t = S.thing(r.thing)
        r.old_id = r.t.cert_id
        extra = {"response_timeout_s": RESPONSE_S, "max_attempts": 8, "reconnect_max_s": 2,
                 # RECONNECTING_NEW and ROLLING_BACK wait this long: short where the new pair is
                 # refused on purpose, long enough elsewhere for a broker or daemon restart
                 "connect_timeout_s": 5 if r.point in [agent_failpoint(s) for s in FAILURE_PATH] else 30}
        with open(os.path.join(r.t.dir, "agent.conf"), "a") as f:
            for k, v in extra.items():
                f.write("%s = %s\n" % (k, v))
    S.up()
    e.check(e.wait_for(daemon_healthy, 30, interval=0.2), "certfleetd is connected to the broker",
            S.tail_logs())


def _guard(r, fn, *args):
    try:
        fn(*args)
    except e.Fail:
        pass
    except Exception as ex:          # keep the other rows going; this one is wrong
        r.errors.append("unexpected exception: %r" % (ex,))


def test_agent_rows_concurrently():
    rows = [r for r in ROWS if r.kind == "agent"]
    th = [threading.Thread(target=_guard, args=(r, r.run_agent_row, r.state, r.point)) for r in rows]
    for t in th:
        t.start()
        time.sleep(0.3)              # stagger the starts a little on two shared cores
    for t in th:
        t.join(300)
    bad = [r for r in rows if r.errors]
    e.check(not bad, "every agent row ran", "; ".join("%s: %s" % (r.point, r.errors[0]) for r in bad))


def test_daemon_rows():
    bad = []
    for r in [x for x in ROWS if x.kind == "daemon"]:
        p = r.point
        _guard(r, r.run_daemon_row, p)
        if r.errors:
            bad.append(r)
            if not e.wait_for(daemon_healthy, 1):
                _guard(r, start_stack, "")
    e.check(not bad, "every certfleetd row ran", "; ".join("%s: %s" % (r.point, r.errors[0]) for r in bad))


def test_broker_rows():
    bad = []
    for r in [x for x in ROWS if x.kind == "broker"]:
        _guard(r, r.run_broker_row, r.state)
        if r.errors:
            bad.append(r)
            if not e.wait_for(daemon_healthy, 1):
                _guard(r, start_stack, "")
    e.check(not bad, "every broker row ran", "; ".join("%s: %s" % (r.point, r.errors[0]) for r in bad))


def test_invariants_and_table():
    for r in ROWS:
        if r.t is not None:
            _guard(r, r.verify)
    w = max(len(r.point) for r in ROWS)
    print("# crash matrix (%d rows, %.0f s so far)" % (len(ROWS), time.monotonic() - T0[0]))
    hdr = "# %-*s | %-9s | %-19s | %-21s | %s" % (w, "crash point", "execution", "device cert",
                                                 "registry ACTIVE", "verdict")
    print(hdr)
    print("# " + "-" * (len(hdr) - 2))
    for r in ROWS:
        dev = "-"
        if r.device_cert:
            dev = "%s %s" % ("new" if r.device_cert != r.old_id else "old", r.device_cert[:12])
        reg = "-"
        if r.registry is not None:
            reg = "{%s}" % ",".join(x[:12] for x in r.registry) if r.registry else "{}"
            if r.registry == [r.device_cert]:
                reg = "= device (%d)" % len(r.registry)
        v = r.verdict()
        if v == "ok" and r.status != "SUCCEEDED":
            v = "ok (%s)" % r.why
        print("# %-*s | %-9s | %-19s | %-21s | %s" % (w, r.point, r.status or "-", dev, reg, v),
              flush=True)
    for r in ROWS:
        if r.errors:
            print("# " + r.evidence().replace("\n", "\n# "))
        else:
            print("#   %s: %s" % (r.point, "; ".join(r.notes)))
    bad = [r.point for r in ROWS if r.errors]
    e.check(not bad, "every row holds the invariants", ", ".join(bad))


e.run_tests([
    test_agent_rows_concurrently,
    test_daemon_rows,
    test_broker_rows,
    test_invariants_and_table,
], setup=setup, stacks=[S])
