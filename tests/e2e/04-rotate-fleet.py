#!/usr/bin/python3
"""04-rotate-fleet — the jobs engine over a fleet (DESIGN §7, docs/jobs.md, docs/certfleetd.md
"The jobs engine"; issue 4, end-to-end case 7).

Real Mosquitto + plugin, real certfleetd, 20 real certfleet-agent processes for the rollout, and
paho clients for devices that fail on purpose. Jobs are created with the HTTP API.

  7a rollout    20 targets, maxPerMinute 5: exactly 5 released (15 unreleased) through the first
                window while those 5 rotate; after the next window 10, never more before 120 s
  7b abort      FAILED 50 % after 2 executed, maxPerMinute 4 over 6 targets: two devices fail →
                job CANCELED "aborted: …", the 2 other QUEUED CANCELED, the 2 unreleased never
                released (checked again after the next window)
  7c retries    retry FAILED 1: attempt 1 FAILED (a paho device), attempt 2 by the real agent
                SUCCEEDED; job COMPLETED
  7d cancel     QUEUED → CANCELED, IN_PROGRESS untouched (and may still finish); force-cancel of a
                rotation past create → CANCELED and its new certificate INACTIVE; cancel of a
                finished job → 409
  7e completion a job whose executions all ended (one SUCCEEDED by an agent, one FAILED) is
                COMPLETED, not before
"""
import time

import cfe2e as e

S = e.Stack("data")
N_FLEET = 20
R = {}        # name -> Thing (the 20 rollout devices, real agents)
A = {}        # name -> Agent
T = {}        # other things
CLOCK = {}    # monotonic times: "7a", "7b" job creation
JOBS = {}


def setup():
    S.up()
    for i in range(N_FLEET):
        n = "r%02d" % i
        R[n] = S.thing(n)
    for n in ("b0", "b1", "b2", "b3", "b4", "b5", "c0", "d0", "d1", "f0", "e1"):
        T[n] = S.thing(n)


def reason_of(x):
    return (x or {}).get("statusDetails", {}).get("reason", "")


def things_body(names, **kw):
    body = {"targets": {"things": list(names)}, "keyAlgorithm": "ECDSA-P256"}
    body.update(kw)
    return body


# ---- 7a: rollout ------------------------------------------------------------------------------

def test_7a_fleet_agents_connect():
    for n, th in R.items():
        A[n] = e.Agent(S, th).start()
    for n in R:
        e.check(A[n].wait_connected_with(A[n].old_id, 60), "%s's agent connects" % n, A[n].log()[-800:])


def test_7a_rollout_first_window():
    j = S.job_create(things_body(sorted(R), config={"rollout": {"maxPerMinute": 5}}))
    CLOCK["7a"] = time.monotonic()
    JOBS["7a"] = job = j["jobId"]
    tc = j.get("targetCount", {})
    e.check(tc.get("total") == 20 and tc.get("released") == 5 and tc.get("unreleased") == 15,
            "the answer: 20 targets, 5 released, 15 unreleased", tc)
    e.check(len(j.get("executions", [])) == 5, "5 executions exist", j.get("executions"))
    released = {x["thing"] for x in j["executions"]}
    # Through the first window: never more than 5, while the 5 devices rotate.
    done = None
    while time.monotonic() - CLOCK["7a"] < 50:
        j = S.job(job)
        tc = j["targetCount"]
        e.check(tc["released"] == 5 and tc["unreleased"] == 15 and len(j["executions"]) == 5,
                "still exactly 5 released at %.0f s" % (time.monotonic() - CLOCK["7a"]), tc)
        if all(x["status"] == "SUCCEEDED" for x in j["executions"]):
            done = j
            if time.monotonic() - CLOCK["7a"] > 10:
                break
        time.sleep(1)
    e.check(done, "the 5 released devices rotated within the first window", S.job(job)["executions"])
    for n in released:
        a = A[n]
        new_id = a.current_id()
        e.check(new_id != a.old_id and a.pair_matches(), "%s holds a new matching pair" % n)
        e.check(S.cert_status(new_id) == "ACTIVE" and S.cert_status(a.old_id) == "INACTIVE",
                "%s: new ACTIVE, old INACTIVE" % n)
    for n in set(R) - released:
        e.check(A[n].current_id() == A[n].old_id, "%s (unreleased) has not rotated" % n)
    e.check(S.job(job)["status"] == "IN_PROGRESS", "the job is still IN_PROGRESS")


