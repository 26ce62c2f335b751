#!/usr/bin/python3
"""06-ca-pkcs11 — certfleetd signs through a PKCS#11 token (issue 5, CA side; docs/pkcs11.md).

The data directory is made by `certfleet init --pkcs11-uri` with the issuing intermediate's key
generated in a SoftHSM2 token (a fresh token directory here; SOFTHSM2_CONF is in the stack's
environment). A real certfleet-agent (file key store) is rotated by a job: certfleetd issues the
new certificate with the token key, `openssl verify` accepts it, the device reconnects with it.
The PIN appears in no log.
"""
import os
import shutil
import signal
import subprocess

import cfe2e as e

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
if not os.path.exists(MODULE) or not shutil.which("softhsm2-util"):
    print("ok - SoftHSM2 not installed (scripts/install-deps): skipped")
    print("1 passed, 0 failed")
    raise SystemExit(0)

PIN = "ca-pin-%s" % os.urandom(4).hex()
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")
S = e.Stack("data", init=False)
HSM = S.scratch("softhsm")
P = {}


def setup():
    os.makedirs(os.path.join(HSM, "tokens"))
    conf = os.path.join(HSM, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                % os.path.join(HSM, "tokens"))
    os.environ["SOFTHSM2_CONF"] = conf      # certfleet, scripts/stack and certfleetd inherit it
    pin = os.path.join(HSM, "pin")
    with open(os.open(pin, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(PIN + "\n")
    r = e.run(["softhsm2-util", "--init-token", "--free", "--label", "ca", "--pin", PIN,
               "--so-pin", "12345678"])
    if r.rc != 0:
        raise e.Fail("softhsm2-util: %s" % r)
    r = e.run([e.CERTFLEET, "init", "--dir", S.dir, "--passphrase-file", S.passfile,
               "--ca-key-algorithm", "ECDSA-P384", "--intermediate-name", e.INT,
               "--mqtt-port", str(S.mqtt_port), "--api-port", str(S.api_port),
               "--pkcs11-uri", "pkcs11:token=ca;object=issuing", "--pkcs11-module", MODULE,
               "--pkcs11-pin-file", pin])
    if r.rc != 0:
        raise e.Fail("certfleet init --pkcs11-uri: %s" % r)
    e.check(not os.path.exists(S.path("ca", e.INT + ".key")), "no intermediate key file")
    S.up()


def stop_agent():
    p = P.get("agent")
    if p is not None and p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)


e.on_exit(stop_agent)


def open_principal(name):
    rows = [r for r in S.connections(client_id=name) if "disconnectedAt" not in r]
    return rows[0].get("principal") if rows else None


def test_daemon_rotates_with_token_key():
    t = S.thing("hsm-ca-dev")
    old_id = t.cert_id
    v = e.openssl("verify", "-CAfile", S.path("ca", "root.crt"), "-untrusted", S.chain, t.crt)
    e.check(v.rc == 0, "the CLI's certificate (signed in the token) verifies", v)
    log = S.scratch("agent.log")
    P["log"] = log
    with open(log, "wb") as f:
        P["agent"] = subprocess.Popen([AGENT, "--config", os.path.join(t.dir, "agent.conf")],
                                      stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    e.check(e.wait_for(lambda: open_principal(t.name) == old_id, 20, interval=0.2),
            "the agent connects")
    out = S.cf_json("job", "create-rotation", "--thing", t.name, "--key-algorithm", "ECDSA-P256",
                    "--json")
    job = out.get("jobId") if isinstance(out, dict) else out

    def status():
        d = S.cf_json("job", "describe", job, "--json")
        ex = [x for x in d.get("executions", []) if x.get("thing") == t.name]
        return ex[-1].get("status") if ex else None

    final = e.wait_for(lambda: status() in ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT") and status(),
                       90, interval=0.5)
    e.check(final == "SUCCEEDED", "the rotation SUCCEEDED: certfleetd issued through the token",
            (final, S.tail_logs()))
    new_id = e.cert_id_of(t.crt)
    e.check(new_id != old_id, "the device holds a new certificate")
    v = e.openssl("verify", "-CAfile", S.path("ca", "root.crt"), "-untrusted", S.chain, t.crt)
    e.check(v.rc == 0, "openssl verify accepts certfleetd's certificate", v)
    e.check(e.wait_for(lambda: open_principal(t.name) == new_id, 15, interval=0.2),
            "the agent is connected with it")


def test_no_pin_in_logs():
    stop_agent()
    for path in [P.get("log"), S.daemon_log]:
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            e.check(PIN not in text, "no PIN in %s" % path)


e.run_tests([test_daemon_rotates_with_token_key, test_no_pin_in_logs], setup=setup, stacks=[S])
