#!/usr/bin/python3
"""06-sim-rotate — certfleet-sim against the real stack (docs/sim.md, issue 8).

A small fleet created in bulk (one store transaction), connected, rotated by one job for its
group, then rotated again with failure injection: dropped messages and instances killed
mid-rotation and restarted from their journals. Afterwards: the registry has the things in the
group, every execution of the clean job SUCCEEDED, every device of the faulty job ended in a
terminal state the server agrees with, and each device's bundle names a matching pair whose
certificate is ACTIVE in the registry.
"""
import os
import re
import subprocess

import cfe2e as e

S = e.Stack("data")
SIM = os.path.join(e.BIN_DIR, "certfleet-sim")
N = 12
FLEET = None


def sim(*args, timeout=300):
    return e.run([SIM] + [str(a) for a in args], timeout=timeout)


def kv(out):
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)


def setup():
    S.up()


def test_create_fleet():
    global FLEET
    FLEET = S.scratch("fleet")
    r = sim("create-fleet", "--data", S.dir, "--dir", FLEET, "--count", N, "--prefix", "sim-",
            "--group", "simfleet")
    e.check(r.rc == 0, "create-fleet succeeds", r)
    e.check(kv(r.out).get("created") == str(N), "create-fleet reports %d things" % N, r.out)
    things = S.cf_json("thing", "list", "--json")
    names = {t.get("name") for t in (things if isinstance(things, list) else things.get("things", []))}
    e.check(all("sim-%d" % i in names for i in range(N)), "every simulated thing is registered",
            sorted(names))
    e.check(os.path.exists(os.path.join(FLEET, "devices", "sim-0", "device.key")),
            "bundles are written")
    r = sim("create-fleet", "--data", S.dir, "--dir", FLEET, "--count", 1)
    e.check(r.rc == 1, "create-fleet refuses a non-empty fleet directory", r)


def test_connect():
    r = sim("connect", "--dir", FLEET, "--hold", "0.5", "--concurrency", 4)
    o = kv(r.out)
    e.check(r.rc == 0 and o.get("connected") == str(N), "connect: every device connects", r)
    e.check(int(o.get("connect_n", "0")) == N, "a connect latency per device", r.out)


def test_rotate_clean():
    r = sim("rotate", "--dir", FLEET, "--timeout", 120)
    o = kv(r.out)
    e.check(r.rc == 0, "rotate succeeds", r)
    e.check(o.get("rotations_ok") == str(N) and o.get("job_SUCCEEDED") == str(N),
            "every rotation succeeded, for the agents and for the server", r.out)
    for ph in ("notify_to_in_progress", "create_to_accepted", "reconnect_new_pair",
               "commit_to_accepted", "total"):
        e.check(o.get(ph + "_n") == str(N) and float(o.get(ph + "_p99_ms", "0")) > 0,
                "phase %s timed for every device" % ph, r.out)


def test_rotate_with_failures():
    r = sim("rotate", "--dir", FLEET, "--timeout", 240, "--drop-rate", "0.05", "--kill-rate", "0.5",
            "--reconnect-delay", 100, "--response-timeout", 3, "--seed", 7)
    o = kv(r.out)
    e.check(o.get("rotations_unfinished") == "0", "every device finished despite the faults", r)
    e.check(int(o.get("kills", "0")) > 0 and o.get("kills") == o.get("restarts"),
            "instances were killed and restarted from their journals", r.out)
    done = int(o.get("job_SUCCEEDED", "0")) + int(o.get("job_FAILED", "0"))
    e.check(done == N and int(o.get("job_IN_PROGRESS", "1")) == 0,
            "every execution is terminal at the server", r.out)
    e.check(o.get("rotations_ok") == o.get("job_SUCCEEDED"),
            "the server's successes are the devices' successes", r.out)


def test_bundles_consistent():
    for i in range(N):
        d = os.path.join(FLEET, "devices", "sim-%d" % i)
        crt, key = os.path.join(d, "device.crt"), os.path.join(d, "device.key")
        pub_c = e.openssl("x509", "-in", crt, "-noout", "-pubkey").out
        pub_k = e.openssl("pkey", "-in", key, "-pubout").out
        e.check(pub_c == pub_k and pub_c, "sim-%d: the bundle's key and certificate match" % i)
        status = S.cert_status(e.cert_id_of(crt))
        e.check(status == "ACTIVE", "sim-%d: the certificate it holds is ACTIVE" % i, status)


e.run_tests([test_create_fleet, test_connect, test_rotate_clean, test_rotate_with_failures,
             test_bundles_consistent], setup=setup, stacks=[S])
