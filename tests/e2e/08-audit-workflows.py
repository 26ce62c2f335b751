#!/usr/bin/python3
"""08-audit-workflows — certfleetd's scheduled audits and automatic mitigation rules, end to end
with the real broker, daemon and agents (issue 6, docs/audit.md "In certfleetd").

certfleet.conf gets `audit_interval = 2` (a scheduled audit every 2 s) and three rules:
expiring → rotate, intermediate revoked → rotate, shared → deactivate,quarantine,notify.

- Automatic renewal: two things whose certificates were issued for 1 day (the expiring check's
  30 days flag them) are rotated by one job the rule created, with no operator action; their
  agents finish it: each holds a new certificate with a later notAfter, the old ones INACTIVE.
  Later audits do not start a second rotation.
- Shared certificate: one certificate used by two clients with the thing's client id from two
  hosts (127.0.0.1 and 127.0.0.2: the second takes the first over) is found by
  DEVICE_CERTIFICATE_SHARED_CHECK; the rule deactivates it and quarantines the thing.
- Metrics: /metrics against the registry (certificates by status and CA, expiring, findings of
  the latest audit by check and severity, rotations, job executions, issuance histogram).
- Intermediate roll-over: a new intermediate becomes the issuer and the old one is revoked; the
  audit finds every ACTIVE device certificate under it and the rule puts their things in ONE
  rotation job (then only "noop" for them in later audits). The devices cannot complete it: the
  plugin (and broker/ca.crt) refuse every certificate under a revoked CA, so they cannot reach
  the jobs topics — see docs/audit.md "Intermediate roll-over".
"""
import datetime
import json
import os
import signal
import sqlite3
import subprocess
import time

import cfe2e as e

S = e.Stack("data")
AGENT = os.path.join(e.BIN_DIR, "certfleet-agent")
RENEW = ["renew-1", "renew-2"]
SHARED = "shared-1"
T = {}
OLD = {}      # thing -> (old cert id, old notAfter)
AGENTS = []   # (Popen, log path)
EXPIRING = "DEVICE_CERTIFICATE_EXPIRING_CHECK"
SHARED_CHECK = "DEVICE_CERTIFICATE_SHARED_CHECK"
INT_REVOKED = "INTERMEDIATE_CA_REVOKED_FOR_ACTIVE_DEVICE_CERTIFICATES_CHECK"


def db():
    """The registry read-only (what the CLI has no verb for: rotations, mitigation actions)."""
    return sqlite3.connect("file:%s?mode=ro" % S.path("certfleet.db"), uri=True, timeout=10)


