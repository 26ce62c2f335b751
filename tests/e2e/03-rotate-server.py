#!/usr/bin/python3
"""03-rotate-server — the server side of certificate rotation (DESIGN §5-6, docs/protocol.md,
docs/certfleetd.md "Jobs and rotation").

A paho client plays the device with its bundle; the openssl CLI makes the new key, the CSRs and
the custody signatures (`openssl dgst -sha256 -sign`: ECDSA-with-SHA-256, DER, for the bundle's
P-256 keys — cf_proto_custody_sign's format). Happy path: job create-rotation → notify-next;
update IN_PROGRESS; create accepted with a certificate that `openssl verify`s; reconnect with the
new pair; commit accepted; update SUCCEEDED → old certificate INACTIVE and refused by the broker.
Adversarial: each rejected with its code, no certificate issued, a rotation.rejected event:
create without IN_PROGRESS (NotInProgress), with the new key's or another thing's signature
(BadSignature), a CSR naming another thing (CsrSubjectMismatch), an RSA-1024 CSR (WeakKey); commit
over the old connection (PrincipalMismatch), signed with the old key (BadSignature), naming the old
certificate (CertificateMismatch), a repeat naming the old certificate after the commit (Replay;
the identical commit repeated gets the same answer); create after commit (Replay) and after the
job finished (NotInProgress). Not covered here: NotARotation (the API creates only rotation jobs)
and ClientIdMismatch (the broker's ACL and mqtt.c's stamp check stop it first).
"""
import base64
import hashlib
import json
import os
import time

import cfe2e as e

S = e.Stack("data")
C = {}
N = [0]


def setup():
    S.up()


# ---- device helpers ------------------------------------------------------------------

def cert_count():
    return len(S.cf_json("cert", "list", "--json"))


def rejected_events():
    return [ev for ev in S.events() if ev.get("type") == "rotation.rejected"]


def new_key(kind="ec"):
    N[0] += 1
    path = S.scratch("key-%d.pem" % N[0])
    if kind == "ec":
        e.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    else:
        e.openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % kind, "-out", path)
    return path


def csr_of(key, cn):
    path = S.scratch("csr-%d-%s.pem" % (N[0], cn))
    e.openssl("req", "-new", "-key", key, "-subj", "/CN=%s" % cn, "-out", path)
    with open(path) as f:
        return f.read()


def sign(key, msg):
    path = S.scratch("msg-%d-%f" % (N[0], time.monotonic()))
    with open(path, "w") as f:
        f.write(msg)
    e.openssl("dgst", "-sha256", "-sign", key, "-out", path + ".sig", path)
    with open(path + ".sig", "rb") as f:
        return base64.b64encode(f.read()).decode()


def create_msg(job, thing, csr):
    return "%s|%s|%s" % (job, thing, hashlib.sha256(csr.encode()).hexdigest())


def expect_rejected(answer, code, certs_before, events_before):
    verdict, p = answer
    e.check(verdict == "rejected" and p.get("errorCode") == code, "rejected with %s" % code, p)
    e.check(cert_count() == certs_before, "no certificate issued (%s)" % code)
    ev = rejected_events()
    e.check(len(ev) == len(events_before) + 1, "one rotation.rejected event (%s)" % code, ev[-1:])
    detail = ev[-1].get("detail")
    if isinstance(detail, str):
        detail = json.loads(detail)
    e.check(detail.get("errorCode") == code, "the event names %s" % code, detail)


def create_job(*names):
    args = ["job", "create-rotation", "--json"]
    for n in names:
        args += ["--thing", n]
    return S.cf_json(*args)["jobId"]


# ---- tests -----------------------------------------------------------------------------

def test_bad_jobs_refused_by_api():
    S.thing("api-a")
    r = S.cf("job", "create-rotation", "--thing", "api-a", "--thing", "nosuch")
    e.check(r.rc == 1 and "nosuch" in r.err, "an unknown thing is refused", str(r))
    e.check(S.cf_json("job", "list", "--json") == [], "and no job is created")
    r = S.cf("job", "create-rotation", "--thing", "api-a", "--key-algorithm", "RSA-2048",
             "--signing-algorithm", "ECDSA-WITH-SHA256")
    e.check(r.rc == 2 and "RSA-2048" in r.err and "ECDSA-WITH-SHA256" in r.err,
            "a mismatched algorithm pair names both", str(r))
    code, text = S.api_post("/v1/jobs", {"things": ["api-a"], "keyAlgorithm": "RSA-2048",
                                         "signingAlgorithm": "ECDSA-WITH-SHA256"})
    body = json.loads(text) if code else {}
    e.check(code == 400 and "RSA-2048" in body.get("error", "") and
            "ECDSA-WITH-SHA256" in body.get("error", ""), "the API says 400 naming both", (code, body))


