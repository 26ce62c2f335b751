#!/usr/bin/python3
"""06-rotate-pkcs11 — rotations with the device key in a PKCS#11 token (issue 5; docs/pkcs11.md):
real certfleet-agent processes with key_store = pkcs11 on SoftHSM2 tokens (one fresh token per
thing, SOFTHSM2_CONF pointing into the temp dir), against the real broker and certfleetd.

- Full rotation to ECDSA-P256, ECDSA-P384 and RSA-2048: SUCCEEDED, the new key pair was generated
  in the token (sensitive, always sensitive, never extractable, local), no key file in the bundle,
  the old certificate INACTIVE, the agent connected with the new certificate (TLS through the
  token key), the broker refuses the old pair.
- kill -9 subset (agent failpoints agent.create_sent / agent.switched / agent.commit_sent: kill):
  a restarted agent completes the rotation with a matching pair, one generation, two token objects.
- Rollback case 3: the new certificate is deactivated while the agent sits in SWITCHED → the broker
  refuses it → rollback, FAILED, connected again with the old pair, the new key gone from the token.
- Rollback case 4 (a second stack whose certfleetd drops every commit:
  CERTFLEET_FAILPOINTS=certfleetd.commit.drop:drop) → rollback, FAILED, old pair connected.
- Provisioning by claim into the token (issue 7; docs/provisioning.md): devices with a copy of a
  claim bundle and key_store = pkcs11 adopt the claim key into the token, connect with it, generate
  their own key pair in the token (sensitive, never extractable), get their certificate (ACTIVE
  after the first connect), and the claim key is gone (no file, no token object) unless
  keep_claim = yes; then a rotation job succeeds and leaves one key, the rotated one.
"""
import os
import re
import shutil
import signal
import subprocess

import cfe2e as e

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "hsm-pin-%s" % os.urandom(4).hex()
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")

if not os.path.exists(MODULE) or not shutil.which("softhsm2-util") or not shutil.which("pkcs11-tool"):
    print("ok - SoftHSM2/opensc not installed (scripts/install-deps): skipped")
    print("1 passed, 0 failed")
    raise SystemExit(0)

S = e.Stack("data")
R = e.Stack("drop")    # certfleetd never answers a commit
HSM = S.scratch("softhsm")
CONF = os.path.join(HSM, "softhsm2.conf")
PIN_FILE = os.path.join(HSM, "pin")
ROTATE = {"ECDSA-P256": "h-p256", "ECDSA-P384": "h-p384", "RSA-2048": "h-rsa2048"}
KILLS = {"agent.create_sent": "h-kill-create", "agent.switched": "h-kill-switched",
         "agent.commit_sent": "h-kill-commit"}
PROV = {"p11prov-201": "no", "p11prov-202": "yes"}   # provisioned thing -> keep_claim
CLAIM = {}   # "bundle", "id": the p11prov template's claim
PDIR = {}    # provisioned thing -> device directory
T = {}       # name -> Thing
OLD = {}     # name -> (old crt copy, old key copy, old cert id)
AGENTS = {}  # name -> (Popen, log)
JOBS = {}    # name -> job id
ALL_LOGS = []


def token_of(name):
    return name[:32]


def hsm_env(extra=None):
    env = dict(os.environ)
    env["SOFTHSM2_CONF"] = CONF
    env.pop("CERTFLEET_FAILPOINTS", None)
    if extra:
        env.update(extra)
    return env


def make_thing(stack, name, response_s=None):
    t = stack.thing(name)
    T[name] = t
    d = stack.scratch("old-" + name)
    os.makedirs(d)
    shutil.copy(t.crt, os.path.join(d, "device.crt"))
    shutil.copy(t.key, os.path.join(d, "device.key"))
    OLD[name] = (os.path.join(d, "device.crt"), os.path.join(d, "device.key"), t.cert_id)
    r = e.run(["softhsm2-util", "--init-token", "--free", "--label", token_of(name), "--pin", PIN,
               "--so-pin", "12345678"], env={"SOFTHSM2_CONF": CONF})
    if r.rc != 0:
        raise e.Fail("softhsm2-util --init-token: %s" % r)
    conf = os.path.join(t.dir, "agent.conf")
    with open(conf) as f:
        lines = [l for l in f if not l.startswith("key_file")]
    lines += ["key_store = pkcs11\n", "pkcs11_module = %s\n" % MODULE,
              "pkcs11_token = %s\n" % token_of(name), "pkcs11_pin_file = %s\n" % PIN_FILE,
              "connect_timeout_s = 5\n"]
    if response_s:
        lines += ["response_timeout_s = %d\n" % response_s, "max_attempts = 2\n"]
    with open(conf, "w") as f:
        f.writelines(lines)
    return t