def mitigations(thing=None, action=None):
    with db() as c:
        rows = c.execute("SELECT m.finding_id, m.action, m.status, m.detail, f.check_name, "
                         "f.resource_id FROM mitigation_actions m JOIN findings f "
                         "ON f.id = m.finding_id ORDER BY m.id").fetchall()
    out = []
    for fid, act, status, detail, check, res in rows:
        if action and act != action:
            continue
        if thing and thing not in detail and thing not in res:
            continue
        out.append({"finding": fid, "action": act, "status": status, "detail": detail,
                    "check": check, "resource": res})
    return out


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def start_agent(name):
    log = S.scratch("agent-" + name + ".log")
    with open(log, "wb") as f:
        p = subprocess.Popen([AGENT, "--config", os.path.join(T[name].dir, "agent.conf")],
                             stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
    AGENTS.append((p, log))


def stop_agents():
    for p, _ in AGENTS:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


e.on_exit(stop_agents)


def open_principal(name):
    rows = [r for r in S.connections(client_id=name) if "disconnectedAt" not in r]
    return rows[0].get("principal") if rows else None


def rotation_jobs():
    return [j for j in S.api_json("/v1/jobs") if j.get("jobId", "").startswith("mitigate-")]


def job_things(job_id):
    return sorted(x["thing"] for x in S.api_json("/v1/jobs/" + job_id).get("executions", []))


def setup():
    with open(S.path("certfleet.conf"), "a") as f:
        f.write("\n# 08-audit-workflows\n"
                "audit_interval = 2\n"
                "mitigation_rule.%s = rotate\n"
                "mitigation_rule.%s = rotate\n"
                "mitigation_rule.%s = deactivate, quarantine, notify\n"
                % (EXPIRING, INT_REVOKED, SHARED_CHECK))
    for name in RENEW:
        T[name] = S.thing(name, "--validity-days", "1")
        c = S.cf_json("cert", "describe", T[name].cert_id, "--json")
        OLD[name] = (T[name].cert_id, parse_time(c["notAfter"]))
    T[SHARED] = S.thing(SHARED)
    S.up()


def test_config_refuses_unknown_rule():
    """A rule naming no check stops certfleetd at start (checked with a copy of the config)."""
    r = S.cf("audit", "list")   # the CLI accepts the mitigation_rule.* family
    e.check(r.rc == 0, "certfleet accepts certfleet.conf with the rules", r)
    st, body = S.api_post("/v1/audits", {"checks": ["NO_SUCH_CHECK"]})
    e.check(st == 400 and "NO_SUCH_CHECK" in body, "POST /v1/audits refuses an unknown check",
            (st, body))
    out = S.cf_json("audit", "run", "--daemon", "--checks", "THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK",
                    "--param", "DEVICE_CERTIFICATE_EXPIRING_CHECK=45", "--no-mitigate", "--json")
    e.check(out.get("auditId", 0) > 0 and out.get("actions") == [],
            "certfleet audit run --daemon: certfleetd ran it (no mitigation asked)", out)
    a = [x for x in S.cf_json("audit", "list", "--json") if x.get("id") == out["auditId"]]
    e.check(a and a[0].get("trigger") == "on_demand" and
            a[0].get("checks") == ["THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK"],
            "stored as an on_demand audit of the named check", a)


def test_automatic_renewal():
    for name in RENEW:
        start_agent(name)
    for name in RENEW:
        ok = e.wait_for(lambda: open_principal(name) is not None, 20, interval=0.2)
        e.check(ok, "%s's agent connects" % name)

    def renewed(name):
        return e.cert_id_of(T[name].crt) != OLD[name][0] and S.cert_status(OLD[name][0]) == "INACTIVE"

    for name in RENEW:
        ok = e.wait_for(lambda: renewed(name), 120, interval=1)
        e.check(ok, "%s was renewed with no operator action" % name,
                (rotation_jobs(), mitigations(name), S.tail_logs()))
    jobs = [j for j in rotation_jobs() if set(RENEW) <= set(job_things(j["jobId"]))]
    e.check(len(jobs) == 1, "one rotation job holds both things (the rule groups them)",
            [(j["jobId"], job_things(j["jobId"])) for j in rotation_jobs()])
    e.check(EXPIRING in (jobs[0].get("comment") or ""), "the job names the rule's check", jobs[0])
    for name in RENEW:
        new_id = e.cert_id_of(T[name].crt)
        d = S.cf_json("cert", "describe", new_id, "--json")
        e.check(d.get("status") == "ACTIVE", "%s: the new certificate is ACTIVE" % name, d)
        e.check(parse_time(d["notAfter"]) > OLD[name][1] + 86400,
                "%s: the new certificate's notAfter is later" % name, d)
        ok = e.wait_for(lambda: open_principal(name) == new_id, 20, interval=0.2)
        e.check(ok, "%s: the agent is connected with the new certificate" % name)
    # Two more audits: nothing expiring any more, so no further rotation job for them.
    n_audits = len(S.cf_json("audit", "list", "--json"))
    e.check(e.wait_for(lambda: len(S.cf_json("audit", "list", "--json")) >= n_audits + 2, 20, 0.5),
            "the scheduled audits go on")
    again = [j for j in rotation_jobs() if set(RENEW) & set(job_things(j["jobId"]))]
    e.check(len(again) == 1, "no second rotation job for the renewed things", again)
    trig = {a.get("trigger") for a in S.cf_json("audit", "list", "--json")}
    e.check("scheduled" in trig, "the audits ran with trigger 'scheduled'", trig)


def connect_from(host, thing):
    """The thing's certificate and client id, from source address host."""
    c = e._Client(client_id=thing.name, protocol=e.mqtt.MQTTv5, reconnect_on_failure=False)
    conn = e.Conn(thing.name, e.mqtt.MQTTv5)
    e._all_conns.append(conn)
    c._cf_conn = conn
    conn.c = c
    c.on_connect = conn._on_connect
    c.on_disconnect = conn._on_disconnect
    c.tls_set(ca_certs=S.chain, certfile=thing.crt, keyfile=thing.key)
    c.connect("127.0.0.1", S.mqtt_port, keepalive=30, bind_address=host)
    c.loop_start()
    conn.connected.wait(10)
    return conn


def test_shared_certificate_deactivated_and_quarantined():
    t = T[SHARED]
    a = connect_from("127.0.0.1", t)
    e.check(a.connack == 0, "the first client connects", a.describe())
    time.sleep(1.2)
    b = connect_from("127.0.0.2", t)
    e.check(b.connack == 0, "the second client (same certificate, another host) connects",
            b.describe())
    e.check(a.wait_closed(10), "the broker kicks the first (session takeover)")

    def deactivated():
        return S.cert_status(t.cert_id) == "INACTIVE"

    ok = e.wait_for(deactivated, 30, interval=0.5)
    e.check(ok, "the shared certificate is deactivated by the rule",
            (mitigations(t.cert_id), S.connections(client_id=t.name)))
    f = [m for m in mitigations() if m["check"] == SHARED_CHECK and m["resource"] == t.cert_id]
    acts = [(m["action"], m["status"]) for m in f]
    e.check(("deactivate", "succeeded") in acts and ("quarantine", "succeeded") in acts,
            "deactivate and quarantine were recorded as succeeded", acts)
    e.check(("notify", "noop") in acts, "notify is a noop without a sink", acts)
    groups = S.api_json("/v1/things/" + t.name).get("groups", [])
    names = [g if isinstance(g, str) else g.get("name") for g in groups]
    e.check("quarantine" in names, "the thing is in the quarantine group", groups)
    e.check(b.wait_closed(10), "the deactivated certificate's client is kicked")


def by_labels(m, name):
    out = {}
    for k, v in m.items():
        if k.startswith(name + "{"):
            out[k[len(name) + 1:-1]] = v
    return out


def test_metrics_match_registry():
    m = S.metrics()
    certs = S.api_json("/v1/certificates")
    cas = {c["id"]: c["name"] for c in S.cf_json("ca", "list", "--json")}
    now = time.time()
    for status in ("ACTIVE", "INACTIVE", "REVOKED", "PENDING"):
        n = sum(1 for c in certs if c["status"] == status)
        key = 'certfleet_certificates{status="%s"}' % status
        e.check(m.get(key, 0) == n, "%s = %d" % (key, n), m.get(key))
        for ca_id, ca_name in cas.items():
            n = sum(1 for c in certs if c["status"] == status and c["caId"] == ca_id)
            key = 'certfleet_certificates_by_ca{ca="%s",status="%s"}' % (ca_name, status)
            e.check(m.get(key, 0) == n, "%s = %d" % (key, n), m.get(key))
    for days in (7, 30):
        n = sum(1 for c in certs if c["status"] == "ACTIVE" and parse_time(c["notAfter"]) <= now + days * 86400)
        key = 'certfleet_certificates_expiring{within="%dd"}' % days
        e.check(m.get(key) == n, "%s = %d" % (key, n), m.get(key))
    # Findings: the latest audit the scrape saw.
    audit_id = int(m.get("certfleet_audit_last_id", 0))
    e.check(audit_id > 0, "the scrape names the latest audit")
    fs = S.cf_json("audit", "findings", "--audit", str(audit_id), "--json")
    fs = fs.get("findings", fs) if isinstance(fs, dict) else fs
    want = {}
    for f in fs:
        if f.get("suppressed"):
            continue
        k = 'check="%s",severity="%s"' % (f["check"], f["severity"])
        want[k] = want.get(k, 0) + 1
    got = {k: v for k, v in by_labels(m, "certfleet_audit_findings").items() if v}
    e.check(got == want, "findings by check and severity match audit %d" % audit_id, (got, want))
    with db() as c:
        rot = dict(c.execute("SELECT state, count(*) FROM rotations GROUP BY state").fetchall())
    for state in ("succeeded", "failed"):
        key = 'certfleet_rotations{state="%s"}' % state
        e.check(m.get(key, 0) == rot.get(state, 0), "%s = %d" % (key, rot.get(state, 0)), m.get(key))
    e.check(rot.get("succeeded", 0) >= len(RENEW), "the renewals are succeeded rotations", rot)
    counts = {}
    for j in S.api_json("/v1/jobs"):
        for st, n in j.get("counts", {}).items():
            counts[st] = counts.get(st, 0) + n
    for st, n in counts.items():
        key = 'certfleet_job_executions{status="%s"}' % st
        e.check(m.get(key, 0) == n, "%s = %d" % (key, n), m.get(key))
    issued = m.get('certfleet_certificate_issue_duration_seconds_bucket{le="+Inf"}', 0)
    e.check(issued == m.get("certfleet_certificate_issue_duration_seconds_count") and
            issued >= len(RENEW), "the issuance histogram counts the rotations' certificates",
            issued)
    e.check(m.get("certfleet_audits_total", 0) >= 2, "certfleet_audits_total counts the audits")


def test_intermediate_rollover_rotation_job():
    things = [n for n in RENEW]
    before = {j["jobId"] for j in rotation_jobs()}
    S.cf_ok("ca", "create-intermediate", "int2", "--passphrase-file", S.passfile)
    S.cf_ok("ca", "set-issuer", "int2")
    S.cf_ok("ca", "revoke", e.INT, "--passphrase-file", S.passfile)

    def new_jobs():
        return [j for j in rotation_jobs() if j["jobId"] not in before]

    ok = e.wait_for(lambda: any(set(things) <= set(job_things(j["jobId"])) for j in new_jobs()),
                    30, interval=0.5)
    e.check(ok, "the audit's rule put the things under the revoked intermediate in a rotation job",
            (new_jobs(), mitigations(action="rotate")[-5:], S.tail_logs()))
    jobs = [j for j in new_jobs() if set(things) & set(job_things(j["jobId"]))]
    e.check(len(jobs) == 1, "ONE job for them", jobs)
    e.check(INT_REVOKED in (jobs[0].get("comment") or ""), "the job names the check", jobs[0])
    n_audits = len(S.cf_json("audit", "list", "--json"))
    e.wait_for(lambda: len(S.cf_json("audit", "list", "--json")) >= n_audits + 2, 20, 0.5)
    jobs = [j for j in new_jobs() if set(things) & set(job_things(j["jobId"]))]
    e.check(len(jobs) == 1, "later audits start no second rotation", jobs)
    noops = [m for m in mitigations(action="rotate") if m["check"] == INT_REVOKED
             and m["status"] == "noop"]
    e.check(noops, "later audits record the rotate as a noop (a live rotation exists)",
            mitigations(action="rotate")[-5:])
    # What blocks the rest: the plugin refuses certificates under a revoked CA.
    refused = [r for r in S.connections(client_id=things[0])]
    e.check(open_principal(things[0]) is None, "the device is refused under the revoked CA",
            refused[:3])


def leaf_only(t):
    """Connects with t's certificate and a client store without int2 (the root and int1, which
    issued the broker's server certificate at init), so OpenSSL cannot add int2 to the chain it
    sends (with ca-chain.crt it does: auto-chain)."""
    ca = S.scratch("root-int1.crt")
    with open(ca, "w") as f:
        f.write(S.read("ca", "root.crt") + S.read("ca", e.INT + ".crt"))
    return e.connect(S, t.name, t.crt, t.key, ca=ca)


def closed_everywhere(name):
    return e.wait_for(lambda: open_principal(name) is None, 10, interval=0.2)


def test_broker_trusts_the_new_intermediate():
    """broker/ca.crt is rewritten when a CA is created or revoked, but Mosquitto 2.0 reads its
    cafile only when it starts (a SIGHUP does not reload it). A device whose chain file names the
    new intermediate sends it (OpenSSL auto-chain) and is accepted without a restart; one that
    sends only its leaf needs the broker restarted."""
    int2 = [c for c in S.cf_json("ca", "list", "--json") if c["name"] == "int2"][0]
    t = S.thing("fresh-1")
    e.check(S.cf_json("cert", "describe", t.cert_id, "--json")["caId"] == int2["id"],
            "a new thing's certificate is issued by int2")
    trust = S.read("broker", "ca.crt")
    pem = lambda name: S.read("ca", name + ".crt").strip()
    e.check(trust.count("BEGIN CERTIFICATE") == 2 and pem("int2") in trust and pem(e.INT) not in trust,
            "broker/ca.crt is rewritten: root and int2, not the revoked int1", trust[:100])
    c = e.connect_thing(S, t)
    e.check(c.connack == 0, "with its chain file (int2 sent by auto-chain) the device is accepted "
            "without a broker restart", c.describe())
    c.close()
    closed_everywhere(t.name)
    start = S.log_size()
    c = leaf_only(t)
    e.check(c.connack is None and S.wait_log("certificate verify failed", 5, start),
            "sending only its leaf, the broker refuses it at TLS (it still has the cafile it "
            "started with)", c.describe())
    os.kill(S.pid("mosquitto"), signal.SIGHUP)
    time.sleep(1)
    start = S.log_size()
    c = leaf_only(t)
    e.check(c.connack is None and S.wait_log("certificate verify failed", 5, start),
            "a SIGHUP does not reload the cafile (Mosquitto 2.0)", c.describe())
    pid = S.pid("mosquitto")
    os.kill(pid, signal.SIGTERM)
    e.wait_for(lambda: S.pid("mosquitto") is None or not os.path.exists("/proc/%d" % pid), 10, 0.1)
    S.up()
    c = leaf_only(t)
    e.check(c.connack == 0, "after a broker restart the leaf alone is accepted", c.describe())
    c.close()


def test_agents_clean():
    for p, log in AGENTS:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(10)
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        e.check(not e.SANITIZER_RE.search(text), "no sanitizer report in %s" % log, text[-3000:])


e.run_tests([
    test_config_refuses_unknown_rule,
    test_automatic_renewal,
    test_shared_certificate_deactivated_and_quarantined,
    test_metrics_match_registry,
    test_intermediate_rollover_rotation_job,
    test_broker_trusts_the_new_intermediate,
    test_agents_clean,
], setup=setup, stacks=[S])