def test_happy_path():
    th = S.thing("rot-1")
    dev = e.Device.of(S, th)
    C["dev"] = dev
    job = create_job("rot-1")
    m = dev.c.wait_message(lambda m: m.topic == dev.t("jobs/notify-next"), 10)
    e.check(m is not None, "notify-next arrives")
    ex = json.loads(m.payload).get("execution", {})
    e.check(ex.get("jobId") == job and ex.get("status") == "QUEUED", "notify-next names the job", ex)
    e.check(ex.get("jobDocument", {}).get("operation") == "ROTATE_CERTIFICATE", "a rotation document", ex)
    v, p = dev.request("jobs/$next/get", {})
    e.check(v == "accepted" and p.get("execution", {}).get("jobId") == job, "$next/get answers", p)
    v, p = dev.update(job, "IN_PROGRESS", expectedVersion=ex["versionNumber"])
    e.check(v == "accepted" and p["executionState"]["status"] == "IN_PROGRESS", "IN_PROGRESS accepted", p)
    v, p = dev.update(job, "IN_PROGRESS", expectedVersion=1)
    e.check(v == "rejected" and p.get("errorCode") == "VersionMismatch" and
            p.get("executionState", {}).get("versionNumber") == 2, "a stale version is refused", p)

    key = new_key()
    csr = csr_of(key, "rot-1")
    v, p = dev.create(job, csr, sign(th.key, create_msg(job, "rot-1", csr)))
    e.check(v == "accepted", "create accepted", p)
    crt = S.scratch("rot-1-new.crt")
    with open(crt, "w") as f:
        f.write(p["certificatePem"])
    chain = S.scratch("rot-1-chain.crt")
    with open(chain, "w") as f:
        f.write(p["chainPem"])
    r = e.run(["openssl", "verify", "-CAfile", S.chain, crt])
    e.check(r.rc == 0, "the new certificate verifies", str(r))
    new_id = p["certificateId"]
    e.check(new_id == e.cert_id_of(crt), "certificateId is the certificate's id")
    e.check(S.cert_status(new_id) == "ACTIVE" and S.cert_status(th.cert_id) == "ACTIVE",
            "both certificates ACTIVE during the rotation")

    # repeated create with the same key while created: the same certificate (idempotent)
    n = cert_count()
    v, p = dev.create(job, csr, sign(th.key, create_msg(job, "rot-1", csr)))
    e.check(v == "accepted" and p["certificateId"] == new_id and cert_count() == n,
            "a repeated create returns the same certificate", p)

    # commit over the old certificate's connection
    ev = rejected_events()
    v_p = dev.commit(job, new_id, sign(key, "%s|rot-1|%s" % (job, new_id)))
    expect_rejected(v_p, "PrincipalMismatch", n, ev)

    dev.close()
    dev2 = e.Device(S, th.name, crt, key)
    C["dev2"] = dev2
    v, p = dev2.request("jobs/$next/get", {})
    e.check(v == "accepted" and p["execution"]["status"] == "IN_PROGRESS", "$next/get over the new pair", p)
    # commit signed by the old key
    ev = rejected_events()
    expect_rejected(dev2.commit(job, new_id, sign(th.key, "%s|rot-1|%s" % (job, new_id))),
                    "BadSignature", n, ev)
    # commit naming another certificate (the old one)
    ev = rejected_events()
    expect_rejected(dev2.commit(job, th.cert_id, sign(key, "%s|rot-1|%s" % (job, th.cert_id))),
                    "CertificateMismatch", n, ev)
    v, p = dev2.commit(job, new_id, sign(key, "%s|rot-1|%s" % (job, new_id)))
    e.check(v == "accepted" and p.get("certificateId") == new_id, "commit accepted", p)
    # the same commit again (the device lost the answer): the same answer, nothing changes
    ev = rejected_events()
    v, p = dev2.commit(job, new_id, sign(key, "%s|rot-1|%s" % (job, new_id)))
    e.check(v == "accepted" and p.get("certificateId") == new_id, "a repeated commit gets the same answer", p)
    e.check(cert_count() == n and rejected_events() == ev, "nothing issued or rejected by the repeat")
    # ... but a repeat naming the old certificate, or over the old connection, is still refused
    expect_rejected(dev2.commit(job, th.cert_id, sign(key, "%s|rot-1|%s" % (job, th.cert_id))),
                    "Replay", n, ev)

    # replayed create after commit (new connection, old signature): Replay
    ev = rejected_events()
    expect_rejected(dev2.create(job, csr, sign(th.key, create_msg(job, "rot-1", csr))), "Replay", n, ev)

    v, p = dev2.update(job, "SUCCEEDED")
    e.check(v == "accepted" and p["executionState"]["status"] == "SUCCEEDED", "SUCCEEDED accepted", p)
    m = dev2.c.wait_message(lambda m: m.topic == dev2.t("jobs/notify-next"), 10)
    e.check(m is not None and json.loads(m.payload).get("execution") is None,
            "notify-next {} after the terminal update", m and m.payload)
    e.check(S.cert_status(th.cert_id) == "INACTIVE", "the old certificate is INACTIVE")
    # a create replayed from the finished job, now signed with the current (new) key
    ev = rejected_events()
    expect_rejected(dev2.create(job, csr, sign(key, create_msg(job, "rot-1", csr))), "NotInProgress", n, ev)
    e.check(S.cert_status(new_id) == "ACTIVE", "the new certificate stays ACTIVE")
    lst = S.cf_ok("cert", "list", "--thing", "rot-1").out
    e.check(th.cert_id[:12] in lst and "INACTIVE" in lst, "cert list shows the old one INACTIVE", lst)
    dev2.close()
    old = e.connect_thing(S, th)
    e.check(old.refused, "the broker refuses the old certificate", old.describe())
    old.close()
    d = S.cf_json("job", "describe", job, "--json")
    e.check(d["counts"]["SUCCEEDED"] == 1 and d["executions"][0]["status"] == "SUCCEEDED",
            "job describe counts it", d)
    e.check(job in S.cf_ok("job", "list").out, "job list shows it")


