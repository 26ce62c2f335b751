#!/usr/bin/python3
"""03-agent-connect — certfleet-agent, the Linux device daemon, against a real stack
(docs/agent.md, DESIGN §6, §10).

A thing's bundle from `thing create --bundle`; `certfleet-agent --config bundle/agent.conf`
connects (mutual TLS, client id = thing) and is recorded open; the bundle was adopted by the
file key store (device.key/device.crt are links through `current`, still a matching pair,
keys 0600, state dir 0700); it reconnects by itself after a broker restart; SIGTERM closes the
connection and exits 0; after kill -9 a new agent resumes and connects again. No key material
in its log. (Rotation needs the server's jobs engine and is tested elsewhere.)
"""
import os
import signal
import stat
import subprocess
import time

import cfe2e as e

S = e.Stack("data")
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")
T = {}
P = {}   # name -> (Popen, log path): the latest agent
LOGS = []  # every agent's log


def setup():
    T["ag"] = S.thing("ag-1")
    S.up()


def start_agent(name="ag"):
    log = S.scratch("agent-log")
    f = open(log, "wb")
    p = subprocess.Popen([AGENT, "--config", os.path.join(T[name].dir, "agent.conf"),
                          "--log-level", "debug"],
                         stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                         start_new_session=True)
    f.close()
    P[name] = (p, log)
    LOGS.append((p, log))
    return p


def stop_all():
    for p, _ in LOGS:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(10)


e.on_exit(stop_all)


def agent_log(name="ag"):
    with open(P[name][1], "rb") as f:
        return f.read().decode("utf-8", "replace")


def open_rows(client_id):
    return [r for r in S.connections(client_id=client_id) if "disconnectedAt" not in r]


def proc_alive(pid, name):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return False


def pub_of_key(path):
    r = e.openssl("pkey", "-in", path, "-pubout")
    e.check(r.rc == 0, "openssl reads %s" % path, r)
    return r.out


def pub_of_cert(path):
    r = e.openssl("x509", "-in", path, "-noout", "-pubkey")
    e.check(r.rc == 0, "openssl reads %s" % path, r)
    return r.out


def test_connects():
    t = T["ag"]
    p = start_agent()
    rows = e.wait_for(lambda: p.poll() is None and open_rows(t.name), 10, interval=0.2)
    e.check(rows, "the agent connects: its connection is recorded open within 10 s",
            (p.poll(), agent_log()[-2000:]))
    cli = S.cf_json("connections", "list", "--client-id", t.name, "--open", "--json")
    e.check([x.get("id") for x in cli] == [x.get("id") for x in rows],
            "`certfleet connections list --open` shows the thing open", (cli, rows))
    e.check(rows[0].get("principal") == t.cert_id, "the connection is the bundle's certificate", rows)
    e.check(e.wait_for(lambda: "mqtt connected" in agent_log(), 5), "the agent logs mqtt connected",
            agent_log()[-2000:])


def test_bundle_adopted():
    t = T["ag"]
    b = t.dir
    e.check(os.path.islink(os.path.join(b, "current")), "the bundle has a `current` symlink")
    for f in ("device.key", "device.crt"):
        target = os.readlink(os.path.join(b, f))
        e.check(os.path.islink(os.path.join(b, f)) and target == os.path.join("current", f),
                "%s is a link through current" % f, target)
    e.check(pub_of_key(t.key) == pub_of_cert(t.crt), "device.key and device.crt still match")
    e.check(e.cert_id_of(t.crt) == t.cert_id, "device.crt is still the issued certificate")
    gen = os.path.join(b, os.readlink(os.path.join(b, "current")))
    for path in (os.path.join(b, "device.key"), os.path.join(gen, "device.key")):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        e.check(mode == 0o600, "%s is mode 0600" % path, oct(mode))
    st = os.path.join(b, "state")
    e.check(os.path.isdir(st) and stat.S_IMODE(os.stat(st).st_mode) == 0o700,
            "state_dir exists, mode 0700", oct(stat.S_IMODE(os.stat(st).st_mode)) if os.path.isdir(st) else None)


def test_broker_restart():
    t = T["ag"]
    p = P["ag"][0]
    bpid = S.pid("mosquitto")
    e.check(bpid and proc_alive(bpid, "mosquitto"), "the broker runs", bpid)
    os.kill(bpid, signal.SIGTERM)
    e.check(e.wait_for(lambda: not proc_alive(bpid, "mosquitto"), 10), "the broker stopped")
    e.check(e.wait_for(lambda: "mqtt disconnected" in agent_log() or "mqtt reconnecting" in agent_log(), 10),
            "the agent noticed the broker went away", agent_log()[-2000:])
    time.sleep(1.5)   # a few failed attempts while the broker is down
    e.check(p.poll() is None, "the agent keeps running while the broker is down", agent_log()[-2000:])
    n_before = agent_log().count("mqtt connected")
    S.up()
    ok = e.wait_for(lambda: agent_log().count("mqtt connected") > n_before, 30, interval=0.2)
    e.check(ok, "the agent reconnected to the restarted broker", agent_log()[-2000:])
    e.check(e.wait_for(lambda: open_rows(t.name), 10, interval=0.2), "and is recorded open again",
            S.connections(client_id=t.name))
    e.check(p.poll() is None, "the same agent process")


def test_sigterm():
    t = T["ag"]
    p = P["ag"][0]
    os.kill(p.pid, signal.SIGTERM)
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    e.check(rc == 0, "SIGTERM: the agent exits 0", (rc, agent_log()[-2000:]))
    e.check(e.wait_for(lambda: not open_rows(t.name), 10, interval=0.2),
            "its connection is recorded closed", S.connections(client_id=t.name))


def test_kill9_restart():
    t = T["ag"]
    p = start_agent()
    e.check(e.wait_for(lambda: open_rows(t.name), 10, interval=0.2), "a new agent connects",
            agent_log()[-2000:])
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    p = start_agent()
    n_start = len(S.connections(client_id=t.name))
    ok = e.wait_for(lambda: "mqtt connected" in agent_log() and open_rows(t.name)
                    and len(S.connections(client_id=t.name)) > n_start, 15, interval=0.2)
    e.check(ok, "after kill -9 a restarted agent resumes and connects", agent_log()[-2000:])
    e.check(p.poll() is None, "and keeps running", agent_log()[-2000:])
    e.check("state=IDLE" in agent_log(), "it resumed in IDLE from its journal", agent_log()[:1500])
    e.check(pub_of_key(t.key) == pub_of_cert(t.crt), "the pair still matches")
    os.kill(p.pid, signal.SIGTERM)
    e.check(p.wait(10) == 0, "SIGTERM exits 0")


def test_logs_clean():
    text = ""
    for _, path in LOGS:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
        e.check(not e.SANITIZER_RE.search(data), "no sanitizer report in %s" % path, data[-3000:])
        text += data
    e.check("PRIVATE KEY" not in text, "no key material in the agent log")


e.run_tests([
    test_connects,
    test_bundle_adopted,
    test_broker_restart,
    test_sigterm,
    test_kill9_restart,
    test_logs_clean,
], setup=setup, stacks=[S])
