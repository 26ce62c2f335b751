"""cfe2e — shared helpers for the end-to-end broker scenarios (tests/e2e/02-broker-*.py).

Not a scenario itself (CTest registers only tests/e2e/[0-9]*.py). A scenario does:

    import cfe2e as e
    S = e.Stack("data")          # temp dir, free ports, certfleet init (ECDSA CAs)
    def setup():
        S.up()                   # scripts/stack up; `down` runs at exit whatever happens
    def test_something():
        a = S.thing("a")         # thing create --bundle, returns a Thing (crt, key, chain, id)
        c = e.connect(S, "a", a.crt, a.key)
        e.check(c.connack == 0, "CONNACK 0", c.describe())
    e.run([test_something], setup=setup)

Rotation scenarios (tests/e2e/03-*, 04-*) also use: Stack.up(env=...) and
Stack.restart_daemon(env=...) (certfleetd alone, e.g. with CERTFLEET_FAILPOINTS), the job API
(job_create, job, job_cancel, execution, wait_execution, wait_job), Agent (a certfleet-agent
process for a bundle, stopped by PID) and Device (a paho client playing a device, with openssl
custody signatures: new_key, csr_of, custody_sign, create_msg, commit_msg).

Environment (CTest sets all three; defaults for a manual run from the repository):
    CF_SOURCE_DIR  the repository root
    CF_BIN_DIR     certfleet, certfleetd (may be an ASan build)
    CF_LIB_DIR     certfleet_mosquitto.so (scripts/stack reads it too)
Run with Debian's /usr/bin/python3 (python3-paho-mqtt 1.6).

Rules kept here: servers only on 127.0.0.1 with ports picked free at start, every wait
bounded, the stack always stopped by PID through `scripts/stack down` (atexit and SIGTERM),
temp dirs removed at exit (kept with CF_E2E_KEEP=1 for a post-mortem).
"""

import atexit
import hashlib
import hmac
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

SOURCE_DIR = os.path.abspath(os.environ.get("CF_SOURCE_DIR")
                             or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN_DIR = os.path.abspath(os.environ.get("CF_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin"))
LIB_DIR = os.path.abspath(os.environ.get("CF_LIB_DIR") or os.path.join(SOURCE_DIR, "build", "lib"))
SANITIZE = os.environ.get("CF_SANITIZE", "0") not in ("", "0", "OFF", "FALSE", "false")
CERTFLEET = os.path.join(BIN_DIR, "certfleet")
STACK = os.environ.get("CF_STACK") or os.path.join(SOURCE_DIR, "scripts", "stack")   # CF_STACK: debugging only
INT = "int1"                      # the first intermediate's name (Stack passes it to init)
CMD_TIMEOUT = 120                 # any one command
SANITIZER_RE = re.compile(r"(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:)")


# ---- failures and waiting ---------------------------------------------------

class Fail(Exception):
    """A failed check; the runner prints its message as the test's reason."""


def check(cond, what, detail=None):
    """Raises Fail(what [+ detail]) unless cond."""
    if not cond:
        raise Fail(what if detail is None else "%s (%s)" % (what, detail))


def wait_for(pred, timeout, interval=0.05):
    """Polls pred() until it returns a true value (returned) or timeout seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


# ---- cleanup ------------------------------------------------------------------

_cleanups = []           # callables, run last-registered first
_cleaned = False


def on_exit(fn):
    _cleanups.append(fn)
    return fn


def _cleanup():
    global _cleaned
    if _cleaned:
        return
    _cleaned = True
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as ex:          # keep going: the others still need stopping
            print("# cleanup: %r" % (ex,), file=sys.stderr)


atexit.register(_cleanup)


def _on_signal(signum, _frame):
    _cleanup()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def mkdtemp(prefix="cf-e2e."):
    d = tempfile.mkdtemp(prefix=prefix)
    if os.environ.get("CF_E2E_KEEP") == "1":
        print("# keeping %s" % d)
    else:
        on_exit(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def free_ports(n=2):
    """n distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---- running commands -----------------------------------------------------------

class Result:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv, self.rc, self.out, self.err, self.elapsed = argv, rc, out, err, elapsed

    def __str__(self):
        return "`%s` exit %s; stdout: %s; stderr: %s" % (
            " ".join(self.argv), self.rc, self.out.strip()[:600], self.err.strip()[:600])


sanitizer_reports = []    # (command, text) of every sanitizer report a command printed


def run(argv, timeout=CMD_TIMEOUT, env=None, cwd=None):
    """Runs argv detached from any terminal (no prompt can hang us), bounded by timeout."""
    e = dict(os.environ)
    e.update({"CF_BIN_DIR": BIN_DIR, "CF_LIB_DIR": LIB_DIR, "CF_SOURCE_DIR": SOURCE_DIR, "LC_ALL": "C"})
    if env:
        e.update(env)
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout, env=e, cwd=cwd, start_new_session=True)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as ex:
        rc, out, err = 124, _text(ex.stdout), _text(ex.stderr) + "\n(timed out after %ss)" % timeout
    r = Result([str(a) for a in argv], rc, out, err, time.monotonic() - t0)
    if SANITIZER_RE.search(err):
        sanitizer_reports.append((" ".join(r.argv), err[-3000:]))
    return r


