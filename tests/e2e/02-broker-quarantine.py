#!/usr/bin/python3
"""02-broker-quarantine — a quarantined thing keeps only its rotation topics (docs/broker.md, "ACL";
docs/audit.md, "Mitigation").

`certfleet group add quarantine THING` (what `certfleet mitigate --action quarantine` does) makes
the plugin kick the thing's live connection within a second (the event tail). Reconnected, the
thing may publish and subscribe only below cf/things/<thing>/jobs/ and .../certificate/: its
telemetry publish gets a failure PUBACK (MQTT v5), a subscription to its cmd topic or to its whole
subtree a SUBACK >= 0x80, while `jobs/$next/get` still gets certfleetd's answer. Another thing is
not affected. `certfleet group remove quarantine THING` kicks it again, and it has its normal
access back.
"""
import json
import time

import cfe2e as e

S = e.Stack("data")
T = {}
C = {}
KICK_LIMIT = 1.0
figures = []


def setup():
    for name in ("qa", "qb"):
        T[name] = S.thing(name)
    S.up()
    for name in T:
        up(name)


def up(name):
    c = e.connect_thing(S, T[name])
    e.check(c.connack == 0, "%s connects" % name, c.describe())
    C[name] = c
    return c


def kicked_within(c, t_return, what):
    closed = c.wait_closed(KICK_LIMIT + 5)
    dt = (c.closed_at - t_return) if c.closed_at is not None else None
    shown = "never" if dt is None else "%.3f s after the command returned" % dt
    print("# %s: disconnected %s" % (what, shown), flush=True)
    if dt is not None:
        figures.append((what, dt))
    e.check(closed, "%s: the live connection is kicked" % what, c.describe())
    e.check(dt < KICK_LIMIT, "%s: within %.1f s of the command's return" % (what, KICK_LIMIT), shown)


def next_get(c, name, token):
    """Publishes jobs/$next/get and waits for certfleetd's answer; returns (PUBACK, reply or None)."""
    c.drain()
    rc = c.publish("cf/things/%s/jobs/$next/get" % name, json.dumps({"clientToken": token}).encode(), qos=1)

    def is_reply(m):
        if m.topic != "cf/things/%s/jobs/$next/get/accepted" % name:
            return False
        try:
            return json.loads(m.payload).get("clientToken") == token
        except ValueError:
            return False
    return rc, c.wait_message(is_reply, timeout=10)


def test_normal_access():
    a = C["qa"]
    rc = a.subscribe("cf/things/qa/cmd")
    e.check(rc == 1, "qa may subscribe to cf/things/qa/cmd (SUBACK 1)", "got %s" % rc)
    rc = a.publish("cf/things/qa/telemetry", b'{"t":21.5}', qos=1)
    e.check(rc == 0, "qa may publish to cf/things/qa/telemetry (PUBACK 0)", "got %s" % rc)


def test_group_add_kicks():
    S.cf_ok("group", "create", "quarantine")
    start = S.log_size()
    S.cf_ok("group", "add", "quarantine", "qa")
    kicked_within(C["qa"], time.monotonic(), "group add quarantine")
    m = S.wait_log(r"certfleet: thing qa entered quarantine group quarantine", timeout=5, start=start)
    e.check(m, "the plugin logged the quarantine")
    e.check(C["qb"].ok, "qb (not quarantined) is still connected", C["qb"].describe())


def test_quarantined_may_still_connect():
    a = up("qa")
    e.check(a.ok, "quarantined qa reconnects (CONNACK 0): a rotation must be able to heal it", a.describe())


def test_quarantined_other_topics_denied():
    a = C["qa"]
    rc = a.publish("cf/things/qa/telemetry", b'{"t":22}', qos=1)
    e.check(rc is not None and rc >= 0x80, "quarantined qa's publish to cf/things/qa/telemetry: failure PUBACK",
            "PUBACK reason %s" % rc)
    bad = []
    for f in ("cf/things/qa/cmd", "cf/things/qa/#", "cf/things/qa/+/accepted", "cf/things/qa/jobs"):
        rc = a.subscribe(f)
        if rc is None or rc < 0x80:
            bad.append("%s -> %s" % (f, rc))
    e.check(not bad, "quarantined qa's subscriptions outside jobs/ and certificate/ get SUBACK >= 0x80",
            "; ".join(bad))
    e.check(a.ok, "the denials did not disconnect qa", a.describe())


def test_quarantined_rotation_topics_work():
    a = C["qa"]
    for f in ("cf/things/qa/jobs/$next/get/+", "cf/things/qa/jobs/notify-next", "cf/things/qa/certificate/+/+"):
        rc = a.subscribe(f)
        e.check(rc == 1, "quarantined qa may subscribe to %s (SUBACK 1)" % f, "got %s" % rc)
    rc, reply = next_get(a, "qa", "q-1")
    e.check(rc == 0, "quarantined qa may publish jobs/$next/get (PUBACK 0)", "got %s" % rc)
    e.check(reply is not None, "certfleetd answered on cf/things/qa/jobs/$next/get/accepted")


def test_other_thing_unaffected():
    b = C["qb"]
    rc = b.publish("cf/things/qb/telemetry", b'{"t":20}', qos=1)
    e.check(rc == 0, "qb still publishes telemetry (PUBACK 0)", "got %s" % rc)
    rc = b.subscribe("cf/things/qb/cmd")
    e.check(rc == 1, "qb still subscribes to its cmd topic", "got %s" % rc)


def test_group_remove_restores():
    start = S.log_size()
    S.cf_ok("group", "remove", "quarantine", "qa")
    kicked_within(C["qa"], time.monotonic(), "group remove quarantine")
    m = S.wait_log(r"certfleet: thing qa left quarantine group quarantine", timeout=5, start=start)
    e.check(m, "the plugin logged the release")
    a = up("qa")
    rc = a.subscribe("cf/things/qa/cmd")
    e.check(rc == 1, "released qa may subscribe to cf/things/qa/cmd again", "got %s" % rc)
    rc = a.publish("cf/things/qa/telemetry", b'{"t":23}', qos=1)
    e.check(rc == 0, "released qa may publish telemetry again (PUBACK 0)", "got %s" % rc)
    rc = a.subscribe("cf/things/qa/#")
    e.check(rc == 1, "released qa may subscribe to its whole subtree again", "got %s" % rc)
    rc, reply = next_get(a, "qa", "q-2")
    e.check(rc == 0 and reply is not None, "released qa still gets jobs answers", "PUBACK %s" % rc)


def test_bystanders_still_connected():
    e.check(C["qb"].ok, "qb was never kicked", C["qb"].describe())
    for c in C.values():
        c.close()
    if figures:
        print("# kick latencies: " + ", ".join("%s %.3f s" % f for f in figures))


e.run_tests([
    test_normal_access,
    test_group_add_kicks,
    test_quarantined_may_still_connect,
    test_quarantined_other_topics_denied,
    test_quarantined_rotation_topics_work,
    test_other_thing_unaffected,
    test_group_remove_restores,
    test_bystanders_still_connected,
], setup=setup, stacks=[S])