def still_first_window():
    """While 7a's first window lasts (with a margin), it still has exactly 5 released: called by
    the tests that run meanwhile."""
    if "7a" not in JOBS or time.monotonic() - CLOCK["7a"] > 55:
        return
    tc = S.job(JOBS["7a"])["targetCount"]
    e.check(tc["released"] == 5 and tc["unreleased"] == 15,
            "7a: still exactly 5 released at %.0f s" % (time.monotonic() - CLOCK["7a"]), tc)


# ---- 7b: abort --------------------------------------------------------------------------------

def test_7b_abort():
    still_first_window()
    names = ["b0", "b1", "b2", "b3", "b4", "b5"]
    j = S.job_create(things_body(names, config={
        "rollout": {"maxPerMinute": 4},
        "abort": [{"failureType": "FAILED", "thresholdPercentage": 50, "minNumberOfExecutedThings": 2}]}))
    CLOCK["7b"] = time.monotonic()
    JOBS["7b"] = job = j["jobId"]
    e.check(j["targetCount"]["released"] == 4 and j["targetCount"]["unreleased"] == 2,
            "4 of 6 released", j["targetCount"])
    released = sorted(x["thing"] for x in j["executions"])
    failing, queued = released[:2], released[2:]
    devs = [e.Device.of(S, T[n]) for n in failing]
    devs[0].update_ok(job, "IN_PROGRESS")
    devs[0].update_ok(job, "FAILED", statusDetails={"reason": "test: this device fails"})
    time.sleep(2.5)   # engine passes: 1 executed is below the minimum of 2
    e.check(S.job(job)["status"] == "IN_PROGRESS", "one failure of one executed does not abort",
            S.job(job).get("comment"))
    devs[1].update_ok(job, "IN_PROGRESS")
    devs[1].update_ok(job, "FAILED", statusDetails={"reason": "test: this device fails too"})
    j = S.wait_job(job, ("CANCELED",), 15)
    e.check(j, "two failures of two executed abort the job", S.job(job))
    e.check("aborted" in j.get("comment", ""), "the comment says aborted", j.get("comment"))
    for n in queued:
        x = S.execution(job, n)
        e.check(x["status"] == "CANCELED", "QUEUED %s is CANCELED" % n, x)
    for n in failing:
        e.check(S.execution(job, n)["status"] == "FAILED", "%s stays FAILED" % n)
    e.check(j["targetCount"]["released"] == 4 and j["targetCount"]["unreleased"] == 2,
            "nothing more released", j["targetCount"])
    e.check(j["counts"]["FAILED"] == 2 and j["counts"]["CANCELED"] == 2, "counts", j["counts"])
    for d in devs:
        d.close()
    still_first_window()


# ---- 7c: retries ------------------------------------------------------------------------------

def test_7c_retry_then_succeed():
    still_first_window()
    th = T["c0"]
    dev = e.Device.of(S, th)
    j = S.job_create(things_body(["c0"], config={"retry": [{"failureType": "FAILED", "numberOfRetries": 1}]}))
    JOBS["7c"] = job = j["jobId"]
    dev.update_ok(job, "IN_PROGRESS")
    dev.update_ok(job, "FAILED", statusDetails={"reason": "test: first attempt fails"})
    dev.close()
    x = S.wait_execution(job, "c0", ("QUEUED",), 15, number=2)
    e.check(x, "attempt 2 is QUEUED after the failure", S.executions(job))
    A["c0"] = a = e.Agent(S, th).start()      # the real agent takes attempt 2
    x = S.wait_execution(job, "c0", e.TERMINAL, 90, number=2)
    e.check(x and x["status"] == "SUCCEEDED", "attempt 2 SUCCEEDED", (x, a.log()[-1500:]))
    ex = S.executions(job, "c0")
    e.check([(y["executionNumber"], y["status"]) for y in ex] == [(1, "FAILED"), (2, "SUCCEEDED")],
            "attempt 1 FAILED, attempt 2 SUCCEEDED", ex)
    e.check(reason_of(ex[0]) == "test: first attempt fails", "attempt 1 keeps its reason", ex[0])
    e.check(ex[1]["versionNumber"] > ex[0]["versionNumber"], "the retry continues the version", ex)
    e.check(S.wait_job(job, ("COMPLETED",), 15), "the job COMPLETED", S.job(job))
    new_id = a.current_id()
    e.check(new_id != a.old_id and S.cert_status(new_id) == "ACTIVE" and
            S.cert_status(a.old_id) == "INACTIVE", "the device rotated: new ACTIVE, old INACTIVE")
    still_first_window()