def _text(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def openssl(*args, timeout=60):
    r = run(["openssl"] + list(args), timeout=timeout)
    if r.rc != 0:
        raise Fail("openssl failed: %s" % r)
    return r


def cert_id_of(pem_path):
    """The certificate id: lowercase hex SHA-256 of the DER."""
    with open(pem_path, "rb") as f:
        pem = f.read().decode()
    m = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)
    der = ssl.PEM_cert_to_DER_cert("-----BEGIN CERTIFICATE-----%s-----END CERTIFICATE-----\n" % m.group(1))
    return hashlib.sha256(der).hexdigest()


# ---- a data directory and its stack -------------------------------------------------

class Thing:
    def __init__(self, name, bundle):
        self.name = name
        self.dir = bundle
        self.crt = os.path.join(bundle, "device.crt")
        self.key = os.path.join(bundle, "device.key")
        self.chain = os.path.join(bundle, "ca-chain.crt")
        self.cert_id = cert_id_of(self.crt)

    def __repr__(self):
        return "Thing(%s, %s)" % (self.name, self.cert_id[:12])


class Stack:
    """A temp dir with a certfleet data directory on its own free ports; up()/down() its stack."""

    def __init__(self, name="data", init=True):
        self.tmp = mkdtemp()
        self.dir = os.path.join(self.tmp, name)
        self.passfile = os.path.join(self.tmp, "root.pass")
        with open(os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write("root-%s\n" % os.urandom(16).hex())
        self.mqtt_port, self.api_port = free_ports(2)
        self.started = False
        self._down_registered = False
        self._n = 0
        if init:
            self.init()

    # paths
    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @property
    def chain(self):
        return self.path("ca-chain.crt")

    @property
    def service_crt(self):
        return self.path("service", "certfleetd.crt")

    @property
    def service_key(self):
        return self.path("service", "certfleetd.key")

    @property
    def broker_log(self):
        return self.path("run", "mosquitto.log")

    @property
    def daemon_log(self):
        return self.path("run", "certfleetd.log")

    def scratch(self, name):
        """A fresh path under the temp dir (not created)."""
        self._n += 1
        return os.path.join(self.tmp, "%s.%d" % (name, self._n))

    # certfleet
    def init(self):
        r = run([CERTFLEET, "init", "--dir", self.dir, "--passphrase-file", self.passfile,
                 "--ca-key-algorithm", "ECDSA-P256", "--intermediate-name", INT,
                 "--device-validity-days", "90",
                 "--mqtt-port", str(self.mqtt_port), "--api-port", str(self.api_port)])
        if r.rc != 0:
            raise Fail("certfleet init failed: %s" % r)

    def cf(self, *args, timeout=CMD_TIMEOUT):
        return run([CERTFLEET, "--dir", self.dir] + [str(a) for a in args], timeout=timeout)

    def cf_ok(self, *args, timeout=CMD_TIMEOUT):
        r = self.cf(*args, timeout=timeout)
        if r.rc != 0:
            raise Fail("certfleet %s failed: %s" % (" ".join(map(str, args)), r))
        return r

    def cf_json(self, *args):
        r = self.cf_ok(*args)
        try:
            return json.loads(r.out)
        except ValueError as ex:
            raise Fail("certfleet %s: not JSON (%s): %r" % (" ".join(args), ex, r.out[:300]))

    def thing(self, name, *extra):
        """thing create NAME --bundle: the device's key, certificate and chain."""
        b = self.scratch("bundle-" + name)
        self.cf_ok("thing", "create", name, "--bundle", b, *extra)
        return Thing(name, b)

    def cert_status(self, cert_id):
        return self.cf_json("cert", "describe", cert_id, "--json").get("status")

    def events(self):
        return self.cf_json("events", "list", "--json")

    def wait_event(self, pred, timeout=10):
        """Waits for an event-log entry matching pred(event); returns it or None."""
        def find():
            for ev in self.events():
                if pred(ev):
                    return ev
            return None
        return wait_for(find, timeout, interval=0.2)

    def refused_event_for(self, client_id, timeout=10):
        return self.wait_event(lambda ev: ev.get("type") == "broker.refused"
                               and client_id in json.dumps(ev), timeout)

    # stack
    def up(self, timeout=90, env=None):
        """scripts/stack up. env: extra environment for the processes it starts (whichever of
        mosquitto and certfleetd is not running), e.g. {"CERTFLEET_FAILPOINTS": "..."}."""
        if not self._down_registered:
            on_exit(self._down_at_exit)
            self._down_registered = True
        self.started = True
        r = run([STACK, "up", self.dir], timeout=timeout, env=env)
        if r.rc != 0:
            raise Fail("scripts/stack up failed: %s\n%s" % (r, self.tail_logs()))
        return r

    def stop_daemon(self, timeout=10):
        """Stops certfleetd alone, by the PID scripts/stack recorded (SIGTERM, then SIGKILL);
        the broker keeps running. Its sanitizer logs stay in run/ for `down` to report."""
        pid = self.pid("certfleetd")
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not wait_for(lambda: not _pid_alive(pid), timeout, interval=0.1):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda: not _pid_alive(pid), 5, interval=0.1)

    def restart_daemon(self, env=None, timeout=90):
        """certfleetd alone stopped and started again (with extra env, e.g. failpoints: the
        daemon keeps the environment it started with, so this is how failpoints change)."""
        self.stop_daemon()
        return self.up(timeout=timeout, env=env)

    def down(self, timeout=60):
        return run([STACK, "down", self.dir], timeout=timeout)

    def _down_at_exit(self):
        if not self.started:
            return
        r = self.down()
        if r.rc != 0:
            print("# scripts/stack down at exit: %s" % r, file=sys.stderr)

    def status(self):
        r = run([STACK, "status", self.dir], timeout=30)
        kv = {}
        for line in r.out.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                kv[k.strip()] = v.strip()
        return r, kv

    def pid(self, which):
        """PID from run/<which>.pid (mosquitto or certfleetd), or None."""
        try:
            with open(self.path("run", which + ".pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def read(self, *parts):
        try:
            with open(self.path(*parts), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail_logs(self, n=15):
        out = []
        for f in ("mosquitto.log", "certfleetd.log"):
            lines = self.read("run", f).splitlines()[-n:]
            out.append("--- run/%s (last %d lines)\n%s" % (f, len(lines), "\n".join(lines)))
        return "\n".join(out)

    def wait_log(self, pattern, timeout=5, start=0):
        """Waits until run/mosquitto.log (from byte offset start) matches the regex; the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.read("run", "mosquitto.log")[start:]), timeout)

    def log_size(self):
        try:
            return os.path.getsize(self.broker_log)
        except OSError:
            return 0

    # HTTP API
    def api(self, path, timeout=5):
        """GET http://127.0.0.1:<api_port><path> → (status, body text); (0, error) if unreachable."""
        url = "http://127.0.0.1:%d%s" % (self.api_port, path)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as ex:
            return ex.code, ex.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as ex:
            return 0, str(ex)

    def api_post(self, path, body, timeout=10):
        """POST a JSON body → (status, body text); (0, error) if unreachable."""
        url = "http://127.0.0.1:%d%s" % (self.api_port, path)
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as ex:
            return ex.code, ex.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as ex:
            return 0, str(ex)

    def api_json(self, path):
        st, body = self.api(path)
        check(st == 200, "GET %s answers 200" % path, "got %s: %s" % (st, body[:300]))
        try:
            return json.loads(body)
        except ValueError:
            raise Fail("GET %s: not JSON: %r" % (path, body[:300]))

    def health(self):
        st, body = self.api("/healthz")
        try:
            return st, json.loads(body)
        except ValueError:
            return st, {}

    def metrics(self):
        """/metrics parsed into {'name{labels}': value} (labels as written); {} if unreachable."""
        st, body = self.api("/metrics")
        out = {}
        if st != 200:
            return out
        for line in body.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", line)
            if m:
                try:
                    out[m.group(1)] = float(m.group(2))
                except ValueError:
                    pass
        return out

    def connections(self, client_id=None, open_only=False):
        q = []
        if client_id:
            q.append("clientId=" + urllib.request.quote(client_id))
        if open_only:
            q.append("open=1")
        return self.api_json("/v1/connections" + ("?" + "&".join(q) if q else ""))

    def open_principal(self, client_id):
        """The certificate id of client_id's open connection, or None."""
        rows = [r for r in self.connections(client_id=client_id) if "disconnectedAt" not in r]
        return rows[0].get("principal") if rows else None

    def certs_of(self, thing):
        """The thing's certificates (cert list --thing --json)."""
        return self.cf_json("cert", "list", "--thing", thing, "--json")

    def events_of(self, etype, thing=None):
        """Event-log entries of type etype; of one thing if given (subject THING or JOB/THING,
        or detail.thing)."""
        def about(ev):
            if thing is None:
                return True
            subj = ev.get("subject") or ""
            det = ev.get("detail")
            if isinstance(det, str):
                try:
                    det = json.loads(det)
                except ValueError:
                    det = {}
            return subj == thing or subj.endswith("/" + thing) or \
                (isinstance(det, dict) and det.get("thing") == thing)
        return [ev for ev in self.events() if ev.get("type") == etype and about(ev)]

    # jobs (certfleetd's HTTP API, docs/certfleetd.md)
    def job_create(self, body, expect=201):
        """POST /v1/jobs; the job object. Fails unless the status is expect."""
        st, text = self.api_post("/v1/jobs", body)
        check(st == expect, "POST /v1/jobs answers %d" % expect, "got %s: %s" % (st, text[:400]))
        try:
            return json.loads(text)
        except ValueError:
            raise Fail("POST /v1/jobs: not JSON: %r" % text[:300])

    def job(self, job_id):
        return self.api_json("/v1/jobs/" + job_id)

    def job_cancel(self, job_id, force=False, comment=None):
        """POST /v1/jobs/{id}/cancel → (status, parsed body or text)."""
        body = {"force": force}
        if comment is not None:
            body["comment"] = comment
        st, text = self.api_post("/v1/jobs/%s/cancel" % job_id, body)
        try:
            return st, json.loads(text)
        except ValueError:
            return st, text

    def executions(self, job_id, thing=None, job=None):
        """The job's executions (every attempt), of one thing if given, by executionNumber."""
        ex = (job or self.job(job_id)).get("executions", [])
        if thing is not None:
            ex = [x for x in ex if x.get("thing") == thing]
        return sorted(ex, key=lambda x: x.get("executionNumber", 0))

    def execution(self, job_id, thing, number=None):
        """The latest attempt (or attempt number) of thing in the job, or None."""
        ex = self.executions(job_id, thing)
        if number is not None:
            ex = [x for x in ex if x.get("executionNumber") == number]
        return ex[-1] if ex else None

    def wait_execution(self, job_id, thing, statuses, timeout, number=None):
        """Waits until the execution's status is one of statuses; it, or None."""
        def get():
            x = self.execution(job_id, thing, number)
            return x if x and x.get("status") in statuses else None
        return wait_for(get, timeout, interval=0.3)

    def wait_job(self, job_id, statuses, timeout):
        """Waits until the job's status is one of statuses; the job, or None."""
        def get():
            j = self.job(job_id)
            return j if j.get("status") in statuses else None
        return wait_for(get, timeout, interval=0.3)

    # certificates the registry never saw
    def int_files(self):
        return (self.path("ca", INT + ".crt"), self.path("ca", INT + ".key"),
                self.path("private", INT + ".pass"))

    def issue_unregistered(self, cn, expired=False):
        """A device-like certificate for CN signed by our intermediate with openssl, never recorded
        in the registry. expired: valid from 10 days ago to yesterday. Returns (crt, key)."""
        d = self.scratch("rogue-" + cn)
        os.makedirs(d)
        key, csr, crt, ext = (os.path.join(d, n) for n in ("device.key", "device.csr", "device.crt", "ext.cnf"))
        ca_crt, ca_key, ca_pass = self.int_files()
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=clientAuth\nsubjectAltName=URI:urn:certfleet:thing:%s\n" % cn)
        if expired and _sign_expired(csr, ca_crt, ca_key, ca_pass, crt):
            return crt, key
        openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-passin", "file:" + ca_pass,
                "-set_serial", "0x" + os.urandom(12).hex(), "-days", "-1" if expired else "30",
                "-extfile", ext, "-out", crt)
        return crt, key

    def self_signed(self, cn):
        d = self.scratch("selfsigned-" + cn)
        os.makedirs(d)
        key, crt = os.path.join(d, "device.key"), os.path.join(d, "device.crt")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", crt, "-subj", "/CN=" + cn, "-days", "30",
                "-addext", "extendedKeyUsage=clientAuth")
        return crt, key


def _sign_expired(csr_path, ca_crt, ca_key, ca_pass, out):
    """Signs csr with dates wholly in the past using python3-cryptography; False if unavailable
    (the caller then uses openssl -days -1: notAfter one day before notBefore)."""
    try:
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID
    except ImportError:
        return False
    with open(csr_path, "rb") as f:
        csr = x509.load_pem_x509_csr(f.read())
    with open(ca_crt, "rb") as f:
        issuer = x509.load_pem_x509_certificate(f.read())
    with open(ca_pass, "rb") as f:
        pw = f.read().splitlines()[0]
    with open(ca_key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=pw)
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(issuer.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    with open(out, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return True


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# ---- certfleet-agent processes --------------------------------------------------------

AGENT = os.path.join(BIN_DIR, "certfleet-agent")
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED", "CANCELED")


class Agent:
    """A certfleet-agent process for a Thing's bundle, started and stopped by its PID.

    conf: extra agent.conf keys appended once (e.g. {"response_timeout_s": 5}); env: extra
    environment (e.g. {"CERTFLEET_FAILPOINTS": "agent.cert_received:sleep=8"}). The old pair's
    bytes are copied at construction (the bundle paths become links once the agent adopts them):
    old_crt, old_key, old_id.
    """

    def __init__(self, stack, thing, conf=None, env=None):
        self.stack, self.thing, self.env = stack, thing, dict(env or {})
        self.conf = os.path.join(thing.dir, "agent.conf")
        if conf:
            with open(self.conf) as f:
                have = {l.split("=", 1)[0].strip() for l in f if "=" in l and not l.startswith("#")}
            with open(self.conf, "a") as f:
                for k, v in conf.items():
                    if k not in have:
                        f.write("%s = %s\n" % (k, v))
        d = stack.scratch("old-" + thing.name)
        os.makedirs(d)
        self.old_crt, self.old_key = os.path.join(d, "device.crt"), os.path.join(d, "device.key")
        shutil.copy(thing.crt, self.old_crt)
        shutil.copy(thing.key, self.old_key)
        os.chmod(self.old_key, 0o600)
        self.old_id = thing.cert_id
        self.log_path = stack.scratch("agent-%s.log" % thing.name)
        self.p = None
        _all_agents.append(self)

    def start(self):
        e = dict(os.environ)
        e.update(self.env)
        with open(self.log_path, "ab") as f:
            self.p = subprocess.Popen([AGENT, "--config", self.conf, "--log-level", "debug"],
                                      stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                      start_new_session=True, env=e)
        return self

    @property
    def running(self):
        return self.p is not None and self.p.poll() is None

    def stop(self, timeout=10):
        """SIGTERM by PID; the exit status (SIGKILL and None if it ignored SIGTERM)."""
        if not self.running:
            return None if self.p is None else self.p.returncode
        os.kill(self.p.pid, signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(10)
            return None

    def kill(self):
        if self.running:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(10)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log()), timeout, interval=0.1)

    def current_id(self):
        """The certificate id device.crt names now."""
        return cert_id_of(self.thing.crt)

    def pair_matches(self):
        k = run(["openssl", "pkey", "-in", self.thing.key, "-pubout"])
        c = run(["openssl", "x509", "-in", self.thing.crt, "-noout", "-pubkey"])
        return k.rc == 0 and c.rc == 0 and k.out == c.out

    def wait_connected_with(self, cert_id, timeout):
        return wait_for(lambda: self.stack.open_principal(self.thing.name) == cert_id, timeout,
                        interval=0.3)

    def check_clean(self):
        """Stops it (SIGTERM → exit 0) and checks its log for sanitizer reports and key material."""
        check(self.running, "%s's agent still runs" % self.thing.name, self.log()[-1500:])
        rc = self.stop()
        check(rc == 0, "%s's agent exits 0 on SIGTERM" % self.thing.name, "rc %s" % rc)
        text = self.log()
        check(not SANITIZER_RE.search(text), "no sanitizer report in %s" % self.log_path, text[-3000:])
        check("PRIVATE KEY" not in text, "no key material in %s" % self.log_path)


_all_agents = []


@on_exit
def _stop_all_agents():
    for a in _all_agents:
        try:
            a.kill()
        except Exception:
            pass


# ---- a paho client playing a device (for devices that misbehave on purpose) ----------

class Device:
    """A thing's MQTT connection with a given pair, subscribed to cf/things/<thing>/#, and the
    device's side of the protocol: updates, create and commit with custody signatures made by the
    openssl CLI (`openssl dgst -sha256 -sign`: right for P-256 and RSA keys)."""

    def __init__(self, stack, name, crt, key):
        self.stack, self.name, self.crt, self.key = stack, name, crt, key
        self.c = connect(stack, name, crt, key)
        check(self.c.ok, "%s connects" % name, self.c.describe())
        rc = self.c.subscribe("cf/things/%s/#" % name)
        check(rc == 1, "%s subscribes" % name, "SUBACK %s" % rc)
        self._n = 0

    @classmethod
    def of(cls, stack, thing):
        return cls(stack, thing.name, thing.crt, thing.key)

    def t(self, rest):
        return "cf/things/%s/%s" % (self.name, rest)

    def request(self, rest, body, timeout=15):
        """Publishes a request; (verdict "accepted"/"rejected", payload) of its answer."""
        self._n += 1
        token = "tok-%d-%d" % (os.getpid(), self._n)
        body = dict(body, clientToken=token)
        rc = self.c.publish(self.t(rest), json.dumps(body))
        check(rc == 0, "PUBACK for %s/%s" % (self.name, rest), "rc %s" % rc)

        def mine(m):
            if m.topic not in (self.t(rest + "/accepted"), self.t(rest + "/rejected")):
                return False
            try:
                return json.loads(m.payload).get("clientToken") == token
            except ValueError:
                return False
        m = self.c.wait_message(mine, timeout)
        check(m is not None, "an answer to %s/%s" % (self.name, rest))
        return m.topic.rsplit("/", 1)[1], json.loads(m.payload)

    def update(self, job, status, **kw):
        return self.request("jobs/%s/update" % job, dict(status=status, **kw))

    def update_ok(self, job, status, **kw):
        v, p = self.update(job, status, **kw)
        check(v == "accepted", "%s: update %s accepted" % (self.name, status), p)
        return p

    def create(self, job, csr, sig):
        return self.request("certificate/create", {"jobId": job, "csr": csr, "signature": sig})

    def commit(self, job, cert_id, sig):
        return self.request("certificate/commit", {"jobId": job, "certificateId": cert_id,
                                                   "signature": sig})

    def close(self):
        self.c.close()


def new_key(stack, kind="P-256"):
    """A new private key file: "P-256", "P-384" (EC) or an RSA size."""
    path = stack.scratch("key.pem")
    if isinstance(kind, str):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + kind, "-out", path)
    else:
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % kind, "-out", path)
    return path


