#!/usr/bin/python3
"""02-broker-restart — certfleetd's view of the broker, and both coming back (docs/broker.md,
"certfleetd", "scripts/stack").

Connections are recorded (open, then ended); /healthz and /metrics answer; `stack status`
prints its key=value lines. The broker is stopped (SIGTERM to its recorded PID) and started
again with `scripts/stack up` (it starts only what is down): certfleetd notices, reconnects
within 10 s, closes the stale open connections with reason broker-restart, and devices connect
again. certfleetd is stopped and started: what happened meanwhile (a connect, a refusal) is
recorded once it is back (its persistent session), and the API answers again.
"""
import json
import os
import signal
import time

import cfe2e as e

S = e.Stack("data")
T = {}
C = {}


def setup():
    for name in ("rs-a", "rs-b", "rs-c", "rs-off"):
        T[name] = S.thing(name)
    S.cf_ok("cert", "deactivate", T["rs-off"].cert_id)
    S.up()


def proc_alive(pid, name):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return name.encode() in f.read()
    except OSError:
        return False


def stop_by_pid(which, timeout=10):
    """SIGTERM to the PID scripts/stack recorded for which; waits (bounded) until it is gone."""
    pid = S.pid(which)
    e.check(pid and proc_alive(pid, which), "run/%s.pid names a running %s" % (which, which), pid)
    os.kill(pid, signal.SIGTERM)
    gone = e.wait_for(lambda: not proc_alive(pid, which), timeout)
    e.check(gone, "%s (pid %d) exited within %d s of SIGTERM" % (which, pid, timeout))
    return pid


def open_rows(client_id):
    return [r for r in S.connections(client_id=client_id) if "disconnectedAt" not in r]


def health_mqtt():
    st, h = S.health()
    return h.get("mqtt") if st == 200 else None


def test_status_lines():
    r, kv = S.status()
    e.check(r.rc == 0, "scripts/stack status exits 0", r)
    e.check(kv.get("mosquitto") == "running" and kv.get("certfleetd") == "running",
            "status says both run", kv)
    e.check(kv.get("mqtt_host") == "127.0.0.1", "mqtt_host=127.0.0.1", kv)
    e.check(kv.get("mqtt_port") == str(S.mqtt_port), "mqtt_port is the init port %d" % S.mqtt_port, kv)
    e.check(kv.get("api_url") == "http://127.0.0.1:%d" % S.api_port, "api_url is the init port", kv)
    e.check(kv.get("mosquitto_pid") == str(S.pid("mosquitto")), "mosquitto_pid matches run/mosquitto.pid", kv)


def test_healthz():
    st, h = S.health()
    e.check(st == 200, "/healthz answers 200", st)
    e.check(h.get("status") == "ok" and h.get("mqtt") == "connected" and h.get("database") == "ok",
            "/healthz: status ok, mqtt connected, database ok", h)


def test_metrics():
    m = S.metrics()
    e.check(m.get("certfleet_up") == 1, "certfleet_up 1", {k: v for k, v in m.items() if "up" in k})
    e.check(m.get("certfleet_mqtt_connected") == 1, "certfleet_mqtt_connected 1",
            {k: v for k, v in m.items() if "connected" in k})


def test_api_basics():
    things = S.api_json("/v1/things")
    names = sorted(t.get("name") for t in things)
    e.check(names == sorted(T), "/v1/things lists the things", names)
    st, body = S.api("/v1/things/no-such-thing")
    e.check(st == 404 and "error" in json.loads(body or "{}"), "an unknown thing is a 404 with an error", (st, body))
    c = S.api_json("/v1/certificates/%s" % T["rs-a"].cert_id)
    e.check(c.get("status") == "ACTIVE" and c.get("thing") == "rs-a", "/v1/certificates/{id}", c)


def test_connection_recorded_open_then_closed():
    a = e.connect_thing(S, T["rs-a"])
    e.check(a.connack == 0, "rs-a connects", a.describe())
    rows = e.wait_for(lambda: open_rows("rs-a"), 10, interval=0.2)
    e.check(rows, "GET /v1/connections shows rs-a open", S.connections(client_id="rs-a"))
    r = rows[0]
    e.check(r.get("principal") == T["rs-a"].cert_id and r.get("kind") == "device",
            "the record names rs-a's certificate, kind device", r)
    cli = S.cf_json("connections", "list", "--client-id", "rs-a", "--open", "--json")
    e.check([x.get("id") for x in cli] == [x.get("id") for x in rows],
            "`certfleet connections list --client-id --open --json` agrees with the API", (cli, rows))
    a.close()
    done = e.wait_for(lambda: not open_rows("rs-a") and S.connections(client_id="rs-a"), 10, interval=0.2)
    e.check(done, "after the disconnect rs-a's connection is recorded as ended", S.connections(client_id="rs-a"))
    e.check(all("disconnectedAt" in x for x in done), "disconnectedAt set", done)
    m = S.metrics()
    e.check(m.get("certfleet_mqtt_connected") == 1, "certfleetd itself is still connected")