# ---- 7d: cancel and force-cancel ----------------------------------------------------------------

def test_7d_cancel():
    still_first_window()
    j = S.job_create(things_body(["d0", "d1"]))
    JOBS["7d"] = job = j["jobId"]
    dev = e.Device.of(S, T["d0"])
    p = dev.update_ok(job, "IN_PROGRESS")
    v_before = p["executionState"]["versionNumber"]
    st, j = S.job_cancel(job)
    e.check(st == 200 and j.get("status") == "CANCELED", "cancel answers 200, job CANCELED", (st, j))
    e.check(j.get("forceCanceled") is False, "not a force-cancel", j)
    e.check(S.execution(job, "d1")["status"] == "CANCELED", "QUEUED d1 CANCELED", S.executions(job))
    x = S.execution(job, "d0")
    e.check(x["status"] == "IN_PROGRESS" and x["versionNumber"] == v_before,
            "IN_PROGRESS d0 untouched", x)
    time.sleep(1.5)
    e.check(S.execution(job, "d0")["status"] == "IN_PROGRESS", "and stays so across engine passes")
    # the device may still finish what it was doing
    dev.update_ok(job, "SUCCEEDED")
    st, body = S.job_cancel(job)
    e.check(st == 409, "canceling a CANCELED job: 409", (st, body))
    st, body = S.job_cancel(job, force=True)
    e.check(st == 409, "force-canceling a CANCELED job: 409", (st, body))
    dev.close()
    still_first_window()


def test_7d_force_cancel_rotation_past_create():
    still_first_window()
    th = T["f0"]
    j = S.job_create(things_body(["f0"]))
    JOBS["7d-force"] = job = j["jobId"]
    dev = e.Device.of(S, th)
    dev.update_ok(job, "IN_PROGRESS")
    key = e.new_key(S)
    csr = e.csr_of(S, key, "f0")
    v, p = dev.create(job, csr, e.custody_sign(S, th.key, e.create_msg(job, "f0", csr)))
    e.check(v == "accepted", "create accepted", p)
    new_id = p["certificateId"]
    e.check(S.cert_status(new_id) == "ACTIVE", "the new certificate is ACTIVE during the rotation")
    st, j = S.job_cancel(job, force=True, comment="test: force")
    e.check(st == 200 and j.get("status") == "CANCELED" and j.get("forceCanceled") is True,
            "force-cancel answers 200, job CANCELED, forceCanceled", (st, j))
    x = S.execution(job, "f0")
    e.check(x["status"] == "CANCELED", "the IN_PROGRESS execution is CANCELED", x)
    e.check(S.cert_status(new_id) == "INACTIVE", "its new certificate is INACTIVE")
    e.check(S.cert_status(th.cert_id) == "ACTIVE", "the old certificate stays ACTIVE")
    e.check(S.events_of("rotation.failed", "f0"), "a rotation.failed event")
    v, p = dev.update(job, "SUCCEEDED")
    e.check(v == "rejected" and p.get("errorCode") == "TerminalStateReached",
            "a late SUCCEEDED is refused: TerminalStateReached", p)
    dev.close()
    c = e.connect(S, "f0", th.crt, th.key)
    e.check(c.ok, "the old pair still connects", c.describe())
    c.close()
    st, body = S.job_cancel(job, force=True)
    e.check(st == 409, "force-canceling it again: 409", (st, body))
    st, body = S.job_cancel(JOBS["7c"])
    e.check(st == 409, "canceling a COMPLETED job: 409", (st, body))
    e.check(S.job(JOBS["7c"])["status"] == "COMPLETED", "which stays COMPLETED")
    still_first_window()


