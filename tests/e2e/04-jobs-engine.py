#!/usr/bin/python3
"""04-jobs-engine — certfleetd's jobs engine against the real stack (docs/certfleetd.md "The jobs engine").

Devices are paho clients speaking the jobs API (cfe2e.Device), so each step of the engine is
driven exactly: the rollout's per-minute limit and cancel, in-progress timeout then a retry as attempt 2
and completion, the execution.timed_out notification through the exec hook, a CONTINUOUS job following a
static group (a newcomer joins, a leaver's QUEUED execution is REMOVED), a schedule that starts later and
one whose end cancels, the API's refusals (each names the bad member, nothing is created).
"""
import json
import os
import time

import cfe2e as e

S = e.Stack("data")
NOTES = None


def setup():
    global NOTES
    NOTES = S.scratch("notes.jsonl")
    hook = S.scratch("hook.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\ncat >> '%s'\necho >> '%s'\n" % (NOTES, NOTES))
    os.chmod(hook, 0o755)
    with open(S.path("certfleet.conf"), "a") as f:
        f.write("notify_exec = %s\n" % hook)
        f.write("notify_backoff = 1\n")
    S.up()


def job(jid):
    return S.api_json("/v1/jobs/" + jid)


def create(body, code=201):
    st, text = S.api_post("/v1/jobs", body)
    e.check(st == code, "POST /v1/jobs answers %d" % code, "%s: %s" % (st, text[:400]))
    return json.loads(text)


def notes():
    try:
        with open(NOTES) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def test_api_refusals():
    S.thing("ref1")
    jobs_before = len(S.api_json("/v1/jobs"))
    bad = [
        ({"targets": {"things": ["ref1"]}, "keyAlgorithm": "ECDSA-P256",
          "config": {"rollout": {"maxPerMinute": 0}}}, 400, "config.rollout.maxPerMinute"),
        ({"targets": {"things": ["ref1"]}, "keyAlgorithm": "ECDSA-P256", "config": {"rollot": {}}}, 400, "rollot"),
        ({"targets": {"groups": ["no-such-group"]}, "keyAlgorithm": "ECDSA-P256"}, 404, "no-such-group"),
        ({"targets": {"things": ["ghost"]}, "keyAlgorithm": "ECDSA-P256"}, 404, "ghost"),
        ({"targets": {"things": ["ref1"]}, "things": ["ref1"], "keyAlgorithm": "ECDSA-P256"}, 400, "not both"),
        ({"targets": {"things": ["ref1"]}, "keyAlgorithm": "ECDSA-P256", "targetSelection": "SOMETIMES"}, 400,
         "targetSelection"),
        ({"targets": {"things": ["ref1"]}, "keyAlgorithm": "RSA-1024"}, 400, "RSA-1024"),
        ({"targets": {"things": ["ref1"]}, "keyAlgorithm": "ECDSA-P256", "color": "red"}, 400, "color"),
        ({"targets": {"things": ["ref1"]}, "keyAlgorithm": "ECDSA-P256",
          "config": {"abort": [{"failureType": "FAILED", "thresholdPercentage": 150,
                                "minNumberOfExecutedThings": 1}]}}, 400, "thresholdPercentage"),
    ]
    for body, code, word in bad:
        st, text = S.api_post("/v1/jobs", body)
        e.check(st == code and word in text, "refused with %d naming %s" % (code, word), "%s: %s" % (st, text))
    e.check(len(S.api_json("/v1/jobs")) == jobs_before, "no job was created by a refused request")
    st, text = S.api_post("/v1/jobs/no-such-job/cancel", {})
    e.check(st == 404, "cancel of an unknown job: 404", text)


def test_rollout_limit_and_cancel():
    names = ["r%d" % i for i in range(6)]
    for n in names:
        S.thing(n)
    S.cf_ok("group", "create", "rg")
    S.cf_ok("group", "add", "rg", *names)
    j = create({"jobId": "j-rollout", "targets": {"groups": ["rg"]}, "keyAlgorithm": "ECDSA-P256",
                "config": {"rollout": {"maxPerMinute": 2}}})
    e.check(j["targetCount"] == {"total": 6, "unreleased": 4, "released": 2, "removed": 0},
            "2 of 6 released in the first minute", j["targetCount"])
    e.check(j["counts"]["QUEUED"] == 2, "2 QUEUED executions", j["counts"])
    time.sleep(2.5)
    j = job("j-rollout")
    e.check(j["targetCount"]["released"] == 2, "still 2 released seconds later", j["targetCount"])
    st, text = S.api_post("/v1/jobs/j-rollout/cancel", {"comment": "enough"})
    e.check(st == 200, "cancel answers 200", text)
    j = json.loads(text)
    e.check(j["status"] == "CANCELED" and j["counts"]["CANCELED"] == 2 and j.get("comment") == "enough",
            "job and its QUEUED executions CANCELED, comment kept", j)
    time.sleep(1.5)
    j = job("j-rollout")
    e.check(j["targetCount"]["released"] == 2, "nothing released after the cancel", j["targetCount"])
    st, text = S.api_post("/v1/jobs/j-rollout/cancel", {})
    e.check(st == 409, "cancel of a canceled job: 409", text)


