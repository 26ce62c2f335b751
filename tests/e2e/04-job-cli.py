#!/usr/bin/python3
"""04-job-cli — the job verbs of the CLI (docs/cli.md "Jobs") against the real stack: certfleetd's
jobs engine, Mosquitto with the certfleet plugin, and certfleet-agent processes.

- `job create-rotation --group` targets a static group's members; `job describe` (text and JSON)
  shows the group, the target counts and one execution per member; `job watch` off a terminal
  prints plain progress lines, no carriage return, and exits 0 once every execution SUCCEEDED.
- A job whose devices are offline stays QUEUED: `job watch --timeout` gives up with exit 1 and
  a clear message; `job cancel` moves it to CANCELED (every execution QUEUED -> CANCELED), after
  which `job watch` exits 1 naming the canceled executions.
- Cancelling a job that has already ended (COMPLETED or CANCELED) is exit 1 with a clear message
  and changes nothing; an unknown job is exit 1.
"""
import os
import signal
import subprocess
import time

import cfe2e as e

S = e.Stack("data")
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")
ONLINE = ["fleet-a", "fleet-b"]     # members of group "fleet", each with a running agent
OFFLINE = ["away-a", "away-b"]      # members of group "away", never connected
T = {}
OLD = {}
J = {}
AGENTS = []


def setup():
    S.cf_ok("group", "create", "fleet")
    S.cf_ok("group", "create", "away")
    for n in ONLINE:
        T[n] = S.thing(n, "--group", "fleet")
        OLD[n] = T[n].cert_id
    for n in OFFLINE:
        T[n] = S.thing(n, "--group", "away")
    S.up()


def stop_agents():
    for p, _ in AGENTS:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


e.on_exit(stop_agents)


def open_principal(name):
    rows = [r for r in S.connections(client_id=name) if "disconnectedAt" not in r]
    return rows[0].get("principal") if rows else None


def describe(job):
    return S.cf_json("job", "describe", job, "--json")


def latest(job_json):
    """thing -> its latest execution (highest executionNumber)."""
    out = {}
    for x in job_json.get("executions", []):
        cur = out.get(x.get("thing"))
        if cur is None or x.get("executionNumber", 0) >= cur.get("executionNumber", 0):
            out[x.get("thing")] = x
    return out


# ---- the group rotation, described and watched ----------------------------------------