def csr_of(stack, key, cn):
    path = stack.scratch("csr-%s.pem" % cn)
    openssl("req", "-new", "-key", key, "-subj", "/CN=%s" % cn, "-out", path)
    with open(path) as f:
        return f.read()


def custody_sign(stack, key, msg):
    """base64 of `openssl dgst -sha256 -sign key` over msg."""
    import base64
    path = stack.scratch("msg")
    with open(path, "w") as f:
        f.write(msg)
    openssl("dgst", "-sha256", "-sign", key, "-out", path + ".sig", path)
    with open(path + ".sig", "rb") as f:
        return base64.b64encode(f.read()).decode()


def create_msg(job, thing, csr):
    return "%s|%s|%s" % (job, thing, hashlib.sha256(csr.encode()).hexdigest())


def commit_msg(job, thing, cert_id):
    return "%s|%s|%s" % (job, thing, cert_id)


# ---- stamps -------------------------------------------------------------------------

def load_stamp_key(path):
    with open(path) as f:
        return bytes.fromhex(f.read().strip())


def stamp(key, principal, client_id, topic, payload):
    """hex(HMAC-SHA256(key, "cf-stamp-v1\\n" principal "\\n" client_id "\\n" topic "\\n" payload))."""
    if isinstance(payload, str):
        payload = payload.encode()
    msg = b"cf-stamp-v1\n" + principal.encode() + b"\n" + client_id.encode() + b"\n" + topic.encode() + b"\n" + payload
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def user_props(msg):
    """The MQTT v5 user properties of a received message, as a list of (name, value)."""
    p = getattr(msg, "properties", None)
    return list(getattr(p, "UserProperty", []) or []) if p is not None else []


