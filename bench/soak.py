#!/usr/bin/env python3
"""soak.py - soak and load test for berth: many concurrent clients for minutes,
every response verified, the server's memory and file descriptors watched.

Standard library only (Python >= 3.11).  Starts berth itself (auth on: a fresh
data directory, `berth serve` with BERTH_ADMIN_PASSWORD) or soaks a running
server (--url, --pid, --admin-password).  Then:

Setup, through the real API: as admin, two users (POST /api/v1/users), each
with an access token of scope read-write-delete (POST /api/v1/tokens, signed in
with the password); five multi-layer images made by ../shared/tools/mkimage.py
(3 layers of 256/128/64 KiB; two derived images share 2 base layers), pushed
into <user>/app-a, app-b, app-c (shared layers by cross-repository mount); one
repository with --tags tags (several tags/list pages); --repos small
repositories (several _catalog pages).

Load: --conns keep-alive HTTP/1.1 connections from one address (asyncio, raw
sockets: 500 connections cost little), each looping over operations drawn from
a seeded RNG with the weights of --mix until --duration ends:
  pull            GET manifest by tag: 200, body byte-identical to what was
                  pushed, Content-Type the pushed media type, Docker-Content-
                  Digest = sha256(body) = the expected digest; then GET config
                  and every layer: 200, Content-Length, every byte hashed and
                  compared with the digest
  push            a fresh random blob of 4-64 KiB (POST + PUT ?digest=, or a
                  single POST ?digest=, or POST + 2-3 PATCHes + PUT), then a new
                  manifest (OCI or Docker schema 2) of an existing image plus
                  that layer under a new tag: 201, Docker-Content-Digest, Location
  token-password  GET /token?service=..&scope=repository:R:pull, Basic with the
                  password: 200, a JWT whose aud and access claim grant the pull;
                  half the time a HEAD manifest with it as Bearer (200, digest)
  token-access    the same with the access token as the Basic password
  catalog         GET /v2/_catalog?n=50, following Link up to 3 pages
  tags            GET /v2/<repo>/tags/list?n=100, following Link up to 3 pages
                  (pages: sorted, after `last`, at most n, Link iff full, and
                  every repository / tag known to exist in the page's range is in it)
  head-blob       HEAD blob: 200, Content-Length, Docker-Content-Digest
Registry requests carry Basic <user>:<access token>, as CI scripts do.

Outcomes: anything unexpected (status, header, body, a dropped connection, no
response within --timeout) is an error, recorded with its route, status and
the first 200 bytes of the body.  429 and 503 answers are deliberate limits
(failed-sign-in limiting counts password attempts in flight; a per-address
connection limit answers on connect), counted apart, not errors; the
connection then pauses --limit-backoff seconds.  Latencies are over responses
that passed their checks.

Watched every second: the server's VmRSS and VmHWM (/proc/PID/status), open
file descriptors (/proc/PID/fd), CPU (utime+stime of /proc/PID/stat).  RSS
"levels off" when the highest RSS of the last third of the load is at most
the highest of the middle third x 1.10 + 4 MiB.

Report: Markdown on stdout and in bench/results/soak-latest.md (--json for
the raw figures).  Exit status 0 = no errors and RSS levels off; 1 = errors or
RSS still growing; 2 = the test could not run (setup failed).

Examples
  scripts/soak.sh                                   # 500 conns, 10 minutes
  scripts/soak.sh --duration 60 --conns 100         # a quick check
  python3 bench/soak.py --berth target/release/berth --extra-serve-args '--login-failures 100'
  python3 bench/soak.py --url http://127.0.0.1:5000 --pid 1234 --admin-password "$PW"
"""

import argparse
import array
import asyncio
import base64
import bisect
import collections
import datetime
import hashlib
import json
import os
import platform
import random
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
MIB = 1 << 20
KIB = 1 << 10

DEFAULT_MIX = "pull=40,push=15,token-password=10,token-access=10,catalog=10,tags=10,head-blob=5"
LIMIT_STATUSES = (429, 503)
CATALOG_PAGE = 50
TAGS_PAGE = 100
RECENT_PUSHES = 2000          # pushed images kept for pulls, HEADs and token scopes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Routes, in report order.
ROUTES = [
    "GET manifest", "GET blob", "HEAD blob",
    "POST upload", "POST upload ?digest=", "PATCH upload", "PUT upload ?digest=",
    "PUT manifest",
    "GET /token (password)", "GET /token (access token)", "HEAD manifest (Bearer)",
    "GET _catalog", "GET tags/list",
]
PULL_ROUTES = ("GET manifest", "GET blob")


class SetupError(Exception):
    """The test cannot run (server did not start, setup request refused...)."""


class OpAborted(Exception):
    """The current operation stops: its request failed or was limited (already recorded)."""


def now():
    return time.monotonic()


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic(user, secret):
    return "Basic " + base64.b64encode(("%s:%s" % (user, secret)).encode()).decode()


def log(args, msg):
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# HTTP/1.1 keep-alive client (asyncio streams)
# --------------------------------------------------------------------------

class Target:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit("soak.py: only http://HOST:PORT URLs are supported, not %r" % url)
        self.base = url.rstrip("/")
        self.host = u.hostname
        self.port = u.port or 80
        self.hostport = u.netloc
        self.prefix = u.path.rstrip("/")

    def path(self, p):
        return self.prefix + p

    def same_origin_path(self, loc):
        """A Location or Link target as path?query on this server; None if elsewhere."""
        full = urllib.parse.urljoin(self.base + "/", loc)
        u = urllib.parse.urlsplit(full)
        if u.hostname != self.host or (u.port or 80) != self.port:
            return None
        return u.path + ("?" + u.query if u.query else "")


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())


