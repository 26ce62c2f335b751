#!/usr/bin/python3
"""02-broker-stamp — the broker labels device messages, and only it can (docs/broker.md,
"Stamping"; src/lib/cf_stamp.h).

A device message reaches subscribers with exactly one cf-principal (the TLS certificate's id),
cf-client-id and cf-stamp (HMAC with private/stamp.key, recomputed here), whatever the device
sent; other user properties survive. A 3.1.1 publisher's message is stamped for v5 subscribers.
A will (which bypasses the plugin) with forged properties is counted by certfleetd as
unstamped and dropped, while a normal message is counted as received.
"""
import os

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import cfe2e as e

S = e.Stack("data")
T = {}
C = {}
KEY = None

CF_PROPS = ("cf-principal", "cf-client-id", "cf-stamp")


def setup():
    global KEY
    for name in ("st-a", "st-b", "st-c"):
        T[name] = S.thing(name)
    KEY = e.load_stamp_key(S.path("private", "stamp.key"))
    e.check(len(KEY) == 32, "private/stamp.key holds 32 bytes of hex")
    S.up()
    C["obs"] = e.connect_service(S, "svc-stamp-observer")
    e.check(C["obs"].connack == 0, "the service observer connects", C["obs"].describe())
    rc = C["obs"].subscribe("cf/things/#")
    e.check(rc == 1, "the observer subscribes to cf/things/#", "SUBACK %s" % rc)
    C["st-a"] = e.connect_thing(S, T["st-a"])
    e.check(C["st-a"].connack == 0, "st-a connects", C["st-a"].describe())


def forged_props(extra=()):
    b = T["st-b"]
    return e.props([
        ("cf-principal", b.cert_id),
        ("cf-client-id", "st-b"),
        ("cf-stamp", e.stamp(b"\x00" * 32, b.cert_id, "st-b", "x", b"x")),
        ("cf-principal", "0" * 64),
        ("cf-stamp", "f" * 64),
    ] + list(extra))


def check_stamped(msg, thing, what):
    e.check(msg is not None, "%s: the message arrived" % what)
    up = e.user_props(msg)
    for name in CF_PROPS:
        vals = [v for k, v in up if k == name]
        e.check(len(vals) == 1, "%s: exactly one %s" % (what, name), "got %s (all: %s)" % (vals, up))
    d = dict((k, v) for k, v in up if k in CF_PROPS)
    e.check(d["cf-principal"] == thing.cert_id, "%s: cf-principal is the TLS certificate's id" % what,
            "got %s, want %s" % (d["cf-principal"], thing.cert_id))
    e.check(d["cf-client-id"] == thing.name, "%s: cf-client-id is %s" % (what, thing.name),
            "got %s" % d["cf-client-id"])
    want = e.stamp(KEY, thing.cert_id, thing.name, msg.topic, msg.payload)
    e.check(d["cf-stamp"] == want, "%s: cf-stamp verifies with private/stamp.key" % what,
            "got %s, want %s" % (d["cf-stamp"], want))
    # and a stamp over anything else would differ (the check above is not vacuous)
    e.check(e.stamp(KEY, thing.cert_id, thing.name, msg.topic, msg.payload + b"!") != want,
            "the stamp depends on the payload")
    return up


def test_forged_properties_replaced():
    a = C["st-a"]
    C["obs"].drain()
    payload = b'{"t": 21.5}\n\x00binary'
    topic = "cf/things/st-a/telemetry"
    rc = a.publish(topic, payload, qos=1, properties=forged_props([("x-app", "keep-me")]))
    e.check(rc == 0, "st-a's publish with forged cf-* properties is accepted (PUBACK 0)", "got %s" % rc)
    m = C["obs"].wait_message(lambda m: m.topic == topic, timeout=5)
    up = check_stamped(m, T["st-a"], "observer")
    e.check(("x-app", "keep-me") in up, "other user properties survive", up)
    e.check(m.payload == payload, "the payload is unchanged")


def test_device_subscriber_sees_stamp():
    a = C["st-a"]
    rc = a.subscribe("cf/things/st-a/echo/#")
    e.check(rc == 1, "st-a subscribes to its own topics")
    a.drain()
    rc = a.publish("cf/things/st-a/echo/1", b"echo", qos=1, properties=forged_props())
    e.check(rc == 0, "publish accepted")
    m = a.wait_message(lambda m: m.topic == "cf/things/st-a/echo/1", timeout=5)
    check_stamped(m, T["st-a"], "st-a itself")


def test_empty_payload_and_qos0_stamped():
    a = C["st-a"]
    C["obs"].drain()
    rc = a.publish("cf/things/st-a/empty", b"", qos=0, properties=forged_props())
    e.check(rc == 0, "QoS 0 publish sent")
    m = C["obs"].wait_message(lambda m: m.topic == "cf/things/st-a/empty", timeout=5)
    check_stamped(m, T["st-a"], "QoS 0, empty payload")


def test_v311_publisher_stamped():
    c = T["st-c"]
    v3 = e.connect_thing(S, c, protocol=mqtt.MQTTv311)
    try:
        e.check(v3.connack == 0, "st-c connects over MQTT 3.1.1", v3.describe())
        C["obs"].drain()
        rc = v3.publish("cf/things/st-c/v3", b"from 3.1.1", qos=1)
        e.check(rc == 0, "3.1.1 publish acknowledged", "got %s" % rc)
        m = C["obs"].wait_message(lambda m: m.topic == "cf/things/st-c/v3", timeout=5)
        check_stamped(m, c, "3.1.1 publisher, v5 subscriber")
    finally:
        v3.close()


