#!/usr/bin/python3
"""02-broker-auth — who may connect (docs/broker.md, "At CONNECT").

ACTIVE certificate with its thing's client id: CONNACK 0. Refused: INACTIVE, REVOKED, a
certificate of another certfleet root, self-signed, expired, no client certificate (those four
at the TLS layer), client id of another thing, a certificate from our intermediate that the
registry never recorded. Plugin-level refusals leave the plugin's log line
`certfleet: refused <client id> from <peer>: <reason>` and a broker.refused event (certfleetd).
"""
import re

import paho.mqtt.client as mqtt

import cfe2e as e

S = e.Stack("data")
OTHER = None      # a second, unrelated certfleet root (init only, never started)
T = {}


def setup():
    global OTHER
    OTHER = e.Stack("other")
    for name in ("auth-ok", "auth-inactive", "auth-revoked", "auth-a", "auth-b", "auth-reg"):
        T[name] = S.thing(name)
    T["foreign"] = OTHER.thing("auth-ok")       # same thing name, different root
    S.up()


def plugin_refusal(client_id, reason_re, start):
    """The plugin's refusal line for client_id in the broker log (since byte start)."""
    pat = r"certfleet: refused %s from 127\.0\.0\.1(:\d+)?: %s" % (re.escape(client_id), reason_re)
    m = S.wait_log(pat, timeout=5, start=start)
    e.check(m, "broker log has the plugin's line matching /%s/" % pat,
            "log tail:\n" + "\n".join(S.read("run", "mosquitto.log")[start:].splitlines()[-8:]))


def refused_event(client_id):
    ev = S.refused_event_for(client_id, timeout=10)
    e.check(ev, "certfleetd recorded a broker.refused event naming %s" % client_id,
            "events of type broker.*: %s" % [x for x in S.events() if str(x.get("type", "")).startswith("broker")][-5:])
    return ev


def expect_plugin_refusal(client_id, crt, key, reason_re):
    start = S.log_size()
    c = e.connect(S, client_id, crt, key)
    c.close()
    e.check(c.connack == 135, "CONNACK 135 (Not authorized)", c.describe())
    plugin_refusal(client_id, reason_re, start)
    refused_event(client_id)


def expect_tls_refusal(client_id, crt, key):
    start = S.log_size()
    c = e.connect(S, client_id, crt, key)
    # a TLS 1.3 server checks the client certificate after the client's handshake ends:
    # the refusal shows as the connection closing before any CONNACK
    e.wait_for(lambda: c.closed.is_set() or c.connack is not None, 5)
    c.close()
    e.check(c.refused and c.connack != 0, "refused (no CONNACK 0)", c.describe())
    log = S.read("run", "mosquitto.log")[start:]
    e.check(not re.search(r"New client connected from .* as %s " % re.escape(client_id), log),
            "the broker never accepted the MQTT session of %s" % client_id)
    e.check(not re.search(r"certfleet: refused %s " % re.escape(client_id), log),
            "the plugin never saw %s (refused by TLS first)" % client_id)


def test_active_connects():
    a = T["auth-ok"]
    c = e.connect_thing(S, a)
    try:
        e.check(c.connack == 0, "ACTIVE certificate, own client id: CONNACK 0", c.describe())
        e.check(not c.closed.wait(0.5), "the connection stays up", c.describe())
    finally:
        c.close()


def test_v311_active_connects():
    a = T["auth-ok"]
    c = e.connect_thing(S, a, protocol=mqtt.MQTTv311)
    try:
        e.check(c.connack == 0, "ACTIVE certificate over MQTT 3.1.1: CONNACK 0", c.describe())
    finally:
        c.close()


def test_inactive_refused():
    t = T["auth-inactive"]
    S.cf_ok("cert", "deactivate", t.cert_id)
    expect_plugin_refusal(t.name, t.crt, t.key, r"certificate %s is INACTIVE" % t.cert_id)