class Conn:
    """One keep-alive connection; reconnects lazily after a close."""

    def __init__(self, target):
        self.t = target
        self.r = self.w = None
        self.served = 0            # responses read on the current connection
        self.previous = None       # "METHOD status" of the last of them
        self.after_refusal = False  # the last answer was a refusal (see request())
        self.head_read = False     # the current exchange got a status line and headers

    async def _connect(self):
        self.r, self.w = await asyncio.open_connection(self.t.host, self.t.port, limit=1 << 20)
        self.w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None
        self.served = 0
        self.previous = None
        self.after_refusal = False

    def history(self):
        """For error messages: what this connection did before."""
        if not self.served:
            return "a new connection"
        return "connection used %d times before, last %s" % (self.served, self.previous)

    # A server may close a connection right after a refusal without saying
    # `Connection: close`: after a 429/503 (a connection limit refusing at
    # connect), or after an error answer to a request whose body it did not read
    # (hyper does that).  The next request on it then fails before any response
    # byte; it is sent again once on a new connection (RFC 9112 9.3.1) and
    # counted here, not as an error.  Any other drop is an error.
    closed_after_refusal = 0

    async def request(self, method, target, headers=(), body=b"", timeout=60.0):
        """Send one request, read its whole response.  Raises TimeoutError,
        OSError, asyncio.IncompleteReadError or ValueError (garbled response);
        the connection is closed then."""
        try:
            async with asyncio.timeout(timeout):
                resp, close = await self._request_once_or_twice(method, target, headers, body)
        except BaseException:
            self.close()
            raise
        self.served += 1
        self.previous = "%s %d%s" % (method, resp.status, ", closed" if close else "")
        limited = resp.status in LIMIT_STATUSES
        self.after_refusal = limited or (bool(body) and resp.status >= 400)
        if close or (limited and method == "HEAD"):
            # a 429/503 may be sent before the request was read (a connection refused
            # at connect), body included even for a HEAD: don't read on after it
            self.close()
        return resp

    async def _request_once_or_twice(self, method, target, headers, body):
        if self.w is None:
            await self._connect()
        try:
            return await self._exchange(method, target, headers, body)
        except (OSError, asyncio.IncompleteReadError) as e:
            partial = getattr(e, "partial", b"")
            if not self.after_refusal or self.head_read or partial:
                raise
        Conn.closed_after_refusal += 1
        self.close()
        await self._connect()
        return await self._exchange(method, target, headers, body)

    async def _exchange(self, method, target, headers, body):
        self.head_read = False
        lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + self.t.hostport]
        lines += ["%s: %s" % kv for kv in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: %d" % len(body))
        self.w.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            await self.w.drain()
        except ConnectionError:
            pass   # the server may have answered (e.g. 429 on connect) and closed: read it
        head = await self.r.readuntil(b"\r\n\r\n")
        self.head_read = True
        status_line, *hlines = head[:-4].split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError("not an HTTP/1.x status line: %r" % status_line[:80])
        status = int(parts[1])
        hdrs = {}
        for line in hlines:
            k, _, v = line.partition(b":")
            k = k.strip().lower().decode("latin-1")
            v = v.strip().decode("latin-1")
            hdrs[k] = hdrs[k] + ", " + v if k in hdrs else v
        close = "close" in hdrs.get("connection", "").lower() or parts[0] == b"HTTP/1.0"
        if method == "HEAD" or status in (204, 304) or status < 200:
            data = b""
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            data = await self._read_chunked()
        elif "content-length" in hdrs:
            data = await self.r.readexactly(int(hdrs["content-length"]))
        else:
            data = await self.r.read()
            close = True
        return Response(status, hdrs, data), close

    async def _read_chunked(self):
        pieces = []
        while True:
            n = int((await self.r.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if n == 0:
                while await self.r.readuntil(b"\r\n") != b"\r\n":
                    pass   # trailers
                return b"".join(pieces)
            pieces.append(await self.r.readexactly(n))
            if await self.r.readexactly(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")


def add_query(pq, key, value):
    return pq + ("&" if "?" in pq else "?") + key + "=" + urllib.parse.quote(value, safe=":")


# --------------------------------------------------------------------------
# the server: started here, or one that runs already
# --------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """berth started by soak.py on a free loopback port with a fresh data dir."""

    def __init__(self, args, workdir):
        self.binary = os.path.abspath(args.berth)
        if not os.access(self.binary, os.X_OK):
            raise SetupError("%s is not an executable (build it, or give --berth)" % self.binary)
        self.data_dir = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "berth.log")
        self.password = args.admin_password or base64.urlsafe_b64encode(os.urandom(18)).decode()
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        self.cmd = [self.binary, "serve", "--addr", "127.0.0.1:%d" % port,
                    "--data-dir", self.data_dir] + shlex.split(args.extra_serve_args or "")
        self.proc = None
        self.exit_note = ""

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env["BERTH_ADMIN_PASSWORD"] = self.password
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, then wait: berth finishes requests in flight and exits."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and not self.exit_note:
                self.exit_note = "server had exited by itself with status %s" % self.proc.returncode
            return
        t0 = now()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
            self.exit_note = "SIGTERM: exited with status %d in %.2f s" % (rc, now() - t0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_note = "SIGTERM: still running after 20 s, killed"

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""


async def wait_for_v2(t, server, seconds=30.0):
    """Until GET /v2/ answers at all (401 is an answer)."""
    deadline = now() + seconds
    while now() < deadline:
        if server is not None and not server.alive():
            raise SetupError("berth exited during start (status %s):\n%s"
                             % (server.proc.returncode, server.log_tail()))
        c = Conn(t)
        try:
            r = await c.request("GET", t.path("/v2/"), timeout=2)
            return r.status
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
            await asyncio.sleep(0.05)
        finally:
            c.close()
    raise SetupError("GET /v2/ not answered within %.0f s" % seconds)


# --------------------------------------------------------------------------
# /proc sampling of the server
# --------------------------------------------------------------------------

class ProcStat:
    def __init__(self, pid):
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def read(self):
        """(VmRSS KiB, VmHWM KiB, open fds, CPU seconds); raises OSError when gone."""
        rss = hwm = 0
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        fds = len(os.listdir("/proc/%d/fd" % self.pid))
        with open("/proc/%d/stat" % self.pid) as f:
            s = f.read()
        fields = s[s.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / self.tick
        return rss, hwm, fds, cpu


class Sampler(threading.Thread):
    """Reads the server's /proc figures every second; prints progress lines."""

    def __init__(self, proc, stats, args):
        super().__init__(daemon=True)
        self.proc, self.stats, self.args = proc, stats, args
        self.samples = []          # dicts: t, rss_kb, hwm_kb, fds, cpu_s, requests
        self.gone_at = None
        self.load_t0 = None        # set when the load starts, for progress lines
        self._halt = threading.Event()

    def sample(self, mark=None):
        """One reading; `mark` ("start", "end") names the load's edges."""
        if self.proc is None:
            return None
        try:
            rss, hwm, fds, cpu = self.proc.read()
        except (OSError, ValueError, IndexError):
            if self.gone_at is None:
                self.gone_at = now()
            return None
        s = {"t": now(), "rss_kb": rss, "hwm_kb": hwm, "fds": fds, "cpu_s": cpu,
             "requests": self.stats.requests}
        if mark:
            s["mark"] = mark
        self.samples.append(s)
        return s

    def run(self):
        last_print = now()
        while not self._halt.wait(1.0):
            s = self.sample()
            if self.load_t0 is not None and now() - last_print >= 10:
                last_print = now()
                self.progress(s)

    def progress(self, s):
        el = now() - self.load_t0
        st = self.stats
        line = "[%4.0fs] %d requests (%.0f/s), %d errors, %d limits" % (
            el, st.requests, st.requests / el if el > 0 else 0, st.error_count, st.limit_count)
        if s is not None:
            line += ", server RSS %.1f MiB, %d fds" % (s["rss_kb"] / 1024, s["fds"])
        log(self.args, line)

    def stop(self):
        self._halt.set()
        self.join()


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------

class RouteStats:
    def __init__(self):
        self.requests = 0
        self.errors = 0
        self.limits = collections.Counter()     # status -> count
        self.lat = array.array("d")             # seconds, responses that passed their checks
        self.bytes_in = 0
        self.bytes_out = 0


class Stats:
    def __init__(self):
        self.routes = collections.defaultdict(RouteStats)
        self.ops = collections.defaultdict(RouteStats)
        self.requests = 0
        self.error_count = 0
        self.limit_count = 0
        self.error_kinds = collections.Counter()   # (route, status) -> count
        self.error_samples = []                    # first ones, with detail
        self.t0 = None                             # start of the load, for error times

    def ok(self, route, seconds, resp, sent):
        rs = self.routes[route]
        rs.requests += 1
        rs.lat.append(seconds)
        rs.bytes_in += len(resp.body)
        rs.bytes_out += sent
        self.requests += 1

    def limited(self, route, status):
        rs = self.routes[route]
        rs.requests += 1
        rs.limits[status] += 1
        self.requests += 1
        self.limit_count += 1

    def error(self, route, status, body, problem, counted_request=True):
        rs = self.routes[route]
        if counted_request:
            rs.requests += 1
            self.requests += 1
        rs.errors += 1
        self.error_count += 1
        self.error_kinds[(route, status)] += 1
        if len(self.error_samples) < 50:
            self.error_samples.append({
                "route": route, "status": status, "problem": problem,
                "body": body[:200].decode("utf-8", "replace"),
                "at_s": round(now() - self.t0, 1) if self.t0 is not None else None})


def pct(sorted_lat, p):
    if not sorted_lat:
        return float("nan")
    return sorted_lat[min(len(sorted_lat) - 1, int(p / 100.0 * len(sorted_lat)))] * 1000.0


def latency_row(rs, seconds):
    lat = sorted(rs.lat)
    return {"count": rs.requests, "ok": len(lat), "errors": rs.errors,
            "limits": sum(rs.limits.values()), "limits_by_status": dict(rs.limits),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "max_ms": lat[-1] * 1000.0 if lat else float("nan"),
            "per_s": rs.requests / seconds if seconds > 0 else float("nan"),
            "bytes_in": rs.bytes_in, "bytes_out": rs.bytes_out}


# --------------------------------------------------------------------------
# what the registry holds (and so what every answer must contain)
# --------------------------------------------------------------------------

class Ref:
    """A tag that must pull as exactly these bytes."""
    __slots__ = ("repo", "tag", "digest", "media_type", "body", "blobs")

    def __init__(self, repo, tag, body, media_type, blobs):
        self.repo, self.tag, self.body, self.media_type = repo, tag, body, media_type
        self.digest = sha256_digest(body)
        self.blobs = blobs          # [(digest, size)]: config first, then layers


class Known:
    """Sorted names known to exist (tags of one repository, or repositories),
    with the time each was confirmed, to check listing pages."""

    def __init__(self):
        self.names = []
        self.since = {}

    def add(self, name, t):
        if name not in self.since:
            bisect.insort(self.names, name)
            self.since[name] = t

    def between(self, lo, hi):
        """Names in (lo, hi]; lo None = from the start, hi None = to the end."""
        i = 0 if lo is None else bisect.bisect_right(self.names, lo)
        j = len(self.names) if hi is None else bisect.bisect_right(self.names, hi)
        return self.names[i:j]

    def random(self, rng):
        return self.names[rng.randrange(len(self.names))] if self.names else None


class User:
    def __init__(self, name, password):
        self.name, self.password = name, password
        self.token = None

    def token_auth(self):
        return basic(self.name, self.token)


class World:
    """Everything set up: users, images, repositories, tags; grows with pushes."""

    def __init__(self):
        self.users = []
        self.blobs = {}                  # digest -> bytes of every mkimage blob
        self.base_refs = []              # pullable images pushed at setup
        self.templates = {}              # repo -> Ref that pushes into it extend
        self.push_repos = {}             # user name -> [repo]
        self.tag_repo = None             # the repository with --tags tags
        self.tag_repo_ref = None        # its Ref (any of its tags pulls as it)
        self.small_refs = []             # the --repos small repositories' Refs
        self.recent = collections.deque(maxlen=RECENT_PUSHES)
        self.tags = collections.defaultdict(Known)   # repo -> its tags
        self.repos = Known()

    def pick_ref(self, rng):
        x = rng.random()
        if x < 0.2 and self.recent:
            return self.recent[rng.randrange(len(self.recent))]
        if x < 0.3 and self.tag_repo:
            r = self.tag_repo_ref
            tag = self.tags[self.tag_repo].random(rng)
            return Ref(r.repo, tag, r.body, r.media_type, r.blobs)
        if x < 0.4 and self.small_refs:
            return rng.choice(self.small_refs)
        return rng.choice(self.base_refs)


# --------------------------------------------------------------------------
# response checks: each returns None, or what is wrong
# --------------------------------------------------------------------------

def check_manifest(ref, head=False):
    def check(r):
        if r.header("docker-content-digest") != ref.digest:
            return "Docker-Content-Digest %r, expected %s" % (r.header("docker-content-digest"), ref.digest)
        ctype = (r.header("content-type") or "").split(";")[0].strip()
        if ctype != ref.media_type:
            return "Content-Type %r, expected %s" % (ctype, ref.media_type)
        if head:
            if r.header("content-length") != str(len(ref.body)):
                return "Content-Length %r, expected %d" % (r.header("content-length"), len(ref.body))
            return None
        if sha256_digest(r.body) != ref.digest or r.body != ref.body:
            return "body (%d bytes, %s) is not the manifest pushed" % (len(r.body), sha256_digest(r.body))
        return None
    return check


def check_blob(digest, size, head=False):
    def check(r):
        if r.header("content-length") != str(size):
            return "Content-Length %r, expected %d" % (r.header("content-length"), size)
        got = r.header("docker-content-digest")
        if got is not None and got != digest:
            return "Docker-Content-Digest %r, expected %s" % (got, digest)
        if head:
            return None
        if len(r.body) != size or sha256_digest(r.body) != digest:
            return "body (%d bytes) hashes to %s, expected %s" % (len(r.body), sha256_digest(r.body), digest)
        return None
    return check


def check_created(digest):
    def check(r):
        if r.header("docker-content-digest") != digest:
            return "Docker-Content-Digest %r, expected %s" % (r.header("docker-content-digest"), digest)
        if not r.header("location"):
            return "no Location"
        return None
    return check


def check_upload_started(r):
    return None if r.header("location") else "no Location"


def check_patch(end):
    def check(r):
        if not r.header("location"):
            return "no Location"
        rng = r.header("range")
        if rng is not None and rng.replace("bytes=", "") != "0-%d" % end:
            return "Range %r, expected 0-%d" % (rng, end)
        return None
    return check


def jwt_claims(token):
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def check_token(service, repo):
    def check(r):
        try:
            doc = json.loads(r.body)
            token = doc["token"]
            claims = jwt_claims(token)
        except (ValueError, KeyError, TypeError) as e:
            return "no JWT in a `token` field (%s)" % e
        if not isinstance(doc.get("expires_in", 60), int) or doc.get("expires_in", 60) <= 0:
            return "expires_in %r" % doc.get("expires_in")
        if claims.get("aud") != service:
            return "aud %r, expected %r" % (claims.get("aud"), service)
        for g in claims.get("access") or []:
            if g.get("type") == "repository" and g.get("name") == repo and "pull" in (g.get("actions") or []):
                return None
        return "access claim %r does not grant pull on %s" % (claims.get("access"), repo)
    return check


def parse_link(value):
    """`<path?n=..&last=..>; rel="next"` -> the target, or None."""
    if not value:
        return None
    for part in value.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return target.strip().strip("<>")
    return None


def check_page(key, n, last, known, t_sent, name=None):
    """A tags/list or _catalog page: JSON list under `key`, sorted, after `last`,
    at most n, Link exactly when it is full, and every name known (before the
    request was sent) between `last` and the page's end present."""
    def check(r):
        try:
            doc = json.loads(r.body)
            items = doc[key]
        except (ValueError, KeyError, TypeError):
            return "no %r list in the body" % key
        if items is None:
            items = []
        if name is not None and doc.get("name") != name:
            return "name %r, expected %r" % (doc.get("name"), name)
        if not all(isinstance(x, str) for x in items):
            return "%s has non-strings" % key
        if any(a >= b for a, b in zip(items, items[1:])):
            return "%s not strictly sorted" % key
        if last is not None and items and items[0] <= last:
            return "first entry %r not after last=%r" % (items[0], last)
        if len(items) > n:
            return "%d entries for n=%d" % (len(items), n)
        link = parse_link(r.header("link"))
        if link is not None:
            if len(items) != n:
                return "Link on a page of %d < n=%d" % (len(items), n)
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
            if q.get("last") != [items[-1]]:
                return "Link %r does not continue after %r" % (link, items[-1])
        page = set(items)
        hi = items[-1] if link is not None else None
        for x in known.between(last, hi):
            if known.since[x] < t_sent and x not in page:
                return "%r is missing (page after %r)" % (x, last)
        return None
    return check


# --------------------------------------------------------------------------
# one connection's client: requests, checks, recording
# --------------------------------------------------------------------------

class Client:
    def __init__(self, ctx, index, user):
        self.ctx = ctx
        self.t = ctx.target
        self.index = index
        self.user = user
        self.conn = Conn(ctx.target)
        self.rng = random.Random("%s-%d" % (ctx.args.seed, index))
        self.pushes = 0
        self.dropped = False

    async def call(self, route, method, path, headers=(), body=b"", expect=(200,),
                   check=None, auth=None):
        """One request: returns the response if its status is expected and `check`
        finds nothing wrong; otherwise records it and raises OpAborted."""
        st = self.ctx.stats
        hdrs = [("Authorization", auth or self.user.token_auth())] + list(headers)
        t0 = now()
        history = self.conn.history()
        try:
            r = await self.conn.request(method, path, hdrs, body, self.ctx.args.timeout)
        except TimeoutError:
            st.error(route, None, b"", "no response within %g s (%s)" % (self.ctx.args.timeout, history))
            raise OpAborted()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            st.error(route, None, b"", "connection dropped: %s: %s (%s)" % (type(e).__name__, e, history))
            self.dropped = True
            raise OpAborted()
        dt = now() - t0
        if r.status in LIMIT_STATUSES:
            st.limited(route, r.status)
            raise OpAborted()
        problem = None
        if r.status not in expect:
            problem = "status %d, expected %s" % (r.status, "/".join(map(str, expect)))
        elif check is not None:
            problem = check(r)
        if problem:
            st.error(route, r.status, r.body, "%s %s: %s" % (method, path[:120], problem))
            raise OpAborted()
        st.ok(route, dt, r, len(body))
        return r

    def location(self, route, r):
        pq = self.t.same_origin_path(r.header("location"))
        if pq is None:
            self.ctx.stats.error(route, r.status, b"", "Location %r on another host"
                                 % r.header("location"), counted_request=False)
            raise OpAborted()
        return pq

    # ---- operations --------------------------------------------------------

    async def op_pull(self):
        ref = self.ctx.world.pick_ref(self.rng)
        await self.call("GET manifest", "GET", self.t.path("/v2/%s/manifests/%s" % (ref.repo, ref.tag)),
                        [("Accept", ACCEPT)], check=check_manifest(ref))
        for digest, size in ref.blobs:
            await self.call("GET blob", "GET", self.t.path("/v2/%s/blobs/%s" % (ref.repo, digest)),
                            check=check_blob(digest, size))

    async def op_push(self):
        world, rng = self.ctx.world, self.rng
        repo = rng.choice(world.push_repos[self.user.name])
        blob = rng.randbytes(rng.randint(4, 64) * KIB)
        digest = sha256_digest(blob)
        x = rng.random()
        if x < 0.60:
            await self.upload_post_put(repo, blob, digest)
        elif x < 0.85:
            await self.upload_single_post(repo, blob, digest)
        else:
            await self.upload_chunked(repo, blob, digest)
        base = world.templates[repo]
        docker = rng.random() < 0.3
        body, media_type = build_manifest(base, (digest, len(blob)), docker)
        self.pushes += 1
        tag = "p%03d-%06d" % (self.index, self.pushes)
        ref = Ref(repo, tag, body, media_type, base.blobs + [(digest, len(blob))])
        await self.call("PUT manifest", "PUT", self.t.path("/v2/%s/manifests/%s" % (repo, tag)),
                        [("Content-Type", media_type)], body, expect=(201,),
                        check=check_created(ref.digest))
        world.recent.append(ref)
        world.tags[repo].add(tag, now())

    async def upload_post_put(self, repo, blob, digest):
        r = await self.call("POST upload", "POST", self.t.path("/v2/%s/blobs/uploads/" % repo),
                            expect=(202,), check=check_upload_started)
        pq = add_query(self.location("POST upload", r), "digest", digest)
        await self.call("PUT upload ?digest=", "PUT", pq,
                        [("Content-Type", "application/octet-stream")], blob, expect=(201,),
                        check=check_created(digest))

    async def upload_single_post(self, repo, blob, digest):
        await self.call("POST upload ?digest=", "POST",
                        add_query(self.t.path("/v2/%s/blobs/uploads/" % repo), "digest", digest),
                        [("Content-Type", "application/octet-stream")], blob, expect=(201,),
                        check=check_created(digest))

    async def upload_chunked(self, repo, blob, digest):
        r = await self.call("POST upload", "POST", self.t.path("/v2/%s/blobs/uploads/" % repo),
                            expect=(202,), check=check_upload_started)
        pieces = self.rng.randint(2, 3)
        cuts = [0] + sorted(self.rng.sample(range(1, len(blob)), pieces - 1)) + [len(blob)]
        for a, b in zip(cuts, cuts[1:]):
            r = await self.call("PATCH upload", "PATCH", self.location("PATCH upload", r),
                                [("Content-Type", "application/octet-stream"),
                                 ("Content-Range", "%d-%d" % (a, b - 1))], blob[a:b],
                                expect=(202,), check=check_patch(b - 1))
        await self.call("PUT upload ?digest=", "PUT",
                        add_query(self.location("PUT upload ?digest=", r), "digest", digest),
                        expect=(201,), check=check_created(digest))

    async def op_token(self, with_password):
        ctx = self.ctx
        ref = ctx.world.pick_ref(self.rng)
        if with_password:
            route, auth = "GET /token (password)", basic(self.user.name, self.user.password)
        else:
            route, auth = "GET /token (access token)", self.user.token_auth()
        q = urllib.parse.urlencode({"service": ctx.args.service,
                                    "scope": "repository:%s:pull" % ref.repo})
        r = await self.call(route, "GET", self.t.path("/token?" + q), auth=auth,
                            check=check_token(ctx.args.service, ref.repo))
        if self.rng.random() < 0.5:
            bearer = "Bearer " + json.loads(r.body)["token"]
            await self.call("HEAD manifest (Bearer)", "HEAD",
                            self.t.path("/v2/%s/manifests/%s" % (ref.repo, ref.tag)),
                            [("Accept", ACCEPT)], auth=bearer, check=check_manifest(ref, head=True))

    async def op_catalog(self):
        known = self.ctx.world.repos
        last = known.random(self.rng) if self.rng.random() < 0.5 else None
        await self.follow_pages("GET _catalog", "/v2/_catalog", "repositories", CATALOG_PAGE,
                                last, known, None)

    async def op_tags(self):
        world = self.ctx.world
        if self.rng.random() < 0.5:
            repo = world.tag_repo
        else:
            repo = self.rng.choice(world.base_refs).repo
        known = world.tags[repo]
        last = known.random(self.rng) if self.rng.random() < 0.5 else None
        await self.follow_pages("GET tags/list", "/v2/%s/tags/list" % repo, "tags", TAGS_PAGE,
                                last, known, repo)

    async def follow_pages(self, route, path, key, n, last, known, name):
        q = {"n": str(n)}
        if last is not None:
            q["last"] = last
        pq = self.t.path(path) + "?" + urllib.parse.urlencode(q)
        for _page in range(self.ctx.args.pages):
            r = await self.call(route, "GET", pq, check=check_page(key, n, last, known, now(), name))
            link = parse_link(r.header("link"))
            if link is None:
                return
            pq = self.t.same_origin_path(link)
            last = json.loads(r.body)[key][-1]
            if pq is None:
                self.ctx.stats.error(route, r.status, b"", "Link %r to another host" % link,
                                     counted_request=False)
                raise OpAborted()

    async def op_head_blob(self):
        ref = self.ctx.world.pick_ref(self.rng)
        digest, size = self.rng.choice(ref.blobs)
        await self.call("HEAD blob", "HEAD", self.t.path("/v2/%s/blobs/%s" % (ref.repo, digest)),
                        check=check_blob(digest, size, head=True))

    async def run(self, deadline, names, weights):
        ops = {"pull": self.op_pull, "push": self.op_push,
               "token-password": lambda: self.op_token(True),
               "token-access": lambda: self.op_token(False),
               "catalog": self.op_catalog, "tags": self.op_tags, "head-blob": self.op_head_blob}
        stats = self.ctx.stats
        await asyncio.sleep(self.rng.random())      # spread the first requests over a second
        while now() < deadline:
            name = self.rng.choices(names, weights)[0]
            t0 = now()
            before = (stats.error_count, stats.limit_count)
            try:
                await ops[name]()
                stats.ops[name].lat.append(now() - t0)
            except OpAborted:
                if stats.error_count != before[0]:
                    stats.ops[name].errors += 1
                else:
                    stats.ops[name].limits["limited"] += 1
                    # a client told to slow down waits a moment (not Retry-After:
                    # the sign-in limiter's can be a minute)
                    await asyncio.sleep(min(self.ctx.args.limit_backoff, max(0.0, deadline - now())))
            stats.ops[name].requests += 1
            if self.dropped:
                self.dropped = False
                await asyncio.sleep(0.1)    # don't spin on a server that refuses to connect
        self.conn.close()


def build_manifest(base, extra, docker):
    """The base image's manifest plus one layer; OCI or Docker schema 2."""
    src = json.loads(base.body)
    layers = [dict(l) for l in src["layers"]] + [
        {"mediaType": OCI_LAYER, "digest": extra[0], "size": extra[1]}]
    config = dict(src["config"])
    if docker:
        config["mediaType"] = DOCKER_CONFIG
        for l in layers:
            l["mediaType"] = DOCKER_LAYER
            l.pop("annotations", None)
        doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": layers}
        return json.dumps(doc, separators=(",", ":")).encode(), DOCKER_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers}
    return json.dumps(doc, separators=(",", ":")).encode(), OCI_MANIFEST


# --------------------------------------------------------------------------
# setup through the API
# --------------------------------------------------------------------------

class Setup:
    """Blocking-style helpers over one connection that raise SetupError."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.t = ctx.target
        self.conn = Conn(ctx.target)

    async def req(self, method, path, auth, expect, headers=(), body=b""):
        hdrs = [("Authorization", auth)] + list(headers)
        try:
            r = await self.conn.request(method, self.t.path(path), hdrs, body, self.ctx.args.timeout)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as e:
            raise SetupError("%s %s: %s: %s" % (method, path, type(e).__name__, e))
        if r.status not in expect:
            raise SetupError("%s %s: status %d, expected %s: %s" % (
                method, path, r.status, expect, r.body[:300].decode("utf-8", "replace")))
        return r

    async def sign_in_admin(self, password, fresh_server):
        """A fresh server creates admin in the background: retry a few times, slowly
        (failed sign-ins count towards --login-failures)."""
        auth = basic("admin", password)
        delay = 0.25
        deadline = now() + (30 if fresh_server else 0)
        while True:
            r = await self.req("GET", "/api/v1/me", auth, (200, 401, 429))
            if r.status == 200:
                return
            if now() > deadline:
                raise SetupError("admin cannot sign in: %d %s" % (r.status, r.body[:200]))
            wait = delay
            if r.status == 429:
                wait = min(60.0, float(r.header("retry-after") or 5))
            await asyncio.sleep(wait)
            delay = min(delay * 2, 4.0)

    async def create_user(self, admin_auth, name):
        password = base64.urlsafe_b64encode(os.urandom(18)).decode()
        body = json.dumps({"name": name, "password": password}).encode()
        await self.req("POST", "/api/v1/users", admin_auth, (200, 201),
                       [("Content-Type", "application/json")], body)
        user = User(name, password)
        body = json.dumps({"scope": "read-write-delete", "name": "soak"}).encode()
        r = await self.req("POST", "/api/v1/tokens", basic(name, password), (200, 201),
                           [("Content-Type", "application/json")], body)
        try:
            user.token = json.loads(r.body)["token"]
        except (ValueError, KeyError) as e:
            raise SetupError("POST /api/v1/tokens: no token in %r (%s)" % (r.body[:200], e))
        return user

    async def put_blob(self, user, repo, digest, data, mount_from=None):
        auth = user.token_auth()
        if mount_from:
            r = await self.req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s" % (repo, digest, mount_from),
                               auth, (201, 202))
            if r.status == 201:
                if r.header("docker-content-digest") != digest:
                    raise SetupError("mount %s: Docker-Content-Digest %r"
                                     % (digest, r.header("docker-content-digest")))
                return
            # 202: not mountable here, an upload session was opened instead
        else:
            r = await self.req("POST", "/v2/%s/blobs/uploads/" % repo, auth, (202,))
        pq = self.t.same_origin_path(r.header("location") or "")
        if pq is None:
            raise SetupError("upload Location %r" % r.header("location"))
        r = await self.conn_put(auth, add_query(pq, "digest", digest), data)
        if r.header("docker-content-digest") != digest:
            raise SetupError("blob PUT: Docker-Content-Digest %r" % r.header("docker-content-digest"))

    async def conn_put(self, auth, pq, data):
        try:
            r = await self.conn.request("PUT", pq, [("Authorization", auth),
                                                    ("Content-Type", "application/octet-stream")],
                                        data, self.ctx.args.timeout)
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as e:
            raise SetupError("PUT %s: %s" % (pq, e))
        if r.status != 201:
            raise SetupError("PUT %s: status %d %s" % (pq, r.status, r.body[:300]))
        return r

    async def put_manifest(self, user, ref):
        r = await self.req("PUT", "/v2/%s/manifests/%s" % (ref.repo, ref.tag), user.token_auth(),
                           (201,), [("Content-Type", ref.media_type)], ref.body)
        if r.header("docker-content-digest") != ref.digest:
            raise SetupError("manifest PUT %s:%s: Docker-Content-Digest %r"
                             % (ref.repo, ref.tag, r.header("docker-content-digest")))

    async def push_image(self, user, repo, tag, image, placed):
        """All blobs (mounted when already in a repository of ours), then the manifest."""
        for digest, _size in image["blobs"]:
            await self.put_blob(user, repo, digest, self.ctx.world.blobs[digest], placed.get(digest))
            placed.setdefault(digest, repo)
        ref = Ref(repo, tag, image["manifest"], image["media_type"], image["blobs"])
        await self.put_manifest(user, ref)
        return ref

    def close(self):
        self.conn.close()


def make_images(args, workdir):
    """mkimage.py: 3 base images (layers 256K,128K,64K), two of them with a derived
    image sharing their 2 bottom layers.  Returns image dicts and blob bytes."""
    tool = os.path.join(args.shared_dir, "tools", "mkimage.py")
    if not os.path.isfile(tool):
        raise SetupError("%s not found (set BERTH_SHARED_DIR or --shared-dir)" % tool)
    specs = [("a", ["--derived-tag", "app", "--shared", "2", "--derived-layers", "96K"]),
             ("b", ["--derived-tag", "app", "--shared", "2", "--derived-layers", "32K,64K"]),
             ("c", [])]
    images, blobs = {}, {}
    for name, extra in specs:
        out = os.path.join(workdir, "img-" + name)
        summary = os.path.join(workdir, "img-%s.json" % name)
        cmd = [sys.executable, tool, out, "--layers", "256K,128K,64K", "--tag", "v1",
               "--seed", "soak-%s-%s" % (args.seed, name), "--summary", summary] + extra
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SetupError("mkimage.py failed: %s" % p.stderr[-500:])
        with open(summary) as f:
            for entry in json.load(f):
                img = entry["images"][0]
                digests = [(img["config"], img["config_size"])] + [
                    (l["digest"], l["size"]) for l in img["layers"]]
                for d, _ in digests + [(entry["digest"], entry["size"])]:
                    with open(os.path.join(out, "blobs", "sha256", d.split(":", 1)[1]), "rb") as bf:
                        blobs[d] = bf.read()
                images["%s-%s" % (name, entry["tag"])] = {
                    "manifest": blobs[entry["digest"]], "media_type": entry["media_type"],
                    "blobs": digests}
    return images, blobs


async def setup(ctx):
    args, world = ctx.args, ctx.world
    s = Setup(ctx)
    try:
        await s.sign_in_admin(ctx.admin_password, fresh_server=ctx.server is not None)
        admin = basic("admin", ctx.admin_password)
        nonce = os.urandom(3).hex()
        for k in "ab":
            world.users.append(await s.create_user(admin, "soak%s%s" % (nonce, k)))
        log(args, "setup: users %s with access tokens" % ", ".join(u.name for u in world.users))

        images, world.blobs = make_images(args, ctx.workdir)
        placed = {}
        layout = [("app-a", ["a-v1", "a-app"]), ("app-b", ["b-v1", "b-app"]), ("app-c", ["c-v1"])]
        for u in world.users:
            world.push_repos[u.name] = []
            for repo_name, image_keys in layout:
                repo = "%s/%s" % (u.name, repo_name)
                for key in image_keys:
                    ref = await s.push_image(u, repo, key.split("-")[1], images[key], placed)
                    world.base_refs.append(ref)
                    world.tags[repo].add(ref.tag, now())
                world.templates[repo] = world.base_refs[-1]
                world.push_repos[u.name].append(repo)
                world.repos.add(repo, now())
        log(args, "setup: %d images pushed into %d repositories"
            % (len(world.base_refs), len(world.repos.names)))

        await setup_tag_repo(ctx, s, images["c-v1"], placed)
        await setup_small_repos(ctx, images["c-v1"], placed)
        log(args, "setup: %s with %d tags; %d more repositories (%d in the catalog)" % (
            world.tag_repo, args.tags, args.repos, len(world.repos.names)))
    finally:
        s.close()


async def setup_tag_repo(ctx, s, image, placed):
    """One repository with --tags tags: the same manifest bytes PUT under many names."""
    world, u = ctx.world, ctx.world.users[0]
    repo = "%s/many-tags" % u.name
    ref = await s.push_image(u, repo, "t0000", image, placed)
    world.tag_repo, world.tag_repo_ref = repo, ref
    world.tags[repo].add("t0000", now())
    world.repos.add(repo, now())
    tags = ["t%04d" % i for i in range(1, ctx.args.tags)]

    async def put(conn_setup, chunk):
        for tag in chunk:
            await conn_setup.put_manifest(u, Ref(repo, tag, ref.body, ref.media_type, ref.blobs))
            world.tags[repo].add(tag, now())
    await in_parallel(ctx, tags, put)


async def setup_small_repos(ctx, image, placed):
    """--repos repositories holding a one-layer image each (blobs mounted)."""
    world = ctx.world
    config, smallest = image["blobs"][0], min(image["blobs"][1:], key=lambda b: b[1])
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
                       "layers": [{"mediaType": OCI_LAYER, "digest": smallest[0], "size": smallest[1]}]},
                      separators=(",", ":")).encode()
    names = [(world.users[i % 2], "%s/r%04d" % (world.users[i % 2].name, i)) for i in range(ctx.args.repos)]

    async def make(conn_setup, chunk):
        for u, repo in chunk:
            for digest, _ in (config, smallest):
                await conn_setup.put_blob(u, repo, digest, world.blobs[digest], placed[digest])
            ref = Ref(repo, "v1", body, OCI_MANIFEST, [config, smallest])
            await conn_setup.put_manifest(u, ref)
            world.small_refs.append(ref)
            world.tags[repo].add("v1", now())
            world.repos.add(repo, now())
    await in_parallel(ctx, names, make)


async def in_parallel(ctx, items, worker, conns=8):
    chunks = [items[i::conns] for i in range(conns)]
    setups = [Setup(ctx) for _ in chunks]
    try:
        await asyncio.gather(*(worker(s, c) for s, c in zip(setups, chunks) if c))
    finally:
        for s in setups:
            s.close()


# --------------------------------------------------------------------------
# the load
# --------------------------------------------------------------------------

def parse_mix(text):
    mix = {}
    for part in text.split(","):
        name, _, w = part.partition("=")
        name = name.strip()
        if name not in DEFAULT_MIX:
            raise SystemExit("soak.py: unknown operation %r in --mix (known: %s)" % (
                name, ", ".join(p.split("=")[0] for p in DEFAULT_MIX.split(","))))
        mix[name] = float(w)
    if not any(mix.values()):
        raise SystemExit("soak.py: --mix has no positive weight")
    return mix


async def load(ctx):
    args, world = ctx.args, ctx.world
    names = [k for k, v in ctx.mix.items() if v > 0]
    weights = [ctx.mix[k] for k in names]
    clients = [Client(ctx, i, world.users[i % len(world.users)]) for i in range(args.conns)]
    ctx.sampler.sample("start")
    ctx.load_t0 = now()
    ctx.stats.t0 = ctx.load_t0
    ctx.sampler.load_t0 = ctx.load_t0
    deadline = ctx.load_t0 + args.duration
    # "end of load": at the deadline, while the connections are still open
    asyncio.get_running_loop().call_at(deadline, ctx.sampler.sample, "end")
    await asyncio.gather(*(c.run(deadline, names, weights) for c in clients))
    ctx.load_t1 = now()


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------

def fmt(x, digits=1):
    if x is None or x != x:
        return "-"
    if isinstance(x, int):
        return "{:,}".format(x)
    if abs(x) >= 100:
        return "{:,.0f}".format(x)
    return "%.*f" % (digits, x)


def mib(kb):
    return kb / 1024.0


def window(samples, t0, t1):
    return [s for s in samples if t0 <= s["t"] <= t1]


def rss_verdict(samples, t0, t1):
    """Max RSS of the last third <= max of the middle third x 1.10 + 4 MiB."""
    third = (t1 - t0) / 3.0
    mid = window(samples, t0 + third, t0 + 2 * third)
    end = window(samples, t0 + 2 * third, t1)
    if t1 - t0 < 30 or len(mid) < 3 or len(end) < 3:
        return {"verdict": "not judged (load shorter than 30 s, or too few samples)", "ok": True}
    mid_max = max(s["rss_kb"] for s in mid) / 1024.0
    end_max = max(s["rss_kb"] for s in end) / 1024.0
    limit = mid_max * 1.10 + 4.0
    ok = end_max <= limit
    return {"verdict": "RSS levels off" if ok else "RSS still growing", "ok": ok,
            "middle_max_mib": mid_max, "last_max_mib": end_max, "limit_mib": limit}


def per_interval_rows(samples, t0, t1, step):
    rows = []
    k = 0
    prev = None
    before = [s for s in samples if s["t"] <= t0]
    if before:
        prev = before[-1]
    while t0 + k * step < t1 - 0.5:
        a, b = t0 + k * step, min(t0 + (k + 1) * step, t1)
        w = window(samples, a, b)
        if w:
            first = prev or w[0]
            last = w[-1]
            dt = last["t"] - first["t"]
            rows.append({
                "from_s": round(a - t0), "to_s": round(b - t0),
                "rss_min_mib": min(mib(s["rss_kb"]) for s in w),
                "rss_max_mib": max(mib(s["rss_kb"]) for s in w),
                "fds_max": max(s["fds"] for s in w), "fds_end": last["fds"],
                "requests": last["requests"] - first["requests"],
                "req_per_s": (last["requests"] - first["requests"]) / dt if dt > 0 else float("nan"),
                "cpu_pct": 100.0 * (last["cpu_s"] - first["cpu_s"]) / dt if dt > 0 else float("nan")})
            prev = last
        k += 1
    return rows


def git_commit():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "") if head else "unknown"
    except OSError:
        return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summarize(ctx):
    args, st, samples = ctx.args, ctx.stats, ctx.sampler.samples
    t0, t1 = ctx.load_t0, ctx.load_t1
    seconds = t1 - t0
    load_samples = window(samples, t0, t1)
    pre = [s for s in samples if s["t"] <= t0]
    post = [s for s in samples if s["t"] > t1]
    res = {
        "date": ctx.date, "commit": ctx.commit, "berth": ctx.berth_desc, "url": ctx.target.base,
        "conns": args.conns, "duration_s": args.duration, "load_seconds": seconds, "seed": args.seed,
        "mix": ctx.mix, "timeout_s": args.timeout, "limit_backoff_s": args.limit_backoff,
        "nproc": os.cpu_count(), "cpu": cpu_model(),
        "kernel": platform.release(), "python": platform.python_version(),
        "argv": sys.argv[1:], "setup_seconds": ctx.setup_seconds,
        "data_set": {"users": [u.name for u in ctx.world.users], "repositories": len(ctx.world.repos.names),
                     "images": len(ctx.world.base_refs), "tag_repo": ctx.world.tag_repo, "tags": args.tags},
        "ops": {k: latency_row(st.ops[k], seconds) for k in ctx.mix if k in st.ops},
        "routes": {k: latency_row(st.routes[k], seconds) for k in ROUTES if k in st.routes},
        "requests": st.requests, "errors": st.error_count, "limits": st.limit_count,
        "error_kinds": [{"route": r, "status": s, "count": c} for (r, s), c in st.error_kinds.most_common()],
        "error_samples": st.error_samples,
        "bytes_pulled": sum(st.routes[r].bytes_in for r in PULL_ROUTES if r in st.routes),
        "bytes_pushed": sum(rs.bytes_out for rs in st.routes.values()),
        "client_cpu_pct": ctx.client_cpu_pct,
        "closed_after_refusal": Conn.closed_after_refusal,
        "server_exit": ctx.server.exit_note if ctx.server else "not ours (left running)",
        "server_gone_at_s": (ctx.sampler.gone_at - t0) if ctx.sampler.gone_at else None,
    }
    if load_samples:
        first = ([s for s in pre if s.get("mark") == "start"] or pre or load_samples)[-1]
        last = ([s for s in samples if s.get("mark") == "end"] or load_samples)[-1]
        res["server"] = {
            "rss_idle_mib": mib(ctx.idle_sample["rss_kb"]) if ctx.idle_sample else None,
            "rss_start_mib": mib(first["rss_kb"]), "rss_end_mib": mib(last["rss_kb"]),
            "rss_peak_mib": max(mib(s["rss_kb"]) for s in load_samples),
            "hwm_end_mib": mib(last["hwm_kb"]),
            "rss_after_mib": mib(post[-1]["rss_kb"]) if post else None,
            "fds_start": first["fds"], "fds_peak": max(s["fds"] for s in load_samples),
            "fds_end": last["fds"], "fds_after": post[-1]["fds"] if post else None,
            "cpu_pct": 100.0 * (last["cpu_s"] - first["cpu_s"]) / max(1e-9, last["t"] - first["t"]),
        }
        res["rss_rule"] = rss_verdict(samples, t0, t1)
        res["intervals"] = per_interval_rows(samples, t0, t1, args.row_seconds)
        res["samples"] = [dict(s, t=round(s["t"] - t0, 2)) for s in samples]   # t: s after load start
    else:
        res["server"] = None
        res["rss_rule"] = {"verdict": "not judged (no server pid to watch)", "ok": True}
        res["intervals"] = []
        res["samples"] = []
    if res["server_gone_at_s"] is not None:
        res["errors"] += 1
        res["error_kinds"].append({"route": "(server)", "status": None, "count": 1})
        res["error_samples"].insert(0, {"route": "(server)", "status": None, "body": "",
                                        "problem": "the server process went away %.0f s into the load"
                                        % res["server_gone_at_s"], "at_s": res["server_gone_at_s"]})
    res["passed"] = res["errors"] == 0 and res["rss_rule"]["ok"]
    return res


def markdown(res):
    out = []
    add = out.append
    mix = ", ".join("%s %g" % kv for kv in res["mix"].items())
    add("# berth soak test")
    add("")
    add("- **%s**: %s errors, %s deliberate limits (429/503), %s." % (
        "PASS" if res["passed"] else "FAIL", fmt(res["errors"]), fmt(res["limits"]),
        res["rss_rule"]["verdict"]))
    add("- %s; this checkout at commit %s; berth: %s; server %s." % (
        res["date"], res["commit"], res["berth"], res["url"]))
    add("- Load: %d connections from one address for %s s (ran %.1f s), seed %s, per-request timeout %g s, "
        "%g s pause after a limit; mix (weights) %s." % (
            res["conns"], fmt(res["duration_s"]), res["load_seconds"], res["seed"], res["timeout_s"],
            res["limit_backoff_s"], mix))
    ds = res["data_set"]
    add("- Data: users %s (access tokens, scope read-write-delete), each with 5 images (3 layers of "
        "256/128/64 KiB; 2 derived images share 2 layers) in app-a, app-b, app-c (%d tags in all); "
        "%s with %d tags; %d repositories in the catalog at the start; setup took %.1f s." % (
            " and ".join(ds["users"]), ds["images"], ds["tag_repo"], ds["tags"], ds["repositories"],
            res["setup_seconds"]))
    add("- Machine: %d CPUs (%s), Linux %s, Python %s; `soak.py %s`." % (
        res["nproc"], res["cpu"], res["kernel"], res["python"],
        " ".join(shlex.quote(a) for a in res["argv"])))
    add("")
    add("## Operations")
    add("")
    add("An operation is one client action (a pull is the manifest and all its blobs). "
        "Latency over operations that completed with every check passed.")
    add("")
    add("| operation | count | errors | limited | p50 ms | p99 ms | max ms | ops/s |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in res["ops"].items():
        add("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(r["count"]), fmt(r["errors"]), fmt(r["limits"]), fmt(r["p50_ms"]),
            fmt(r["p99_ms"]), fmt(r["max_ms"]), fmt(r["per_s"])))
    add("")
    add("## Routes")
    add("")
    add("Latency over responses that passed their checks (limits and errors excluded).")
    add("")
    add("| route | requests | errors | limits (429/503) | p50 ms | p99 ms | max ms | req/s |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in res["routes"].items():
        lim = fmt(r["limits"])
        if r["limits"]:
            by_status = sorted(r["limits_by_status"].items())
            lim += " (" + ", ".join("%s: %s" % (k, fmt(v)) for k, v in by_status) + ")"
        add("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(r["count"]), fmt(r["errors"]), lim, fmt(r["p50_ms"]), fmt(r["p99_ms"]),
            fmt(r["max_ms"]), fmt(r["per_s"])))
    add("| **total** | **%s** | **%s** | **%s** | | | | **%s** |" % (
        fmt(res["requests"]), fmt(res["errors"]), fmt(res["limits"]),
        fmt(res["requests"] / res["load_seconds"] if res["load_seconds"] else float("nan"))))
    add("")
    add("Bytes pulled (manifest and blob bodies, every one verified): %.1f MB; pushed (blob and manifest "
        "bodies): %.1f MB (MB = 10^6 bytes)." % (res["bytes_pulled"] / 1e6, res["bytes_pushed"] / 1e6))
    if res["closed_after_refusal"]:
        add("")
        add("The server closed %s connections right after a refusal (a 429/503, or an error answer to "
            "a request whose body it had not read) without `Connection: close`; the request that followed "
            "on each was sent again on a new connection, as RFC 9112 9.3.1 allows, and is not counted as "
            "an error." % fmt(res["closed_after_refusal"]))
    add("")
    add("## Server resources")
    add("")
    sv = res["server"]
    if sv is None:
        add("No server process to watch (give --pid with --url).")
    else:
        add("| | idle after start | start of load | peak during load | end of load "
            "| after (connections closed) |")
        add("|---|---:|---:|---:|---:|---:|")
        add("| RSS MiB | %s | %s | %s | %s | %s |" % (fmt(sv["rss_idle_mib"]), fmt(sv["rss_start_mib"]),
                                                    fmt(sv["rss_peak_mib"]), fmt(sv["rss_end_mib"]),
                                                    fmt(sv["rss_after_mib"])))
        add("| open fds | | %s | %s | %s | %s |" % (fmt(sv["fds_start"]), fmt(sv["fds_peak"]),
                                                    fmt(sv["fds_end"]), fmt(sv["fds_after"])))
        add("")
        add("VmHWM (peak RSS since start) at the end: %s MiB. Server CPU during the load: %s %% of one core "
            "(%d CPUs = %d %%); this script: %s %%. Server exit: %s." % (
                fmt(sv["hwm_end_mib"]), fmt(sv["cpu_pct"], 0), res["nproc"], 100 * res["nproc"],
                fmt(res["client_cpu_pct"], 0), res["server_exit"]))
        add("")
        add("### RSS over time")
        add("")
        add("| from s | to s | RSS min MiB | RSS max MiB | fds max | requests | req/s | server CPU % |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in res["intervals"]:
            add("| %d | %d | %s | %s | %s | %s | %s | %s |" % (
                r["from_s"], r["to_s"], fmt(r["rss_min_mib"]), fmt(r["rss_max_mib"]), fmt(r["fds_max"]),
                fmt(r["requests"]), fmt(r["req_per_s"]), fmt(r["cpu_pct"], 0)))
        add("")
        rule = res["rss_rule"]
        if "limit_mib" in rule:
            add("Rule: RSS levels off when the highest RSS in the last third of the load is at most the "
                "highest in the middle third x 1.10 + 4 MiB: %.1f <= %.1f x 1.10 + 4 = %.1f MiB -> **%s**." % (
                    rule["last_max_mib"], rule["middle_max_mib"], rule["limit_mib"], rule["verdict"]))
        else:
            add("RSS rule: %s." % rule["verdict"])
    add("")
    add("## Errors")
    add("")
    if not res["errors"]:
        add("None.")
    else:
        add("| route | status | count |")
        add("|---|---:|---:|")
        for e in res["error_kinds"]:
            status = e["status"] if e["status"] is not None else "-"
            add("| %s | %s | %s |" % (e["route"], status, fmt(e["count"])))
        add("")
        add("First ones:")
        add("")
        for e in res["error_samples"][:10]:
            add("- at %s s, %s, status %s: %s%s" % (
                e["at_s"], e["route"], e["status"] if e["status"] is not None else "-", e["problem"],
                (" — body: `%s`" % e["body"].replace("`", "'").replace("\n", " ")) if e["body"] else ""))
    add("")
    return "\n".join(out)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

class Context:
    """One run: options, the server, what was set up, the figures."""

    def __init__(self, args):
        self.args = args
        self.mix = parse_mix(args.mix)
        self.stats = Stats()
        self.world = World()
        self.server = None
        self.target = None
        self.admin_password = args.admin_password
        self.workdir = None
        self.sampler = None
        self.idle_sample = None
        self.setup_seconds = 0.0
        self.load_t0 = self.load_t1 = None
        self.client_cpu_pct = float("nan")
        self.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.commit = git_commit()
        self.berth_desc = ""


def raise_fd_limit(conns):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, conns * 2 + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < conns + 64:
        raise SystemExit("soak.py: open-file limit %d is too low for %d connections" % (want, conns))


def start_server(ctx):
    args = ctx.args
    if args.url:
        ctx.target = Target(args.url)
        if not ctx.admin_password:
            raise SystemExit("soak.py: --url needs --admin-password (or BERTH_SOAK_ADMIN_PASSWORD)")
        ctx.berth_desc = "running server, pid %s" % (args.pid or "not given")
        return ProcStat(args.pid) if args.pid else None
    ctx.server = Server(args, ctx.workdir)
    ctx.admin_password = ctx.server.password
    ctx.target = Target(ctx.server.url)
    try:
        version = subprocess.run([ctx.server.binary, "--version"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "?"
    ctx.berth_desc = "%s, %s" % (os.path.relpath(ctx.server.binary, REPO_ROOT)
                                 if ctx.server.binary.startswith(REPO_ROOT) else ctx.server.binary, version)
    pid = ctx.server.start()
    log(args, "soak: started %s (pid %d, log %s)" % (" ".join(ctx.server.cmd), pid, ctx.server.log_path))
    return ProcStat(pid)


def run(ctx):
    args = ctx.args
    proc = start_server(ctx)
    ctx.sampler = Sampler(proc, ctx.stats, args)

    async def main_async():
        # SIGTERM ends the run like Ctrl-C: main() stops the server and cleans up
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        status = await wait_for_v2(ctx.target, ctx.server)
        log(args, "soak: GET /v2/ answers %d at %s" % (status, ctx.target.base))
        await asyncio.sleep(0.5)
        ctx.idle_sample = ctx.sampler.sample()
        ctx.sampler.start()
        t = now()
        await setup(ctx)
        ctx.setup_seconds = now() - t
        log(args, "soak: load: %d connections for %g s" % (args.conns, args.duration))
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        await load(ctx)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        ctx.client_cpu_pct = 100.0 * (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / (
            ctx.load_t1 - ctx.load_t0)
        log(args, "soak: load done; watching the idle server for 3 s")
        await asyncio.sleep(3.0)   # "after": connections closed, the server idle

    asyncio.run(main_async())
    ctx.sampler.stop()


def write_outputs(ctx, res):
    text = markdown(res)
    print(text)
    out = ctx.args.output
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text + "\n")
        log(ctx.args, "soak: report written to %s" % out)
    if ctx.args.json:
        with open(ctx.args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="soak.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    ap.add_argument("--conns", type=int, default=500, help="concurrent keep-alive connections (default 500)")
    ap.add_argument("--seed", default="1", help="seed of the operation sequence and the images (default 1)")
    ap.add_argument("--mix", default=DEFAULT_MIX, help="operation weights (default %s)" % DEFAULT_MIX)
    ap.add_argument("--timeout", type=float, default=60, help="per-request timeout, seconds (default 60)")
    ap.add_argument("--berth", default=os.path.join(REPO_ROOT, "target", "release", "berth"),
                    help="berth binary to start (default target/release/berth)")
    ap.add_argument("--extra-serve-args", default="",
                    help="more `berth serve` arguments, split like a shell, e.g. '--login-failures 100'")
    ap.add_argument("--url", help="soak this running server instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's pid, for RSS, fds and CPU")
    ap.add_argument("--admin-password", default=os.environ.get("BERTH_SOAK_ADMIN_PASSWORD"),
                    help="with --url: the password of `admin` (or BERTH_SOAK_ADMIN_PASSWORD); "
                    "without --url: the password to start berth with (default random)")
    ap.add_argument("--limit-backoff", type=float, default=1.0,
                    help="seconds a connection waits after a 429/503 before its next operation "
                    "(default 1; 0 = none)")
    ap.add_argument("--service", default="berth", help="service name for /token (default berth)")
    ap.add_argument("--tags", type=int, default=300, help="tags in the many-tags repository (default 300)")
    ap.add_argument("--repos", type=int, default=150,
                    help="small repositories for catalog pages, besides the 7 image ones (default 150)")
    ap.add_argument("--pages", type=int, default=3, help="Link pages followed per listing (default 3)")
    ap.add_argument("--row-seconds", type=float,
                    help="RSS-over-time row length (default 60, or 10 for a load under 5 minutes)")
    ap.add_argument("--shared-dir",
                    default=os.environ.get("BERTH_SHARED_DIR", os.path.join(REPO_ROOT, "..", "shared")),
                    help="folder holding tools/mkimage.py (default $BERTH_SHARED_DIR or ../shared)")
    ap.add_argument("--workdir", help="parent of the scratch folder (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (data dir, server log)")
    ap.add_argument("--output", default=os.path.join(REPO_ROOT, "bench", "results", "soak-latest.md"),
                    help="Markdown report file (default bench/results/soak-latest.md; '' for none)")
    ap.add_argument("--json", help="also write the results as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    if args.conns < 1 or args.duration <= 0 or args.timeout <= 0 or args.tags < 1 or args.pages < 1:
        ap.error("--conns, --duration, --timeout, --tags and --pages must be positive")
    if args.pid and not args.url:
        ap.error("--pid goes with --url")
    if args.row_seconds is None:
        args.row_seconds = 60.0 if args.duration >= 300 else 10.0
    return args


def on_sigterm(_signum, _frame):
    raise KeyboardInterrupt()


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)   # stop the server we started, too
    raise_fd_limit(args.conns)
    ctx = Context(args)
    ctx.workdir = tempfile.mkdtemp(prefix="berth-soak-", dir=args.workdir)
    try:
        try:
            run(ctx)
        finally:
            try:
                if ctx.server is not None:
                    ctx.server.stop()
            finally:
                if ctx.sampler is not None and ctx.sampler.is_alive():
                    ctx.sampler.stop()
        res = summarize(ctx)
        write_outputs(ctx, res)
        if res["errors"] and ctx.server is not None:
            print("soak.py: last lines of the server log:\n" + ctx.server.log_tail(), file=sys.stderr)
        return 0 if res["passed"] else 1
    except SetupError as e:
        print("soak.py: could not run: %s" % e, file=sys.stderr)
        if ctx.server is not None:
            print(ctx.server.log_tail(), file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("soak.py: interrupted", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            log(args, "soak: kept %s" % ctx.workdir)
        else:
            subprocess.run(["rm", "-rf", "--", ctx.workdir])


if __name__ == "__main__":
    sys.exit(main())
