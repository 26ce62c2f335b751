#!/usr/bin/python3
"""02-broker-acl — where a device may publish and subscribe (docs/broker.md, "ACL").

A device uses only topics and filters under cf/things/<its client id>/: another thing's topics,
`#`, `cf/#`, a leading or middle `+` that reaches other things, `$cf/...` and the prefix trap
(thing `a` vs thing `ab`) are denied — a QoS 1 publish gets a failure PUBACK and reaches no one,
a subscription gets a SUBACK reason >= 0x80. Non-delivery is shown without sleeping: after the
denied message the same client publishes a marker to its own topic (the broker handles one
client's packets in order), and an observer that may see everything (the service certificate)
must get the marker and nothing denied before it.
"""
import os

import paho.mqtt.client as mqtt

import cfe2e as e

S = e.Stack("data")
T = {}
C = {}


def setup():
    for name in ("acl-a", "acl-b", "a", "ab"):
        T[name] = S.thing(name)
    S.up()
    C["obs"] = e.connect_service(S, "svc-acl-observer")
    e.check(C["obs"].connack == 0, "the observer (service certificate) connects", C["obs"].describe())
    for f in ("cf/#", "$cf/#"):
        rc = C["obs"].subscribe(f)
        e.check(rc == 1, "the service observer may subscribe to %s (SUBACK 1)" % f, "got %s" % rc)
    for name in T:
        c = e.connect_thing(S, T[name])
        e.check(c.connack == 0, "%s connects" % name, c.describe())
        C[name] = c


def marker(pub, topic_owner):
    """pub publishes a unique marker (QoS 1) under its own topic; the observer waits for it and
    returns every message it received before the marker."""
    body = os.urandom(8).hex().encode()
    topic = "cf/things/%s/marker" % topic_owner
    rc = pub.publish(topic, body, qos=1)
    e.check(rc == 0, "marker publish to own topic %s: PUBACK 0" % topic, "got %s" % rc)
    seen = []

    def is_marker(m):
        if m.topic == topic and m.payload == body:
            return True
        seen.append(m)
        return False
    m = C["obs"].wait_message(is_marker, timeout=5)
    e.check(m is not None, "the observer received the marker on %s" % topic,
            "saw instead: %s" % [(x.topic, x.payload[:20]) for x in seen])
    return seen


def test_own_topics_allowed():
    a = C["acl-a"]
    for f in ("cf/things/acl-a/#", "cf/things/acl-a/+/state", "cf/things/acl-a/cmd"):
        rc = a.subscribe(f)
        e.check(rc == 1, "acl-a may subscribe to %s (SUBACK 1)" % f, "got %s" % rc)
    a.drain()
    rc = a.publish("cf/things/acl-a/sensor/state", b"21.5", qos=1)
    e.check(rc == 0, "acl-a may publish to cf/things/acl-a/sensor/state (PUBACK 0)", "got %s" % rc)
    m = a.wait_message(lambda m: m.topic == "cf/things/acl-a/sensor/state", timeout=5)
    e.check(m is not None and m.payload == b"21.5", "acl-a receives its own message")
    o = C["obs"].wait_message(lambda m: m.topic == "cf/things/acl-a/sensor/state", timeout=5)
    e.check(o is not None, "the service observer receives it too")


def test_publish_to_other_thing_denied():
    a, b = C["acl-a"], C["acl-b"]
    rc = b.subscribe("cf/things/acl-b/#")
    e.check(rc == 1, "acl-b subscribes to its own topics", "got %s" % rc)
    b.drain()
    C["obs"].drain()
    rc = a.publish("cf/things/acl-b/cmd", b"forged", qos=1)
    e.check(rc is not None and rc >= 0x80, "acl-a's QoS 1 publish to cf/things/acl-b/cmd gets a failure PUBACK",
            "PUBACK reason %s" % rc)
    seen = marker(a, "acl-a")
    e.check(not [m for m in seen if m.payload == b"forged"],
            "the observer never got acl-a's message on acl-b's topic", [(m.topic, m.payload) for m in seen])
    # acl-b: a message of its own arrives, the forged one never did
    rc = b.publish("cf/things/acl-b/cmd", b"real", qos=1)
    e.check(rc == 0, "acl-b publishes to its own topic", "got %s" % rc)
    got = []
    m = b.wait_message(lambda m: got.append(m) or m.payload == b"real", timeout=5)
    e.check(m is not None, "acl-b receives its own message")
    e.check(not [x for x in got if x.payload == b"forged"], "acl-b never received acl-a's message",
            [(x.topic, x.payload) for x in got])


