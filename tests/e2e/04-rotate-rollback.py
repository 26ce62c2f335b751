#!/usr/bin/python3
"""04-rotate-rollback — rotations that go wrong, end to end (DESIGN §6, docs/certfleetd.md
"Execution ends", docs/agent.md; issue 4, end-to-end cases 2-5 and the indeterminate case).

Real Mosquitto + plugin, real certfleetd (ASan build with failpoints), real certfleet-agent
processes; paho clients play devices that must misbehave on purpose. certfleetd keeps the
environment it started with, so the scenarios that need a daemon failpoint restart certfleetd
alone (Stack.restart_daemon) — the plain-daemon scenarios run first.

  offline      the device is offline when the job is created: QUEUED until its agent starts,
               then it rotates (new ACTIVE, old INACTIVE, agent connected with the new pair)
  deactivated  the new certificate is deactivated between create and the reconnect (agent
               failpoint agent.cert_received:sleep=N holds the agent right after it installed
               the new certificate; `certfleet cert deactivate NEW` meanwhile) → the broker
               refuses the new pair, the agent rolls back, FAILED with a reason, old pair works;
               the same window played by a paho device (server and broker side)
  indeterminate a paho device creates and commits over the new pair and never says SUCCEEDED;
               inProgressSeconds runs out → TIMED_OUT, rotation.indeterminate, both ACTIVE; then
               it connects with the new pair → old INACTIVE (and, on a second thing, with the old
               pair → new INACTIVE)
  key-alg      a CSR whose key is not the job's keyAlgorithm → WeakKey, nothing issued
  create-drop  certfleetd.create.drop: create never answered → the agent gives up, FAILED with a
               reason, no certificate issued, the old pair still works
  commit-drop  certfleetd.commit.drop: commit never answered → the agent rolls back, FAILED, the
               new certificate INACTIVE, the old pair works
"""
import re
import time

import cfe2e as e

S = e.Stack("data")
# Short agent timeouts so that a rollback takes seconds, not minutes (docs/agent.md).
FAST = {"connect_timeout_s": 5, "response_timeout_s": 5, "max_attempts": 2, "reconnect_max_s": 2}
AGENTS = []


def setup():
    S.up()


def job_for(thing, **kw):
    body = {"targets": {"things": [thing]}, "keyAlgorithm": "ECDSA-P256"}
    body.update(kw)
    j = S.job_create(body)
    e.check(j.get("jobId"), "the job has an id", j)
    return j["jobId"]


def agent(thing, conf=None, env=None):
    a = e.Agent(S, thing, conf=conf, env=env)
    AGENTS.append(a)
    return a


def reason_of(x):
    return (x or {}).get("statusDetails", {}).get("reason", "")


def old_pair_works(a):
    """The agent is connected with its old certificate (the broker accepted the old pair again),
    the bundle names the old pair, and the registry still has it ACTIVE."""
    e.check(a.wait_connected_with(a.old_id, 30), "%s's agent is connected with its old certificate"
            % a.thing.name, S.connections(client_id=a.thing.name)[:3])
    e.check(a.current_id() == a.old_id and a.pair_matches(),
            "%s: device.crt/device.key are the old, matching pair" % a.thing.name)
    e.check(S.cert_status(a.old_id) == "ACTIVE", "%s: the old certificate is ACTIVE" % a.thing.name)
    # and a fresh connection with (a copy of) the old pair is accepted; then the agent again
    rc = a.stop()
    e.check(rc == 0, "%s's agent stops cleanly" % a.thing.name, rc)
    c = e.connect(S, a.thing.name, a.old_crt, a.old_key)
    e.check(c.ok, "%s: a new connection with the old pair is accepted" % a.thing.name, c.describe())
    c.close()
    a.start()
    e.check(a.wait_connected_with(a.old_id, 20), "%s's restarted agent connects with the old pair"
            % a.thing.name, a.log()[-800:])


def refused_with(client_id, cert_id, timeout=10):
    """A broker.refused event for client_id's connection with certificate cert_id."""
    return S.wait_event(lambda ev: ev.get("type") == "broker.refused" and
                        ev.get("detail", {}).get("clientId") == client_id and
                        ev.get("detail", {}).get("principal") == cert_id, timeout)


def others(thing_name, old_id):
    return [c for c in S.certs_of(thing_name) if c.get("id") != old_id]


# ---- plain daemon ---------------------------------------------------------------------------