def test_broker_restart():
    a = e.connect_thing(S, T["rs-a"])
    e.check(a.connack == 0, "rs-a connects", a.describe())
    e.check(e.wait_for(lambda: open_rows("rs-a"), 10, interval=0.2), "rs-a recorded open")
    daemon_pid = S.pid("certfleetd")
    stop_by_pid("mosquitto")
    e.check(a.wait_closed(5), "rs-a lost its connection with the broker", a.describe())
    e.check(e.wait_for(lambda: health_mqtt() == "disconnected", 10, interval=0.2),
            "/healthz says mqtt disconnected while the broker is down", S.health())
    m = S.metrics()
    e.check(m.get("certfleet_mqtt_connected") == 0, "certfleet_mqtt_connected 0 while the broker is down",
            m.get("certfleet_mqtt_connected"))
    r, kv = S.status()
    e.check(kv.get("mosquitto") == "stopped" and kv.get("certfleetd") == "running",
            "stack status: mosquitto stopped, certfleetd running", kv)
    t0 = time.monotonic()
    S.up()
    ok = e.wait_for(lambda: health_mqtt() == "connected", 10, interval=0.1)
    dt = time.monotonic() - t0
    print("# certfleetd reconnected %.2f s after stack up started the broker" % dt, flush=True)
    e.check(ok, "certfleetd reconnected to the restarted broker within 10 s", S.health())
    e.check(S.pid("certfleetd") == daemon_pid, "the same certfleetd process (it reconnected, not restarted)",
            (daemon_pid, S.pid("certfleetd")))
    stale = e.wait_for(lambda: [x for x in S.connections(client_id="rs-a")
                                if x.get("reason") == "broker-restart"], 10, interval=0.2)
    e.check(stale, "the connection open before the restart is ended with reason broker-restart",
            S.connections(client_id="rs-a"))
    a2 = e.connect_thing(S, T["rs-a"])
    e.check(a2.connack == 0, "rs-a connects to the restarted broker", a2.describe())
    e.check(e.wait_for(lambda: open_rows("rs-a"), 10, interval=0.2), "and is recorded open again",
            S.connections(client_id="rs-a"))
    C["rs-a"] = a2
    m = S.metrics()
    e.check(m.get("certfleet_mqtt_connected") == 1, "certfleet_mqtt_connected 1 again")


def test_refusal_after_broker_restart():
    # the plugin of the new broker process still refuses and reports
    start = S.log_size()
    c = e.connect_thing(S, T["rs-off"])
    c.close()
    e.check(c.connack == 135, "the INACTIVE certificate is refused after the restart", c.describe())
    e.check(S.wait_log(r"certfleet: refused rs-off ", 5, start), "refusal logged")
    e.check(S.refused_event_for("rs-off", 10), "broker.refused recorded")


def test_daemon_restart_catches_up():
    old = stop_by_pid("certfleetd")
    st, _ = S.api("/healthz", timeout=2)
    e.check(st == 0, "the API is down while certfleetd is stopped", st)
    n_refused = len([x for x in S.events() if x.get("type") == "broker.refused"
                     and "rs-c" in json.dumps(x)])
    # while certfleetd is away: rs-b connects, rs-a disconnects, rs-c is refused (wrong client id)
    b = e.connect_thing(S, T["rs-b"])
    e.check(b.connack == 0, "rs-b connects while certfleetd is down", b.describe())
    C["rs-b"] = b
    C["rs-a"].close()
    x = e.connect_thing(S, T["rs-c"], client_id="rs-c-impostor")
    x.close()
    e.check(x.connack == 135, "a refusal while certfleetd is down", x.describe())
    S.up()
    e.check(S.pid("certfleetd") and S.pid("certfleetd") != old, "a new certfleetd process", S.pid("certfleetd"))
    st, h = S.health()
    e.check(st == 200 and h.get("mqtt") == "connected", "the API answers again, mqtt connected", (st, h))
    e.check(e.wait_for(lambda: open_rows("rs-b"), 10, interval=0.2),
            "rs-b's connect (while certfleetd was down) is recorded", S.connections(client_id="rs-b"))
    e.check(e.wait_for(lambda: not open_rows("rs-a") and S.connections(client_id="rs-a"), 10, interval=0.2),
            "rs-a's disconnect (while certfleetd was down) is recorded", S.connections(client_id="rs-a"))
    ev = e.wait_for(lambda: len([x for x in S.events() if x.get("type") == "broker.refused"
                                 and "rs-c-impostor" in json.dumps(x)]) > 0, 10, interval=0.2)
    e.check(ev, "the refusal while certfleetd was down is recorded as broker.refused", n_refused)
    things = S.api_json("/v1/things")
    e.check(len(things) == len(T), "GET /v1/things answers after the restart", things)


def test_daemon_log_format():
    lines = [l for l in S.read("run", "certfleetd.log").splitlines() if l.strip()]
    e.check(lines, "certfleetd wrote run/certfleetd.log")
    bad = [l for l in lines if not (l.startswith("time=") and " level=" in l and " msg=" in l)]
    e.check(not bad, "every certfleetd log line is logfmt with time=, level=, msg=", bad[:5])
    e.check(not [l for l in lines if "PRIVATE KEY" in l], "no key material in the log")


def test_done():
    for c in C.values():
        c.close()


e.run_tests([
    test_status_lines,
    test_healthz,
    test_metrics,
    test_api_basics,
    test_connection_recorded_open_then_closed,
    test_broker_restart,
    test_refusal_after_broker_restart,
    test_daemon_restart_catches_up,
    test_daemon_log_format,
    test_done,
], setup=setup, stacks=[S])