def init_token(label):
    r = e.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN,
               "--so-pin", "12345678"], env={"SOFTHSM2_CONF": CONF})
    if r.rc != 0:
        raise e.Fail("softhsm2-util --init-token: %s" % r)


def make_claim_device(name, keep):
    """A copy of the p11prov claim bundle (the factory's flash) with key_store = pkcs11."""
    d = S.scratch("prov-" + name)
    shutil.copytree(CLAIM["bundle"], d)
    init_token(token_of(name))
    conf = os.path.join(d, "agent.conf")
    with open(conf) as f:
        lines = [l for l in f if not l.startswith(("key_file", "keep_claim"))]
    lines += ["key_store = pkcs11\n", "pkcs11_module = %s\n" % MODULE,
              "pkcs11_token = %s\n" % token_of(name), "pkcs11_pin_file = %s\n" % PIN_FILE,
              "connect_timeout_s = 5\n", "keep_claim = %s\n" % keep]
    with open(conf, "w") as f:
        f.writelines(lines)
    PDIR[name] = d


def start_agent(name, failpoint=None):
    log = S.scratch("agent-" + name + ".log")
    ALL_LOGS.append(log)
    extra = {"CERTFLEET_FAILPOINTS": failpoint} if failpoint else None
    with open(log, "wb") as f:
        p = subprocess.Popen([AGENT, "--config", os.path.join(T[name].dir, "agent.conf")],
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True, env=hsm_env(extra))
    AGENTS[name] = (p, log)
    return p


def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def stop_agents():
    for p, _ in AGENTS.values():
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


e.on_exit(stop_agents)


