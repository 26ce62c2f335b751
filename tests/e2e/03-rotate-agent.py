#!/usr/bin/python3
"""03-rotate-agent — a full rotation driven end to end by the real pieces: certfleetd's jobs
engine, Mosquitto with the certfleet plugin, and certfleet-agent processes (DESIGN §6;
issue 4, end-to-end case 1).

One thing per key algorithm (RSA-2048, RSA-3072, P-256, P-384, P-521, Ed25519), each starting
from a P-256 bundle and rotated by a job to that algorithm. Afterwards: the execution SUCCEEDED;
the device's bundle paths name a new, matching pair of the requested algorithm that chains to the
CA; the registry has the new certificate ACTIVE and the old one INACTIVE; the agent is connected
with the new certificate; and the broker refuses the old pair.

The agents run with trim_memory_after_s = 1 and keepalive_s = 5 (docs/agent.md, "Memory"): each
drops its start-up pages once connected and idle, keeps its connection through three keepalives
after that, and then rotates.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import cfe2e as e

S = e.Stack("data")
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")
ALGS = ["ECDSA-P256", "ED25519", "ECDSA-P384", "ECDSA-P521", "RSA-2048", "RSA-3072"]
T = {}      # algorithm -> Thing
OLD = {}    # algorithm -> (old cert path copy, old key path copy, old cert id)
JOBS = {}   # algorithm -> job id
AGENTS = []  # (Popen, log path)
KEEPALIVE_S = 5
TRIMMED_RE = re.compile(r'msg="memory trimmed" rss_before_kib=(\d+) rss_after_kib=(\d+) '
                        r'mappings=(\d+) skipped=(\d+)')
OPEN_AFTER_TRIM = {}  # thing -> the open connection's id after the trim


def thing_name(alg):
    return "rot-" + alg.lower()


def setup():
    for alg in ALGS:
        t = S.thing(thing_name(alg))
        T[alg] = t
        with open(os.path.join(t.dir, "agent.conf"), "a") as f:
            f.write("trim_memory_after_s = 1\nkeepalive_s = %d\n" % KEEPALIVE_S)
        # The bundle paths become links once the agent adopts them: keep the old pair's bytes.
        d = S.scratch("old-" + alg)
        os.makedirs(d)
        shutil.copy(t.crt, os.path.join(d, "device.crt"))
        shutil.copy(t.key, os.path.join(d, "device.key"))
        OLD[alg] = (os.path.join(d, "device.crt"), os.path.join(d, "device.key"), t.cert_id)
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


def test_agents_connect():
    for alg in ALGS:
        log = S.scratch("agent-" + alg + ".log")
        with open(log, "wb") as f:
            p = subprocess.Popen([AGENT, "--config", os.path.join(T[alg].dir, "agent.conf"),
                                  "--log-level", "debug"],
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        AGENTS.append((p, log))
    for alg in ALGS:
        name = thing_name(alg)
        ok = e.wait_for(lambda: open_principal(name) == T[alg].cert_id, 20, interval=0.2)
        e.check(ok, "%s's agent connects with its original certificate" % name)


def read_log(log):
    with open(log, "rb") as f:
        return f.read().decode("utf-8", "replace")


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def test_agents_trim_memory():
    """Connected and IDLE for a second, every agent drops its start-up pages (cf_memtrim)."""
    for (p, log), alg in zip(AGENTS, ALGS):
        m = e.wait_for(lambda: TRIMMED_RE.search(read_log(log)), 30, interval=0.2)
        e.check(m, "%s: the agent trims its memory once idle" % alg, read_log(log)[-2000:])
        before, after, mappings = int(m.group(1)), int(m.group(2)), int(m.group(3))
        # libcrypto alone has ~4 MiB resident after start-up: at least 1 MiB must go.
        e.check(mappings > 0 and before - after >= 1024,
                "%s: the trim dropped read-only library pages (%d -> %d KiB, %d mappings)"
                % (alg, before, after, mappings))
        rss = vmrss_kib(p.pid)
        e.check(rss is not None and rss < before,
                "%s: VmRSS stays below its pre-trim figure (%s < %d KiB)" % (alg, rss, before))
        rows = [r for r in S.connections(client_id=thing_name(alg)) if "disconnectedAt" not in r]
        e.check(len(rows) == 1, "%s: one open connection after the trim" % alg, rows)
        if rows:
            OPEN_AFTER_TRIM[thing_name(alg)] = rows[0].get("id")


def test_connections_survive_keepalives_after_trim():
    """The broker drops a client silent for 1.5 keepalives: after three, each agent's connection
    from before is still the open one, so its PINGREQs (code faulted in again) went out."""
    time.sleep(3 * KEEPALIVE_S + 1)
    for (p, log), alg in zip(AGENTS, ALGS):
        name = thing_name(alg)
        rows = [r for r in S.connections(client_id=name) if "disconnectedAt" not in r]
        e.check(p.poll() is None, "%s: the agent still runs after three keepalives" % alg, log)
        e.check([r.get("id") for r in rows] == [OPEN_AFTER_TRIM.get(name)],
                "%s: the connection open after the trim is still the only open one" % alg,
                S.connections(client_id=name)[:3])
        e.check("mqtt disconnected" not in read_log(log),
                "%s: the agent never lost its connection" % alg, read_log(log)[-2000:])


def test_rotation_jobs_succeed():
    for alg in ALGS:
        out = S.cf_json("job", "create-rotation", "--thing", thing_name(alg), "--key-algorithm", alg,
                        "--json")
        JOBS[alg] = out.get("jobId") if isinstance(out, dict) else out
        e.check(JOBS[alg], "a rotation job to %s was created" % alg, out)

    def status(alg):
        d = S.cf_json("job", "describe", JOBS[alg], "--json")
        ex = [x for x in d.get("executions", []) if x.get("thing") == thing_name(alg)]
        return ex[-1].get("status") if ex else None

    for alg in ALGS:
        final = e.wait_for(lambda: status(alg) in ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT")
                           and status(alg), 90, interval=0.5)
        e.check(final == "SUCCEEDED", "the %s rotation SUCCEEDED" % alg,
                (final, S.cf_json("job", "describe", JOBS[alg], "--json")))


def test_devices_hold_new_matching_pairs():
    for alg in ALGS:
        t = T[alg]
        new_id = e.cert_id_of(t.crt)
        e.check(new_id != OLD[alg][2], "%s: device.crt names a new certificate" % alg)
        k = e.openssl("pkey", "-in", t.key, "-pubout")
        c = e.openssl("x509", "-in", t.crt, "-noout", "-pubkey")
        e.check(k.rc == 0 and k.out == c.out, "%s: device.key matches device.crt" % alg, (k, c))
        v = e.openssl("verify", "-CAfile", S.path("ca", "root.crt"), "-untrusted",
                      S.path("ca-chain.crt"), t.crt)
        e.check(v.rc == 0, "%s: the new certificate chains to the root" % alg, v)
        d = S.cf_json("cert", "describe", new_id, "--json")
        e.check(d.get("status") == "ACTIVE" and d.get("keyAlgorithm") == alg,
                "%s: the registry has the new certificate ACTIVE with the requested algorithm" % alg, d)
        e.check(S.cert_status(OLD[alg][2]) == "INACTIVE", "%s: the old certificate is INACTIVE" % alg)
        ok = e.wait_for(lambda: open_principal(t.name) == new_id, 10, interval=0.2)
        e.check(ok, "%s: the agent is connected with the new certificate" % alg,
                S.connections(client_id=t.name)[:3])


def test_broker_refuses_old_pairs():
    for alg in ALGS:
        crt, key, old_id = OLD[alg]
        c = e.connect(S, thing_name(alg), crt, key)
        e.check(c.refused, "%s: the broker refuses the old certificate" % alg, c.describe())


def test_agents_clean():
    for p, log in AGENTS:
        e.check(p.poll() is None, "the agent is still running", log)
        os.kill(p.pid, signal.SIGTERM)
        e.check(p.wait(10) == 0, "SIGTERM stops it with exit 0")
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        e.check(not e.SANITIZER_RE.search(text), "no sanitizer report in %s" % log, text[-3000:])
        e.check("PRIVATE KEY" not in text, "no key material in %s" % log)


e.run_tests([
    test_agents_connect,
    test_agents_trim_memory,
    test_connections_survive_keepalives_after_trim,
    test_rotation_jobs_succeed,
    test_devices_hold_new_matching_pairs,
    test_broker_refuses_old_pairs,
    test_agents_clean,
], setup=setup, stacks=[S])
