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


def test_rotate_sharded():
    """Two processes for one fleet, the way bench/rotation runs one per CPU (--shard I/K)."""
    for bad in ("2/2", "0/0", "-1/2", "1"):
        r = sim("rotate", "--dir", FLEET, "--shard", bad, "--no-job")
        e.check(r.rc == 2, "--shard %s is refused as a usage error" % bad, r)
    samples = [S.scratch("samples-%d" % k) for k in range(2)]
    env = dict(os.environ, CF_BIN_DIR=e.BIN_DIR, CF_LIB_DIR=e.LIB_DIR, LC_ALL="C")
    p1 = subprocess.Popen([SIM, "rotate", "--dir", FLEET, "--timeout", "120", "--shard", "1/2",
                           "--no-job", "--samples", samples[1]], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True)
    e.on_exit(lambda: p1.poll() is None and p1.kill())
    first = []
    for line in p1.stdout:
        first.append(line)
        if line.startswith("ready=") or line.startswith("rotations_"):
            break
    e.check("ready=1\n" in first, "shard 1 connects its devices and waits for the job",
            "".join(first))
    r0 = sim("rotate", "--dir", FLEET, "--timeout", 120, "--shard", "0/2", "--samples", samples[0])
    out1, err1 = p1.communicate(timeout=150)
    o0, o1 = kv(r0.out), kv("".join(first) + out1)
    e.check(r0.rc == 0 and p1.returncode == 0, "both shards succeed", (r0, err1[-600:]))
    e.check(o0.get("devices") == o1.get("devices") == str(N // 2),
            "each shard holds half of the fleet", (o0.get("devices"), o1.get("devices")))
    e.check(o0.get("rotations_ok") == o1.get("rotations_ok") == str(N // 2),
            "each shard rotated its own devices", (r0.out, out1))
    e.check(o0.get("job_SUCCEEDED") == str(N) and "job_id" in o1 and o1["job_id"] == "",
            "the one job shard 0 created covered both shards' devices", r0.out)
    t0, t1 = float(o0["t_start_mono"]), max(float(o0["t_last_done_mono"]),
                                            float(o1["t_last_done_mono"]))
    e.check(0 < t0 < t1, "the shards' monotonic times merge into one rotation window", (t0, t1))
    merged = {}
    for f in samples:
        with open(f) as fh:
            for line in fh:
                ph, ms = line.split()
                merged.setdefault(ph, []).append(float(ms))
    for ph in ("connect", "notify_to_in_progress", "create_to_accepted", "reconnect_new_pair",
               "commit_to_accepted", "total"):
        e.check(len(merged.get(ph, [])) >= N and min(merged[ph]) > 0,
                "the merged samples hold phase %s for every device" % ph,
                {k: len(v) for k, v in merged.items()})


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


e.run_tests([test_create_fleet, test_connect, test_rotate_clean, test_rotate_sharded,
             test_rotate_with_failures,
             test_bundles_consistent], setup=setup, stacks=[S])