def test_offline_device_rotates_when_back():
    th = S.thing("off-1")
    a = agent(th)
    job = job_for(th.name)
    x = S.execution(job, th.name)
    e.check(x and x["status"] == "QUEUED", "the offline device's execution is QUEUED", x)
    time.sleep(3)      # a few engine passes: nothing times out or moves while it is offline
    x = S.execution(job, th.name)
    e.check(x["status"] == "QUEUED" and x["executionNumber"] == 1, "still QUEUED while offline", x)
    a.start()
    x = S.wait_execution(job, th.name, e.TERMINAL, 90)
    e.check(x and x["status"] == "SUCCEEDED", "it rotates once its agent connects",
            (x, a.log()[-1500:]))
    new_id = a.current_id()
    e.check(new_id != a.old_id and a.pair_matches(), "the bundle names a new matching pair")
    e.check(S.cert_status(new_id) == "ACTIVE" and S.cert_status(a.old_id) == "INACTIVE",
            "new ACTIVE, old INACTIVE")
    e.check(a.wait_connected_with(new_id, 20), "the agent is connected with the new certificate")
    e.check(S.wait_job(job, ("COMPLETED",), 15), "the job COMPLETED", S.job(job))


def test_new_cert_deactivated_before_reconnect():
    # The agent's journal hook runs the failpoint agent.<state> after each durable journal write
    # (src/agent/main.c). agent.cert_received:sleep=6 stops the agent for 6 s right after it
    # verified and installed the new certificate, before it switches and reconnects: the server
    # has issued the certificate (rotation created), so the operator's deactivation lands exactly
    # in the window "new certificate issued, device not yet reconnected with it".
    # The agent takes the time of the event that started a chain of states as "now" for the whole
    # chain, so the sleep also eats into RECONNECTING_NEW's timeout (connect_timeout_s): with
    # sleep=10 and 5 s the agent rolled back without ever trying the new pair. Hence sleep=6 and
    # connect_timeout_s=15: about 9 s of refused attempts with the new pair, then the rollback.
    th = S.thing("deact-1")
    a = agent(th, conf=dict(FAST, connect_timeout_s=15),
              env={"CERTFLEET_FAILPOINTS": "agent.cert_received:sleep=6"})
    a.start()
    e.check(a.wait_connected_with(a.old_id, 20), "the agent connects")
    job = job_for(th.name)
    rx = re.compile(r"failpoint agent\.cert_received: sleep", re.I)
    hit = e.wait_for(lambda: rx.search(a.log()) or
                     (S.execution(job, th.name) or {}).get("status") in e.TERMINAL, 40, interval=0.1)
    e.check(isinstance(hit, re.Match),
            "the agent stops at the failpoint agent.cert_received (an agent built without the "
            "agent.<state> failpoints rotates straight through)", (S.execution(job, th.name), a.log()[-1200:]))
    new = others(th.name, a.old_id)
    e.check(len(new) == 1 and new[0]["status"] == "ACTIVE", "one new certificate was issued", new)
    new_id = new[0]["id"]
    S.cf_ok("cert", "deactivate", new_id)
    x = S.wait_execution(job, th.name, e.TERMINAL, 90)
    e.check(x and x["status"] == "FAILED", "the execution FAILED", (x, a.log()[-2000:]))
    e.check(reason_of(x), "with a reason in statusDetails", x)
    e.check(S.cert_status(new_id) == "INACTIVE", "the new certificate is INACTIVE")
    e.check(refused_with(th.name, new_id), "the agent tried the new pair and the broker refused it",
            a.log()[-1500:])
    old_pair_works(a)
    e.check(len(S.events_of("rotation.failed", th.name)) == 1, "one rotation.failed event")


def test_new_cert_deactivated_server_side():
    # The same window played by a paho device, so that the server and broker side holds whatever
    # the agent build: create accepted → operator deactivates NEW → the broker refuses the new
    # pair → the device comes back with the old pair and reports FAILED → FAILED, NEW INACTIVE,
    # rotation failed, the old pair works.
    th = S.thing("deact-2")
    dev = e.Device.of(S, th)
    job = job_for(th.name)
    dev.update_ok(job, "IN_PROGRESS")
    key = e.new_key(S)
    csr = e.csr_of(S, key, th.name)
    v, p = dev.create(job, csr, e.custody_sign(S, th.key, e.create_msg(job, th.name, csr)))
    e.check(v == "accepted", "create accepted", p)
    new_id = p["certificateId"]
    crt = S.scratch("deact-2-new.crt")
    with open(crt, "w") as f:
        f.write(p["certificatePem"])
    S.cf_ok("cert", "deactivate", new_id)
    dev.close()
    c = e.connect(S, th.name, crt, key)
    e.check(c.refused, "the broker refuses the deactivated new pair", c.describe())
    c.close()
    e.check(refused_with(th.name, new_id), "a broker.refused event names the new certificate")
    dev = e.Device.of(S, th)
    dev.update_ok(job, "FAILED", statusDetails={"reason": "new certificate refused by the broker"})
    x = S.execution(job, th.name)
    e.check(x["status"] == "FAILED" and reason_of(x) == "new certificate refused by the broker",
            "FAILED with the device's reason", x)
    e.check(S.cert_status(new_id) == "INACTIVE" and S.cert_status(th.cert_id) == "ACTIVE",
            "NEW INACTIVE, old ACTIVE")
    e.check(len(S.events_of("rotation.failed", th.name)) == 1, "one rotation.failed event")
    dev.close()


