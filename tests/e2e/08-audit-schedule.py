#!/usr/bin/python3
"""08-audit-schedule — certfleetd's scheduled audits across restarts (docs/audit.md "In certfleetd").

The last scheduled audit is read from the store at start, so:
- with `audit_interval = 12`, the first scheduled audit runs 12 s after the daemon started;
- a restart right after an audit does not run another (no double);
- a daemon that was down when the next one was due runs it once as soon as it is back (no skip);
- `audit_schedule = daily@HH:MM` (the next minute, UTC) runs at that minute, with the
  configured audit_checks only.
"""
import datetime
import os
import re
import signal
import time

import cfe2e as e

S = e.Stack("data")
CONF_BASE = None


def scheduled():
    return [a for a in S.cf_json("audit", "list", "--json") if a.get("trigger") == "scheduled"]


def set_conf(extra):
    with open(S.path("certfleet.conf"), "w") as f:
        f.write(CONF_BASE + "\n# 08-audit-schedule\n" + extra)


def stop_daemon():
    pid = S.pid("certfleetd")
    e.check(pid is not None, "certfleetd has a pid file")
    os.kill(pid, signal.SIGTERM)
    e.check(e.wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                       open("/proc/%d/stat" % pid).read().split()[2] == "Z", 20, 0.1),
            "certfleetd stops on SIGTERM")


def start_daemon():
    S.up()


def setup():
    global CONF_BASE
    with open(S.path("certfleet.conf")) as f:
        CONF_BASE = f.read()
    set_conf("audit_interval = 12\n")
    S.up()


def test_interval_first_run_after_start():
    e.check(scheduled() == [], "no scheduled audit at start")
    ok = e.wait_for(lambda: len(scheduled()) == 1, 25, 0.5)
    e.check(ok, "the first scheduled audit runs one interval after the start", scheduled())


def test_restart_does_not_double():
    last = scheduled()[0]
    stop_daemon()
    start_daemon()
    time.sleep(5)
    now = scheduled()
    e.check(len(now) == 1, "a restart right after an audit does not run another",
            (last, now))


def test_down_when_due_runs_once_on_start():
    stop_daemon()
    last = scheduled()[0]["startedAt"] if "startedAt" in scheduled()[0] else None
    time.sleep(14)   # the next one fell due while the daemon was down
    start_daemon()
    ok = e.wait_for(lambda: len(scheduled()) >= 2, 5, 0.2)
    e.check(ok, "the missed audit runs as soon as the daemon is back", (last, scheduled()))
    time.sleep(3)
    e.check(len(scheduled()) == 2, "... once", scheduled())


def test_daily_schedule_runs_at_its_minute():
    stop_daemon()
    now = datetime.datetime.now(datetime.timezone.utc)
    # The next minute, or the one after when this one is nearly over.
    at = (now + datetime.timedelta(minutes=2 if now.second > 50 else 1)).replace(second=0)
    set_conf("audit_schedule = daily@%02d:%02d\naudit_checks = DEVICE_CERTIFICATE_EXPIRING_CHECK,"
             "THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK\n" % (at.hour, at.minute))
    before = len(scheduled())
    start_daemon()
    time.sleep(2)
    e.check(len(scheduled()) == before, "nothing runs before the slot", scheduled())
    wait = (at - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + 15
    ok = e.wait_for(lambda: len(scheduled()) == before + 1, max(wait, 5), 0.5)
    e.check(ok, "the daily schedule ran at %02d:%02d UTC" % (at.hour, at.minute), scheduled())
    a = scheduled()[0]
    checks = a.get("checks")
    e.check(sorted(checks) == ["DEVICE_CERTIFICATE_EXPIRING_CHECK",
                               "THING_WITHOUT_ACTIVE_CERTIFICATE_CHECK"],
            "only the configured audit_checks ran", a)
    log = S.read("run", "certfleetd.log")
    e.check(re.search(r"scheduled audit.*daily@", log), "the log names the schedule", log[-2000:])


def test_bad_schedule_stops_the_daemon():
    stop_daemon()
    set_conf("audit_schedule = hourly@00:10\n")
    r = e.run([os.path.join(e.BIN_DIR, "certfleetd"), "--dir", S.dir], timeout=30)
    e.check(r.rc != 0 and "audit_schedule" in r.err, "certfleetd refuses a bad audit_schedule", r)
    set_conf("mitigation_rule.NO_SUCH_CHECK = rotate\n")
    r = e.run([os.path.join(e.BIN_DIR, "certfleetd"), "--dir", S.dir], timeout=30)
    e.check(r.rc != 0 and "NO_SUCH_CHECK" in r.err, "certfleetd refuses a rule for no check", r)
    set_conf("mitigation_rule.DEVICE_CERTIFICATE_EXPIRING_CHECK = rotate, reboot\n")
    r = e.run([os.path.join(e.BIN_DIR, "certfleetd"), "--dir", S.dir], timeout=30)
    e.check(r.rc != 0 and "reboot" in r.err, "certfleetd refuses an unknown action", r)
    set_conf("")
    start_daemon()


e.run_tests([
    test_interval_first_run_after_start,
    test_restart_does_not_double,
    test_down_when_due_runs_once_on_start,
    test_daily_schedule_runs_at_its_minute,
    test_bad_schedule_stops_the_daemon,
], setup=setup, stacks=[S])