def start_rotation(name, in_progress=True):
    th = S.thing(name)
    dev = e.Device.of(S, th)
    job = create_job(name)
    m = dev.c.wait_message(lambda m: m.topic == dev.t("jobs/notify-next"), 10)
    e.check(m is not None, "notify-next for %s" % name)
    if in_progress:
        v, p = dev.update(job, "IN_PROGRESS")
        e.check(v == "accepted", "IN_PROGRESS for %s" % name, p)
    return th, dev, job


def test_create_without_in_progress():
    th, dev, job = start_rotation("adv-queued", in_progress=False)
    key = new_key()
    csr = csr_of(key, th.name)
    n, ev = cert_count(), rejected_events()
    expect_rejected(dev.create(job, csr, sign(th.key, create_msg(job, th.name, csr))), "NotInProgress", n, ev)
    dev.close()


def test_create_adversarial():
    th, dev, job = start_rotation("adv-1")
    key = new_key()
    csr = csr_of(key, th.name)
    n = cert_count()
    # a signature made with the new key instead of the old one
    ev = rejected_events()
    expect_rejected(dev.create(job, csr, sign(key, create_msg(job, th.name, csr))), "BadSignature", n, ev)
    # the old key's signature over another thing's name
    ev = rejected_events()
    expect_rejected(dev.create(job, csr, sign(th.key, create_msg(job, "adv-other", csr))), "BadSignature", n, ev)
    # a CSR naming another thing
    other = csr_of(key, "adv-other")
    ev = rejected_events()
    expect_rejected(dev.create(job, other, sign(th.key, create_msg(job, th.name, other))),
                    "CsrSubjectMismatch", n, ev)
    # a weak RSA-1024 key
    weak = csr_of(new_key(1024), th.name)
    ev = rejected_events()
    expect_rejected(dev.create(job, weak, sign(th.key, create_msg(job, th.name, weak))), "WeakKey", n, ev)
    # then the real one still works, and FAILED afterwards deactivates the new certificate
    v, p = dev.create(job, csr, sign(th.key, create_msg(job, th.name, csr)))
    e.check(v == "accepted", "a good create after the refusals", p)
    v, q = dev.update(job, "FAILED", statusDetails={"reason": "test: device gave up"})
    e.check(v == "accepted", "FAILED accepted", q)
    e.check(S.cert_status(p["certificateId"]) == "INACTIVE", "FAILED after create: new certificate INACTIVE")
    e.check(S.cert_status(th.cert_id) == "ACTIVE", "FAILED after create: old certificate ACTIVE")
    dev.close()


def test_done():
    for c in C.values():
        c.close()


e.run_tests([
    test_bad_jobs_refused_by_api,
    test_happy_path,
    test_create_without_in_progress,
    test_create_adversarial,
    test_done,
], setup=setup, stacks=[S])