def props(user=None, **kw):
    """PUBLISH properties with user properties [(k, v), ...]."""
    p = Properties(PacketTypes.PUBLISH)
    if user:
        p.UserProperty = list(user)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


# ---- MQTT clients ------------------------------------------------------------------

class _Client(mqtt.Client):
    """paho 1.6 hides the PUBACK reason code (caught here on the way in), and lets a TLS alert
    (ssl.SSLError, e.g. the server refusing our certificate) kill its network thread instead of
    ending the connection: turned into a connection loss here."""

    def _sock_recv(self, bufsize):
        try:
            return super()._sock_recv(bufsize)
        except BlockingIOError:
            raise
        except ssl.SSLError as ex:
            if self._cf_conn is not None and self._cf_conn.error is None:
                self._cf_conn.error = "%s: %s" % (type(ex).__name__, ex)
            raise ConnectionResetError(str(ex))

    def _handle_pubackcomp(self, cmd):
        pkt = self._in_packet.get("packet", b"")
        if len(pkt) >= 2 and self._cf_conn is not None:
            mid = struct.unpack("!H", pkt[:2])[0]
            self._cf_conn._puback(mid, pkt[2] if len(pkt) > 2 else 0)
        return super()._handle_pubackcomp(cmd)


class Conn:
    """One MQTT client over mutual TLS, its network loop in a thread. Never reconnects.

    connack:      the CONNACK reason code (int), or None if none arrived
    error:        why the TCP/TLS step failed, if it did
    closed:       threading.Event, set when the connection ended (any way)
    disconnect_rc: the reason paho gave for the end (server DISCONNECT reason for v5 kicks)
    """

    def __init__(self, client_id, protocol):
        self.client_id = client_id
        self.protocol = protocol
        self.connack = None
        self.error = None
        self.disconnect_rc = None
        self.closed_at = None
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.messages = queue.Queue()
        self._lock = threading.Lock()
        self._acks = {}          # mid -> (event, [result])
        self.c = None

    # callbacks
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connack = rc.value if hasattr(rc, "value") else int(rc)
        self.connected.set()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.disconnect_rc = rc.value if hasattr(rc, "value") else rc
        self.closed_at = time.monotonic()
        self.closed.set()
        self.connected.set()      # wake a connect waiter

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _ack_slot(self, mid):
        with self._lock:
            return self._acks.setdefault(mid, (threading.Event(), []))

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        ev, res = self._ack_slot(mid)
        res.append([g.value if hasattr(g, "value") else int(g) for g in granted])
        ev.set()

    def _puback(self, mid, rc):
        ev, res = self._ack_slot(mid)
        res.append(rc)
        ev.set()

    # state
    @property
    def ok(self):
        return self.connack == 0 and not self.closed.is_set()

    @property
    def refused(self):
        """Refused: a CONNACK other than 0, or the connection ended without a CONNACK 0."""
        return (self.connack is not None and self.connack != 0) or \
            (self.connack is None and (self.closed.is_set() or self.error is not None))

    def describe(self):
        return "client %s: connack=%s closed=%s disconnect_rc=%s error=%s" % (
            self.client_id, self.connack, self.closed.is_set(), self.disconnect_rc, self.error)

    # operations
    def subscribe(self, topic, qos=1, timeout=5):
        """Subscribes; the SUBACK reason code (int), or None if none arrived in time."""
        rc, mid = self.c.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        ev, res = self._ack_slot(mid)
        if not ev.wait(timeout):
            return None
        return res[0][0]

    def publish(self, topic, payload, qos=1, properties=None, retain=False, timeout=5):
        """Publishes; for QoS 1 the PUBACK reason code (int) or None if none arrived, for QoS 0 0."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        if qos == 0:
            return 0
        ev, res = self._ack_slot(info.mid)
        if not ev.wait(timeout):
            return None
        return res[0]

    def wait_message(self, pred=None, timeout=5):
        """The first received message for which pred(msg) holds (others are dropped), or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                msg = self.messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if pred is None or pred(msg):
                return msg

    def wait_closed(self, timeout):
        return self.closed.wait(timeout)

    def drain(self):
        while True:
            try:
                self.messages.get_nowait()
            except queue.Empty:
                return

    def close(self):
        """A clean DISCONNECT (no will), then the loop thread stops."""
        if self.c is None:
            return
        try:
            if not self.closed.is_set():
                self.c.disconnect()
                self.closed.wait(3)
        finally:
            self.c.loop_stop()

    def abort(self):
        """Ends the connection without DISCONNECT (the broker then sends the will)."""
        s = self.c.socket()
        self.c.loop_stop()   # no reconnect: reconnect_on_failure is off
        if s is not None:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self.closed.set()