# ---- 7e: completion ---------------------------------------------------------------------------

def test_7e_completion():
    # c0's agent (still running from 7c) succeeds; e1, a paho device, fails.
    still_first_window()
    j = S.job_create(things_body(["c0", "e1"]))
    JOBS["7e"] = job = j["jobId"]
    dev = e.Device.of(S, T["e1"])
    dev.update_ok(job, "IN_PROGRESS")
    x = S.wait_execution(job, "c0", e.TERMINAL, 90)
    e.check(x and x["status"] == "SUCCEEDED", "c0 SUCCEEDED", (x, A["c0"].log()[-1200:]))
    time.sleep(1.5)
    e.check(S.job(job)["status"] == "IN_PROGRESS", "not COMPLETED while e1 is IN_PROGRESS")
    dev.update_ok(job, "FAILED", statusDetails={"reason": "test: e1 fails"})
    j = S.wait_job(job, ("COMPLETED",), 15)
    e.check(j, "COMPLETED once every execution ended", S.job(job))
    e.check(j.get("completedAt"), "with completedAt", j)
    e.check(j["counts"]["SUCCEEDED"] == 1 and j["counts"]["FAILED"] == 1, "counts", j["counts"])
    e.check(all(y["status"] in e.TERMINAL for y in j["executions"]), "every execution ended")
    dev.close()
    still_first_window()


# ---- after the next window --------------------------------------------------------------------

def test_7a_7b_after_next_window():
    job = JOBS["7a"]
    left = CLOCK["7a"] + 62 - time.monotonic()
    if left > 0:
        time.sleep(left)
    j = e.wait_for(lambda: (lambda j: j if j["targetCount"]["released"] > 5 else None)(S.job(job)), 15,
                   interval=0.5)
    e.check(j, "more are released in the second window", S.job(job)["targetCount"])
    elapsed = time.monotonic() - CLOCK["7a"]
    e.check(elapsed < 115, "(still inside the second window: %.0f s)" % elapsed)
    tc = j["targetCount"]
    e.check(tc["released"] == 10 and tc["unreleased"] == 10, "10 released in two windows", tc)
    time.sleep(2)
    tc = S.job(job)["targetCount"]
    e.check(tc["released"] <= 10, "never more than 10 before 120 s", tc)
    # 7b: its next window came too, and the aborted job released nothing more
    left = CLOCK["7b"] + 62 - time.monotonic()
    if left > 0:
        time.sleep(left)
    jb = S.job(JOBS["7b"])
    e.check(jb["status"] == "CANCELED" and jb["targetCount"]["released"] == 4 and
            jb["targetCount"]["unreleased"] == 2, "the aborted job released nothing more",
            jb["targetCount"])
    # end 7a: its QUEUED executions are CANCELED, its unreleased targets never released
    st, j = S.job_cancel(job)
    e.check(st == 200 and j["status"] == "CANCELED", "7a canceled", (st, j))
    e.check(j["counts"]["QUEUED"] == 0, "no QUEUED execution left", j["counts"])
    time.sleep(1.5)
    e.check(S.job(job)["targetCount"]["released"] == j["targetCount"]["released"],
            "nothing released after the cancel")


def test_agents_clean():
    # let in-flight rotations of 7a's second window finish before stopping the agents
    e.wait_for(lambda: S.job(JOBS["7a"])["counts"]["IN_PROGRESS"] == 0, 60, interval=0.5)
    for a in A.values():
        a.check_clean()


e.run_tests([
    test_7a_fleet_agents_connect,
    test_7a_rollout_first_window,
    test_7b_abort,
    test_7c_retry_then_succeed,
    test_7d_cancel,
    test_7d_force_cancel_rotation_past_create,
    test_7e_completion,
    test_7a_7b_after_next_window,
    test_agents_clean,
], setup=setup, stacks=[S])