def test_qos0_and_v311_publish_to_other_thing_dropped():
    a = C["acl-a"]
    C["obs"].drain()
    rc = a.publish("cf/things/acl-b/cmd", b"forged-q0", qos=0)
    e.check(rc == 0, "the QoS 0 publish was sent")
    seen = marker(a, "acl-a")
    e.check(not [m for m in seen if m.payload == b"forged-q0"],
            "a denied QoS 0 publish reaches no one", [(m.topic, m.payload) for m in seen])
    v3 = e.connect_thing(S, T["acl-a"], client_id="acl-a", protocol=mqtt.MQTTv311)
    try:
        e.check(v3.connack == 0, "acl-a connects over MQTT 3.1.1", v3.describe())
        C["obs"].drain()
        v3.publish("cf/things/acl-b/cmd", b"forged-v3", qos=1)
        seen = marker(v3, "acl-a")
        e.check(not [m for m in seen if m.payload == b"forged-v3"],
                "a denied MQTT 3.1.1 publish reaches no one", [(m.topic, m.payload) for m in seen])
    finally:
        v3.close()
        # the 3.1.1 session took over client id acl-a: reconnect the v5 one for later tests
        C["acl-a"].close()
        C["acl-a"] = e.connect_thing(S, T["acl-a"])
        e.check(C["acl-a"].connack == 0, "acl-a reconnects", C["acl-a"].describe())
        e.check(C["acl-a"].subscribe("cf/things/acl-a/#") == 1, "acl-a subscribes to its own topics again")


DENIED_FILTERS = [
    "cf/things/acl-b/#",
    "cf/things/acl-b/cmd",
    "#",
    "cf/#",
    "cf/things/#",
    "cf/things/+/x",
    "cf/things/+/#",
    "+/things/acl-a/#",
    "+/#",
    "$cf/broker/#",
    "$cf/broker/connection",
    "$cf/#",
    "cf/things/acl-a",        # not under cf/things/acl-a/
]


def test_subscribe_outside_own_topics_denied():
    a = C["acl-a"]
    bad = []
    for f in DENIED_FILTERS:
        rc = a.subscribe(f)
        if rc is None or rc < 0x80:
            bad.append("%s -> %s" % (f, rc))
    e.check(not bad, "every filter outside cf/things/acl-a/ gets SUBACK >= 0x80", "; ".join(bad))
    e.check(a.ok, "acl-a is still connected after the denied subscriptions", a.describe())


def test_denied_subscriptions_deliver_nothing():
    # acl-a asked for #, cf/# ... above; acl-b's messages and the broker's connection events
    # must still not reach it
    a, b = C["acl-a"], C["acl-b"]
    a.drain()
    rc = b.publish("cf/things/acl-b/state", b"b-private", qos=1)
    e.check(rc == 0, "acl-b publishes to its own topic", "got %s" % rc)
    m = C["obs"].wait_message(lambda m: m.payload == b"b-private", timeout=5)
    e.check(m is not None, "the observer got acl-b's message")
    # a connection event is published on $cf/broker/connection: make one
    x = e.connect_thing(S, T["ab"], client_id="ab")     # takes over ab's session: an event
    x.close()
    C["ab"] = e.connect_thing(S, T["ab"])
    own = os.urandom(6).hex().encode()
    rc = a.publish("cf/things/acl-a/own", own, qos=1)
    e.check(rc == 0, "acl-a publishes to its own topic")
    got = []
    e.check(a.wait_message(lambda m: got.append(m) or m.payload == own, timeout=5),
            "acl-a received its own message (its subscription works)")
    leaked = [(m.topic, m.payload[:40]) for m in got if not m.topic.startswith("cf/things/acl-a/")]
    e.check(not leaked, "acl-a received nothing outside its own topics", leaked)


