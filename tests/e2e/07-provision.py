#!/usr/bin/python3
"""07-provision — provisioning by claim against the real stack (DESIGN §9, docs/provisioning.md).

A batch of certfleet-agent processes, each with a copy of one claim bundle and its own serial,
provisions itself (own key, PENDING_ACTIVATION certificate that turns ACTIVE on first connect, claim
key deleted) and then rotates normally through a group job. A claim reaches only its provisioning
topic and its own replies. A request replayed after its certificate was used is rejected. Each kind
of misuse — rate above the limit, a serial provisioned twice, use outside the window, the claim
connected from several clients at once, denials above the threshold — disables the claim at once:
claim.status event, live connections kicked, provisioning.claim_disabled through the exec hook,
and afterwards a legitimate device is refused at CONNECT with a clear error.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import cfe2e as e

S = e.Stack("data")
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")
NOTES = None
CLAIMS = {}   # template -> (bundle dir, claim certificate id)
AGENTS = []   # (Popen, log path, device dir)
SERIALS = ["100", "101", "102"]


def setup():
    global NOTES
    NOTES = S.scratch("notes.jsonl")
    hook = S.scratch("hook.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\ncat >> '%s'\necho >> '%s'\n" % (NOTES, NOTES))
    os.chmod(hook, 0o755)
    with open(S.path("certfleet.conf"), "a") as f:
        f.write("notify_exec = %s\n" % hook)
        f.write("notify_backoff = 1\n")
        f.write("provision_sweep_s = 1\n")
    template("batch", "--group", "sensors", "--attr", "model=x1", "--max-concurrent", "8",
             "--rate-per-minute", "100")
    template("m-rate", "--rate-per-minute", "2")
    template("m-serial")
    template("m-window", "--window-start", "2020-01-01", "--window-end", "2021-01-01")
    template("m-conc")
    allow = S.scratch("allow.txt")
    with open(allow, "w") as f:
        f.write("# the only serial allowed\n1\n")
    template("m-deny", "--allow-file", allow, "--max-denials", "2")
    template("m-op")
    template("m-hook", "--allow-hook", 'test "$CF_PARAM_SerialNumber" = 5')
    template("m-slow", "--allow-hook", "sleep 30", "--hook-timeout", "1")
    S.up()


def template(name, *extra):
    S.cf_ok("provision", "template-create", name, "--name-pattern", name + "-{SerialNumber}", *extra)
    b = S.scratch("claim-" + name)
    out = S.cf_json("provision", "claim-create", name, "--bundle", b, "--json")
    CLAIMS[name] = (b, out["certificateId"])


def notes():
    try:
        with open(NOTES) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def stop_agents():
    for p, _, _ in AGENTS:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


e.on_exit(stop_agents)


def claim_status(name):
    rows = S.cf_json("provision", "claim-list", "--template", name, "--json")
    return rows[0]["status"], rows[0]["reason"]


def open_principal(client_id):
    rows = [r for r in S.connections(client_id=client_id) if "disconnectedAt" not in r]
    return rows[0].get("principal") if rows else None


def csr_for(cn):
    """A fresh P-256 key and a CSR with CN=cn: (key path, CSR PEM)."""
    d = S.scratch("csr-" + cn)
    os.makedirs(d)
    key, csr = os.path.join(d, "k.pem"), os.path.join(d, "csr.pem")
    r = e.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-subj", "/CN=" + cn, "-out", csr)
    e.check(r.rc == 0, "openssl makes a CSR", r)
    with open(csr) as f:
        return key, f.read()


class Claim:
    """A paho client holding a template's claim certificate."""

    def __init__(self, tmpl, client_id):
        b, self.id = CLAIMS[tmpl]
        self.tmpl, self.client_id = tmpl, client_id
        self.c = e.connect(S, client_id, os.path.join(b, "device.crt"), os.path.join(b, "device.key"))
        e.check(self.c.ok, "claim client %s connects" % client_id, self.c.describe())
        base = "cf/provisioning/%s/provision/%s/" % (tmpl, client_id)
        for v in ("accepted", "rejected"):
            rc = self.c.subscribe(base + v)
            e.check(rc == 1, "%s subscribes to its own %s replies" % (client_id, v), rc)

    def send(self, payload, timeout=10):
        """Publishes a raw request; (verdict, answer)."""
        self.c.drain()
        rc = self.c.publish("cf/provisioning/%s/provision" % self.tmpl, payload)
        e.check(rc == 0, "PUBACK for the provisioning request", rc)
        prefix = "cf/provisioning/%s/provision/%s/" % (self.tmpl, self.client_id)
        m = self.c.wait_message(lambda m: m.topic.startswith(prefix), timeout)
        e.check(m is not None, "an answer to %s's request" % self.client_id)
        return m.topic.rsplit("/", 1)[1], json.loads(m.payload)

    def request(self, serial, token=None):
        thing = "%s-%s" % (self.tmpl, serial)
        _, csr = csr_for(thing)
        body = {"csr": csr, "parameters": {"SerialNumber": serial},
                "clientToken": token or "t-%s-%d" % (serial, int(time.monotonic() * 1000))}
        return self.send(json.dumps(body))

    def close(self):
        self.c.close()