def test_agents_connect():
    for n in ONLINE:
        log = S.scratch("agent-" + n + ".log")
        with open(log, "wb") as f:
            p = subprocess.Popen([AGENT, "--config", os.path.join(T[n].dir, "agent.conf")],
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        AGENTS.append((p, log))
    for n in ONLINE:
        ok = e.wait_for(lambda: open_principal(n) == T[n].cert_id, 20, interval=0.2)
        e.check(ok, "%s's agent connects" % n)


def test_create_with_group():
    r = S.cf("job", "create-rotation", "--group", "fleet", "--key-algorithm", "ED25519",
             "--job-id", "rot-fleet", "--max-per-minute", "100", "--retry", "TIMED_OUT:1",
             "--step-timeout", "2m", "--comment", "e2e group rotation")
    e.check(r.rc == 0, "job create-rotation --group exits 0", r)
    lines = r.out.splitlines()
    e.check(len(lines) == 2 and lines[0] == "rot-fleet", "it prints the job id, then a summary", r)
    e.check("ED25519" in lines[1], "the summary names the key algorithm", r)
    J["fleet"] = "rot-fleet"


def test_describe():
    d = describe(J["fleet"])
    e.check(d.get("jobId") == "rot-fleet" and d.get("targets", {}).get("groups") == ["fleet"],
            "describe --json has the group target", d)
    e.check(d.get("targetSelection") == "SNAPSHOT", "SNAPSHOT by default", d)
    e.check(d.get("comment") == "e2e group rotation", "the comment is kept", d)
    e.check(d.get("config", {}).get("rollout", {}).get("maxPerMinute") == 100,
            "the config carries the rollout", d.get("config"))
    e.check(d.get("targetCount", {}).get("total") == len(ONLINE), "two targets", d.get("targetCount"))
    r = S.cf_ok("job", "describe", J["fleet"])
    for want in ("rot-fleet", "groups", "fleet", "rollout", "at most 100/min", "retry", "TIMED_OUT",
                 "targets", "executions", "THING", "ATTEMPT"):
        e.check(want in r.out, "describe's text shows %r" % want, r)


def test_watch_until_done():
    r = S.cf("job", "watch", J["fleet"], "--interval", "0.5", "--timeout", "120", timeout=150)
    e.check(r.rc == 0, "job watch exits 0 once every execution SUCCEEDED", (r, describe(J["fleet"])))
    lines = r.out.splitlines()
    e.check("\r" not in r.out, "no carriage return off a terminal", repr(r.out[:300]))
    e.check(lines and all(l.startswith("rot-fleet ") for l in lines), "plain lines naming the job", r)
    e.check(len(lines) == len(set(lines)), "one line per change", r)
    e.check(lines[-1].startswith("rot-fleet COMPLETED 2/2 100%") and "SUCCEEDED 2" in lines[-1],
            "the last line is COMPLETED 2/2", r)
    ex = latest(describe(J["fleet"]))
    e.check(all(ex.get(n, {}).get("status") == "SUCCEEDED" for n in ONLINE), "both SUCCEEDED", ex)
    for n in ONLINE:
        new = S.cf_json("cert", "list", "--thing", n, "--status", "ACTIVE", "--json")
        e.check(len(new) == 1 and new[0].get("keyAlgorithm") == "ED25519" and new[0]["id"] != OLD[n],
                "%s holds a new ED25519 certificate" % n, new)
    r = S.cf("job", "watch", J["fleet"])
    e.check(r.rc == 0 and len(r.out.splitlines()) == 1, "watching a finished job: one line, exit 0", r)


def test_cancel_finished_job():
    r = S.cf("job", "cancel", J["fleet"])
    e.check(r.rc == 1, "cancel of a COMPLETED job exits 1", r)
    e.check(r.err.startswith("certfleet: job cancel: job rot-fleet has already ended"),
            "with a clear message", r)
    e.check(describe(J["fleet"]).get("status") == "COMPLETED", "and the job stays COMPLETED")
    r = S.cf("job", "cancel", "no-such-job")
    e.check(r.rc == 1 and "no-such-job" in r.err, "an unknown job exits 1 naming it", r)


# ---- offline devices: a stuck job, watched with a timeout, then canceled -------------------

def test_offline_job_stays_queued():
    out = S.cf_json("job", "create-rotation", "--group", "away", "--json")
    J["away"] = out.get("jobId")
    e.check(J["away"], "a job for the offline group is created", out)
    ok = e.wait_for(lambda: set(x.get("status") for x in latest(describe(J["away"])).values()) == {"QUEUED"}
                    and len(latest(describe(J["away"]))) == len(OFFLINE), 15, interval=0.3)
    e.check(ok, "both executions are QUEUED", describe(J["away"]))


def test_watch_timeout_on_stuck_job():
    t0 = time.monotonic()
    r = S.cf("job", "watch", J["away"], "--interval", "0.5", "--timeout", "3", timeout=30)
    dt = time.monotonic() - t0
    e.check(r.rc == 1, "watch --timeout on a stuck job exits 1", r)
    e.check("timed out after 3 s" in r.err and J["away"] in r.err, "with a clear message", r)
    e.check(2.5 <= dt < 15, "after about 3 s (%.1f s)" % dt)
    e.check(r.out.count("\n") >= 1 and "QUEUED 2" in r.out, "having shown the QUEUED progress", r)


def test_cancel_offline_job():
    r = S.cf("job", "cancel", J["away"], "--comment", "devices are away")
    e.check(r.rc == 0, "job cancel of the QUEUED job exits 0", r)
    e.check(J["away"] in r.out and "CANCELED" in r.out, "it prints the job and CANCELED", r)
    ok = e.wait_for(lambda: describe(J["away"]).get("status") == "CANCELED", 10, interval=0.3)
    e.check(ok, "the job is CANCELED", describe(J["away"]))
    ex = latest(describe(J["away"]))
    e.check(all(ex.get(n, {}).get("status") == "CANCELED" for n in OFFLINE),
            "every execution went QUEUED -> CANCELED", ex)
    r = S.cf("job", "watch", J["away"])
    e.check(r.rc == 1, "watch of the canceled job exits 1", r)
    for n in OFFLINE:
        e.check(("  %s CANCELED" % n) in r.out, "it names %s CANCELED" % n, r)
    r = S.cf("job", "cancel", J["away"], "--force")
    e.check(r.rc == 1 and "has already ended" in r.err, "canceling it again exits 1, clearly", r)


def test_agents_clean():
    for p, log in AGENTS:
        e.check(p.poll() is None, "the agent is still running", log)
        os.kill(p.pid, signal.SIGTERM)
        e.check(p.wait(10) == 0, "SIGTERM stops it with exit 0")
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        e.check(not e.SANITIZER_RE.search(text), "no sanitizer report in %s" % log, text[-3000:])


e.run_tests([
    test_agents_connect,
    test_create_with_group,
    test_describe,
    test_watch_until_done,
    test_cancel_finished_job,
    test_offline_job_stays_queued,
    test_watch_timeout_on_stuck_job,
    test_cancel_offline_job,
    test_agents_clean,
], setup=setup, stacks=[S])