def test_publish_to_broker_topic_denied():
    a = C["acl-a"]
    C["obs"].drain()
    forged = b'{"event":"connected","clientId":"acl-b","principal":"","kind":"device","peer":"1.2.3.4:1","time":1}'
    rc = a.publish("$cf/broker/connection", forged, qos=1)
    e.check(rc is not None and rc >= 0x80, "a device's publish to $cf/broker/connection gets a failure PUBACK",
            "PUBACK reason %s" % rc)
    seen = marker(a, "acl-a")
    e.check(not [m for m in seen if m.payload == forged], "the forged connection event reached no one")
    conns = S.connections(client_id="acl-b")
    e.check(not [c for c in conns if c.get("peer") == "1.2.3.4:1"],
            "certfleetd recorded no connection from the forged event", conns)


def test_prefix_trap():
    a, ab = C["a"], C["ab"]
    for f in ("cf/things/ab/#", "cf/things/ab/x"):
        rc = a.subscribe(f)
        e.check(rc is not None and rc >= 0x80, "thing 'a' may not subscribe to %s" % f, "SUBACK %s" % rc)
    rc = a.subscribe("cf/things/a/#")
    e.check(rc == 1, "thing 'a' subscribes to cf/things/a/#", "SUBACK %s" % rc)
    rc = ab.subscribe("cf/things/ab/#")
    e.check(rc == 1, "thing 'ab' subscribes to cf/things/ab/#", "SUBACK %s" % rc)
    ab.drain()
    C["obs"].drain()
    rc = a.publish("cf/things/ab/cmd", b"trap", qos=1)
    e.check(rc is not None and rc >= 0x80, "thing 'a' may not publish to cf/things/ab/cmd", "PUBACK %s" % rc)
    seen = marker(a, "a")
    e.check(not [m for m in seen if m.payload == b"trap"], "the observer never got the trap message")
    a.drain()
    rc = ab.publish("cf/things/ab/state", b"ab-only", qos=1)
    e.check(rc == 0, "thing 'ab' publishes to its own topic")
    m = ab.wait_message(lambda m: m.payload == b"ab-only", timeout=5)
    e.check(m is not None, "thing 'ab' receives its own message")
    got = []
    own = os.urandom(6).hex().encode()
    a.publish("cf/things/a/own", own, qos=1)
    e.check(a.wait_message(lambda m: got.append(m) or m.payload == own, timeout=5),
            "thing 'a' received its own message (its subscription works)")
    e.check(not [m for m in got if m.payload in (b"trap", b"ab-only")],
            "thing 'a' never received thing 'ab''s messages", [(m.topic, m.payload) for m in got])


def test_ab_cannot_use_a():
    ab = C["ab"]
    rc = ab.subscribe("cf/things/a/#")
    e.check(rc is not None and rc >= 0x80, "thing 'ab' may not subscribe to cf/things/a/#", "SUBACK %s" % rc)
    rc = ab.publish("cf/things/a/cmd", b"x", qos=1)
    e.check(rc is not None and rc >= 0x80, "thing 'ab' may not publish to cf/things/a/cmd", "PUBACK %s" % rc)


def teardown_conns():
    for c in C.values():
        c.close()


def test_clients_still_connected():
    bad = [n for n, c in C.items() if not c.ok]
    e.check(not bad, "denials did not disconnect anyone", [C[n].describe() for n in bad])
    teardown_conns()


e.run_tests([
    test_own_topics_allowed,
    test_publish_to_other_thing_denied,
    test_qos0_and_v311_publish_to_other_thing_dropped,
    test_subscribe_outside_own_topics_denied,
    test_denied_subscriptions_deliver_nothing,
    test_publish_to_broker_topic_denied,
    test_prefix_trap,
    test_ab_cannot_use_a,
    test_clients_still_connected,
], setup=setup, stacks=[S])