def _indeterminate(name):
    """A paho device that rotates up to commit and then goes away without SUCCEEDED; the job's
    in-progress timeout makes it indeterminate. Returns (thing, job, new crt, new key, new id)."""
    th = S.thing(name)
    dev = e.Device.of(S, th)
    job = job_for(name, config={"timeouts": {"inProgressSeconds": 12}})
    key = e.new_key(S)
    csr = e.csr_of(S, key, name)
    sig = e.custody_sign(S, th.key, e.create_msg(job, name, csr))
    dev.update_ok(job, "IN_PROGRESS")
    v, p = dev.create(job, csr, sig)
    e.check(v == "accepted", "create accepted", p)
    new_id = p["certificateId"]
    crt = S.scratch(name + "-new.crt")
    with open(crt, "w") as f:
        f.write(p["certificatePem"])
    dev.close()
    dev2 = e.Device(S, name, crt, key)
    v, p = dev2.request("jobs/$next/get", {})
    e.check(v == "accepted" and p.get("execution", {}).get("jobId") == job, "$next/get over the new pair", p)
    v, p = dev2.commit(job, new_id, e.custody_sign(S, key, e.commit_msg(job, name, new_id)))
    e.check(v == "accepted", "commit accepted", p)
    dev2.close()      # and never SUCCEEDED: offline when the timeout runs out
    e.check(e.wait_for(lambda: S.open_principal(name) is None, 10, interval=0.2),
            "certfleetd saw the device go away")
    x = S.wait_execution(job, name, e.TERMINAL, 40)
    e.check(x and x["status"] == "TIMED_OUT", "the execution TIMED_OUT", x)
    e.check("timeout" in reason_of(x), "statusDetails names the timeout", x)
    ev = S.events_of("rotation.indeterminate", name)
    e.check(len(ev) == 1, "a rotation.indeterminate event", S.events()[-5:])
    e.check(S.cert_status(th.cert_id) == "ACTIVE" and S.cert_status(new_id) == "ACTIVE",
            "both certificates stay ACTIVE while indeterminate")
    time.sleep(2)     # engine passes with the device away settle nothing
    e.check(S.cert_status(th.cert_id) == "ACTIVE" and S.cert_status(new_id) == "ACTIVE",
            "still both ACTIVE with the device away")
    e.check(S.execution(job, name)["executionNumber"] == 1, "TIMED_OUT after commit is not retried")
    return th, job, crt, key, new_id


def test_indeterminate_resolved_by_new_pair():
    th, job, crt, key, new_id = _indeterminate("indet-new")
    c = e.connect(S, th.name, crt, key)
    e.check(c.ok, "the device connects with the new pair", c.describe())
    ok = e.wait_for(lambda: S.cert_status(th.cert_id) == "INACTIVE", 15, interval=0.3)
    e.check(ok, "connecting with the new pair retires the old certificate")
    e.check(S.cert_status(new_id) == "ACTIVE", "the new certificate stays ACTIVE")
    e.check(S.events_of("rotation.succeeded", th.name), "a rotation.succeeded event")
    c.close()
    old = e.connect_thing(S, th)
    e.check(old.refused, "the broker now refuses the old pair", old.describe())


def test_indeterminate_resolved_by_old_pair():
    th, job, crt, key, new_id = _indeterminate("indet-old")
    c = e.connect_thing(S, th)
    e.check(c.ok, "the device connects with the old pair", c.describe())
    ok = e.wait_for(lambda: S.cert_status(new_id) == "INACTIVE", 15, interval=0.3)
    e.check(ok, "connecting with the old pair retires the new certificate")
    e.check(S.cert_status(th.cert_id) == "ACTIVE", "the old certificate stays ACTIVE")
    e.check(S.events_of("rotation.failed", th.name), "a rotation.failed event")
    c.close()
    n = e.connect(S, th.name, crt, key)
    e.check(n.refused, "the broker now refuses the new pair", n.describe())