def test_timeout_retry_and_notification():
    d = e.Device.of(S, S.thing("tt"))
    create({"jobId": "j-timeout", "things": ["tt"], "keyAlgorithm": "ECDSA-P256",
            "config": {"timeouts": {"inProgressSeconds": 2},
                       "retry": [{"failureType": "TIMED_OUT", "numberOfRetries": 1}]}})
    v, p = d.update("j-timeout", "IN_PROGRESS")
    e.check(v == "accepted", "IN_PROGRESS accepted", p)
    e.check(e.wait_for(lambda: len(job("j-timeout")["executions"]) == 2, 10), "a second attempt appears")
    ex = job("j-timeout")["executions"]
    e.check(ex[0]["status"] == "TIMED_OUT" and "timeout" in ex[0]["statusDetails"].get("reason", ""),
            "attempt 1 TIMED_OUT with the reason", ex[0])
    e.check(ex[1]["status"] == "QUEUED" and ex[1]["executionNumber"] == 2, "attempt 2 QUEUED", ex[1])
    e.check(ex[1]["versionNumber"] > ex[0]["versionNumber"], "versionNumber never repeats across attempts", ex)
    v, p = d.update("j-timeout", "IN_PROGRESS", expectedVersion=ex[0]["versionNumber"])
    e.check(v == "rejected" and p.get("errorCode") == "VersionMismatch", "a stale expectedVersion is refused", p)
    v, p = d.update("j-timeout", "IN_PROGRESS")
    e.check(v == "accepted", "attempt 2 IN_PROGRESS", p)
    v, p = d.update("j-timeout", "FAILED", statusDetails={"reason": "disk full"})
    e.check(v == "accepted", "attempt 2 FAILED", p)
    e.check(e.wait_for(lambda: job("j-timeout")["status"] == "COMPLETED", 5), "the job COMPLETED (no retry for FAILED)",
            job("j-timeout"))
    e.check(e.wait_for(lambda: len([n for n in notes() if n.get("jobId") == "j-timeout"]) >= 2, 10),
            "two notifications reached the exec hook", notes())
    kinds = sorted(n["kind"] for n in notes() if n.get("jobId") == "j-timeout")
    e.check(kinds == ["execution.failed", "execution.timed_out"], "execution.timed_out then execution.failed", kinds)
    failed = [n for n in notes() if n.get("kind") == "execution.failed"][0]
    e.check(failed.get("thing") == "tt" and failed.get("reason") == "disk full" and failed.get("executionNumber") == 2,
            "the notification names thing, reason and attempt", failed)
    d.close()


def test_continuous_follows_group():
    for n in ("c1", "c2"):
        S.thing(n)
    S.cf_ok("group", "create", "cg")
    S.cf_ok("group", "add", "cg", "c1")
    j = create({"jobId": "j-cont", "targets": {"groups": ["cg"]}, "targetSelection": "CONTINUOUS",
                "keyAlgorithm": "ECDSA-P256"})
    e.check(j["targetSelection"] == "CONTINUOUS" and j["counts"]["QUEUED"] == 1, "c1 queued", j["counts"])
    S.cf_ok("group", "add", "cg", "c2")
    e.check(e.wait_for(lambda: job("j-cont")["counts"]["QUEUED"] == 2, 12), "c2 joined within a follow period",
            job("j-cont")["counts"])
    S.cf_ok("group", "remove", "cg", "c1")
    e.check(e.wait_for(lambda: job("j-cont")["counts"]["REMOVED"] == 1, 12), "c1's QUEUED execution REMOVED",
            job("j-cont")["counts"])
    j = job("j-cont")
    e.check(j["status"] == "IN_PROGRESS" and j["targetCount"]["removed"] == 1,
            "a CONTINUOUS job stays IN_PROGRESS", j)
    st, _ = S.api_post("/v1/jobs/j-cont/cancel", {})
    e.check(st == 200, "cancel the continuous job")
    e.check(S.cf("group", "remove", "cg", "c1").rc != 0, "removing a non-member fails")


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_schedule():
    S.thing("s1")
    S.thing("s2")
    j = create({"jobId": "j-later", "things": ["s1"], "keyAlgorithm": "ECDSA-P256",
                "config": {"schedule": {"startTime": iso(time.time() + 4)}}})
    e.check(j["status"] == "SCHEDULED" and j["counts"]["QUEUED"] == 0, "created SCHEDULED, nothing released", j)
    e.check(e.wait_for(lambda: job("j-later")["counts"]["QUEUED"] == 1, 10), "released once the start came",
            job("j-later"))
    e.check(job("j-later")["status"] == "IN_PROGRESS", "then IN_PROGRESS")
    j = create({"jobId": "j-ends", "things": ["s2"], "keyAlgorithm": "ECDSA-P256",
                "config": {"schedule": {"endTime": iso(time.time() + 3), "endBehavior": "CANCEL"}}})
    e.check(j["counts"]["QUEUED"] == 1, "released at once")
    e.check(e.wait_for(lambda: job("j-ends")["status"] == "CANCELED", 10), "CANCELED at the schedule's end",
            job("j-ends"))
    j = job("j-ends")
    e.check(j["counts"]["CANCELED"] == 1 and "schedule" in j.get("comment", ""), "its QUEUED execution too", j)


def test_certificate_query_targets():
    S.thing("short1", "--validity-days", "1")
    S.thing("long1")
    j = create({"jobId": "j-query", "targets": {"certificates": {"expiringWithinDays": 2, "issuer": e.INT}},
                "keyAlgorithm": "ECDSA-P256"})
    things = sorted(x["thing"] for x in j["executions"])
    e.check(things == ["short1"], "the query selects exactly the thing whose certificate expires soon", things)
    st, text = S.api_post("/v1/jobs", {"targets": {"certificates": {"issuer": "no-such-ca"}},
                                       "keyAlgorithm": "ECDSA-P256"})
    e.check(st == 404 and "no-such-ca" in text, "an unknown issuer is 404 naming it", text)
    S.api_post("/v1/jobs/j-query/cancel", {})


e.run_tests([test_api_refusals, test_certificate_query_targets, test_rollout_limit_and_cancel, test_timeout_retry_and_notification,
             test_continuous_follows_group, test_schedule], setup=setup, stacks=[S])