def test_inactive_reactivated_connects():
    t = T["auth-inactive"]
    S.cf_ok("cert", "activate", t.cert_id)
    c = e.connect_thing(S, t)
    c.close()
    e.check(c.connack == 0, "after cert activate the same certificate connects", c.describe())


def test_revoked_refused():
    t = T["auth-revoked"]
    S.cf_ok("cert", "revoke", t.cert_id, "--reason", "keyCompromise")
    expect_plugin_refusal(t.name, t.crt, t.key, r"certificate %s is REVOKED" % t.cert_id)


def test_unknown_ca_refused():
    f = T["foreign"]
    expect_tls_refusal("auth-foreign", f.crt, f.key)


def test_self_signed_refused():
    # the CN and client id of a registered, ACTIVE thing: only the signature differs
    crt, key = S.self_signed("auth-ok")
    expect_tls_refusal("auth-ok", crt, key)


def test_expired_refused():
    crt, key = S.issue_unregistered("auth-ok", expired=True)
    r = e.run(["openssl", "x509", "-in", crt, "-noout", "-checkend", "0"])
    e.check(r.rc != 0, "the test certificate is expired", r)
    r = e.run(["openssl", "verify", "-CAfile", S.chain, crt])
    e.check(r.rc != 0 and "expired" in (r.out + r.err), "openssl verify says expired", r)
    expect_tls_refusal("auth-ok", crt, key)


def test_no_client_certificate_refused():
    start = S.log_size()
    c = e.connect(S, "auth-nocert", None, None)
    e.wait_for(lambda: c.closed.is_set() or c.connack is not None, 5)
    c.close()
    e.check(c.refused and c.connack != 0, "refused without a client certificate", c.describe())
    log = S.read("run", "mosquitto.log")[start:]
    e.check(not re.search(r"New client connected from .* as auth-nocert ", log),
            "the broker never accepted the session")


def test_client_id_mismatch_refused():
    a = T["auth-a"]
    expect_plugin_refusal("auth-b", a.crt, a.key,
                          r"client id 'auth-b' is not the certificate's thing 'auth-a'")


def test_client_id_mismatch_does_not_hurt_owner():
    b = T["auth-b"]
    c = e.connect_thing(S, b)
    c.close()
    e.check(c.connack == 0, "auth-b itself still connects", c.describe())


def test_unregistered_certificate_refused():
    crt, key = S.issue_unregistered("auth-reg")
    r = e.run(["openssl", "verify", "-CAfile", S.chain, crt])
    e.check(r.rc == 0, "the rogue certificate chains to our root (only the registry can refuse it)", r)
    cid = e.cert_id_of(crt)
    expect_plugin_refusal("auth-reg", crt, key, r"certificate %s is not registered" % cid)


def test_registered_owner_still_connects():
    t = T["auth-reg"]
    c = e.connect_thing(S, t)
    c.close()
    e.check(c.connack == 0, "the registered certificate of auth-reg connects", c.describe())


def test_refusal_events_name_principal():
    # the refusal of the revoked certificate is attributed to that certificate
    t = T["auth-revoked"]
    ev = refused_event(t.name)
    e.check(t.cert_id in e.json.dumps(ev), "the broker.refused event carries the certificate id", ev)


def test_service_certificate_is_not_a_thing_cert():
    # the service principal is recognised by certificate: any client id is accepted
    c = e.connect_service(S, "svc-auth-test")
    c.close()
    e.check(c.connack == 0, "the service certificate connects with client id svc-auth-test", c.describe())


e.run_tests([
    test_active_connects,
    test_v311_active_connects,
    test_inactive_refused,
    test_inactive_reactivated_connects,
    test_revoked_refused,
    test_unknown_ca_refused,
    test_self_signed_refused,
    test_expired_refused,
    test_no_client_certificate_refused,
    test_client_id_mismatch_refused,
    test_client_id_mismatch_does_not_hurt_owner,
    test_unregistered_certificate_refused,
    test_registered_owner_still_connects,
    test_refusal_events_name_principal,
    test_service_certificate_is_not_a_thing_cert,
], setup=setup, stacks=[S])