def expect_disabled(tmpl, code, conns=()):
    """The claim of tmpl is DISABLED for code: event, notification, clients kicked, CONNECT refused."""
    cid = CLAIMS[tmpl][1]
    ev = S.wait_event(lambda ev: ev.get("type") == "claim.status" and ev.get("subject") == cid
                      and isinstance(ev.get("detail"), dict) and ev["detail"].get("to") == "DISABLED")
    e.check(ev is not None, "%s: a claim.status event disables the claim" % tmpl)
    e.check(ev["detail"]["reason"].startswith(code), "%s: the event names %s" % (tmpl, code), ev)
    st, reason = claim_status(tmpl)
    e.check(st == "DISABLED" and reason.startswith(code), "%s: claim-list shows it DISABLED" % tmpl,
            (st, reason))
    n = e.wait_for(lambda: [x for x in notes() if x.get("kind") == "provisioning.claim_disabled"
                            and x.get("oldCertificateId") == cid], 15, interval=0.2)
    e.check(n and n[0].get("status") == code, "%s: provisioning.claim_disabled notified" % tmpl,
            notes()[-3:])
    for c in conns:
        e.check(c.c.wait_closed(5), "%s: the live claim connection %s is kicked" % (tmpl, c.client_id),
                c.c.describe())
    b = CLAIMS[tmpl][0]
    again = e.connect(S, "legit-" + tmpl, os.path.join(b, "device.crt"), os.path.join(b, "device.key"))
    e.check(again.refused, "%s: the disabled claim is refused at CONNECT" % tmpl, again.describe())
    ref = S.refused_event_for("legit-" + tmpl)
    e.check(ref is not None and "DISABLED" in json.dumps(ref), "%s: the refusal says DISABLED" % tmpl, ref)


# ---- the batch -------------------------------------------------------------------------