_all_conns = []


@on_exit
def _close_all_conns():
    for c in _all_conns:
        try:
            if c.c is not None:
                c.c.loop_stop()
                s = c.c.socket()
                if s is not None:
                    s.close()
        except Exception:
            pass


def connect(stack, client_id, cert, key, ca=None, protocol=mqtt.MQTTv5, will=None, timeout=10,
            clean_start=True, keepalive=30, port=None):
    """Connects a client over mutual TLS and waits (bounded) for the CONNACK or the end.

    will: (topic, payload, qos, properties) or None. Returns a Conn; check .connack / .refused.
    """
    conn = Conn(client_id, protocol)
    _all_conns.append(conn)
    if protocol == mqtt.MQTTv5:
        c = _Client(client_id=client_id, protocol=protocol, reconnect_on_failure=False)
    else:
        c = _Client(client_id=client_id, protocol=protocol, clean_session=True, reconnect_on_failure=False)
    c._cf_conn = conn
    conn.c = c
    c.on_connect = conn._on_connect
    c.on_disconnect = conn._on_disconnect
    c.on_message = conn._on_message
    c.on_subscribe = conn._on_subscribe
    c.tls_set(ca_certs=ca or stack.chain, certfile=cert, keyfile=key)
    if will:
        topic, payload, qos, wprops = will
        c.will_set(topic, payload, qos=qos, properties=wprops)
    try:
        if protocol == mqtt.MQTTv5:
            c.connect("127.0.0.1", port or stack.mqtt_port, keepalive=keepalive, clean_start=clean_start)
        else:
            c.connect("127.0.0.1", port or stack.mqtt_port, keepalive=keepalive)
    except (ssl.SSLError, OSError, socket.timeout) as ex:
        conn.error = "%s: %s" % (type(ex).__name__, ex)
        conn.closed.set()
        return conn
    c.loop_start()
    conn.connected.wait(timeout)
    return conn