def setup():
    os.makedirs(os.path.join(HSM, "tokens"))
    with open(CONF, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                % os.path.join(HSM, "tokens"))
    with open(os.open(PIN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(PIN + "\n")
    for name in list(ROTATE.values()) + list(KILLS.values()) + ["h-deact"]:
        make_thing(S, name)
    make_thing(R, "h-nocommit", response_s=3)
    S.cf_ok("provision", "template-create", "p11prov", "--name-pattern", "p11prov-{SerialNumber}",
            "--max-concurrent", "4")
    CLAIM["bundle"] = S.scratch("claim-p11prov")
    CLAIM["id"] = S.cf_json("provision", "claim-create", "p11prov", "--bundle", CLAIM["bundle"],
                            "--json")["certificateId"]
    for name, keep in PROV.items():
        make_claim_device(name, keep)
    S.up()
    old = os.environ.get("CERTFLEET_FAILPOINTS")
    os.environ["CERTFLEET_FAILPOINTS"] = "certfleetd.commit.drop:drop"
    try:
        R.up()
    finally:
        if old is None:
            del os.environ["CERTFLEET_FAILPOINTS"]
        else:
            os.environ["CERTFLEET_FAILPOINTS"] = old


def open_principal(stack, name):
    rows = [r for r in stack.connections(client_id=name) if "disconnectedAt" not in r]
    return rows[0].get("principal") if rows else None


def create_job(stack, name, alg):
    out = stack.cf_json("job", "create-rotation", "--thing", name, "--key-algorithm", alg, "--json")
    JOBS[name] = out.get("jobId") if isinstance(out, dict) else out
    e.check(JOBS[name], "a rotation job to %s for %s was created" % (alg, name), out)


def job_status(stack, name):
    d = stack.cf_json("job", "describe", JOBS[name], "--json")
    ex = [x for x in d.get("executions", []) if x.get("thing") == name]
    return ex[-1].get("status") if ex else None


def wait_final(stack, name, timeout=90):
    return e.wait_for(lambda: job_status(stack, name) in ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT")
                      and job_status(stack, name), timeout, interval=0.5)


def token_objects(name):
    """pkcs11-tool's view of the thing's token: {label: access line} for private keys."""
    r = e.run(["pkcs11-tool", "--module", MODULE, "--token-label", token_of(name), "--login",
               "--pin", PIN, "--list-objects", "--type", "privkey"], env={"SOFTHSM2_CONF": CONF})
    if r.rc != 0:
        raise e.Fail("pkcs11-tool --list-objects: %s" % r)
    out, label = {}, None
    for line in r.out.splitlines():
        m = re.match(r"\s*label:\s*(.*)$", line)
        if m:
            label = m.group(1).strip()
        m = re.match(r"\s*Access:\s*(.*)$", line)
        if m and label:
            out[label] = m.group(1)
    return out


def active_gen(name):
    return int(os.readlink(os.path.join(T[name].dir, "current")).split("-")[1])


def check_rotated(stack, name, alg=None):
    t = T[name]
    new_id = e.cert_id_of(t.crt)
    e.check(new_id != OLD[name][2], "%s: device.crt names a new certificate" % name)
    e.check(not os.path.exists(t.key), "%s: no key file in the bundle (the key is in the token)" % name)
    gen = active_gen(name)
    with open(os.path.join(t.dir, "gen-%d" % gen, "key.uri")) as f:
        uri = f.read().strip()
    e.check(uri.startswith("pkcs11:token=") and ("object=certfleet-gen-%d" % gen) in uri,
            "%s: the active generation's key is a token URI" % name, uri)
    objs = token_objects(name)
    label = "certfleet-gen-%d" % gen
    e.check(list(objs) == [label], "%s: one private key left in the token, the active one" % name, objs)
    acc = objs.get(label, "")
    for word in ("sensitive", "always sensitive", "never extractable", "local"):
        e.check(word in acc, "%s: the new key is %s" % (name, word), acc)
    v = e.openssl("verify", "-CAfile", stack.path("ca", "root.crt"), "-untrusted", stack.chain, t.crt)
    e.check(v.rc == 0, "%s: the new certificate chains to the root" % name, v)
    d = stack.cf_json("cert", "describe", new_id, "--json")
    e.check(d.get("status") == "ACTIVE", "%s: the new certificate is ACTIVE" % name, d)
    if alg:
        e.check(d.get("keyAlgorithm") == alg, "%s: the new key is %s" % (name, alg), d)
    e.check(stack.cert_status(OLD[name][2]) == "INACTIVE", "%s: the old certificate is INACTIVE" % name)
    ok = e.wait_for(lambda: open_principal(stack, name) == new_id, 15, interval=0.2)
    e.check(ok, "%s: the agent is connected with the new certificate (TLS with the token key)" % name,
            (stack.connections(client_id=name)[:3], read(AGENTS[name][1])[-2000:]))


def check_rolled_back(stack, name):
    t = T[name]
    e.check(e.cert_id_of(t.crt) == OLD[name][2], "%s: device.crt is the old certificate again" % name)
    e.check(active_gen(name) == 1, "%s: generation 1 is active" % name)
    objs = token_objects(name)
    e.check(list(objs) == ["certfleet-gen-1"], "%s: the new key was destroyed in the token" % name, objs)
    e.check(stack.cert_status(OLD[name][2]) == "ACTIVE", "%s: the old certificate is ACTIVE" % name)
    news = [c for c in stack.cf_json("cert", "list", "--thing", name, "--json")
            if c.get("id") != OLD[name][2]]
    e.check(news and all(c.get("status") != "ACTIVE" for c in news),
            "%s: the new certificate is not ACTIVE" % name, news)
    ok = e.wait_for(lambda: open_principal(stack, name) == OLD[name][2], 20, interval=0.2)
    e.check(ok, "%s: the agent is connected with the old pair again" % name,
            (stack.connections(client_id=name)[:3], read(AGENTS[name][1])[-2500:]))


# ---- tests ---------------------------------------------------------------------------------

def test_agents_adopt_and_connect():
    for name in list(ROTATE.values()) + ["h-deact"]:
        start_agent(name)
    for name in list(ROTATE.values()) + ["h-deact"]:
        ok = e.wait_for(lambda: open_principal(S, name) == T[name].cert_id, 30, interval=0.2)
        e.check(ok, "%s: the agent adopts the bundle into the token and connects" % name,
                read(AGENTS[name][1])[-2000:])
        e.check(not os.path.exists(T[name].key), "%s: the bundle's device.key was removed" % name)
        objs = token_objects(name)
        # Imported: sensitive and not extractable now, but not "always sensitive" (it was a file).
        acc = objs.get("certfleet-gen-1", "")
        e.check("sensitive" in acc and "extractable" not in acc,
                "%s: the imported key is sensitive and not extractable" % name, objs)


def test_full_rotation_each_algorithm():
    for alg, name in ROTATE.items():
        create_job(S, name, alg)
    for alg, name in ROTATE.items():
        final = wait_final(S, name)
        e.check(final == "SUCCEEDED", "%s: the rotation to %s SUCCEEDED" % (name, alg),
                (final, read(AGENTS[name][1])[-2500:]))
    for alg, name in ROTATE.items():
        check_rotated(S, name, alg)


def test_broker_refuses_old_pairs():
    for name in ROTATE.values():
        crt, key, _ = OLD[name]
        c = e.connect(S, name, crt, key)
        e.check(c.refused, "%s: the broker refuses the old pair" % name, c.describe())
        c.close()


def test_kill9_subset():
    for fp, name in KILLS.items():
        start_agent(name, fp + ":kill")
    for fp, name in KILLS.items():
        ok = e.wait_for(lambda: open_principal(S, name) == T[name].cert_id, 30, interval=0.2)
        e.check(ok, "%s: connected before the job" % name, read(AGENTS[name][1])[-2000:])
        create_job(S, name, "ECDSA-P256")
    for fp, name in KILLS.items():
        p, log = AGENTS[name]
        try:
            rc = p.wait(60)
        except subprocess.TimeoutExpired:
            rc = None
        e.check(rc == -signal.SIGKILL, "%s: the agent died by kill -9 at %s" % (name, fp),
                (rc, read(log)[-2000:]))
        start_agent(name)
    for fp, name in KILLS.items():
        final = wait_final(S, name)
        e.check(final == "SUCCEEDED", "%s: after kill -9 at %s the restarted agent completes" % (name, fp),
                (final, read(AGENTS[name][1])[-2500:]))
        check_rotated(S, name)


def test_rollback_new_cert_deactivated():
    name = "h-deact"
    p, _ = AGENTS[name]
    os.kill(p.pid, signal.SIGTERM)
    p.wait(10)
    start_agent(name, "agent.switched:sleep=8")
    e.check(e.wait_for(lambda: open_principal(S, name) == T[name].cert_id, 20, interval=0.2),
            "%s: connected before the job" % name)
    create_job(S, name, "ECDSA-P384")
    crt = os.path.join(T[name].dir, "gen-2", "device.crt")
    ok = e.wait_for(lambda: os.path.exists(crt), 30, interval=0.1)
    e.check(ok, "%s: the new certificate was installed" % name,
            read(AGENTS[name][1])[-2000:])
    new_id = e.cert_id_of(crt)
    S.cf_ok("cert", "deactivate", new_id)
    final = wait_final(S, name, 120)
    e.check(final == "FAILED", "%s: the rotation FAILED (rolled back)" % name,
            (final, read(AGENTS[name][1])[-2500:]))
    e.check(S.cert_status(new_id) == "INACTIVE", "%s: the new certificate stays INACTIVE" % name)
    check_rolled_back(S, name)


def test_rollback_commit_never_answered():
    name = "h-nocommit"
    log = R.scratch("agent-" + name + ".log")
    ALL_LOGS.append(log)
    with open(log, "wb") as f:
        p = subprocess.Popen([AGENT, "--config", os.path.join(T[name].dir, "agent.conf")],
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True, env=hsm_env())
    AGENTS[name] = (p, log)
    e.check(e.wait_for(lambda: open_principal(R, name) == T[name].cert_id, 30, interval=0.2),
            "%s: connected before the job" % name, read(log)[-2000:])
    create_job(R, name, "RSA-2048")
    final = wait_final(R, name, 120)
    e.check(final == "FAILED", "%s: commit never answered → FAILED" % name, (final, read(log)[-2500:]))
    check_rolled_back(R, name)


def key_attrs_ok(name, label, what):
    """The token's private key label: sensitive, never extractable (CKA_SENSITIVE true,
    CKA_EXTRACTABLE false), generated there (always sensitive, local)."""
    acc = token_objects(name).get(label, "")
    words = [w.strip() for w in acc.split(",")]
    for w in ("sensitive", "always sensitive", "never extractable", "local"):
        e.check(w in words, "%s: %s is %s" % (name, what, w), acc)
    e.check("extractable" not in words, "%s: %s is not extractable" % (name, what), acc)


def test_claim_provisions_into_token():
    for name, keep in PROV.items():
        log = S.scratch("agent-" + name + ".log")
        ALL_LOGS.append(log)
        with open(log, "wb") as f:
            p = subprocess.Popen([AGENT, "--config", os.path.join(PDIR[name], "agent.conf"), "--param",
                                  "SerialNumber=" + name.split("-")[1]], stdin=subprocess.DEVNULL,
                                 stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=hsm_env())
        AGENTS[name] = (p, log)
    for name, keep in PROV.items():
        d, log = PDIR[name], AGENTS[name][1]

        def as_thing():
            pr = open_principal(S, name)
            return pr if pr and pr != CLAIM["id"] else None
        pr = e.wait_for(as_thing, 40, interval=0.2)
        e.check(pr, "%s: provisions itself through the token and reconnects as the thing" % name,
                read(log)[-2500:])
        e.check("provisioned" in read(log), "%s: the agent logged the provisioning" % name)
        e.check(S.cert_status(pr) == "ACTIVE", "%s: its certificate is ACTIVE once used" % name)
        e.check(e.cert_id_of(os.path.join(d, "device.crt")) == pr,
                "%s: device.crt is the provisioned certificate" % name)
        e.check(os.readlink(os.path.join(d, "current")) == "gen-2", "%s: generation 2 is active" % name)
        e.check(not os.path.exists(os.path.join(d, "device.key")),
                "%s: no claim key file left (adopted into the token, file wiped)" % name, os.listdir(d))
        with open(os.path.join(d, "gen-2", "key.uri")) as f:
            uri = f.read().strip()
        e.check(uri.startswith("pkcs11:token=") and "object=certfleet-gen-2" in uri,
                "%s: the device key is a token URI" % name, uri)
        key_attrs_ok(name, "certfleet-gen-2", "the device key generated in the token")
        objs = sorted(token_objects(name))
        if keep == "no":
            e.check(objs == ["certfleet-gen-2"], "%s: the claim key is gone from the token" % name, objs)
            e.check(not os.path.exists(os.path.join(d, "gen-1")), "%s: the claim generation is gone" % name,
                    os.listdir(d))
        else:
            e.check(objs == ["certfleet-gen-1", "certfleet-gen-2"],
                    "%s: keep_claim = yes keeps the claim key in the token as the backup" % name, objs)
            e.check(os.path.isdir(os.path.join(d, "gen-1")), "%s: keep_claim keeps gen-1" % name)
    e.check(S.wait_event(lambda ev: ev.get("type") == "prov.provisioned"
                         and ev.get("subject") == "p11prov-201") is not None,
            "a prov.provisioned event is recorded")
    rows = S.cf_json("provision", "claim-list", "--template", "p11prov", "--json")
    e.check(rows and rows[0]["status"] == "ENABLED", "the claim stays ENABLED", rows)


def test_provisioned_token_device_rotates():
    old = {name: e.cert_id_of(os.path.join(PDIR[name], "device.crt")) for name in PROV}
    for name in PROV:
        create_job(S, name, "ECDSA-P384")
    for name in PROV:
        d = PDIR[name]
        final = wait_final(S, name)
        e.check(final == "SUCCEEDED", "%s: the rotation of the provisioned device SUCCEEDED" % name,
                (final, read(AGENTS[name][1])[-2500:]))
        new_id = e.cert_id_of(os.path.join(d, "device.crt"))
        e.check(new_id != old[name], "%s: device.crt names the rotated certificate" % name)
        e.check(S.cert_status(old[name]) == "INACTIVE", "%s: the provisioned certificate is INACTIVE" % name)
        e.check(os.readlink(os.path.join(d, "current")) == "gen-3", "%s: generation 3 is active" % name)
        objs = sorted(token_objects(name))
        e.check(objs == ["certfleet-gen-3"], "%s: one key left in the token, the rotated one" % name, objs)
        key_attrs_ok(name, "certfleet-gen-3", "the rotated key")
        ok = e.wait_for(lambda: open_principal(S, name) == new_id, 15, interval=0.2)
        e.check(ok, "%s: connected with the rotated certificate" % name, read(AGENTS[name][1])[-2000:])


def test_agents_clean():
    for name, (p, log) in AGENTS.items():
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            e.check(p.wait(10) == 0, "%s: SIGTERM stops the agent with exit 0" % name)
    for log in ALL_LOGS:
        text = read(log)
        e.check(not e.SANITIZER_RE.search(text), "no sanitizer report in %s" % log, text[-3000:])
        e.check("PRIVATE KEY" not in text and PIN not in text, "no key material or PIN in %s" % log)


e.run_tests([
    test_agents_adopt_and_connect,
    test_full_rotation_each_algorithm,
    test_broker_refuses_old_pairs,
    test_kill9_subset,
    test_rollback_new_cert_deactivated,
    test_rollback_commit_never_answered,
    test_claim_provisions_into_token,
    test_provisioned_token_device_rotates,
    test_agents_clean,
], setup=setup, stacks=[S, R])