def test_batch_provisions_itself():
    b, claim_id = CLAIMS["batch"]
    for serial in SERIALS:
        d = S.scratch("device-" + serial)
        shutil.copytree(b, d)   # the factory flashes the same claim bundle into every device
        log = S.scratch("agent-" + serial + ".log")
        with open(log, "wb") as f:
            p = subprocess.Popen([AGENT, "--config", os.path.join(d, "agent.conf"), "--param",
                                  "SerialNumber=" + serial], stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        AGENTS.append((p, log, d))
    for serial, (p, log, d) in zip(SERIALS, AGENTS):
        name = "batch-" + serial

        def connected_as_thing():
            pr = open_principal(name)
            return pr if pr and pr != claim_id else None
        pr = e.wait_for(connected_as_thing, 30, interval=0.2)
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        e.check(pr, "%s provisions itself and reconnects as the thing" % name, text[-2500:])
        e.check(S.cert_status(pr) == "ACTIVE", "%s: its certificate is ACTIVE once used" % name)
        e.check(e.cert_id_of(os.path.join(d, "device.crt")) == pr,
                "%s: device.crt is the provisioned certificate" % name)
        e.check(not os.path.exists(os.path.join(d, "gen-1")), "%s: the claim key is deleted" % name,
                os.listdir(d))
        thing = S.cf_json("thing", "describe", name, "--json")
        e.check("sensors" in json.dumps(thing.get("groups")) and
                (thing.get("attributes") or {}).get("model") == "x1",
                "%s: the thing has the template's group and attributes" % name, thing)
    ev = S.wait_event(lambda ev: ev.get("type") == "prov.provisioned" and ev.get("subject") == "batch-100")
    e.check(ev is not None, "a prov.provisioned event is recorded")
    st, _ = claim_status("batch")
    e.check(st == "ENABLED", "the batch's claim stays ENABLED")


def test_batch_rotates_normally():
    st, text = S.api_post("/v1/jobs", {"jobId": "j-prov-rotate", "targets": {"groups": ["sensors"]},
                                       "keyAlgorithm": "ECDSA-P256"})
    e.check(st == 201, "POST /v1/jobs for the group answers 201", (st, text[:300]))

    def done():
        j = S.api_json("/v1/jobs/j-prov-rotate")
        ex = j.get("executions") or []
        fin = [x for x in ex if x.get("status") in ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT")]
        return ex if len(ex) == len(SERIALS) and len(fin) == len(SERIALS) else None
    ex = e.wait_for(done, 90, interval=0.5)
    e.check(ex and all(x.get("status") == "SUCCEEDED" for x in ex), "every provisioned device rotated",
            S.api_json("/v1/jobs/j-prov-rotate"))
    for serial, (p, log, d) in zip(SERIALS, AGENTS):
        name = "batch-" + serial
        new_id = e.cert_id_of(os.path.join(d, "device.crt"))
        ok = e.wait_for(lambda: open_principal(name) == new_id, 15, interval=0.2)
        e.check(ok, "%s is connected with its rotated certificate" % name)


def test_claim_reaches_nothing_else():
    c = Claim("batch", "probe-1")
    for topic in ("cf/things/batch-100/jobs/$next/get", "cf/provisioning/m-rate/provision/x",
                  "cf/provisioning/batch/provision/probe-2/accepted", "$cf/broker/connection", "x"):
        rc = c.c.publish(topic, "{}")
        e.check(rc is not None and rc >= 0x80, "a claim may not publish to %s" % topic, rc)
    for flt in ("cf/things/batch-100/#", "cf/provisioning/batch/provision/probe-2/accepted",
                "cf/provisioning/batch/provision/+/accepted", "cf/provisioning/#", "#", "$cf/#"):
        rc = c.c.subscribe(flt)
        e.check(rc is not None and rc >= 0x80, "a claim may not subscribe to %s" % flt, rc)
    e.check(c.c.ok, "the probe is still connected", c.c.describe())
    c.close()


def test_replayed_request_rejected():
    c = Claim("batch", "batch-200")
    key, csr = csr_for("batch-200")
    payload = json.dumps({"csr": csr, "parameters": {"SerialNumber": "200"}, "clientToken": "r1"})
    verdict, a = c.send(payload)
    e.check(verdict == "accepted" and a.get("thingName") == "batch-200", "the request is accepted", a)
    e.check(S.cert_status(a["certificateId"]) == "PENDING_ACTIVATION", "the certificate is PENDING_ACTIVATION")
    # the same device asking again before it used the certificate gets the same one
    verdict, a2 = c.send(payload)
    e.check(verdict == "accepted" and a2.get("certificateId") == a["certificateId"],
            "a repeat before first use answers the same certificate", a2)
    c.close()
    crt = S.scratch("batch-200.crt")
    with open(crt, "w") as f:
        f.write(a["certificatePem"])
    d = e.connect(S, "batch-200", crt, key)
    e.check(d.ok, "the device connects with its PENDING_ACTIVATION certificate", d.describe())
    e.check(e.wait_for(lambda: S.cert_status(a["certificateId"]) == "ACTIVE", 10, interval=0.2),
            "the first connection activates it")
    d.close()
    c = Claim("batch", "batch-200")
    verdict, r = c.send(payload)
    e.check(verdict == "rejected" and r.get("errorCode") == "RequestReplayed",
            "the replayed request is rejected", r)
    c.close()
    other = Claim("batch", "attacker")
    verdict, r = other.send(payload)
    e.check(verdict == "rejected" and r.get("errorCode") == "RequestReplayed",
            "a replay from another client is rejected", r)
    other.close()


# ---- misuse ------------------------------------------------------------------------------

def test_rate_above_limit_disables():
    c = Claim("m-rate", "r-1")
    for serial in ("1", "2"):
        verdict, a = c.request(serial)
        e.check(verdict == "accepted", "request %s within the rate is accepted" % serial, a)
    verdict, r = c.request("3")
    e.check(verdict == "rejected" and r.get("errorCode") == "RateExceeded", "the third is RateExceeded", r)
    expect_disabled("m-rate", "RateExceeded", [c])
    # a legitimate device of that batch now fails with a clear error
    d = S.scratch("device-rate")
    shutil.copytree(CLAIMS["m-rate"][0], d)
    log = S.scratch("agent-rate.log")
    with open(log, "wb") as f:
        p = subprocess.run([AGENT, "--config", os.path.join(d, "agent.conf"), "--param",
                            "SerialNumber=9"], stdin=subprocess.DEVNULL, stdout=f,
                           stderr=subprocess.STDOUT, timeout=120)
    with open(log, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    e.check(p.returncode != 0 and "refused" in text, "the agent stops with a clear refusal", text[-1500:])


def test_serial_twice_disables():
    c = Claim("m-serial", "s-1")
    verdict, a = c.request("7")
    e.check(verdict == "accepted", "serial 7 is provisioned", a)
    verdict, r = c.request("7")
    e.check(verdict == "rejected" and r.get("errorCode") == "SerialAlreadyProvisioned",
            "serial 7 again is SerialAlreadyProvisioned", r)
    expect_disabled("m-serial", "SerialAlreadyProvisioned", [c])


def test_outside_window_disables():
    c = Claim("m-window", "w-1")
    verdict, r = c.request("1")
    e.check(verdict == "rejected" and r.get("errorCode") == "OutsideWindow", "OutsideWindow", r)
    expect_disabled("m-window", "OutsideWindow", [c])


def test_concurrent_clients_disable():
    a = Claim("m-conc", "cc-1")
    b, _ = CLAIMS["m-conc"]
    second = e.connect(S, "cc-2", os.path.join(b, "device.crt"), os.path.join(b, "device.key"))
    expect_disabled("m-conc", "ConcurrentUse", [a])
    e.check(second.wait_closed(5) or second.refused, "the second client is kicked too", second.describe())


def test_denials_above_threshold_disable():
    c = Claim("m-deny", "d-1")
    verdict, r = c.request("5")
    e.check(verdict == "rejected" and r.get("errorCode") == "ParameterNotAllowed",
            "a serial off the allow-list is ParameterNotAllowed", r)
    st, _ = claim_status("m-deny")
    e.check(st == "ENABLED", "one denial is below the threshold")
    verdict, r = c.request("6")
    e.check(verdict == "rejected" and r.get("errorCode") == "ParameterNotAllowed", "denied again", r)
    expect_disabled("m-deny", "DenialsExceeded", [c])


def test_hook_allows_denies_and_times_out():
    c = Claim("m-hook", "h-1")
    verdict, a = c.request("5")
    e.check(verdict == "accepted", "the hook allows serial 5", a)
    verdict, r = c.request("6")
    e.check(verdict == "rejected" and r.get("errorCode") == "ParameterNotAllowed"
            and "hook" in r.get("errorMessage", ""), "the hook denies serial 6", r)
    c.close()
    c = Claim("m-slow", "h-2")
    t0 = time.monotonic()
    verdict, r = c.request("1")
    e.check(verdict == "rejected" and "within 1 s" in r.get("errorMessage", ""),
            "a hook that does not answer in time denies", r)
    e.check(time.monotonic() - t0 < 8, "and is killed at its timeout")
    c.close()


def test_existing_thing_not_taken():
    S.cf_ok("thing", "create", "batch-900")
    c = Claim("batch", "batch-900")
    verdict, r = c.request("900")
    e.check(verdict == "rejected" and r.get("errorCode") == "ThingExists",
            "a claim gets no certificate for a thing it did not provision", r)
    c.close()
    st, _ = claim_status("batch")
    e.check(st == "ENABLED", "ThingExists is not misuse")


def test_operator_disable_and_enable():
    c = Claim("m-op", "op-1")
    S.cf_ok("provision", "claim-disable", CLAIMS["m-op"][1][:16], "--reason", "batch recalled")
    e.check(c.c.wait_closed(5), "claim-disable kicks the live claim connection", c.c.describe())
    st, reason = claim_status("m-op")
    e.check(st == "DISABLED" and reason == "batch recalled", "the claim is DISABLED with the reason",
            (st, reason))
    b = CLAIMS["m-op"][0]
    again = e.connect(S, "op-2", os.path.join(b, "device.crt"), os.path.join(b, "device.key"))
    e.check(again.refused, "a disabled claim is refused at CONNECT", again.describe())
    S.cf_ok("provision", "claim-enable", CLAIMS["m-op"][1], "--reason", "cleared")
    c = Claim("m-op", "op-3")
    verdict, a = c.request("1")
    e.check(verdict == "accepted", "enabled again, the claim provisions", a)
    c.close()


def test_unused_certificate_swept():
    end = int(time.time()) + 6
    S.cf_ok("provision", "template-create", "m-sweep", "--name-pattern", "m-sweep-{SerialNumber}",
            "--window-end", str(end))
    b = S.scratch("claim-m-sweep")
    CLAIMS["m-sweep"] = (b, S.cf_json("provision", "claim-create", "m-sweep", "--bundle", b,
                                      "--json")["certificateId"])
    c = Claim("m-sweep", "sw-1")
    verdict, a = c.request("1")
    c.close()
    e.check(verdict == "accepted", "a device is provisioned before the window closes", a)
    ev = S.wait_event(lambda ev: ev.get("type") == "prov.serial_released"
                      and ev.get("subject") == "m-sweep", timeout=20)
    e.check(ev is not None, "the never-used certificate is swept once the window closed")
    e.check(S.cert_status(a["certificateId"]) == "INACTIVE", "its certificate is INACTIVE")
    r = S.cf("thing", "describe", "m-sweep-1")
    e.check(r.rc != 0, "its thing is deleted", r)


def test_agents_clean():
    for p, log, _ in AGENTS:
        e.check(p.poll() is None, "the agent is still running", log)
        os.kill(p.pid, signal.SIGTERM)
        e.check(p.wait(10) == 0, "SIGTERM stops it with exit 0")
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        e.check(not e.SANITIZER_RE.search(text), "no sanitizer report in %s" % log, text[-3000:])
        e.check("PRIVATE KEY" not in text, "no key material in %s" % log)


e.run_tests([
    test_batch_provisions_itself,
    test_batch_rotates_normally,
    test_claim_reaches_nothing_else,
    test_replayed_request_rejected,
    test_rate_above_limit_disables,
    test_serial_twice_disables,
    test_outside_window_disables,
    test_concurrent_clients_disable,
    test_denials_above_threshold_disable,
    test_hook_allows_denies_and_times_out,
    test_existing_thing_not_taken,
    test_operator_disable_and_enable,
    test_unused_certificate_swept,
    test_agents_clean,
], setup=setup, stacks=[S])