def connect_thing(stack, thing, client_id=None, **kw):
    return connect(stack, client_id or thing.name, thing.crt, thing.key, **kw)


def connect_service(stack, client_id="svc-test", **kw):
    """A client with the service certificate (the plugin recognises it by certificate)."""
    return connect(stack, client_id, stack.service_crt, stack.service_key, **kw)


# ---- the runner --------------------------------------------------------------------

def run_tests(tests, setup=None, stacks=()):
    """Runs setup (its failure fails everything) then each test in order. Prints one
    `ok - name` / `not ok - name: reason` line each and `N passed, M failed`; exits 1 if M > 0.
    stacks: Stack objects whose logs are checked for sanitizer reports at the end."""
    passed = failed = 0
    t_start = time.monotonic()

    def report(name, err):
        nonlocal passed, failed
        if err is None:
            passed += 1
            print("ok - %s" % name, flush=True)
        else:
            failed += 1
            first, _, rest = err.partition("\n")
            print("not ok - %s: %s" % (name, first), flush=True)
            for line in rest.splitlines():
                print("#   " + line, flush=True)

    def call(fn):
        t0 = time.monotonic()
        try:
            fn()
            err = None
        except Fail as ex:
            err = str(ex)
        except Exception:
            err = "unexpected exception\n" + traceback.format_exc().rstrip()
        dt = time.monotonic() - t0
        if dt > 5:
            print("# %s took %.1f s" % (fn.__name__, dt), flush=True)
        return err

    ok_setup = True
    if setup is not None:
        err = call(setup)
        if err is not None:
            report("setup", err)
            ok_setup = False
    for fn in tests:
        if not ok_setup:
            report(fn.__name__, "not run: setup failed")
            continue
        report(fn.__name__, call(fn))
        sys.stdout.flush()

    # sanitizer reports: from any certfleet/openssl command, and from the servers (scripts/stack
    # points their ASAN/UBSAN log_path at run/<name>.asan.*; `down` exits 3 when there are any)
    found = list(sanitizer_reports)
    for st in stacks:
        if st.started:
            r = st.down()
            st.started = False
            if r.rc != 0:
                found.append(("scripts/stack down (exit %d)" % r.rc, r.err[-4000:]))
        rundir = st.path("run")
        for f in sorted(os.listdir(rundir)) if os.path.isdir(rundir) else []:
            if ".asan" in f or f.endswith(".out"):
                text = st.read("run", f)
                m = SANITIZER_RE.search(text)
                reported_by_down = any(x[0].startswith("scripts/stack down") for x in found)
                if m and not (reported_by_down and ".asan" in f):
                    found.append(("run/" + f, text[max(0, m.start() - 200):m.start() + 2500]))
    report("no sanitizer reports", None if not found else
           "%d report(s)\n%s" % (len(found), "\n".join("%s:\n%s" % f for f in found)[:6000]))

    print("# %.1f s" % (time.monotonic() - t_start))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    _cleanup()
    sys.exit(1 if failed else 0)