def metric(m, name, labels=None):
    """Sum of every sample of metric name (with exactly these labels if given)."""
    total = 0.0
    for k, v in m.items():
        base, _, rest = k.partition("{")
        if base != name:
            continue
        if labels is not None and ("{" + rest) != labels:
            continue
        total += v
    return total


RECEIVED = "certfleet_mqtt_messages_received_total"
DROPPED = "certfleet_mqtt_messages_dropped_total"
UNSTAMPED = '{reason="unstamped"}'


def settled_metrics():
    """Metrics once two reads 0.3 s apart agree on the two counters (connection events settle)."""
    prev = None

    def same():
        nonlocal prev
        cur = S.metrics()
        key = (metric(cur, RECEIVED), metric(cur, DROPPED, UNSTAMPED))
        ok = prev is not None and key == prev[0]
        prev = (key, cur)
        return cur if ok else None
    m = e.wait_for(same, 10, interval=0.3)
    e.check(m, "/metrics answers and settles", "last: %r" % ((prev and prev[0]),))
    return m


def test_metrics_have_counters():
    m = S.metrics()
    e.check(m, "/metrics answers")
    names = {k.partition("{")[0] for k in m}
    e.check(RECEIVED in names, "/metrics has %s" % RECEIVED, sorted(names))
    e.check(DROPPED in names, "/metrics has %s" % DROPPED, sorted(names))


def test_normal_message_received_by_certfleetd():
    before = settled_metrics()
    r0, d0 = metric(before, RECEIVED), metric(before, DROPPED, UNSTAMPED)
    rc = C["st-a"].publish("cf/things/st-a/telemetry", b'{"t": 22}', qos=1, properties=forged_props())
    e.check(rc == 0, "publish accepted")
    m = e.wait_for(lambda: (lambda x: x if metric(x, RECEIVED) > r0 else None)(S.metrics()), 5)
    e.check(m, "%s increases after a stamped device message" % RECEIVED, "stayed at %s" % r0)
    after = settled_metrics()
    e.check(metric(after, DROPPED, UNSTAMPED) == d0,
            "a stamped message is not counted as unstamped (forged cf-* properties were replaced)",
            "%s -> %s" % (d0, metric(after, DROPPED, UNSTAMPED)))


def test_will_with_forged_properties_not_trusted():
    b = T["st-b"]
    before = settled_metrics()
    d0 = metric(before, DROPPED, UNSTAMPED)
    topic = "cf/things/st-b/status"
    will_payload = b'{"state": "offline", "forged": true}'
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.UserProperty = [("cf-principal", b.cert_id), ("cf-client-id", "st-b"), ("cf-stamp", "a" * 64)]
    c = e.connect_thing(S, b, will=(topic, will_payload, 1, wp))
    e.check(c.connack == 0, "st-b connects with a will", c.describe())
    C["obs"].drain()
    c.abort()
    m = C["obs"].wait_message(lambda m: m.topic == topic, timeout=10)
    e.check(m is not None, "the broker sent st-b's will after the socket died")
    up = dict(e.user_props(m))
    real = e.stamp(KEY, b.cert_id, "st-b", topic, will_payload)
    e.check(up.get("cf-stamp") != real, "the will carries no valid stamp", up)
    dm = e.wait_for(lambda: (lambda x: x if metric(x, DROPPED, UNSTAMPED) > d0 else None)(S.metrics()), 5)
    e.check(dm, "certfleetd counted the will as unstamped (%s%s increased)" % (DROPPED, UNSTAMPED),
            "stayed at %s" % d0)
    st, body = S.api("/v1/connections?clientId=st-b")
    e.check(st == 200, "the API still answers", body[:200])


def test_plain_will_not_trusted():
    # a will with no properties at all is not trusted either
    c_thing = T["st-c"]
    before = settled_metrics()
    d0 = metric(before, DROPPED, UNSTAMPED)
    topic = "cf/things/st-c/status"
    c = e.connect_thing(S, c_thing, will=(topic, b"offline", 1, None))
    e.check(c.connack == 0, "st-c connects with a will", c.describe())
    C["obs"].drain()
    c.abort()
    m = C["obs"].wait_message(lambda m: m.topic == topic, timeout=10)
    e.check(m is not None, "the broker sent st-c's will")
    dm = e.wait_for(lambda: (lambda x: x if metric(x, DROPPED, UNSTAMPED) > d0 else None)(S.metrics()), 5)
    e.check(dm, "certfleetd counted the plain will as unstamped", "stayed at %s" % d0)


def test_done():
    for c in C.values():
        c.close()


e.run_tests([
    test_forged_properties_replaced,
    test_device_subscriber_sees_stamp,
    test_empty_payload_and_qos0_stamped,
    test_v311_publisher_stamped,
    test_metrics_have_counters,
    test_normal_message_received_by_certfleetd,
    test_will_with_forged_properties_not_trusted,
    test_plain_will_not_trusted,
    test_done,
], setup=setup, stacks=[S])