def test_csr_key_algorithm_must_match_job():
    th = S.thing("alg-1")
    dev = e.Device.of(S, th)
    job = job_for(th.name, keyAlgorithm="ECDSA-P384")
    dev.update_ok(job, "IN_PROGRESS")
    before = len(S.certs_of(th.name))
    rej = len(S.events_of("rotation.rejected", th.name))
    key = e.new_key(S, "P-256")
    csr = e.csr_of(S, key, th.name)
    v, p = dev.create(job, csr, e.custody_sign(S, th.key, e.create_msg(job, th.name, csr)))
    e.check(v == "rejected" and p.get("errorCode") == "WeakKey", "a P-256 CSR for a P-384 job: WeakKey", p)
    e.check("ECDSA-P384" in p.get("errorMessage", ""), "the message names the job's algorithm", p)
    e.check(len(S.certs_of(th.name)) == before, "no certificate issued")
    e.check(len(S.events_of("rotation.rejected", th.name)) == rej + 1, "a rotation.rejected event")
    e.check(not S.events_of("rotation.created", th.name), "no rotation.created event")
    # the same device with a P-384 key is accepted: it was the algorithm that was refused
    key = e.new_key(S, "P-384")
    csr = e.csr_of(S, key, th.name)
    v, p = dev.create(job, csr, e.custody_sign(S, th.key, e.create_msg(job, th.name, csr)))
    e.check(v == "accepted", "a P-384 CSR is accepted", p)
    d = S.cf_json("cert", "describe", p["certificateId"], "--json")
    e.check(d.get("keyAlgorithm") == "ECDSA-P384", "and issued for a P-384 key", d)
    dev.update_ok(job, "FAILED", statusDetails={"reason": "test: stop here"})
    e.check(S.cert_status(p["certificateId"]) == "INACTIVE", "FAILED after create: new INACTIVE")
    dev.close()


# ---- certfleetd.create.drop -------------------------------------------------------------------

def test_create_never_answered():
    S.restart_daemon(env={"CERTFLEET_FAILPOINTS": "certfleetd.create.drop:drop"})
    th = S.thing("cdrop-1")
    a = agent(th, conf=FAST)
    a.start()
    e.check(a.wait_connected_with(a.old_id, 20), "the agent connects")
    job = job_for(th.name)
    x = S.wait_execution(job, th.name, e.TERMINAL, 90)
    e.check(x and x["status"] == "FAILED", "the execution FAILED", (x, a.log()[-2000:]))
    e.check(reason_of(x), "with a reason in statusDetails", x)
    e.check("failpoint certfleetd.create.drop" in S.read("run", "certfleetd.out"),
            "certfleetd dropped the create (failpoint)", S.read("run", "certfleetd.out")[-500:])
    e.check(others(th.name, a.old_id) == [], "no new certificate was issued for the thing",
            S.certs_of(th.name))
    e.check(not S.events_of("rotation.created", th.name), "no rotation.created event")
    old_pair_works(a)


# ---- certfleetd.commit.drop -------------------------------------------------------------------

def test_commit_never_answered():
    S.restart_daemon(env={"CERTFLEET_FAILPOINTS": "certfleetd.commit.drop:drop"})
    th = S.thing("kdrop-1")
    a = agent(th, conf=FAST)
    a.start()
    e.check(a.wait_connected_with(a.old_id, 20), "the agent connects")
    job = job_for(th.name)
    x = S.wait_execution(job, th.name, e.TERMINAL, 120)
    e.check(x and x["status"] == "FAILED", "the execution FAILED", (x, a.log()[-2000:]))
    e.check(reason_of(x), "with a reason in statusDetails", x)
    e.check("failpoint certfleetd.commit.drop" in S.read("run", "certfleetd.out"),
            "certfleetd dropped the commit (failpoint)")
    new = others(th.name, a.old_id)
    e.check(len(new) == 1, "one new certificate was issued", new)
    e.check(new[0]["status"] == "INACTIVE", "the new certificate ends INACTIVE", new)
    old_pair_works(a)
    e.check(len(S.events_of("rotation.failed", th.name)) == 1, "one rotation.failed event")


def test_agents_clean():
    S.restart_daemon()
    for a in AGENTS:
        if a.p is not None:
            a.check_clean()


e.run_tests([
    test_offline_device_rotates_when_back,
    test_new_cert_deactivated_before_reconnect,
    test_new_cert_deactivated_server_side,
    test_indeterminate_resolved_by_new_pair,
    test_indeterminate_resolved_by_old_pair,
    test_csr_key_algorithm_must_match_job,
    test_create_never_answered,
    test_commit_never_answered,
    test_agents_clean,
], setup=setup, stacks=[S])
