#!/usr/bin/env python3
"""berth next to CNCF Distribution, and both next to this machine's ceilings.

One invocation measures, on this machine and in this order:

  1. ceilings: nginx (sendfile) serving a --blob-mib file and a 1 KiB file, pinned like
     the registries; SHA-256 of the same file from the page cache (OpenSSL via hashlib,
     and coreutils sha256sum); write+fsync of it; write+fsync+rename of 4 KiB files;
     nginx cold start and RSS;
  2. regbench (../shared/bench/regbench.py) against berth, then against Distribution, with
     the same arguments; each server is started by regbench itself (--start-cmd) pinned to
     --server-cpu, the client pinned to --client-cpu (oha rows come from regbench too);
  3. sign-ins and memory with authentication on (the `auth` stage: --only-auth,
     --skip-auth): berth with its own accounts, Distribution with an htpasswd file;
     GET /v2/ with Basic password and (berth) Basic access token under oha, distinct
     password sign-ins per second, RSS after --auth-signins sign-ins and after a
     conformance-like mix of pushes, pulls, listings and deletes;
  4. cost as work grows, for each server on fresh storage, in two stages (seed, restart
     pinned, measure): a repository with --growth-small tags and --growth-small
     repositories; then one with --growth-tags tags and --growth-repos repositories
     (cross-repository mounts); manifest GET by tag, tags/list?n=100&last=<middle> and
     _catalog?n=100&last=<middle> under oha.

It prints one Markdown report (also written to bench/results/latest.md, with the raw
figures in latest.json). Python 3 standard library only. Normally run through
scripts/bench.sh, which installs what is missing and builds berth first.
"""

import argparse
import base64
import concurrent.futures
import datetime
import glob
import hashlib
import http.client
import json
import mmap
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s3lite  # noqa: E402  (bench/s3lite.py: list and delete under an S3 prefix)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SERVERS = ("berth", "distribution")
# berth answers a PUT with 100 ?tag= with 100 OCI-Tag headers; http.client stops at 100
http.client._MAXHEADERS = 1000
NAMES = {"berth": "berth", "distribution": "Distribution"}


class Failure(Exception):
    pass


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def now():
    return time.perf_counter()


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt(x):
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 1000:
        return "{:,.0f}".format(x)
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    return "%.2f" % x


def ratio(a, b):
    if a is None or b is None or a != a or b != b or b == 0:
        return "-"
    r = a / b
    if r >= 100:
        return "%.0f×" % r
    if r >= 10:
        return "%.1f×" % r
    if r >= 0.1:
        return "%.2f×" % r
    return "%.2g×" % r


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def run_out(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------
# small HTTP helpers (one keep-alive connection per thread)
# --------------------------------------------------------------------------

class Client:
    def __init__(self, port, headers=None):
        self.port = port
        self.local = threading.local()
        # sent with every request (the auth rows' Authorization); a request's own win
        self.headers = dict(headers or {})

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        return c

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers as a list of (lower name, value), body)."""
        send = dict(self.headers)
        send.update(headers or {})
        for attempt in (0, 1):
            c = self.conn()
            try:
                c.request(method, path, body=body, headers=send)
                r = c.getresponse()
                data = r.read()
                hdrs = [(k.lower(), v) for k, v in r.getheaders()]
                if r.will_close:
                    c.close()
                    self.local.c = None
                return r.status, hdrs, data
            except (ConnectionError, http.client.HTTPException):
                c.close()
                self.local.c = None
                if attempt:
                    raise


def header(hdrs, name):
    for k, v in hdrs:
        if k == name:
            return v
    return None


def upload_blob(cl, repo, data):
    digest = sha256_digest(data)
    st, h, body = cl.request("POST", "/v2/%s/blobs/uploads/" % repo, headers={"Content-Length": "0"})
    if st != 202:
        raise Failure("POST upload to %s: %d %r" % (repo, st, body[:200]))
    loc = urllib.parse.urlsplit(header(h, "location") or "")
    pq = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
    st, h, body = cl.request("PUT", pq, body=data, headers={"Content-Type": "application/octet-stream"})
    if st != 201 or header(h, "docker-content-digest") != digest:
        raise Failure("PUT blob to %s: %d digest %r %r" % (repo, st, header(h, "docker-content-digest"), body[:200]))
    return digest


def connection(port, tls=None, timeout=600):
    """A connection to 127.0.0.1:port: plain, or HTTPS with the ssl context `tls`."""
    if tls is not None:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def timed_get(port, path, buf, what, tls=None):
    """GET `path` into the preallocated `buf`, as regbench's (c) does; returns the
    seconds it took and whether exactly len(buf) bytes came. The caller checks the body
    afterwards, outside the timing."""
    c = connection(port, tls)
    t0 = now()
    c.request("GET", path)
    r = c.getresponse()
    if r.status != 200:
        raise Failure("%s: %d" % (what, r.status))
    mv = memoryview(buf)
    size, got = len(buf), 0
    while got < size:
        n = r.readinto(mv[got:])
        if not n:
            break
        got += n
    el = now() - t0
    extra = r.read(1)
    c.close()
    return el, got == size and not extra


def pool(n_threads, jobs, fn):
    """Run fn(job) over jobs on a thread pool; the first exception aborts."""
    with concurrent.futures.ThreadPoolExecutor(n_threads) as ex:
        it = iter(jobs)
        pending = set()
        for job in it:
            pending.add(ex.submit(fn, job))
            if len(pending) >= n_threads * 4:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for d in done:
                    d.result()
        for d in concurrent.futures.as_completed(pending):
            d.result()


# --------------------------------------------------------------------------
# oha
# --------------------------------------------------------------------------

def oha(url, conns, duration, method="GET", headers=(), cacert=None):
    """Closed-loop load with oha; returns (ok req/s, p99 ms, status codes). Raises on any
    non-2xx status or error other than requests cut off at the deadline. An https URL is
    verified against `cacert`."""
    cmd = ["oha", "-z", "%ds" % duration, "-c", str(conns), "-m", method, "--no-tui",
           "--output-format", "json"]
    if cacert:
        cmd += ["--cacert", cacert]
    for k, v in headers:
        cmd += ["-H", "%s: %s" % (k, v)]
    cmd.append(url)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    try:
        j = json.loads(p.stdout)
    except ValueError:
        raise Failure("oha output not understood: %s %s" % (p.stdout[:300], p.stderr[:300]))
    codes = j.get("statusCodeDistribution", {}) or {}
    bad = {k: v for k, v in codes.items() if not str(k).startswith("2")}
    errs = {k: v for k, v in (j.get("errorDistribution", {}) or {}).items()
            if "deadline" not in k.lower() and "abort" not in k.lower()}
    if bad or errs:
        raise Failure("oha %s %s: bad statuses %r errors %r" % (method, url, bad, errs))
    ok = sum(codes.values())
    p99 = (j.get("latencyPercentiles") or {}).get("p99")
    return ok / duration, (p99 * 1000.0 if p99 is not None else float("nan")), ok


def load(cl, path, conns, duration, headers=(), method="GET"):
    """oha at `conns` connections; when single requests are too slow for oha to finish
    enough of them in `duration`, time sequential requests on one connection instead.
    Returns dict(rps, p99, how)."""
    t0 = now()
    st, h, body = cl.request(method, path, headers=dict(headers))
    one = now() - t0
    if st != 200:
        raise Failure("%s %s: status %d" % (method, path, st))
    if one * conns < duration / 4:
        rps, p99, ok = oha("http://127.0.0.1:%d%s" % (cl.port, path), conns, duration, method, headers)
        if ok >= 4 * conns:
            return {"rps": rps, "p99": p99, "how": "oha -c%d" % conns}
    lat = []
    t_end = now() + max(duration, 3 * one)
    t0 = now()
    while now() < t_end or len(lat) < 3:
        s = now()
        st, _, _ = cl.request(method, path, headers=dict(headers))
        if st != 200:
            raise Failure("%s %s: status %d" % (method, path, st))
        lat.append(now() - s)
    el = now() - t0
    lat.sort()
    return {"rps": len(lat) / el, "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000.0,
            "how": "1 conn, %d requests (too slow for oha)" % len(lat)}


# --------------------------------------------------------------------------
# servers started by this script (growth part; regbench starts its own)
# --------------------------------------------------------------------------

def wait_ready(port, proc, timeout=60.0, path="/v2/", ready=(200,), tls=None):
    t0 = now()
    while now() - t0 < timeout:
        if proc.poll() is not None:
            raise Failure("server exited with %s during start" % proc.returncode)
        try:
            c = connection(port, tls, timeout=2)
            c.request("GET", path)
            st = c.getresponse().status
            c.close()
            if st in ready:
                return now() - t0
        except OSError:
            pass
        time.sleep(0.002)
    raise Failure("server on port %d not ready within %ds" % (port, timeout))


class Proc:
    def __init__(self, cmd, logpath, port, ready_path="/v2/", env=None, ready=(200,), tls=None):
        self.cmd, self.port = cmd, port
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                raise Failure("port %d already in use" % port)
        self.logf = open(logpath, "ab")
        t0 = now()
        self.p = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                  start_new_session=True, env=env)
        try:
            wait_ready(port, self.p, path=ready_path, ready=ready, tls=tls)
        except Exception:
            self.stop()
            raise
        self.start_s = now() - t0

    def status(self):
        out = {}
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024.0
        return out

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


LIVE = []   # processes to stop on the way out


def server_cmd(kind, args, port, data, tmp, cpus=None, htpasswd=None, berth_extra=(), dist_storage=None):
    """The command that starts `kind` pinned to `cpus` (default --server-cpu). Without
    `htpasswd`, both without authentication (berth `--open`); with it, berth with its
    own accounts (start it with auth_env()) and Distribution with Basic auth against
    that htpasswd file (a second config file). `berth_extra` is appended to berth's
    command (--storage, --database, ...); `dist_storage` replaces Distribution's
    filesystem driver (YAML lines under `storage:`, indented two spaces). Distribution's
    config file is the command's last word (`garbage-collect` takes it too)."""
    pin = ["taskset", "-c", str(args.server_cpu) if cpus is None else cpus]
    if kind == "berth":
        return pin + [args.berth_bin, "serve"] + ([] if htpasswd else ["--open"]) + [
            "--addr", "127.0.0.1:%d" % port, "--data-dir", data] + list(berth_extra)
    cfg = os.path.join(tmp, "dist-%s%d.yml" % ("auth-" if htpasswd else "", port))
    with open(cfg, "w") as f:
        f.write("version: 0.1\n"
                "log: {level: error, accesslog: {disabled: true}}\n"
                "storage:\n"
                "%s"
                "  delete: {enabled: true}\n"
                "http: {addr: 127.0.0.1:%d}\n" % (dist_storage or "  filesystem: {rootdirectory: %s}\n" % data, port))
        if htpasswd:
            f.write("auth:\n"
                    "  htpasswd: {realm: basic-realm, path: %s}\n" % htpasswd)
    return pin + [args.dist_bin, "serve", cfg]


# --------------------------------------------------------------------------
# 1. ceilings
# --------------------------------------------------------------------------

def prewarm(tmp, mib):
    """Write, fsync and delete `mib` MiB, as regbench --prewarm-mib does, so that the
    ceilings' page cache reuses memory the VM has already touched."""
    path = os.path.join(tmp, "prewarm.bin")
    chunk = os.urandom(16 * MIB)
    t0 = now()
    with open(path, "wb") as f:
        for _ in range(max(1, mib // 16)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.unlink(path)
    log("prewarm: wrote and deleted %d MiB in %.1f s" % (mib, now() - t0))


def ceilings(args, tmp):
    res = {}
    if args.prewarm_mib:
        prewarm(tmp, args.prewarm_mib)
    www = os.path.join(tmp, "www")
    os.makedirs(os.path.join(www, "v2"))
    os.chmod(tmp, 0o755)
    size = args.blob_mib * MIB
    blob = os.path.join(www, "blob.bin")
    h = hashlib.sha256()
    with open(blob, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 16 * MIB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    blob_digest = h.hexdigest()
    small = os.urandom(1024)
    with open(os.path.join(www, "1k.bin"), "wb") as f:
        f.write(small)
    with open(os.path.join(www, "v2", "index.html"), "w") as f:
        f.write("{}")

    # sha256sum of the file from the page cache
    with open(blob, "rb") as f:
        while f.read(16 * MIB):
            pass
    runs = []
    for _ in range(args.runs):
        t0 = now()
        out = subprocess.run(["sha256sum", blob], capture_output=True, text=True, check=True).stdout
        runs.append(size / (now() - t0) / 1e6)
        if out.split()[0] != blob_digest:
            raise Failure("sha256sum disagrees with hashlib")
    res["sha256sum"] = {"runs": runs, "median": median(runs)}
    log("ceiling sha256sum %d MiB from page cache: %s MB/s" % (args.blob_mib, fmt(median(runs))))
    # coreutils' sha256sum (Debian builds it without OpenSSL) does not use the SHA
    # extensions; OpenSSL does, so hashlib over the page-cached file is the real ceiling
    runs = []
    for _ in range(args.runs):
        with open(blob, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            t0 = now()
            d = hashlib.sha256(m).hexdigest()
            runs.append(size / (now() - t0) / 1e6)
        if d != blob_digest:
            raise Failure("hashlib disagrees with itself")
    res["sha256_openssl"] = {"runs": runs, "median": median(runs)}
    log("ceiling OpenSSL SHA-256 (Python hashlib) %d MiB from page cache: %s MB/s"
        % (args.blob_mib, fmt(median(runs))))

    # write + fsync of a blob-sized file
    runs = []
    chunk = os.urandom(16 * MIB)
    for i in range(args.runs):
        path = os.path.join(tmp, "write-%d.bin" % i)
        t0 = now()
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
            f.flush()
            os.fsync(f.fileno())
        runs.append(size / (now() - t0) / 1e6)
        os.unlink(path)
    res["write_fsync"] = {"runs": runs, "median": median(runs)}
    log("ceiling write+fsync %d MiB: %s MB/s" % (args.blob_mib, fmt(median(runs))))

    # write + fsync + rename of small files, as many threads as regbench's (d)
    runs = []
    sdir = os.path.join(tmp, "small")
    for i in range(args.runs):
        os.makedirs(sdir)
        payload = os.urandom(args.small_kib * 1024)

        def one(k):
            p = os.path.join(sdir, "%d.tmp" % k)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, payload)
            os.fsync(fd)
            os.close(fd)
            os.rename(p, os.path.join(sdir, "%d" % k))
        t0 = now()
        pool(16, range(args.small_count), one)
        runs.append(args.small_count / (now() - t0))
        shutil.rmtree(sdir)
    res["small_files"] = {"runs": runs, "median": median(runs)}
    log("ceiling %d x %d KiB write+fsync+rename, 16 threads: %s /s"
        % (args.small_count, args.small_kib, fmt(median(runs))))

    # nginx, pinned like the registries
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    os.makedirs(os.path.join(tmp, "nginx-tmp"))
    with open(conf, "w") as f:
        f.write("""
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-tmp/body;
    proxy_temp_path {tmp}/nginx-tmp/proxy;
    fastcgi_temp_path {tmp}/nginx-tmp/fastcgi;
    uwsgi_temp_path {tmp}/nginx-tmp/uwsgi;
    scgi_temp_path {tmp}/nginx-tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location = /v2/ {{ default_type application/json; try_files /v2/index.html =404; }}
    }}
}}
""".format(tmp=tmp, port=port, www=www))
    cmd = ["taskset", "-c", str(args.server_cpu), args.nginx_bin, "-e", os.path.join(tmp, "nginx-error.log"),
           "-p", tmp, "-c", conf]
    nlog = os.path.join(tmp, "nginx.log")
    cold = []
    for _ in range(args.runs):
        pr = Proc(cmd, nlog, port)
        cold.append(pr.start_s * 1000.0)
        pr.stop()
        time.sleep(0.3)
    res["nginx_cold_ms"] = {"runs": cold, "median": median(cold)}
    pr = Proc(cmd, nlog, port)
    LIVE.append(pr)
    try:
        time.sleep(0.5)
        res["nginx_rss_idle"] = pr.status().get("VmRSS")
        # blob GET, same client method as regbench (c): read into a preallocated buffer,
        # then hash and compare
        buf = bytearray(size)
        runs = []
        for _ in range(args.runs):
            el, whole = timed_get(port, "/blob.bin", buf, "nginx GET blob")
            if not whole or hashlib.sha256(buf).hexdigest() != blob_digest:
                raise Failure("nginx GET blob: wrong body")
            runs.append(size / el / 1e6)
        del buf
        res["nginx_blob_get"] = {"runs": runs, "median": median(runs)}
        log("ceiling nginx sendfile GET %d MiB: %s MB/s" % (args.blob_mib, fmt(median(runs))))

        cl = Client(port)
        st, _, body = cl.request("GET", "/1k.bin")
        if st != 200 or body != small:
            raise Failure("nginx GET 1k.bin: %d" % st)
        for key, method in (("nginx_get_1k", "GET"), ("nginx_head_1k", "HEAD")):
            rr, pp = [], []
            for _ in range(args.runs):
                rps, p99, _ok = oha("http://127.0.0.1:%d/1k.bin" % port, args.conns, args.duration, method)
                rr.append(rps)
                pp.append(p99)
            res[key] = {"runs": rr, "median": median(rr), "p99": median(pp)}
            log("ceiling nginx %s 1 KiB, oha -c%d: %s req/s, p99 %s ms"
                % (method, args.conns, fmt(median(rr)), fmt(median(pp))))
        # the Python client of regbench (e)/(f) against the same file: its own ceiling
        rb = subprocess.run([sys.executable, args.regbench, "ceiling", "http://127.0.0.1:%d/1k.bin" % port,
                             "--conns", str(args.conns), "--duration", str(args.duration),
                             "--runs", str(args.runs), "--client-cpus", str(args.client_cpu)],
                            capture_output=True, text=True)
        m = re.search(r"median ([\d.]+) req/s", rb.stdout)
        if rb.returncode != 0 or not m:
            raise Failure("regbench ceiling failed: %s %s" % (rb.stdout[-300:], rb.stderr[-300:]))
        res["pyclient_get_1k"] = {"median": float(m.group(1))}
        log("ceiling regbench's Python client vs nginx 1 KiB: %s req/s" % fmt(float(m.group(1))))
        res["nginx_rss_peak"] = pr.status().get("VmHWM")
    finally:
        pr.stop()
        LIVE.remove(pr)
    os.unlink(blob)
    return res


# --------------------------------------------------------------------------
# 2. regbench
# --------------------------------------------------------------------------

def regbench(kind, args, tmp):
    port = free_port()
    data = os.path.join(tmp, "%s-data" % kind)
    os.makedirs(data)
    work = os.path.join(tmp, "regbench-work")
    os.makedirs(work, exist_ok=True)
    jpath = os.path.join(tmp, "%s.json" % kind)
    cmd = [sys.executable, args.regbench, "http://127.0.0.1:%d" % port,
           "--start-cmd", shlex.join(server_cmd(kind, args, port, data, tmp)),
           "--client-cpus", str(args.client_cpu), "--runs", str(args.runs),
           "--blob-mib", str(args.blob_mib), "--small-count", str(args.small_count),
           "--small-kib", str(args.small_kib), "--tags", str(args.tags),
           "--conns", str(args.conns), "--duration", str(args.duration),
           "--tests", args.tests, "--workdir", work, "--json", jpath]
    if args.prewarm_mib:
        cmd += ["--prewarm-mib", str(args.prewarm_mib)]
    log("regbench against %s: %s" % (NAMES[kind], shlex.join(cmd)))
    t0 = now()
    with open(os.path.join(tmp, "%s-regbench.log" % kind), "w") as lf:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            for line in p.stdout:
                lf.write(line)
                print("  [%s] %s" % (kind, line.rstrip()), flush=True)
            p.wait()
        finally:
            if p.poll() is None:
                # SIGINT lets regbench stop the server it started (its own finally)
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    remove_tree(data)
    os.sync()
    if p.returncode != 0 or not os.path.exists(jpath):
        raise Failure("regbench against %s exited %d" % (NAMES[kind], p.returncode))
    with open(jpath) as f:
        out = json.load(f)
    out["seconds"] = now() - t0
    return out


def get_again(kind, args, tmp):
    """Blob GET of a blob that has been read twice already (a popular layer), verified
    byte for byte. regbench's (c) reads each blob right after its upload: berth serves
    that first read from disk with direct I/O and fills the page cache on the second,
    Distribution reads from the page cache its buffered upload filled. This row shows
    both servers reading from the page cache."""
    port = free_port()
    data = os.path.join(tmp, "%s-again" % kind)
    os.makedirs(data)
    pr = Proc(server_cmd(kind, args, port, data, tmp), os.path.join(tmp, "%s-again.log" % kind), port)
    LIVE.append(pr)
    try:
        size = args.blob_mib * MIB
        blob = os.urandom(size)
        repo = "bench/again"
        digest = upload_blob(Client(port), repo, blob)
        buf = bytearray(size)
        runs = []
        warm_up = 2
        for i in range(warm_up + args.runs):
            el, whole = timed_get(port, "/v2/%s/blobs/%s" % (repo, digest), buf, "GET blob again")
            if not whole or buf != blob:
                raise Failure("GET blob again: body differs from what was uploaded")
            if i >= warm_up:
                runs.append(size / el / 1e6)
        log("%s blob GET again: %s MB/s" % (NAMES[kind], " / ".join(fmt(x) for x in runs)))
    finally:
        pr.stop()
        LIVE.remove(pr)
        remove_tree(data)
    return {"key": "c", "label": "blob GET %d MiB read twice before (page cache), verified" % args.blob_mib,
            "unit": "MB/s", "runs": runs, "median": median(runs),
            "server_cpu_pct": float("nan"), "client_cpu_pct": float("nan"), "note": ""}


# --------------------------------------------------------------------------
# 3. sign-ins and memory with authentication on
# --------------------------------------------------------------------------

def basic(user, secret):
    return "Basic " + base64.b64encode(("%s:%s" % (user, secret)).encode()).decode()


def auth_env(admin_password):
    """berth's environment for the auth rows: none of the caller's BERTH_* (BERTH_OPEN
    would turn authentication off, a BERTH_CONFIG could change anything), and the first
    administrator's password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env["BERTH_ADMIN_PASSWORD"] = admin_password
    return env


def rss_of(pr):
    try:
        return pr.status()
    except OSError:
        return {}


def htpasswd_lines(users):
    """bcrypt lines for Distribution's htpasswd file, made by `htpasswd -Bbn` with its
    default cost (what an operator following Distribution's documentation gets)."""
    def one(u):
        p = subprocess.run(["htpasswd", "-Bbn", u[0], u[1]], capture_output=True, text=True)
        line = p.stdout.strip()
        if p.returncode != 0 or not line.startswith(u[0] + ":$2"):
            raise Failure("htpasswd -Bbn %s: %s %s" % (u[0], p.stdout[:100], p.stderr[:200]))
        return line
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        return list(ex.map(one, users))


def sign_ins(port, creds, clients):
    """Each (user, password) signs in once, as `docker login` does: a new connection,
    GET /v2/ with Basic, which must answer 200. Returns sign-ins per second."""
    def one(u):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            c.request("GET", "/v2/", headers={"Authorization": basic(u[0], u[1])})
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        if r.status != 200:
            raise Failure("sign-in of %s: %d %r" % (u[0], r.status, body[:200]))
    t0 = now()
    pool(clients, creds, one)
    return len(creds) / (now() - t0)


def mix_pass(port, auth_header, kind, n_pass, iterations, clients):
    """One pass of a conformance-like mix: `iterations` spread over `clients` threads,
    each iteration a monolithic blob push (POST, PUT ?digest=) and a chunked one (POST,
    2 PATCHes with Content-Range, PUT ?digest=) of 1 KiB-3 MiB (log-uniform: mostly
    small, as layers are), a config blob and an OCI manifest PUT under a tag, GET of one
    blob (compared byte for byte) and HEAD of the other, GET of the manifest by tag,
    tags/list?n=10, _catalog?n=5, and every 5th manifest DELETEd by digest (then GET by
    digest: 404). Basic credentials on every request, as the OCI conformance suite sends
    them (OCI_USERNAME/OCI_PASSWORD). Every response is checked; the first surprise raises.
    Returns the counters of the pass."""
    cl = Client(port, {"Authorization": auth_header})
    lock = threading.Lock()
    tot = {"requests": 0, "bytes_up": 0, "bytes_down": 0, "deleted": 0}

    def req(method, path, body=None, headers=None, want=(200,)):
        st, h, data = cl.request(method, path, body=body, headers=headers)
        if st not in want:
            raise Failure("mix: %s %s: %d %r" % (method, path, st, data[:200]))
        with lock:
            tot["requests"] += 1
            tot["bytes_up"] += len(body or b"")
            tot["bytes_down"] += len(data)
        return h, data

    def session(repo):
        h, _ = req("POST", "/v2/%s/blobs/uploads/" % repo, headers={"Content-Length": "0"}, want=(202,))
        loc = urllib.parse.urlsplit(header(h, "location") or "")
        if not loc.path:
            raise Failure("mix: POST upload to %s: no Location" % repo)
        return loc

    def finish(loc, digest, body=b""):
        pq = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
        h, _ = req("PUT", pq, body=body, headers={"Content-Type": "application/octet-stream"}, want=(201,))
        if header(h, "docker-content-digest") != digest:
            raise Failure("mix: PUT %s: Docker-Content-Digest %r" % (digest, header(h, "docker-content-digest")))

    def monolithic(repo, data):
        digest = sha256_digest(data)
        finish(session(repo), digest, data)
        return digest

    def chunked(repo, data):
        digest = sha256_digest(data)
        loc = session(repo)
        cut = len(data) // 2
        for start, part in ((0, data[:cut]), (cut, data[cut:])):
            end = start + len(part) - 1
            h, _ = req("PATCH", loc.path + ("?" + loc.query if loc.query else ""), body=part,
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Range": "%d-%d" % (start, end)}, want=(202,))
            if header(h, "range") != "0-%d" % end:
                raise Failure("mix: PATCH %d-%d: Range %r" % (start, end, header(h, "range")))
            loc = urllib.parse.urlsplit(header(h, "location") or "")
        finish(loc, digest)
        return digest

    def client(k):
        # the same sizes for both servers
        rng = random.Random("mix-%d-%d" % (n_pass, k))
        for j in range(k, iterations, clients):
            repo = "mix/r%02d" % (j % 12)
            a = os.urandom(int(1024 * 3072 ** rng.random()))
            b = os.urandom(int(1024 * 3072 ** rng.random()))
            ad, bd = monolithic(repo, a), chunked(repo, b)
            cfg = json.dumps({"architecture": "amd64", "os": "linux",
                              "config": {"Labels": {"bench.mix": "%d-%d" % (n_pass, j)}},
                              "rootfs": {"type": "layers", "diff_ids": [ad, bd]}}).encode()
            cd = monolithic(repo, cfg)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cfg)},
                "layers": [{"mediaType": OCI_LAYER, "digest": ad, "size": len(a)},
                           {"mediaType": OCI_LAYER, "digest": bd, "size": len(b)}],
            }, separators=(",", ":")).encode()
            md = sha256_digest(manifest)
            tag = "p%d-%05d" % (n_pass, j)
            h, _ = req("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=manifest,
                       headers={"Content-Type": OCI_MANIFEST}, want=(201,))
            if header(h, "docker-content-digest") != md:
                raise Failure("mix: PUT manifest %s: digest %r" % (tag, header(h, "docker-content-digest")))
            got, other = (a, b) if j % 2 else (b, a)
            _, body = req("GET", "/v2/%s/blobs/%s" % (repo, sha256_digest(got)))
            if body != got:
                raise Failure("mix: GET blob %s: body differs (%d bytes, want %d)"
                              % (sha256_digest(got), len(body), len(got)))
            h, _ = req("HEAD", "/v2/%s/blobs/%s" % (repo, sha256_digest(other)))
            if header(h, "content-length") != str(len(other)):
                raise Failure("mix: HEAD blob: Content-Length %r, want %d" % (header(h, "content-length"), len(other)))
            h, body = req("GET", "/v2/%s/manifests/%s" % (repo, tag), headers={"Accept": OCI_MANIFEST})
            if body != manifest or header(h, "docker-content-digest") != md:
                raise Failure("mix: GET manifest %s: body or digest differs" % tag)
            _, body = req("GET", "/v2/%s/tags/list?n=10" % repo)
            got_tags = json.loads(body)
            # Distribution 2.8.2 ignores n on tags/list (see the growth part)
            if got_tags.get("name") != repo or not isinstance(got_tags.get("tags"), list) or (
                    kind == "berth" and len(got_tags["tags"]) > 10):
                raise Failure("mix: tags/list of %s: %r" % (repo, body[:200]))
            _, body = req("GET", "/v2/_catalog?n=5")
            repos = json.loads(body).get("repositories")
            if not isinstance(repos, list) or len(repos) > 5:
                raise Failure("mix: _catalog?n=5: %r" % body[:200])
            if j % 5 == 0:
                req("DELETE", "/v2/%s/manifests/%s" % (repo, md), want=(202,))
                req("GET", "/v2/%s/manifests/%s" % (repo, md), headers={"Accept": OCI_MANIFEST}, want=(404,))
                with lock:
                    tot["deleted"] += 1

    t0 = now()
    pool(clients, range(clients), client)
    tot["seconds"] = now() - t0
    return tot


def auth_rows(kind, args, tmp):
    """Sign-ins and memory with authentication on. berth with its own accounts (argon2id,
    a verified password remembered for 5 minutes); Distribution with an htpasswd file
    (bcrypt, checked on every request). Users are made first, with the server on
    --seed-cpus (not measured); every part below runs on a server restarted pinned."""
    port = free_port()
    data = os.path.join(tmp, "%s-auth" % kind)
    os.makedirs(data)
    slog = os.path.join(tmp, "%s-auth.log" % kind)
    rnd = lambda: base64.b32encode(os.urandom(10)).decode().lower()
    admin = ("admin", rnd())
    bench = ("bench", rnd())
    # distinct users: --runs batches for the rate row, then --auth-signins for the RSS row
    n_users = args.runs * args.auth_distinct + args.auth_signins
    users = [("u%05d" % i, rnd()) for i in range(n_users)]
    out = {"users": n_users, "errors": []}
    htpasswd = os.path.join(tmp, "htpasswd") if kind == "distribution" else True
    env = auth_env(admin[1]) if kind == "berth" else None

    def start(cpus=None):
        # /v2/ answers 401 without credentials: any answer means it is listening
        pr = Proc(server_cmd(kind, args, port, data, tmp, cpus, htpasswd=htpasswd), slog, port,
                  env=env, ready=(200, 401))
        LIVE.append(pr)
        return pr

    def stop(pr):
        pr.stop()
        LIVE.remove(pr)

    pr = None
    try:
        # ---- users (not measured)
        t0 = now()
        if kind == "berth":
            pr = start(args.seed_cpus)
            cl = Client(port, {"Authorization": basic(*admin)})
            # berth makes `admin` in the background on its first start; a sign-in before
            # that is a failed one, and those are limited (10 a minute): ask slowly
            deadline = now() + 30
            while True:
                st, _, body = cl.request("GET", "/v2/")
                if st == 200:
                    break
                if now() > deadline:
                    raise Failure("admin sign-in: %d %r" % (st, body[:200]))
                time.sleep(0.5)

            def add_user(u):
                st, _, body = cl.request("POST", "/api/v1/users",
                                         json.dumps({"name": u[0], "password": u[1]}).encode(),
                                         {"Content-Type": "application/json"})
                if st != 201:
                    raise Failure("POST /api/v1/users %s: %d %r" % (u[0], st, body[:200]))
            pool(4, [bench] + users, add_user)
            st, _, body = Client(port, {"Authorization": basic(*bench)}).request(
                "POST", "/api/v1/tokens", json.dumps({"scope": "read-write-delete"}).encode(),
                {"Content-Type": "application/json"})
            token = json.loads(body).get("token", "") if st == 201 else ""
            if not token.startswith("berth_pat_"):
                raise Failure("POST /api/v1/tokens: %d %r" % (st, body[:200]))
            stop(pr)
            pr = None
            out["hash"] = "argon2id 19 MiB, 2 passes"
        else:
            token = None
            lines = htpasswd_lines([admin, bench] + users)
            with open(htpasswd, "w") as f:
                f.write("\n".join(lines) + "\n")
            out["hash"] = "bcrypt cost %d (`htpasswd -B`)" % int(lines[0].split("$")[2])
        out["seed_s"] = now() - t0
        log("%s: %d users (and bench, admin) made in %.1f s (%s)" % (NAMES[kind], n_users, out["seed_s"], out["hash"]))

        # Three parts; a failure (a response that fails its check, a server that dies)
        # ends its part, recorded, and the next part goes on with a fresh process.
        def part(what, fn):
            nonlocal pr
            try:
                fn()
            except Exception as e:
                out["errors"].append("%s: %s" % (what, e))
                log("FAILED %s, %s: %s" % (NAMES[kind], what, e))
                if pr is not None:
                    stop(pr)
                    pr = None

        def signins_rss():
            # RSS after --auth-signins distinct password sign-ins, on a fresh process
            nonlocal pr
            pr = start()
            time.sleep(0.5)
            s = {"n": args.auth_signins, "idle": rss_of(pr).get("VmRSS")}
            s["rate"] = sign_ins(port, users[args.runs * args.auth_distinct:], args.auth_clients)
            st = rss_of(pr)
            s["after"], s["hwm"] = st.get("VmRSS"), st.get("VmHWM")
            time.sleep(args.auth_settle)
            s["later"] = rss_of(pr).get("VmRSS")
            out["signins"] = s
            log("%s: %d password sign-ins, %d clients: %s/s; RSS idle %s MiB, right after %s, %d s later %s, "
                "peak %s" % (NAMES[kind], s["n"], args.auth_clients, fmt(s["rate"]), fmt(s["idle"]),
                             fmt(s["after"]), args.auth_settle, fmt(s["later"]), fmt(s["hwm"])))

        def rates():
            # on the same process: distinct sign-ins (each run its own --auth-distinct
            # users), then GET /v2/ under oha with Basic password (berth checks it once,
            # then remembers it) and Basic access token (berth only)
            nonlocal pr
            if pr is None:
                pr = start()
            runs = []
            for r in range(args.runs):
                runs.append(sign_ins(port, users[r * args.auth_distinct:(r + 1) * args.auth_distinct],
                                     args.auth_clients))
            out["distinct"] = {"runs": runs, "median": median(runs)}
            log("%s: %d distinct password sign-ins, %d clients: %s sign-ins/s"
                % (NAMES[kind], args.auth_distinct, args.auth_clients, " / ".join(fmt(x) for x in runs)))
            cl = Client(port)
            for key, secret in (("password", bench[1]), ("token", token)):
                if secret is None:
                    continue
                hdr = (("Authorization", basic(bench[0], secret)),)
                # the first, full check is not part of the row (and would make load()
                # take the password for too slow for oha)
                st, _, body = cl.request("GET", "/v2/", headers=dict(hdr))
                if st != 200:
                    raise Failure("GET /v2/ with Basic %s: %d %r" % (key, st, body[:200]))
                rr, pp = [], []
                for _ in range(args.runs):
                    r = load(cl, "/v2/", args.conns, args.duration, hdr)
                    rr.append(r["rps"])
                    pp.append(r["p99"])
                out[key] = {"runs": rr, "median": median(rr), "p99": median(pp), "how": r["how"]}
                log("%s: GET /v2/ with Basic %s: %s req/s, p99 %s ms (%s)"
                    % (NAMES[kind], key, " / ".join(fmt(x) for x in rr), fmt(median(pp)), r["how"]))
            stop(pr)
            pr = None

        def mix():
            # RSS after a conformance-like mix, twice, on a fresh process
            nonlocal pr
            pr = start()
            time.sleep(0.5)
            m = {"idle": rss_of(pr).get("VmRSS"), "passes": []}
            for n_pass in (1, 2):
                tot = mix_pass(port, basic(*admin), kind, n_pass, args.auth_mix_iterations, args.auth_clients)
                tot["rss"] = rss_of(pr).get("VmRSS")
                m["passes"].append(tot)
                log("%s: mix pass %d: %d requests in %.1f s (%s/s), %.0f MB up, %.0f MB down, %d manifests "
                    "deleted; RSS %s MiB" % (NAMES[kind], n_pass, tot["requests"], tot["seconds"],
                                             fmt(tot["requests"] / tot["seconds"]), tot["bytes_up"] / 1e6,
                                             tot["bytes_down"] / 1e6, tot["deleted"], fmt(tot["rss"])))
            st = rss_of(pr)
            m["after"], m["hwm"] = st.get("VmRSS"), st.get("VmHWM")
            time.sleep(args.auth_settle)
            m["later"] = rss_of(pr).get("VmRSS")
            out["mix"] = m
            log("%s: RSS after the mix %s MiB, %d s later %s, peak %s"
                % (NAMES[kind], fmt(m["after"]), args.auth_settle, fmt(m["later"]), fmt(m["hwm"])))
            stop(pr)
            pr = None

        part("RSS after %d password sign-ins" % args.auth_signins, signins_rss)
        part("sign-in rates", rates)
        part("conformance-like mix", mix)
    finally:
        if pr is not None:
            stop(pr)
        remove_tree(data)
        os.sync()
    return out


# --------------------------------------------------------------------------
# 4. cost as work grows
# --------------------------------------------------------------------------

def growth(kind, args, tmp, last=False):
    """Two stages on one storage: seed the small sizes, measure; seed up to the large
    sizes, measure. Seeding runs with the server on --seed-cpus (it is not what is
    measured); each measurement runs after a restart with the server pinned."""
    small_n = args.growth_small
    tags_n = args.growth_tags if kind == "berth" else min(args.growth_tags, args.dist_growth_tags)
    repos_n = args.growth_repos
    port = free_port()
    if args.growth_dir:
        data = tempfile.mkdtemp(prefix="berth-bench-%s-growth-" % kind, dir=args.growth_dir)
    else:
        data = os.path.join(tmp, "%s-growth" % kind)
        os.makedirs(data)
    used0 = fs_used(data)
    slog = os.path.join(tmp, "%s-growth.log" % kind)
    out = {"sizes": {"tags": [small_n, tags_n], "repos": [small_n, repos_n]}, "seed": {}, "rows": {},
           "start_ms": {}}
    width = max(6, len(str(max(tags_n, repos_n) - 1)))

    def tag(i):
        return "t%0*d" % (width, i)

    def repo_name(i):
        return "bench/r%0*d" % (width, i)

    def start(cpus):
        pr = Proc(server_cmd(kind, args, port, data, tmp, cpus), slog, port)
        LIVE.append(pr)
        return pr

    def stop(pr):
        pr.stop()
        LIVE.remove(pr)

    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1024)
    cfg_d, layer_d = sha256_digest(cfg), sha256_digest(layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_d, "size": len(layer)}],
    }, separators=(",", ":")).encode()
    mdig = sha256_digest(manifest)
    mhdr = {"Content-Type": OCI_MANIFEST}
    acc = (("Accept", OCI_MANIFEST),)
    repos_done = 0
    pr = None
    try:
        for stage, n_tags, n_repos, trepo in (("small", small_n, small_n, "growth/tags-small"),
                                              ("large", tags_n, repos_n, "growth/tags-large")):
            # ---- seed
            pr = start(args.seed_cpus)
            cl = Client(port)
            for repo in (["growth/src"] if stage == "small" else []) + [trepo]:
                upload_blob(cl, repo, cfg)
                upload_blob(cl, repo, layer)
            t0 = now()
            if kind == "berth":
                def put_batch(first, repo=trepo, n=n_tags):
                    last = min(n, first + 100)
                    q = "&".join("tag=" + tag(i) for i in range(first, last))
                    st, h, body = cl.request("PUT", "/v2/%s/manifests/%s?%s" % (repo, mdig, q), manifest, mhdr)
                    if st != 201 or header(h, "docker-content-digest") != mdig:
                        raise Failure("PUT manifest with tags: %d %r" % (st, body[:200]))
                    got = sum(1 for k, _ in h if k == "oci-tag")
                    if got != last - first:
                        raise Failure("PUT manifest with %d tags: %d OCI-Tag headers" % (last - first, got))
                pool(4, range(0, n_tags, 100), put_batch)
                how = "PUT by digest with 100 ?tag= each, 4 clients"
            else:
                def put_tag(i, repo=trepo):
                    st, h, body = cl.request("PUT", "/v2/%s/manifests/%s" % (repo, tag(i)), manifest, mhdr)
                    if st != 201 or header(h, "docker-content-digest") != mdig:
                        raise Failure("PUT manifest by tag: %d %r" % (st, body[:200]))
                pool(16, range(n_tags), put_tag)
                how = "one PUT per tag, 16 clients"
            el = now() - t0
            out["seed"]["tags %d" % n_tags] = {"seconds": el, "rate": n_tags / el, "how": how}
            log("%s: seeded %s tags into %s in %.1f s (%s tags/s, %s)"
                % (NAMES[kind], "{:,}".format(n_tags), trepo, el, fmt(n_tags / el), how))

            def mount(i):
                st, h, body = cl.request("POST", "/v2/%s/blobs/uploads/?mount=%s&from=growth/src"
                                         % (repo_name(i), layer_d), headers={"Content-Length": "0"})
                if st != 201 or header(h, "docker-content-digest") != layer_d:
                    raise Failure("mount into %s: %d %r" % (repo_name(i), st, body[:200]))
            t0 = now()
            pool(16, range(repos_done, n_repos), mount)
            el = now() - t0
            added = n_repos - repos_done
            repos_done = n_repos
            out["seed"]["repos %d" % n_repos] = {"seconds": el, "rate": added / el if el else 0,
                                                 "added": added, "how": "cross-repository mount, 16 clients"}
            log("%s: mounted the layer into %s more repositories in %.1f s (%s/s)"
                % (NAMES[kind], "{:,}".format(added), el, fmt(added / el if el else 0)))
            stop(pr)
            pr = None
            os.sync()

            # ---- restart pinned (cold start with this much stored), then measure
            starts = []
            for i in range(args.runs):
                if pr is not None:
                    stop(pr)
                pr = start(str(args.server_cpu))
                starts.append(pr.start_s * 1000.0)
            out["start_ms"][stage] = median(starts)
            log("%s: cold start with the %s data: %s ms" % (NAMES[kind], stage, fmt(median(starts))))
            cl = Client(port)

            mid = tag(n_tags // 2)
            path = "/v2/%s/manifests/%s" % (trepo, mid)
            for p in (path, "/v2/%s/manifests/%s" % (trepo, tag(0)),
                      "/v2/%s/manifests/%s" % (trepo, tag(n_tags - 1))):
                st, h, body = cl.request("GET", p, headers=dict(acc))
                if st != 200 or body != manifest or header(h, "docker-content-digest") != mdig:
                    raise Failure("GET %s: %d, digest %r" % (p, st, header(h, "docker-content-digest")))
            r = load(cl, path, args.conns, args.growth_duration, acc)
            out["rows"].setdefault("manifest GET by tag", {})[n_tags] = r
            log("%s: manifest GET by tag, %s tags: %s req/s p99 %s ms (%s)"
                % (NAMES[kind], "{:,}".format(n_tags), fmt(r["rps"]), fmt(r["p99"]), r["how"]))

            path = "/v2/%s/tags/list?n=100&last=%s" % (trepo, mid)
            st, h, body = cl.request("GET", path)
            if st != 200:
                raise Failure("GET %s: %d" % (path, st))
            got = json.loads(body).get("tags") or []
            want = [tag(i) for i in range(n_tags // 2 + 1, min(n_tags, n_tags // 2 + 101))]
            if got != want:
                # Distribution 2.8 ignores n and last on tags/list and returns every tag
                if sorted(got) != [tag(i) for i in range(n_tags)]:
                    raise Failure("GET %s: unexpected tags (%d returned)" % (path, len(got)))
            r = load(cl, path, args.conns, args.growth_duration)
            r["entries"], r["bytes"] = len(got), len(body)
            out["rows"].setdefault("tags/list?n=100&last=<middle>", {})[n_tags] = r
            log("%s: tags/list, %s tags: %s req/s p99 %s ms, %d entries returned (%s)"
                % (NAMES[kind], "{:,}".format(n_tags), fmt(r["rps"]), fmt(r["p99"]), len(got), r["how"]))

            path = "/v2/_catalog?n=100&last=%s" % repo_name(n_repos // 2)
            st, h, body = cl.request("GET", path)
            got = json.loads(body).get("repositories") if st == 200 else None
            want = [repo_name(i) for i in range(n_repos // 2 + 1, min(n_repos, n_repos // 2 + 101))]
            if got != want:
                raise Failure("GET %s: %d, %r..." % (path, st, (got or [])[:3]))
            r = load(cl, path, args.conns, args.growth_duration)
            r["entries"], r["bytes"] = len(got), len(body)
            out["rows"].setdefault("_catalog?n=100&last=<middle>", {})[n_repos] = r
            log("%s: _catalog, %s repositories: %s req/s p99 %s ms (%s)"
                % (NAMES[kind], "{:,}".format(n_repos), fmt(r["rps"]), fmt(r["p99"]), r["how"]))
            try:
                out["rss_mib"] = pr.status().get("VmRSS")
            except OSError:
                pass
            stop(pr)
            pr = None
    finally:
        if pr is not None:
            stop(pr)
        # du on Distribution's million entries takes a minute: the file system's used
        # space before and after is close enough (other writers on it would skew it)
        out["disk_mib"] = (fs_used(data) - used0) / MIB
        t0 = now()
        remove_tree(data)
        if not last:    # nothing is measured after the last one: let the kernel flush later
            os.sync()
        log("%s: removed the growth storage in %.1f s" % (NAMES[kind], now() - t0))
    return out


def fs_used(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def remove_tree(path):
    """rm -rf: much faster than shutil.rmtree on Distribution's million small files."""
    if subprocess.run(["rm", "-rf", "--one-file-system", path]).returncode != 0:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# shared by the S3, garbage-collection and PostgreSQL stages
# --------------------------------------------------------------------------

def berth_env():
    """berth's environment for the stages below: none of the caller's BERTH_* (a
    BERTH_STORAGE or BERTH_DATABASE would change what is measured); AWS_* kept: the S3
    endpoint, region and keys, and AWS_CA_BUNDLE as these machines set it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}


def dist_env():
    """Distribution's: no AWS_* (its S3 settings are all in its config file), and no
    AWS_CA_BUNDLE / SSL_CERT_FILE, with which its AWS SDK refuses to start against a
    plain-HTTP endpoint (shared/notes/s3-postgres.md)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "SSL_CERT_FILE"}


class S3Target:
    """The bucket of --s3-url (default $BERTH_TEST_S3) on the endpoint of AWS_ENDPOINT_URL,
    with AWS_REGION and the keys: what scripts/start-garage.sh prints. Each server of each
    run writes under its own prefix, removed afterwards (bench/s3lite.py)."""

    def __init__(self, url):
        m = re.match(r"s3://([a-z0-9.-]{3,63})(/.*)?$", url or "")
        if not m:
            raise Failure("no S3 bucket (--s3-url or BERTH_TEST_S3); scripts/bench.sh starts Garage "
                          "with scripts/start-garage.sh")
        self.bucket = m.group(1)
        base = (m.group(2) or "").strip("/")
        self.base = base + "/" if base else ""
        try:
            self.client = s3lite.S3.from_env()
        except s3lite.S3Error as e:
            raise Failure("S3: %s (scripts/start-garage.sh prints them)" % e)
        self.endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
        self.region = os.environ.get("AWS_REGION") or "us-east-1"
        try:
            self.client.count(self.bucket, self.base + "bench-probe/")
        except (OSError, s3lite.S3Error) as e:
            raise Failure("S3 endpoint %s, bucket %s: %s" % (self.endpoint, self.bucket, e))

    def prefix(self, name):
        return self.base + name

    def url(self, prefix):
        return "s3://%s/%s" % (self.bucket, prefix)

    def dist_storage(self, prefix, redirect=False):
        """Distribution's s3 driver on the same bucket, under /<prefix>. Blob GETs are
        streamed through the registry (as berth does by default) unless `redirect`."""
        q = json.dumps
        return ("  s3:\n"
                "    accesskey: %s\n"
                "    secretkey: %s\n"
                "    region: %s\n"
                "    regionendpoint: %s\n"
                "    bucket: %s\n"
                "    rootdirectory: /%s\n"
                "    forcepathstyle: true\n"
                "    secure: %s\n"
                "    v4auth: true\n"
                "  redirect: {disable: %s}\n"
                % (q(self.client.access_key), q(self.client.secret_key), q(self.region), q(self.endpoint),
                   q(self.bucket), prefix, "true" if self.endpoint.startswith("https:") else "false",
                   "false" if redirect else "true"))

    def clean(self, prefix):
        """Deletes everything under prefix/; returns (objects deleted, uploads aborted)."""
        t0 = now()
        deleted, aborted = self.client.delete_prefix(self.bucket, prefix + "/")
        left = self.client.count(self.bucket, prefix + "/")[0]
        log("S3: removed %s objects under %s (%d multipart uploads aborted) in %.1f s%s"
            % ("{:,}".format(deleted), self.url(prefix), aborted, now() - t0,
               "" if not left else "; %d left!" % left))
        return {"deleted": deleted, "aborted": aborted, "left": left}


class PgScratch:
    """A scratch database on the server of --pg-url (default $BERTH_TEST_POSTGRES; the
    role needs CREATEDB), created for one server and dropped afterwards."""

    def __init__(self, url, name):
        if not url:
            raise Failure("no PostgreSQL (--pg-url or BERTH_TEST_POSTGRES); scripts/bench.sh starts it with "
                          "scripts/start-postgres.sh")
        if not shutil.which("psql"):
            raise Failure("psql not found (postgresql-client)")
        u = urllib.parse.urlsplit(url)
        self.admin_url = url
        self.name = name
        self.url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, ""))
        self.created = False

    def psql(self, sql, url=None):
        """Runs sql on the server's admin database, or in the database of `url`."""
        env = dict(os.environ, PGCONNECT_TIMEOUT="10")
        p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url or self.admin_url, "-c", sql],
                           capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise Failure("psql %r: %s" % (sql, p.stderr.strip()[:300]))
        return p.stdout.strip()

    def create(self):
        self.psql('CREATE DATABASE "%s"' % self.name)
        self.created = True
        self.version = self.psql("SHOW server_version")
        return self

    def size_mib(self):
        try:
            return int(self.psql("SELECT pg_database_size('%s')" % self.name)) / MIB
        except (Failure, ValueError):
            return None

    def drop(self):
        if self.created:
            try:
                self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)
                self.created = False
                log("PostgreSQL: dropped database %s" % self.name)
            except Failure as e:
                log("warning: %s" % e)


def run_measured(cmd, stdout_path, stderr_path, env=None):
    """Runs cmd to its end; returns (seconds, peak RSS in MiB, exit status). The peak
    is GNU time's %M (the kernel's ru_maxrss of the command). Not wait4's of our own
    child: a high-water mark survives exec, so a child forked from this Python process
    would report at least Python's own RSS."""
    rss_path = stdout_path + ".maxrss"
    with open(stdout_path, "wb") as so, open(stderr_path, "ab") as se:
        t0 = now()
        p = subprocess.Popen(["/usr/bin/time", "-o", rss_path, "-f", "%M"] + list(cmd),
                             stdout=so, stderr=se, env=env, start_new_session=True)
        try:
            p.wait()
        except BaseException:
            p.kill()
            p.wait()
            raise
        el = now() - t0
    with open(rss_path) as f:
        lines = [x for x in f.read().split() if x.isdigit()]
    peak = int(lines[-1]) / 1024.0 if lines else None
    return el, peak, p.returncode


def stamp():
    return time.strftime("%Y%m%d-%H%M%S") + "-%d" % os.getpid()


# --------------------------------------------------------------------------
# 5. blob throughput on S3 (Garage), both servers on the same bucket
# --------------------------------------------------------------------------

def s3_throughput(kind, args, tmp, tgt, ts):
    """berth (--storage s3://bucket/bench-berth-<ts>) and Distribution (its s3 driver,
    rootdirectory /bench-dist-<ts>) on the same Garage: monolithic and chunked uploads
    of --s3-blob-mib, blob GET (streamed through the registry on both: Distribution's
    redirect is off), small uploads. Every digest is checked and every body hashed."""
    prefix = tgt.prefix("bench-%s-%s" % ("berth" if kind == "berth" else "dist", ts))
    port = free_port()
    data = os.path.join(tmp, "%s-s3" % kind)
    os.makedirs(data)
    if kind == "berth":
        cmd = server_cmd(kind, args, port, data, tmp, berth_extra=["--storage", tgt.url(prefix), "--gc-interval", "0"])
        env = berth_env()
    else:
        cmd = server_cmd(kind, args, port, data, tmp, dist_storage=tgt.dist_storage(prefix))
        env = dist_env()
    out = {"prefix": tgt.url(prefix), "rows": {}}
    size = args.s3_blob_mib * MIB
    repo = "bench/s3"
    pr = None

    def row(label, unit, runs):
        out["rows"][label] = {"unit": unit, "runs": runs, "median": median(runs)}
        log("%s on S3: %s: %s %s" % (NAMES[kind], label, " / ".join(fmt(x) for x in runs), unit))

    try:
        pr = Proc(cmd, os.path.join(tmp, "%s-s3.log" % kind), port, env=env)
        LIVE.append(pr)
        out["start_ms"] = pr.start_s * 1000.0
        cl = Client(port)
        upload_blob(cl, repo, os.urandom(size))     # warm-up, not measured
        digests, runs = [], []
        for _ in range(args.runs):
            blob = os.urandom(size)
            t0 = now()
            digests.append(upload_blob(cl, repo, blob))
            runs.append(size / (now() - t0) / 1e6)
        row("monolithic upload of %d MiB (POST, PUT ?digest= with the body)" % args.s3_blob_mib, "MB/s", runs)

        n = max(1, args.s3_chunks)
        step = -(-size // n)
        runs = []
        for _ in range(args.runs):
            blob = os.urandom(size)
            digest = sha256_digest(blob)
            parts = [memoryview(blob)[i:i + step] for i in range(0, size, step)]
            t0 = now()
            st, h, body = cl.request("POST", "/v2/%s/blobs/uploads/" % repo, headers={"Content-Length": "0"})
            if st != 202:
                raise Failure("POST upload: %d %r" % (st, body[:200]))
            loc = urllib.parse.urlsplit(header(h, "location") or "")
            at = 0
            for part in parts:
                end = at + len(part) - 1
                st, h, body = cl.request("PATCH", loc.path + ("?" + loc.query if loc.query else ""), body=part,
                                         headers={"Content-Type": "application/octet-stream",
                                                  "Content-Range": "%d-%d" % (at, end)})
                if st != 202 or header(h, "range") != "0-%d" % end:
                    raise Failure("PATCH %d-%d: %d, Range %r %r" % (at, end, st, header(h, "range"), body[:200]))
                loc = urllib.parse.urlsplit(header(h, "location") or "")
                at = end + 1
            pq = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
            st, h, body = cl.request("PUT", pq, headers={"Content-Length": "0"})
            if st != 201 or header(h, "docker-content-digest") != digest:
                raise Failure("PUT after chunks: %d %r" % (st, body[:200]))
            runs.append(size / (now() - t0) / 1e6)
            del parts
        row("chunked upload of %d MiB (POST, %d PATCHes of %d MiB, PUT ?digest=)"
            % (args.s3_blob_mib, n, step // MIB), "MB/s", runs)

        buf = bytearray(size)
        runs = []
        for d in digests:
            el, whole = timed_get(port, "/v2/%s/blobs/%s" % (repo, d), buf, "GET blob")
            if not whole or sha256_digest(buf) != d:
                raise Failure("GET blob %s: body differs from what was uploaded" % d)
            runs.append(size / el / 1e6)
        del buf
        row("blob GET of %d MiB (streamed by the registry), verified" % args.s3_blob_mib, "MB/s", runs)

        if args.s3_small_count:
            runs = []
            for _ in range(args.runs):
                blobs = [os.urandom(args.small_kib * 1024) for _ in range(args.s3_small_count)]
                t0 = now()
                pool(16, blobs, lambda b: upload_blob(cl, repo, b))
                runs.append(len(blobs) / (now() - t0))
            row("%d × %d KiB uploads (POST, PUT), 16 connections" % (args.s3_small_count, args.small_kib),
                "uploads/s", runs)
        st = rss_of(pr)
        out["rss"], out["hwm"] = st.get("VmRSS"), st.get("VmHWM")
    finally:
        if pr is not None:
            pr.stop()
            LIVE.remove(pr)
        remove_tree(data)
        try:
            out["cleaned"] = tgt.clean(prefix)
        except (OSError, s3lite.S3Error) as e:
            log("warning: S3 clean-up of %s: %s" % (tgt.url(prefix), e))
    return out


# --------------------------------------------------------------------------
# 6. garbage collection over many blobs
# --------------------------------------------------------------------------

def gc_stage(kind, backend, args, tmp, ts, tgt=None, pgurl=None):
    """Fill a fresh registry with --gc-blobs tiny distinct blobs (--gc-blob-bytes each,
    in --gc-repos repositories): half used by manifests that stay tagged (--gc-per-manifest
    blobs each, a config and layers), a quarter used only by manifests pushed and then
    DELETEd, a quarter uploaded and never used by any manifest. Then stop the server
    and, pinned to --server-cpu, run the collector: a dry run, the real pass, and a
    second pass with nothing left to remove; wall time and peak RSS of each. Finally
    restart the server and check a sample: what is kept still reads back byte for byte,
    what went is 404.

    berth: `berth gc --grace 0s --gc-push-window 0s --json` (the push window is what keeps
    blobs uploaded without a manifest for an hour) with the server's --data-dir,
    --storage and --database; backend "fs" is the embedded default (files and SQLite),
    "s3" is S3 (Garage) and PostgreSQL. Distribution: `docker-registry garbage-collect
    config.yml` on its filesystem driver, which must run with the registry stopped
    (berth's runs beside serving nodes)."""
    n_blobs = args.gc_blobs if backend == "fs" else (args.gc_s3_blobs or args.gc_blobs)
    per = args.gc_per_manifest
    kept_m = n_blobs // 2 // per
    unref = n_blobs - kept_m * per
    deleted_m = unref // 2 // per
    loose = unref - deleted_m * per
    tag = "%s-%s" % (kind, backend)
    port = free_port()
    if args.gc_dir:
        data = tempfile.mkdtemp(prefix="berth-bench-gc-%s-" % tag, dir=args.gc_dir)
    else:
        data = os.path.join(tmp, "gc-%s" % tag)
        os.makedirs(data)
    used0 = fs_used(data)
    slog = os.path.join(tmp, "gc-%s.log" % tag)
    out = {"backend": backend, "blobs": n_blobs, "kept_manifests": kept_m, "deleted_manifests": deleted_m,
           "loose_blobs": loose, "per_manifest": per, "repos": args.gc_repos, "runs": {}}
    extra, env, prefix, pg = [], None, None, None
    if kind == "berth":
        env = berth_env()
        extra = ["--gc-interval", "0"]
        if backend == "s3":
            prefix = tgt.prefix("bench-gc-berth-%s" % ts)
            pg = PgScratch(pgurl, "berth_bench_gc_%s" % ts.replace("-", "_")).create()
            extra += ["--storage", tgt.url(prefix), "--database", pg.url]
            out["where"] = "%s, PostgreSQL %s database %s" % (tgt.url(prefix), pg.version, pg.name)
    else:
        env = dist_env()
    out.setdefault("where", "files under %s" % data + ("" if kind != "berth" else ", SQLite in it"))

    def start(cpus):
        pr = Proc(server_cmd(kind, args, port, data, tmp, cpus, berth_extra=extra), slog, port, env=env)
        LIVE.append(pr)
        return pr

    def stop(pr):
        pr.stop()
        LIVE.remove(pr)

    def content(j, k):
        seed = ("%s/%d/%d" % (ts, j, k)).encode()
        if k == 0:   # the config: a small JSON object
            body = b'{"bench":"' + hashlib.shake_128(seed).hexdigest(24).encode() + b'"}'
            return body + b" " * max(0, args.gc_blob_bytes - len(body))
        return hashlib.shake_128(seed).digest(args.gc_blob_bytes)

    def manifest_of(j):
        blobs = [content(j, k) for k in range(per)]
        m = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(blobs[0]), "size": len(blobs[0])},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256_digest(b), "size": len(b)} for b in blobs[1:]],
        }, separators=(",", ":")).encode()
        return blobs, m

    # jobs: (what, j); j numbers the manifest (or the group of loose blobs)
    jobs = ([("kept", j) for j in range(kept_m)] + [("deleted", kept_m + j) for j in range(deleted_m)]
            + [("loose", kept_m + deleted_m + j) for j in range(-(-loose // per))])
    random.Random(ts).shuffle(jobs)
    first_loose = kept_m + deleted_m

    def repo_of(j):
        return "gc/r%03d" % (j % args.gc_repos)

    counts = {"requests": 0}
    lock = threading.Lock()
    pr = None
    try:
        # ---- fill (not measured), the server on --seed-cpus
        pr = start(args.seed_cpus)
        cl = Client(port)
        # berth takes a whole blob in one POST ?digest=; Distribution 2.8 needs POST then PUT
        single = kind == "berth"

        def put_blob(repo, b):
            d = sha256_digest(b)
            if single:
                st, h, body = cl.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), body=b,
                                         headers={"Content-Type": "application/octet-stream"})
                if st != 201 or header(h, "docker-content-digest") != d:
                    raise Failure("POST ?digest= to %s: %d %r" % (repo, st, body[:200]))
                return 1
            upload_blob(cl, repo, b)
            return 2

        def job(jb):
            what, j = jb
            repo = repo_of(j)
            reqs = 0
            if what == "loose":
                lo = (j - first_loose) * per
                for k in range(min(per, loose - lo)):
                    reqs += put_blob(repo, content(j, k))
            else:
                blobs, m = manifest_of(j)
                for b in blobs:
                    reqs += put_blob(repo, b)
                md = sha256_digest(m)
                st, h, body = cl.request("PUT", "/v2/%s/manifests/m%06d" % (repo, j), m,
                                         {"Content-Type": OCI_MANIFEST})
                if st != 201 or header(h, "docker-content-digest") != md:
                    raise Failure("PUT manifest m%06d: %d %r" % (j, st, body[:200]))
                reqs += 1
                if what == "deleted":
                    st, _, body = cl.request("DELETE", "/v2/%s/manifests/%s" % (repo, md))
                    if st != 202:
                        raise Failure("DELETE manifest %s: %d %r" % (md, st, body[:200]))
                    reqs += 1
            with lock:
                counts["requests"] += reqs

        t0 = now()
        with_progress = len(jobs) > 2000
        done_at = [0, t0]

        def job_logged(jb):
            job(jb)
            if with_progress:
                with lock:
                    done_at[0] += 1
                    if done_at[0] % 2000 == 0 and now() - done_at[1] > 15:
                        done_at[1] = now()
                        log("%s (%s): %d of %d manifests/groups pushed, %.0f s" % (
                            NAMES[kind], backend, done_at[0], len(jobs), now() - t0))
        pool(args.gc_clients, jobs, job_logged)
        out["fill_s"] = now() - t0
        out["fill_requests"] = counts["requests"]
        log("%s (%s): filled %s blobs (%d kept manifests, %d deleted, %s loose blobs) in %.1f s, "
            "%s requests (%s/s, %d clients, server on CPUs %s)"
            % (NAMES[kind], backend, "{:,}".format(n_blobs), kept_m, deleted_m, "{:,}".format(loose),
               out["fill_s"], "{:,}".format(counts["requests"]), fmt(counts["requests"] / out["fill_s"]),
               args.gc_clients, args.seed_cpus))
        out["rss_after_fill"] = rss_of(pr).get("VmRSS")
        stop(pr)
        pr = None
        os.sync()
        out["disk_mib"] = (fs_used(data) - used0) / MIB
        if pg is not None:
            out["db_mib"] = pg.size_mib()
        if prefix is not None:
            out["s3_objects"] = tgt.client.count(tgt.bucket, prefix + "/")

        # ---- collect, pinned, server stopped
        pin = ["taskset", "-c", str(args.server_cpu)]
        if kind == "berth":
            base = pin + [args.berth_bin, "gc", "--data-dir", data, "--grace", "0s", "--gc-push-window", "0s",
                          "--json"] + extra
        else:
            cfg = server_cmd(kind, args, port, data, tmp)[-1]
            base = pin + [args.dist_bin, "garbage-collect", cfg]
        for step, cmd in (("dry run", base[:-1] + ["--dry-run", base[-1]] if kind != "berth" else base + ["--dry-run"]),
                          ("collect", base), ("again, nothing left", base)):
            so = os.path.join(tmp, "gc-%s-%s.out" % (tag, step.split()[0].strip(",")))
            el, peak, rc = run_measured(cmd, so, slog, env=env)
            with open(so, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if rc != 0:
                raise Failure("%s: exit %d: %s" % (shlex.join(cmd), rc, text[-500:]))
            r = {"seconds": el, "peak_mib": peak, "command": shlex.join(cmd[len(pin):])}
            if kind == "berth":
                try:
                    r["report"] = json.loads(text.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    raise Failure("berth gc --json printed %r" % text[-300:])
                r["removed"] = r["report"].get("blobs")
            else:
                # "N blobs marked, M blobs and K manifests eligible for deletion"
                m = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion", text)
                if not m:
                    raise Failure("garbage-collect printed no summary: %r" % text[-300:])
                r["marked"], r["removed"], r["manifests"] = (int(x) for x in m.groups())
            out["runs"][step] = r
            log("%s (%s) gc %s: %.2f s, peak RSS %s MiB, %s blobs %s"
                % (NAMES[kind], backend, step, el, fmt(peak), "{:,}".format(r["removed"] or 0),
                   "would go" if step == "dry run" else "removed"))
        want = unref
        got = out["runs"]["collect"]["removed"]
        # Distribution's manifests are blobs too: those of the deleted manifests go with them
        if kind != "berth":
            want += deleted_m
        if got != want:
            out["surprise"] = "the pass removed %s blobs, expected %s" % (got, want)
            log("warning: %s (%s): %s" % (NAMES[kind], backend, out["surprise"]))
        if out["runs"]["again, nothing left"]["removed"]:
            out.setdefault("surprise", "")
            out["surprise"] += "; the second pass removed %s more" % out["runs"]["again, nothing left"]["removed"]
        os.sync()
        out["disk_after_mib"] = (fs_used(data) - used0) / MIB
        if prefix is not None:
            out["s3_objects_after"] = tgt.client.count(tgt.bucket, prefix + "/")

        # ---- check a sample through the restarted server
        pr = start(args.seed_cpus)
        cl = Client(port)
        rng = random.Random(1)
        sample = rng.sample(jobs, min(300, len(jobs)))
        bad = []
        for what, j in sample:
            repo = repo_of(j)
            if what == "loose":
                lo = (j - first_loose) * per
                blobs, m = [content(j, k) for k in range(min(per, loose - lo))], None
            else:
                blobs, m = manifest_of(j)
            for b in blobs[:3]:
                st, _, body = cl.request("GET", "/v2/%s/blobs/%s" % (repo, sha256_digest(b)))
                if what == "kept" and (st != 200 or body != b):
                    bad.append("kept blob in %s: %d" % (repo, st))
                if what != "kept" and st != 404:
                    bad.append("%s blob in %s: %d, want 404" % (what, repo, st))
            if m is not None:
                st, _, body = cl.request("GET", "/v2/%s/manifests/m%06d" % (repo, j), headers={"Accept": OCI_MANIFEST})
                if (what == "kept") != (st == 200 and body == m):
                    bad.append("%s manifest m%06d: %d" % (what, j, st))
        out["checked"] = len(sample)
        if bad:
            raise Failure("after collection, %d of the sampled checks failed, first: %s" % (len(bad), bad[:3]))
        log("%s (%s): after collection, %d sampled manifests/groups read back as expected"
            % (NAMES[kind], backend, len(sample)))
        stop(pr)
        pr = None
    finally:
        if pr is not None:
            stop(pr)
        t0 = now()
        remove_tree(data)
        os.sync()
        log("%s (%s): removed the data in %.1f s" % (NAMES[kind], backend, now() - t0))
        if prefix is not None:
            try:
                out["cleaned"] = tgt.clean(prefix)
            except (OSError, s3lite.S3Error) as e:
                log("warning: S3 clean-up of %s: %s" % (tgt.url(prefix), e))
        if pg is not None:
            pg.drop()
    return out


# --------------------------------------------------------------------------
# 7. catalog and tag pages on PostgreSQL
# --------------------------------------------------------------------------

def pg_listings(args, tmp, pgurl, ts):
    """berth on PostgreSQL (a scratch database, dropped afterwards; blobs in files): one
    repository with --pg-small tags and --pg-small repositories, measured; then the same
    grown to --pg-large tags in that repository and --pg-large repositories, measured
    again. Each time: _catalog?n=100 and tags/list?n=100, the first page and the page
    after the middle entry (last=), under oha with the server restarted pinned. Filled
    through the API only: tags by PUT of the manifest with 100 ?tag= each, repositories
    by cross-repository mounts (each creates the repository)."""
    small, large = args.pg_small, args.pg_large
    pg = PgScratch(pgurl, "berth_bench_list_%s" % ts.replace("-", "_")).create()
    port = free_port()
    data = os.path.join(tmp, "pg-listings")
    os.makedirs(data)
    slog = os.path.join(tmp, "pg-listings.log")
    extra = ["--database", pg.url, "--gc-interval", "0"]
    out = {"sizes": [small, large], "rows": {}, "seed": {}, "start_ms": {}, "postgres": pg.version,
           "database": pg.name}
    width = max(6, len(str(large - 1)))
    repo_name = lambda i: "bench/r%0*d" % (width, i)  # a bare name would be library/…
    tag = lambda i: "t%0*d" % (width, i)
    trepo = repo_name(0)   # the tag repository is the first of the catalog, and the mount source

    def start(cpus):
        pr = Proc(server_cmd("berth", args, port, data, tmp, cpus, berth_extra=extra), slog, port, env=berth_env())
        LIVE.append(pr)
        return pr

    def stop(pr):
        pr.stop()
        LIVE.remove(pr)

    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1024)
    cfg_d, layer_d = sha256_digest(cfg), sha256_digest(layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_d, "size": len(layer)}],
    }, separators=(",", ":")).encode()
    mdig = sha256_digest(manifest)
    done_tags = done_repos = 0
    pr = None
    try:
        for stage, n in (("small", small), ("large", large)):
            pr = start(args.seed_cpus)
            cl = Client(port)
            if stage == "small":
                upload_blob(cl, trepo, cfg)
                upload_blob(cl, trepo, layer)
                done_repos = 1

            def put_batch(first, n=n):
                last = min(n, first + 100)
                q = "&".join("tag=" + tag(i) for i in range(first, last))
                st, h, body = cl.request("PUT", "/v2/%s/manifests/%s?%s" % (trepo, mdig, q), manifest,
                                         {"Content-Type": OCI_MANIFEST})
                if st != 201 or header(h, "docker-content-digest") != mdig:
                    raise Failure("PUT manifest with tags: %d %r" % (st, body[:200]))
            t0 = now()
            pool(4, range(done_tags, n, 100), put_batch)
            el = now() - t0
            out["seed"]["tags to %d" % n] = {"seconds": el, "added": n - done_tags}
            log("berth on PostgreSQL: %s more tags in %.1f s (%s/s; 100 per PUT, 4 clients)"
                % ("{:,}".format(n - done_tags), el, fmt((n - done_tags) / el)))
            done_tags = n

            def mount(i):
                st, h, body = cl.request("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s"
                                         % (repo_name(i), layer_d, trepo), headers={"Content-Length": "0"})
                if st != 201 or header(h, "docker-content-digest") != layer_d:
                    raise Failure("mount into %s: %d %r" % (repo_name(i), st, body[:200]))
            t0 = now()
            pool(16, range(done_repos, n), mount)
            el = now() - t0
            out["seed"]["repos to %d" % n] = {"seconds": el, "added": n - done_repos}
            log("berth on PostgreSQL: %s more repositories in %.1f s (%s/s; mounts, 16 clients)"
                % ("{:,}".format(n - done_repos), el, fmt((n - done_repos) / el if el else 0)))
            done_repos = n
            stop(pr)
            pr = None
            # What autovacuum would do after a bulk fill, done now rather than while the
            # pages are measured (it would otherwise run in the middle of them).
            t0 = now()
            pg.psql("VACUUM ANALYZE", pg.url)
            log("PostgreSQL: VACUUM ANALYZE after the fill in %.1f s" % (now() - t0))

            # ---- restart pinned, check exact pages, measure
            starts = []
            for _ in range(args.runs):
                if pr is not None:
                    stop(pr)
                pr = start(str(args.server_cpu))
                starts.append(pr.start_s * 1000.0)
            out["start_ms"][stage] = median(starts)
            cl = Client(port)
            cells = (
                ("_catalog?n=100, first page", "/v2/_catalog?n=100", "repositories",
                 [repo_name(i) for i in range(min(n, 100))]),
                ("_catalog?n=100&last=<middle>", "/v2/_catalog?n=100&last=%s" % repo_name(n // 2), "repositories",
                 [repo_name(i) for i in range(n // 2 + 1, min(n, n // 2 + 101))]),
                ("tags/list?n=100, first page", "/v2/%s/tags/list?n=100" % trepo, "tags",
                 [tag(i) for i in range(min(n, 100))]),
                ("tags/list?n=100&last=<middle>", "/v2/%s/tags/list?n=100&last=%s" % (trepo, tag(n // 2)), "tags",
                 [tag(i) for i in range(n // 2 + 1, min(n, n // 2 + 101))]),
            )
            for label, path, key, want in cells:
                st, h, body = cl.request("GET", path)
                got = json.loads(body).get(key) if st == 200 else None
                if got != want:
                    raise Failure("GET %s: %d, %d entries, want %d (%r...)" % (path, st, len(got or []), len(want),
                                                                               (got or [])[:3]))
                # a Link when more follow; none on a page that is not full (a full last page may have one)
                more = want and want[-1] != (repo_name(n - 1) if key == "repositories" else tag(n - 1))
                if (more and not header(h, "link")) or (len(want) < 100 and header(h, "link")):
                    raise Failure("GET %s: Link %r with %d entries" % (path, header(h, "link"), len(want)))
                r = load(cl, path, args.conns, args.growth_duration)
                r["entries"] = len(got)
                out["rows"].setdefault(label, {})[n] = r
                log("berth on PostgreSQL, %s %s: %s: %s req/s, p99 %s ms (%s)"
                    % ("{:,}".format(n), key, label, fmt(r["rps"]), fmt(r["p99"]), r["how"]))
            out["rss_mib"] = rss_of(pr).get("VmRSS")
            stop(pr)
            pr = None
            out.setdefault("db_mib", {})[stage] = pg.size_mib()
    finally:
        if pr is not None:
            stop(pr)
        remove_tree(data)
        pg.drop()
    return out


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# 8. tags and trust: manifest PUTs under tag policies, berth lint
# --------------------------------------------------------------------------

def trust_stage(kind, args, tmp):
    """Manifest PUTs (--trust-puts, 16 connections, medians of --runs) with no policy;
    for berth also with `floating-tags semver` (each PUT a new release X.Y.Z, which reads
    the repository's tags and moves up to three floats in the same transaction) and
    with `require-golden-base enforce` against --trust-golden golden images (each PUT
    compared with the layers of all of them). Policies and golden images are set with
    the CLI on the server's own data dir. The peer is Distribution's plain manifest PUT:
    it has neither feature. Then, for berth, `berth lint` over the berth-lint corpus."""
    port = free_port()
    data = os.path.join(tmp, "%s-trust" % kind)
    os.makedirs(data)
    slog = os.path.join(tmp, "%s-trust.log" % kind)
    env = berth_env() if kind == "berth" else dist_env()
    pr = Proc(server_cmd(kind, args, port, data, tmp), slog, port, env=env)
    LIVE.append(pr)
    out = {"rows": {}}
    cl = Client(port)
    n = args.trust_puts

    def cli(*words):
        p = subprocess.run([args.berth_bin] + list(words) + ["--data-dir", data], capture_output=True,
                           text=True, env=berth_env(), timeout=60)
        if p.returncode != 0:
            raise Failure("berth %s: %s" % (" ".join(words), p.stderr.strip()[:300]))

    def blob(repo, data_):
        return {"mediaType": OCI_LAYER, "digest": upload_blob(cl, repo, data_), "size": len(data_)}

    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()

    def manifest(layers, note):
        return json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(cfg), "size": len(cfg)},
            "layers": layers, "annotations": {"bench": note},
        }, separators=(",", ":")).encode()

    def measure(label, repo, layers, tag_of):
        upload_blob(cl, repo, cfg)
        rates = []
        for run in range(args.runs):
            bodies = [(tag_of(run, i), manifest(layers, "%s %d %d" % (label, run, i))) for i in range(n)]

            def put(job):
                tag, body = job
                st, h, resp = cl.request("PUT", "/v2/%s/manifests/%s" % (repo, tag), body,
                                         {"Content-Type": OCI_MANIFEST})
                if st != 201:
                    raise Failure("%s: PUT %s:%s: %d %r" % (label, repo, tag, st, resp[:300]))
            t0 = now()
            pool(16, bodies, put)
            rates.append(n / (now() - t0))
        out["rows"][label] = {"runs": rates, "median": median(rates)}
        log("%s %s: %s manifest PUTs/s" % (NAMES[kind], label, " / ".join(fmt(r) for r in rates)))

    try:
        own = os.urandom(64)
        measure("plain", "trust/plain", [blob("trust/plain", own)], lambda run, i: "r%d-%d" % (run, i))
        if kind == "berth":
            cli("policy", "set", "floats", "floating-tags", "semver")
            measure("floating-tags semver", "floats/app", [blob("floats/app", own)],
                    lambda run, i: "%d.%d.%d" % (run + 1, i % 10, i // 10))
            golden_layers = []
            for g in range(args.trust_golden):
                layers = [blob("golden/base", os.urandom(64)) for _ in range(2)]
                upload_blob(cl, "golden/base", cfg)
                st, h, resp = cl.request("PUT", "/v2/golden/base/manifests/%d.0" % g, manifest(layers, "golden %d" % g),
                                         {"Content-Type": OCI_MANIFEST})
                if st != 201:
                    raise Failure("golden %d: %d %r" % (g, st, resp[:200]))
                golden_layers.append(layers)
            cli("golden", "add", "golden/base")
            cli("policy", "set", "gold", "require-golden-base", "enforce")
            # Built on the last golden image: every check compares with all of them.
            base = golden_layers[-1]
            for d in base:
                st, h, resp = cl.request("POST", "/v2/gold/app/blobs/uploads/?mount=%s&from=golden/base" % d["digest"],
                                         headers={"Content-Length": "0"})
                if st != 201:
                    raise Failure("mount %s: %d" % (d["digest"], st))
            measure("require-golden-base enforce, %d golden images" % args.trust_golden, "gold/app",
                    base + [blob("gold/app", own)], lambda run, i: "r%d-%d" % (run, i))
            st, h, resp = cl.request("PUT", "/v2/gold/app/manifests/stray", manifest([blob("gold/app", os.urandom(64))], "x"),
                                     {"Content-Type": OCI_MANIFEST})
            if st != 403:
                raise Failure("an image on no golden base was not refused: %d" % st)
            corpus = sorted(glob.glob(os.path.join(ROOT, "crates", "berth-lint", "tests", "corpus", "*.Dockerfile")))
            times = []
            for run in range(args.runs):
                t0 = now()
                p = subprocess.run([args.berth_bin, "lint"] + corpus, capture_output=True, env=berth_env())
                times.append(now() - t0)
                if p.returncode not in (0, 1, 2):
                    raise Failure("berth lint: exit %d" % p.returncode)
            out["lint"] = {"files": len(corpus), "runs": times, "median_ms": median(times) * 1000}
            log("berth lint over %d Dockerfiles: %s ms" % (len(corpus), " / ".join(fmt(t * 1000) for t in times)))
    finally:
        pr.stop()
        LIVE.remove(pr)
    return out


# --------------------------------------------------------------------------
# 9. the web site and search at --web-repos repositories
# --------------------------------------------------------------------------

WEB_WORDS = ("alpha beta gamma delta web api ui gallery node python rust golang java base tools ci "
             "build cache proxy postgres redis nginx worker queue auth billing search shop mail").split()


def web_stage(args, tmp):
    """berth's web pages, `docker search` (/v1/search) and /api/v1/search on its
    embedded default (SQLite) holding --web-repos repositories in 1,000 namespaces (one
    in ten private; descriptions of a few words; 50 official images and 5 verified
    namespaces). The repository rows are written with Python's sqlite3 into the schema
    berth created (the server stopped; the search index follows by its triggers): pushing
    100,000 images through the API would take minutes and measure pushes. Then real
    images are pushed through the API to the repository whose pages are measured. Each
    page: its server time (p99 and median at 1 connection: nothing queues) and its rate
    at --conns connections, server pinned; its weight (HTML + style sheet + script,
    uncompressed). Distribution has no web site or search to compare with."""
    import random
    import sqlite3
    n = args.web_repos
    port = free_port()
    data = os.path.join(tmp, "web")
    os.makedirs(data)
    slog = os.path.join(tmp, "web.log")
    password = "bench-admin-password"
    extra = ["--gc-interval", "0"]

    def start(cpus):
        pr = Proc(server_cmd("berth", args, port, data, tmp, cpus, htpasswd="accounts", berth_extra=extra),
                  slog, port, env=auth_env(password), ready=(200, 401))
        LIVE.append(pr)
        return pr

    def stop(pr):
        pr.stop()
        LIVE.remove(pr)

    out = {"repositories": n, "rows": {}, "weights": {}}
    pr = start(args.seed_cpus)   # creates the schema
    stop(pr)
    rnd = random.Random(7)
    t0 = now()
    db = sqlite3.connect(os.path.join(data, "berth.db"))
    stamp_now = int(time.time())
    rows = []
    for i in range(n):
        ns = "library" if i < 50 else "team%03d" % (i % 1000)
        name = "%s/%s-%s-%d" % (ns, rnd.choice(WEB_WORDS), rnd.choice(WEB_WORDS), i)
        desc = "The %s %s for %s builds, version %d" % (rnd.choice(WEB_WORDS), rnd.choice(WEB_WORDS),
                                                       rnd.choice(WEB_WORDS), i)
        public = 0 if i % 10 == 9 else 1
        rows.append((name, stamp_now - n + i, public, desc, stamp_now - n + i))
    with db:
        db.executemany("INSERT INTO repositories (name, created_at, public, description, pushed_at) "
                       "VALUES (?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO namespace_marks (namespace, mark) VALUES (?, 'verified')",
                       [("team%03d" % k,) for k in range(5)])
    db.close()
    out["fill_s"] = now() - t0
    log("web: %s repositories written in %.1f s" % ("{:,}".format(n), out["fill_s"]))

    # Real images in one repository: 20 tags over 10 manifests, each with a config and 2 layers.
    pr = start(args.seed_cpus)
    auth = {"Authorization": basic("admin", password)}
    cl = Client(port, headers=auth)
    repo = "gallery/ui"
    for k in range(10):
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                          "history": [{"created_by": "RUN step %d" % j} for j in range(8)], "seed": k}).encode()
        layers = [os.urandom(2048) for _ in range(2)]
        for blob in [cfg] + layers:
            upload_blob(cl, repo, blob)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(cfg), "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256_digest(l), "size": len(l)} for l in layers],
        }, separators=(",", ":")).encode()
        for tag in ("1.%d.0" % k, "1.%d" % k):
            st, h, body = cl.request("PUT", "/v2/%s/manifests/%s" % (repo, tag), manifest,
                                     {"Content-Type": OCI_MANIFEST})
            if st != 201:
                raise Failure("PUT %s:%s: %d %r" % (repo, tag, st, body[:200]))
    stop(pr)

    pr = start(str(args.server_cpu))
    try:
        cl = Client(port)
        assets = 0
        for path in ("/static/berth.css", "/static/berth.js"):
            st, h, body = cl.request("GET", path)
            if st != 200:
                raise Failure("GET %s: %d" % (path, st))
            assets += len(body)
        common = "gallery"   # in about one name or description in ten: more than search ranks
        cells = (
            ("home page", "/"),
            ("search, a common word (1,000+ matches)", "/search?q=%s" % common),
            ("search, a rare term (a handful)", "/search?q=version+4242"),
            ("search, two letters (the start of a word)", "/search?q=zq"),
            ("search, official filter", "/search?q=%s&official=on" % common),
            ("namespace page (100 repositories)", "/u/team042"),
            ("repository page (20 tags)", "/r/%s" % repo),
            ("tag page", "/r/%s/-/tags/1.4.0" % repo),
            ("sign-in page", "/signin"),
            ("docker search (/v1/search)", "/v1/search?q=%s&n=25" % common),
            ("/api/v1/search", "/api/v1/search?q=%s" % common),
        )
        for label, path in cells:
            st, h, body = cl.request("GET", path)
            if st != 200:
                raise Failure("GET %s: %d %r" % (path, st, body[:200]))
            html = header(h, "content-type").startswith("text/html")
            weight = len(body) + (assets if html else 0)
            one = load(cl, path, 1, args.growth_duration)
            many = load(cl, path, args.conns, args.growth_duration)
            # the median at one connection: oha's JSON has it, load() keeps p99 only
            out["rows"][label] = {"path": path, "p99_1": one["p99"], "rps_1": one["rps"],
                                  "rps": many["rps"], "p99": many["p99"], "how": many["how"],
                                  "bytes": weight, "html": html}
            log("web: %s: p99 %s ms alone, %s req/s at %d connections; %s bytes"
                % (label, fmt(one["p99"]), fmt(many["rps"]), args.conns, "{:,}".format(weight)))
        out["rss_mib"] = rss_of(pr).get("VmRSS")
    finally:
        stop(pr)
        remove_tree(data)
    return out


def web_table(w, conns):
    out = ["| page (%s repositories) | server time p99, 1 connection | req/s at %d connections | p99 there | weight (HTML + CSS + JS) |"
           % ("{:,}".format(w["repositories"]), conns),
           "|---|---:|---:|---:|---:|"]
    for label, r in w["rows"].items():
        out.append("| %s | %s ms | %s | %s ms | %s |" % (
            label, fmt(r["p99_1"]), fmt(r["rps"]), fmt(r["p99"]),
            ("%.1f KB" % (r["bytes"] / 1000.0)) if r["html"] else "%.1f KB (JSON)" % (r["bytes"] / 1000.0)))
    return "\n".join(out)



# --------------------------------------------------------------------------
# 10. mirror: pulls through a pull-through cache against pulls from the upstream
# --------------------------------------------------------------------------

def mirror_stage(args, tmp, servers):
    """An upstream berth (--open, unpinned) holds an image whose layer is --blob-mib MiB.
    Each mirror, pinned to the server CPU: berth with `--upstream up=UPSTREAM`, and
    Distribution in proxy mode (`proxy: remoteurl: UPSTREAM`), its peer. Timed: the
    layer pulled straight from the upstream; the first pull through the mirror (fetched,
    stored and streamed at once); then pulls of the cached copy (medians of --runs,
    after two reads that fill the page cache). Every body is compared with the layer."""
    size = args.blob_mib * MIB
    blob = os.urandom(size)
    uport = free_port()
    udata = os.path.join(tmp, "mirror-upstream")
    os.makedirs(udata)
    upstream = Proc(server_cmd("berth", args, uport, udata, tmp, cpus=args.seed_cpus),
                    os.path.join(tmp, "mirror-upstream.log"), uport, env=berth_env())
    LIVE.append(upstream)
    out = {"mib": args.blob_mib}
    try:
        cl = Client(uport)
        repo = "bench/big"
        digest = upload_blob(cl, repo, blob)
        cfg = json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        cfg_d = upload_blob(cl, repo, cfg)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": size}],
        }, separators=(",", ":")).encode()
        st, h, body = cl.request("PUT", "/v2/%s/manifests/1" % repo, manifest, {"Content-Type": OCI_MANIFEST})
        if st != 201:
            raise Failure("PUT manifest upstream: %d %r" % (st, body[:200]))
        buf = bytearray(size)

        def pulls(port, path, label):
            runs = []
            for i in range(2 + args.runs):
                el, whole = timed_get(port, path, buf, label)
                if not whole or buf != blob:
                    raise Failure("%s: body differs from the layer" % label)
                if i >= 2:
                    runs.append(size / el / 1e6)
            return runs

        direct = pulls(uport, "/v2/%s/blobs/%s" % (repo, digest), "GET from the upstream")
        out["direct"] = {"runs": direct, "median": median(direct)}
        log("mirror: the layer straight from the upstream: %s MB/s" % " / ".join(fmt(x) for x in direct))
        for kind in servers:
            port = free_port()
            data = os.path.join(tmp, "mirror-%s" % kind)
            os.makedirs(data)
            upstream_url = "http://127.0.0.1:%d" % uport
            if kind == "berth":
                cmd = server_cmd("berth", args, port, data, tmp,
                                 berth_extra=["--upstream", "up=%s" % upstream_url, "--gc-interval", "0"])
                name = "up/%s" % repo
                env = berth_env()
            else:
                cfg_path = os.path.join(tmp, "dist-proxy-%d.yml" % port)
                with open(cfg_path, "w") as f:
                    f.write("version: 0.1\n"
                            "log: {level: error, accesslog: {disabled: true}}\n"
                            "storage:\n  filesystem: {rootdirectory: %s}\n"
                            "http: {addr: 127.0.0.1:%d}\n"
                            "proxy: {remoteurl: %s}\n" % (data, port, upstream_url))
                cmd = ["taskset", "-c", str(args.server_cpu), args.dist_bin, "serve", cfg_path]
                name = repo
                env = dist_env()
            pr = Proc(cmd, os.path.join(tmp, "mirror-%s.log" % kind), port, env=env)
            LIVE.append(pr)
            try:
                mc = Client(port)
                st, h, body = mc.request("GET", "/v2/%s/manifests/1" % name,
                                         headers={"Accept": OCI_MANIFEST})
                if st != 200:
                    raise Failure("%s: manifest through the mirror: %d %r" % (NAMES[kind], st, body[:200]))
                path = "/v2/%s/blobs/%s" % (name, digest)
                el, whole = timed_get(port, path, buf, "first pull through %s" % NAMES[kind])
                if not whole or buf != blob:
                    raise Failure("%s: the first pull's body differs from the layer" % NAMES[kind])
                cold = size / el / 1e6
                # Distribution stores a proxied blob after the response: let it land.
                time.sleep(2)
                cached = pulls(port, path, "cached pull through %s" % NAMES[kind])
                out[kind] = {"cold": cold, "cached": {"runs": cached, "median": median(cached)},
                             "rss_mib": rss_of(pr).get("VmRSS")}
                log("mirror %s: first pull %s MB/s, cached %s MB/s" % (
                    NAMES[kind], fmt(cold), " / ".join(fmt(x) for x in cached)))
            finally:
                pr.stop()
                LIVE.remove(pr)
                remove_tree(data)
    finally:
        upstream.stop()
        LIVE.remove(upstream)
        remove_tree(udata)
    return out


def https_stage(args, tmp, servers):
    """HTTPS, as issue 14 sets it up: `berth tls init` makes a CA and a certificate for
    127.0.0.1; berth serves it with --tls-cert/--tls-key (rustls), Distribution with
    `http.tls` (Go's crypto/tls), both pinned to the server CPU. Timed: a pull of a
    --blob-mib MiB layer (medians of --runs after two reads, every body compared), and
    manifest GETs at 16 connections with oha, every request verified against the CA.
    berth's plain-HTTP pull of the same layer is shown for what TLS costs."""
    size = args.blob_mib * MIB
    blob = os.urandom(size)
    certs = os.path.join(tmp, "tls")
    p = subprocess.run([args.berth_bin, "tls", "init", "--host", "127.0.0.1", "--dir", certs],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise Failure("berth tls init: %s" % p.stderr[:300])
    cert, key, ca = (os.path.join(certs, n) for n in ("server.crt", "server.key", "ca.crt"))
    tls = ssl.create_default_context(cafile=ca)
    out = {"mib": args.blob_mib}
    buf = bytearray(size)
    repo = "bench/tls"
    for kind in servers:
        port = free_port()
        data = os.path.join(tmp, "https-%s" % kind)
        os.makedirs(data)
        if kind == "berth":
            cmd = server_cmd("berth", args, port, data, tmp,
                             berth_extra=["--tls-cert", cert, "--tls-key", key, "--gc-interval", "0"])
            env = berth_env()
        else:
            cfg_path = os.path.join(tmp, "dist-tls-%d.yml" % port)
            with open(cfg_path, "w") as f:
                f.write("version: 0.1\n"
                        "log: {level: error, accesslog: {disabled: true}}\n"
                        "storage:\n  filesystem: {rootdirectory: %s}\n"
                        "http:\n  addr: 127.0.0.1:%d\n  tls: {certificate: %s, key: %s}\n"
                        % (data, port, cert, key))
            cmd = ["taskset", "-c", str(args.server_cpu), args.dist_bin, "serve", cfg_path]
            env = dist_env()
        pr = Proc(cmd, os.path.join(tmp, "https-%s.log" % kind), port, env=env, tls=tls)
        LIVE.append(pr)
        try:
            def request(method, path, body=b"", headers=None):
                c = connection(port, tls)
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                got = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
                c.close()
                return got

            def push(data):
                digest = sha256_digest(data)
                st, h, _ = request("POST", "/v2/%s/blobs/uploads/" % repo, headers={"Content-Length": "0"})
                loc = urllib.parse.urlsplit(h.get("location", ""))
                st, h, body = request("PUT", loc.path + "?" + (loc.query + "&" if loc.query else "")
                                      + "digest=" + digest, body=data,
                                      headers={"Content-Type": "application/octet-stream"})
                if st != 201:
                    raise Failure("%s: HTTPS blob PUT %d %r" % (NAMES[kind], st, body[:200]))
                return digest

            digest = push(blob)
            cfg = json.dumps({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": []}}).encode()
            cfg_d = push(cfg)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg)},
                "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": size}],
            }, separators=(",", ":")).encode()
            st, _, body = request("PUT", "/v2/%s/manifests/1" % repo, manifest, {"Content-Type": OCI_MANIFEST})
            if st != 201:
                raise Failure("%s: HTTPS manifest PUT %d %r" % (NAMES[kind], st, body[:200]))
            runs = []
            for i in range(2 + args.runs):
                el, whole = timed_get(port, "/v2/%s/blobs/%s" % (repo, digest), buf,
                                      "HTTPS pull from %s" % NAMES[kind], tls=tls)
                if not whole or buf != blob:
                    raise Failure("%s: the HTTPS pull's body differs" % NAMES[kind])
                if i >= 2:
                    runs.append(size / el / 1e6)
            rps, p99, _ = oha("https://127.0.0.1:%d/v2/%s/manifests/1" % (port, repo), 16, args.duration,
                              headers=[("Accept", OCI_MANIFEST)], cacert=ca)
            out[kind] = {"pull": median(runs), "runs": runs, "rps": rps, "p99": p99,
                         "rss_mib": rss_of(pr).get("VmRSS")}
            log("https %s: pull %s MB/s, manifest GETs %s/s (p99 %s ms)" % (
                NAMES[kind], " / ".join(fmt(x) for x in runs), fmt(rps), fmt(p99)))
        finally:
            pr.stop()
            LIVE.remove(pr)
            remove_tree(data)
    if "berth" in servers:
        # The same layer from berth over plain HTTP, for what TLS costs.
        port = free_port()
        data = os.path.join(tmp, "https-plain")
        os.makedirs(data)
        pr = Proc(server_cmd("berth", args, port, data, tmp, berth_extra=["--gc-interval", "0"]),
                  os.path.join(tmp, "https-plain.log"), port, env=berth_env())
        LIVE.append(pr)
        try:
            digest = upload_blob(Client(port), repo, blob)
            runs = []
            for i in range(2 + args.runs):
                el, whole = timed_get(port, "/v2/%s/blobs/%s" % (repo, digest), buf, "plain pull from berth")
                if not whole or buf != blob:
                    raise Failure("berth: the plain pull's body differs")
                if i >= 2:
                    runs.append(size / el / 1e6)
            out["berth_plain"] = median(runs)
        finally:
            pr.stop()
            LIVE.remove(pr)
            remove_tree(data)
    return out


def scan_stage(args, tmp):
    """Scanning (issue 15), berth alone (no scanner on these machines to set beside it;
    Distribution has none). (1) Inventory of a --scan-image-mib MiB image: four gzip
    layers of incompressible bytes under a Debian status file of 1,000 packages; `berth
    scan` reads it cold (its stored scan removed before each run) — wall time and peak
    RSS of the process (GNU time), beside `gzip -dc` of the same layers (the floor: one
    decompression). (2) Matching --scan-images stored inventories (200 Debian packages
    each) against --scan-advisories Debian:12 advisories: the time of `berth vulndb
    import` of one more advisory, which matches every stored inventory again."""
    import random
    import sqlite3
    import zipfile
    rng = random.Random(15)
    out = {}
    data = os.path.join(tmp, "scan-data")
    os.makedirs(data)
    port = free_port()
    pr = Proc(server_cmd("berth", args, port, data, tmp, berth_extra=["--scan-workers", "0", "--gc-interval", "0"]),
              os.path.join(tmp, "scan-berth.log"), port, env=berth_env())
    LIVE.append(pr)
    try:
        # (1) a big image with a package database on top.
        files = os.path.join(tmp, "scan-files")
        os.makedirs(files)
        with open(os.path.join(files, "os-release"), "w") as f:
            f.write('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
        with open(os.path.join(files, "status"), "w") as f:
            for i in range(1000):
                f.write("Package: pkg%d\nStatus: install ok installed\nArchitecture: amd64\n"
                        "Version: 1.%d.0-1\nSource: src%d\nDescription: package %d\n long text\n\n"
                        % (i, i % 50, i % 3000, i))
        layer = args.scan_image_mib // 4
        layout = os.path.join(tmp, "scan-image")
        mk = subprocess.run([sys.executable, os.path.join(os.path.dirname(args.regbench), "..", "tools", "mkimage.py"),
                             layout, "--layers", ",".join(["%dM" % layer] * 4), "--tag", "big", "--seed", "scan",
                             "--file", "%s:/etc/os-release" % os.path.join(files, "os-release"),
                             "--file", "%s:/var/lib/dpkg/status" % os.path.join(files, "status")],
                            capture_output=True, text=True)
        if mk.returncode != 0:
            raise Failure("mkimage: %s" % mk.stderr[:300])
        summary = json.loads(mk.stdout)
        cp = subprocess.run(["skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
                             "oci:%s:big" % layout, "docker://127.0.0.1:%d/bench/scan:big" % port],
                            capture_output=True, text=True)
        if cp.returncode != 0:
            raise Failure("skopeo copy: %s" % cp.stderr[:300])
        blobs = [os.path.join(layout, "blobs", "sha256", f) for f in os.listdir(os.path.join(layout, "blobs", "sha256"))
                 if os.path.getsize(os.path.join(layout, "blobs", "sha256", f)) > 1 << 20]
        floor = []
        for _ in range(args.runs):
            t0 = now()
            for b in blobs:
                subprocess.run("gzip -dc < %s > /dev/null" % shlex.quote(b), shell=True, check=True)
            floor.append(now() - t0)
        times, rss = [], []
        db = os.path.join(data, "berth.db")
        for _ in range(args.runs):
            with sqlite3.connect(db, timeout=30) as c:
                c.execute("DELETE FROM image_scans")
            t0 = now()
            p = subprocess.run(["/usr/bin/time", "-f", "%M", args.berth_bin, "scan", "bench/scan:big",
                                "--format", "json", "--data-dir", data], capture_output=True, text=True, env=berth_env())
            times.append(now() - t0)
            if p.returncode not in (0, 1):
                raise Failure("berth scan: %s" % p.stderr[-300:])
            rss.append(int(p.stderr.strip().splitlines()[-1]) / 1024.0)
            found = json.loads(p.stdout)["images"][0]
            if len(found["packages"]) != 1000:
                raise Failure("berth scan found %d packages, not 1000" % len(found["packages"]))
        out["image_mib"] = args.scan_image_mib
        out["inventory_s"] = median(times)
        out["inventory_rss_mib"] = max(rss)
        out["gzip_s"] = median(floor)

        # (2) a full ecosystem database and many stored inventories.
        sources = 3000
        advisories = os.path.join(tmp, "scan-osv.zip")
        with zipfile.ZipFile(advisories, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(args.scan_advisories):
                src = i % sources
                # Most advisories are fixed in versions older than what images run.
                fixed = "1.%d.0-1" % rng.randrange(50)
                z.writestr("DEBIAN-CVE-2099-%06d.json" % i, json.dumps({
                    "id": "DEBIAN-CVE-2099-%06d" % i, "modified": "2026-01-01T00:00:00Z",
                    "aliases": ["CVE-2099-%06d" % i], "summary": "bench advisory",
                    "affected": [{"package": {"ecosystem": "Debian:12", "name": "src%d" % src},
                                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                                  "database_specific": {"severity": rng.choice(["low", "medium", "high", "critical"])}}]}))
        t0 = now()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", args.berth_bin, "vulndb", "import", advisories, "--data-dir", data],
                           capture_output=True, text=True, env=berth_env())
        out["import_s"] = now() - t0
        if p.returncode != 0:
            raise Failure("berth vulndb import: %s" % p.stderr[-300:])
        out["import_rss_mib"] = int(p.stderr.strip().splitlines()[-1]) / 1024.0
        with sqlite3.connect(db, timeout=30) as c:
            c.execute("DELETE FROM image_scans")
            rows = []
            for n in range(args.scan_images):
                packages = [{"kind": "deb", "name": "pkg%d" % k, "version": "1.%d.0-1" % rng.randrange(40, 60),
                             "source": "src%d" % (k % sources), "path": "var/lib/dpkg/status"}
                            for k in rng.sample(range(sources * 2), 200)]
                inventory = {"os": {"id": "debian", "version_id": "12", "pretty_name": ""}, "packages": packages}
                digest = "sha256:" + hashlib.sha256(b"bench-image-%d" % n).hexdigest()
                rows.append((digest, 0, 0, json.dumps(inventory), "[]", None))
            c.executemany("INSERT INTO image_scans (digest, scanned_at, matched_at, inventory, findings, worst) "
                          "VALUES (?, ?, ?, ?, ?, ?)", rows)
        extra = os.path.join(tmp, "scan-extra.json")
        with open(extra, "w") as f:
            json.dump({"id": "DEBIAN-CVE-2099-EXTRA", "modified": "2026-02-01T00:00:00Z",
                       "affected": [{"package": {"ecosystem": "Debian:12", "name": "src1"},
                                     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}, f)
        t0 = now()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", args.berth_bin, "vulndb", "import", extra, "--data-dir", data],
                           capture_output=True, text=True, env=berth_env())
        out["rematch_s"] = now() - t0
        if p.returncode != 0 or ("matched %d stored images" % args.scan_images) not in p.stdout:
            raise Failure("berth vulndb import (re-match): %s %s" % (p.stdout[-300:], p.stderr[-300:]))
        out["rematch_rss_mib"] = int(p.stderr.strip().splitlines()[-1]) / 1024.0
        out["images"], out["advisories"] = args.scan_images, args.scan_advisories
        with sqlite3.connect(db, timeout=30) as c:
            out["findings"] = sum(len(json.loads(f)) for (f,) in c.execute("SELECT findings FROM image_scans"))
    finally:
        pr.stop()
        LIVE.remove(pr)
    return out


def scan_table(s):
    out = ["| scanning (berth alone) | time | peak RSS | note |", "|---|---:|---:|---|"]
    out.append("| inventory of a %d MiB image (`berth scan`, cold) | %s s | %s MiB | `gzip -dc` of the same layers: %s s (%s of berth's time) |" % (
        s["image_mib"], fmt(s["inventory_s"]), fmt(s["inventory_rss_mib"]), fmt(s["gzip_s"]),
        ratio(s["gzip_s"], s["inventory_s"])))
    out.append("| import of %s Debian:12 advisories (`berth vulndb import`, one zip) | %s s | %s MiB | %s advisories/s |" % (
        fmt(s["advisories"]), fmt(s["import_s"]), fmt(s["import_rss_mib"]), fmt(s["advisories"] / s["import_s"])))
    out.append("| matching %s stored inventories (200 packages each) against them | %s s | %s MiB | %s images/s, %s findings |" % (
        fmt(s["images"]), fmt(s["rematch_s"]), fmt(s["rematch_rss_mib"]), fmt(s["images"] / s["rematch_s"]),
        fmt(s["findings"])))
    return "\n".join(out)


def https_table(h):
    b, d = h.get("berth") or {}, h.get("distribution") or {}
    out = ["| over HTTPS ↑ | berth (rustls) | Distribution (crypto/tls) | berth ÷ Distribution |",
           "|---|---:|---:|---:|"]
    out.append("| pull of a %d MiB layer, MB/s | %s | %s | %s |" % (
        h["mib"], fmt(b.get("pull")), fmt(d.get("pull")), ratio(b.get("pull"), d.get("pull"))))
    out.append("| manifest GETs/s, 16 connections | %s | %s | %s |" % (
        fmt(b.get("rps")), fmt(d.get("rps")), ratio(b.get("rps"), d.get("rps"))))
    out.append("| manifest GET p99, ms ↓ | %s | %s | %s |" % (
        fmt(b.get("p99")), fmt(d.get("p99")), ratio(d.get("p99"), b.get("p99"))))
    if h.get("berth_plain") and b.get("pull"):
        out.append("")
        out.append("berth's pull of the same layer over plain HTTP: %s MB/s (HTTPS runs at %s of it)."
                   % (fmt(h["berth_plain"]), ratio(b["pull"], h["berth_plain"])))
    return "\n".join(out)


def mirror_table(m):
    direct = m["direct"]["median"]
    b, d = m.get("berth") or {}, m.get("distribution") or {}
    bc, dc = (b.get("cached") or {}).get("median"), (d.get("cached") or {}).get("median")
    out = ["| pull of a %d MiB layer, MB/s ↑ | berth | Distribution (proxy) | berth ÷ Distribution | straight from the upstream |"
           % m["mib"], "|---|---:|---:|---:|---:|"]
    out.append("| first pull (fetched, stored, streamed) | %s | %s | %s | %s |" % (
        fmt(b.get("cold")), fmt(d.get("cold")), ratio(b.get("cold"), d.get("cold")), fmt(direct)))
    out.append("| cached pull | %s | %s | %s | %s |" % (fmt(bc), fmt(dc), ratio(bc, dc), fmt(direct)))
    if bc:
        out.append("")
        out.append("berth's cached pull is %s the upstream's own pull; RSS after the pulls: berth %s MiB, "
                   "Distribution %s MiB." % (ratio(bc, direct), fmt(b.get("rss_mib")), fmt(d.get("rss_mib"))))
    return "\n".join(out)



def trust_table(t, args):
    b, d = t.get("berth") or {}, t.get("distribution") or {}
    peer = (d.get("rows") or {}).get("plain", {}).get("median")
    out = ["| manifest PUTs/s, 16 connections ↑ | berth | Distribution (plain) | berth/Distribution |",
           "|---|---:|---:|---:|"]
    for label, row in (b.get("rows") or {}).items():
        out.append("| %s | %s | %s | %s |" % (label, fmt(row["median"]), fmt(peer), ratio(row["median"], peer)))
    lint = b.get("lint")
    if lint:
        out.append("")
        out.append("`berth lint` over the %d Dockerfiles of the berth-lint corpus (one process, no registry): "
                   "%s ms (medians of %d). Distribution has no counterpart." % (lint["files"], fmt(lint["median_ms"]), len(lint["runs"])))
    return "\n".join(out)



def p99_of(row):
    m = re.search(r"p99 ([\d.]+) ms", row.get("note") or "")
    return float(m.group(1)) if m else None


def ceiling_for(row, c, args):
    if not c:
        return ""
    key, label = row["key"], row["label"]
    g = lambda k: fmt(c[k]["median"]) if k in c else "-"
    if key in ("a", "b"):
        return "SHA-256 on 1 core: OpenSSL %s MB/s, coreutils sha256sum %s MB/s; write+fsync %s MB/s" % (
            g("sha256_openssl"), g("sha256sum"), g("write_fsync"))
    if key == "c":
        return "nginx sendfile GET, same client: %s MB/s" % g("nginx_blob_get")
    if key == "d" or label.startswith("manifest PUT"):
        return "%d KiB write+fsync+rename, 16 threads: %s /s" % (args.small_kib, g("small_files"))
    if key in ("e", "f") and "(regbench)" in label:
        return "regbench's Python client vs nginx 1 KiB GET: %s req/s" % (
            fmt(c["pyclient_get_1k"]["median"]) if "pyclient_get_1k" in c else "-")
    if key == "e" and "oha" in label:
        return "nginx 1 KiB GET, oha: %s req/s" % g("nginx_get_1k")
    if key == "f" and "oha" in label:
        return "nginx HEAD, oha: %s req/s" % g("nginx_head_1k")
    if key == "g":
        return "nginx: %s MiB idle, %s MiB peak" % (fmt(c.get("nginx_rss_idle")), fmt(c.get("nginx_rss_peak")))
    if key == "h":
        return "nginx: %s ms" % g("nginx_cold_ms")
    return ""


def p99_ceiling(row, c):
    if not c:
        return ""
    if row["key"] == "e" and "oha" in row["label"] and "nginx_get_1k" in c:
        return "nginx 1 KiB GET, oha: %s ms" % fmt(c["nginx_get_1k"]["p99"])
    if row["key"] == "f" and "oha" in row["label"] and "nginx_head_1k" in c:
        return "nginx HEAD, oha: %s ms" % fmt(c["nginx_head_1k"]["p99"])
    return ""


def main_table(results, c, args):
    rows, seen = [], set()
    for kind in SERVERS:
        for r in (results.get(kind) or {}).get("rows", []):
            k = (r["key"], r["label"])
            if k not in seen:
                seen.add(k)
                rows.append(r)
    by = {kind: {(r["key"], r["label"]): r for r in (results.get(kind) or {}).get("rows", [])}
          for kind in SERVERS}
    out = ["| figure | berth | Distribution | berth/Distribution | ceiling |",
           "|---|---:|---:|---:|---|"]
    better = {"MB/s": "↑", "uploads/s": "↑", "PUT/s": "↑", "req/s": "↑", "ms": "↓", "MiB": "↓"}
    for r in rows:
        k = (r["key"], r["label"])
        b, d = by["berth"].get(k), by["distribution"].get(k)
        bv = b["median"] if b else None
        dv = d["median"] if d else None
        out.append("| %s %s, %s %s | %s | %s | %s | %s |" % (
            r["key"], r["label"], r["unit"], better.get(r["unit"], ""), fmt(bv), fmt(dv),
            ratio(bv, dv), ceiling_for(r, c, args)))
        if p99_of(r) is not None:
            bp = p99_of(b) if b else None
            dp = p99_of(d) if d else None
            out.append("| %s %s, p99 latency ms ↓ | %s | %s | %s | %s |" % (
                r["key"], r["label"], fmt(bp), fmt(dp), ratio(bp, dp), p99_ceiling(r, c)))
    return "\n".join(out)


def auth_table(a, c, args):
    """The auth rows: figure | berth | Distribution | berth/Distribution | note."""
    b, d = a.get("berth") or {}, a.get("distribution") or {}
    out = ["| figure | berth | Distribution | berth/Distribution | note |",
           "|---|---:|---:|---:|---|"]

    def get(x, *path):
        for p in path:
            x = x.get(p) if isinstance(x, dict) else None
        return x

    def row(label, path, note="", dist=True):
        bv = get(b, *path)
        dv = get(d, *path) if dist else None
        out.append("| %s | %s | %s | %s | %s |" % (
            label, fmt(bv), fmt(dv) if dist else "–", ratio(bv, dv) if dist else "–", note))

    def target(path):
        v = get(b, *path)
        if v is None:
            return ""
        return "target ≤ %d MiB for berth: %s" % (args.auth_rss_target, "met" if v <= args.auth_rss_target
                                                  else "**not met**")

    oha_ceiling = ("nginx 1 KiB GET, oha: %s req/s" % fmt(c["nginx_get_1k"]["median"])
                   if c and "nginx_get_1k" in c else "")
    # say how only when load() fell back to one connection (too slow for oha)
    how = lambda k: "; ".join("%s: %s" % (NAMES[s], get(a.get(s) or {}, k, "how")) for s in SERVERS
                              if not (get(a.get(s) or {}, k, "how") or "oha").startswith("oha"))
    row("GET /v2/ with Basic password (berth: remembered after its first check; Distribution: "
        "bcrypt on every request), %d conns, req/s ↑" % args.conns, ("password", "median"),
        "; ".join(x for x in (how("password"), oha_ceiling) if x))
    row("the same, p99 latency ms ↓", ("password", "p99"))
    pw, tok = get(b, "password", "median"), get(b, "token", "median")
    note = ""
    if pw is not None and tok is not None:
        note = "password ÷ token: %s (target ≥ 0.5×: %s)" % (
            ratio(pw, tok), "met" if pw / tok >= 0.5 else "**not met**")
    row("GET /v2/ with Basic access token, %d conns, req/s ↑" % args.conns, ("token", "median"),
        "; ".join(x for x in (note, "Distribution has no access tokens") if x), dist=False)
    row("the same, p99 latency ms ↓", ("token", "p99"), dist=False)
    row("distinct password sign-ins (each user once, %d users per run, new connection each, "
        "%d clients), sign-ins/s ↑" % (args.auth_distinct, args.auth_clients), ("distinct", "median"),
        "a full check each: berth %s; Distribution %s, which it does on every request of the "
        "password row too" % (b.get("hash", "argon2id"), d.get("hash", "bcrypt")))
    n = "{:,}".format(args.auth_signins)
    row("RSS right after %s distinct password sign-ins (%d clients), MiB ↓" % (n, args.auth_clients),
        ("signins", "after"), target(("signins", "after")))
    row("the same, %d s later, MiB ↓" % args.auth_settle, ("signins", "later"), target(("signins", "later")))
    row("the same, peak (VmHWM), MiB ↓", ("signins", "hwm"), "while it ran (the target is for after)")
    row("RSS right after a conformance-like mix (2 passes of %d iterations, %d clients), MiB ↓"
        % (args.auth_mix_iterations, args.auth_clients), ("mix", "after"), target(("mix", "after")))
    row("the same, %d s later, MiB ↓" % args.auth_settle, ("mix", "later"), target(("mix", "later")))
    row("the same, peak (VmHWM), MiB ↓", ("mix", "hwm"), "while it ran (the target is for after)")
    out.append("")
    out.append("req/s and sign-ins/s rows: medians of %d runs; RSS rows: one reading of the server's "
               "/proc/PID/status (VmRSS, VmHWM), each part on a fresh process. berth pinned to one CPU "
               "runs one argon2 check at a time (`--password-workers`: one per core) in a 19 MiB work "
               "area that it hands back after 2 s unused; the mix's one check of admin's password "
               "happens at its start." % args.runs)
    for k in SERVERS:
        x = a.get(k)
        if not x:
            continue
        parts = []
        if x.get("signins"):
            s = x["signins"]
            parts.append("idle after start %s MiB; the %s sign-ins ran at %s/s" % (fmt(s["idle"]), n, fmt(s["rate"])))
        if x.get("mix"):
            m = x["mix"]
            ps = ["pass %d: %s requests in %.1f s (%s req/s, %.0f MB up, %.0f MB down, %d manifests deleted), "
                  "RSS %s MiB" % (i + 1, "{:,}".format(p["requests"]), p["seconds"], fmt(p["requests"] / p["seconds"]),
                                  p["bytes_up"] / 1e6, p["bytes_down"] / 1e6, p["deleted"], fmt(p["rss"]))
                  for i, p in enumerate(m["passes"])]
            parts.append("mix: idle %s MiB; %s" % (fmt(m["idle"]), "; ".join(ps)))
        if "seed_s" in x:
            parts.append("%s users (and bench, admin) made beforehand in %.1f s (not measured)"
                         % ("{:,}".format(x["users"]), x["seed_s"]))
        out.append("- %s: %s" % (NAMES[k], "; ".join(parts)))
    return "\n".join(out)


def growth_table(g):
    have = [k for k in SERVERS if g.get(k)]
    if not have:
        return ""
    head = "| figure | " + " | ".join("%s small | %s large | large/small" % (NAMES[k], NAMES[k]) for k in have) + " |"
    out = [head, "|---|" + "---:|---:|---:|" * len(have)]
    labels = []
    for k in have:
        for lab in g[k]["rows"]:
            if lab not in labels:
                labels.append(lab)
    for lab in labels:
        unit = "repositories" if "catalog" in lab else "tags"
        for metric, name, arrow in (("rps", "req/s", "↑"), ("p99", "p99 ms", "↓")):
            cells = []
            for k in have:
                row = g[k]["rows"].get(lab, {})
                sizes = sorted(row)
                if len(sizes) != 2:
                    cells += ["-", "-", "-"]
                    continue
                s, l = row[sizes[0]], row[sizes[1]]

                def cell(x, n):
                    v = fmt(x[metric]) + " (%s %s" % ("{:,}".format(n), unit)
                    if metric == "rps" and "entries" in x:
                        v += ", %s returned" % "{:,}".format(x["entries"])
                    if metric == "rps" and x["how"].startswith("1 conn"):
                        v += ", 1 conn"
                    return v + ")"
                # a p99 over 32 connections and one over 1 connection do not compare
                same = (s["how"] == l["how"]) or metric == "rps"
                cells += [cell(s, sizes[0]), cell(l, sizes[1]), ratio(l[metric], s[metric]) if same else "-"]
            out.append("| %s, %s %s | %s |" % (lab, name, arrow, " | ".join(cells)))
    cells = []
    for k in have:
        st, sz = g[k].get("start_ms", {}), g[k]["sizes"]
        if "small" in st and "large" in st:
            cells += ["%s (%s tags, %s repos)" % (fmt(st["small"]), "{:,}".format(sz["tags"][0]), "{:,}".format(sz["repos"][0])),
                      "%s (%s tags, %s repos)" % (fmt(st["large"]), "{:,}".format(sz["tags"][1] + sz["tags"][0]),
                                                  "{:,}".format(sz["repos"][1])),
                      ratio(st["large"], st["small"])]
        else:
            cells += ["-", "-", "-"]
    out.append("| cold start, exec → first 200 on /v2/, ms ↓ | %s |" % " | ".join(cells))
    return "\n".join(out)


def seeding_lines(g, args):
    out = []
    for k in SERVERS:
        if not g.get(k):
            continue
        parts = []
        for what, s in g[k]["seed"].items():
            kind, n = what.split()
            n = s.get("added", int(n))
            parts.append("%s %s in %.1f s (%s/s, %s)" % (
                "{:,}".format(n), kind, s["seconds"], fmt(s["rate"]), s["how"]))
        out.append("- %s seeding (server on CPUs %s): %s" % (NAMES[k], args.seed_cpus, "; ".join(parts)))
        if g[k].get("rss_mib") is not None:
            out.append("- %s: RSS after the growth test %s MiB; storage used ≈ %s MiB (file system's used space, before/after)"
                       % (NAMES[k], fmt(g[k]["rss_mib"]), fmt(g[k].get("disk_mib"))))
    return "\n".join(out)


def s3_table(x, args):
    b, d = x.get("berth") or {}, x.get("distribution") or {}
    out = ["| figure | berth | Distribution | berth/Distribution |", "|---|---:|---:|---:|"]
    labels = []
    for k in (b, d):
        for lab in k.get("rows", {}):
            if lab not in labels:
                labels.append(lab)
    for lab in labels:
        bv, dv = (k.get("rows", {}).get(lab) for k in (b, d))
        unit = (bv or dv)["unit"]
        bm, dm = (bv or {}).get("median"), (dv or {}).get("median")
        out.append("| %s, %s ↑ | %s | %s | %s |" % (lab, unit, fmt(bm), fmt(dm), ratio(bm, dm)))
    for key, lab in (("hwm", "peak RSS during the stage (VmHWM), MiB ↓"), ("start_ms", "cold start, ms ↓")):
        out.append("| %s | %s | %s | %s |" % (lab, fmt(b.get(key)), fmt(d.get(key)), ratio(b.get(key), d.get(key))))
    return "\n".join(out)


def gc_table(x, args):
    bf, d, bs = x.get("berth fs") or {}, x.get("distribution fs") or {}, x.get("berth s3") or {}
    have_s3 = bool(bs)
    head = "| figure | berth (files + SQLite) | Distribution (files) | berth/Distribution |"
    sep = "|---|---:|---:|---:|"
    if have_s3:
        head += " berth (S3 + PostgreSQL) |"
        sep += "---:|"
    out = [head, sep]

    def get(r, step, key):
        return ((r.get("runs") or {}).get(step) or {}).get(key)

    def line(label, bv, dv, sv, fmt_=fmt, ratio_=True):
        cells = [label, fmt_(bv), fmt_(dv), ratio(bv, dv) if ratio_ else "–"]
        if have_s3:
            cells.append(fmt_(sv))
        out.append("| " + " | ".join(cells) + " |")

    count = lambda v: "-" if v is None else "{:,}".format(v)
    line("blobs stored", bf.get("blobs"), d.get("blobs"), bs.get("blobs"), count, False)
    for step in ("dry run", "collect", "again, nothing left"):
        what = {"dry run": "dry run (nothing removed)", "collect": "collection",
                "again, nothing left": "a second pass, nothing left to remove"}[step]
        line("%s: wall time, s ↓" % what, get(bf, step, "seconds"), get(d, step, "seconds"), get(bs, step, "seconds"))
        line("%s: peak RSS, MiB ↓" % what, get(bf, step, "peak_mib"), get(d, step, "peak_mib"), get(bs, step, "peak_mib"))
    line("blobs removed by the collection", get(bf, "collect", "removed"), get(d, "collect", "removed"),
         get(bs, "collect", "removed"), count, False)
    line("blobs per second collected ↑",
         *[(get(r, "collect", "removed") or 0) / get(r, "collect", "seconds") if get(r, "collect", "seconds") else None
           for r in (bf, d, bs)])
    line("filling it through the API (not measured, server on both CPUs), s", bf.get("fill_s"), d.get("fill_s"),
         bs.get("fill_s"), fmt, False)
    line("storage used after filling, MiB", bf.get("disk_mib"), d.get("disk_mib"),
         bs.get("db_mib"), fmt, False)
    return "\n".join(out)


def pg_table(x):
    sizes = x["sizes"]
    n = lambda v: "{:,}".format(v)
    out = ["| figure | %s | %s | %s/%s |" % (n(sizes[0]), n(sizes[1]), n(sizes[1]), n(sizes[0])),
           "|---|---:|---:|---:|"]
    for lab, row in x["rows"].items():
        s, l = row.get(sizes[0]), row.get(sizes[1])
        if not s or not l:
            continue
        for metric, name, arrow in (("rps", "req/s", "↑"), ("p99", "p99 ms", "↓")):
            cell = lambda r: fmt(r[metric]) + (" (%d returned%s)" % (r["entries"], ", 1 conn" if r["how"].startswith("1 conn") else "")
                                               if metric == "rps" else "")
            same = s["how"] == l["how"] or metric == "rps"
            out.append("| %s, %s %s | %s | %s | %s |" % (lab, name, arrow, cell(s), cell(l),
                                                        ratio(l[metric], s[metric]) if same else "-"))
    st = x.get("start_ms", {})
    out.append("| cold start, exec → first 200 on /v2/, ms ↓ | %s | %s | %s |" % (
        fmt(st.get("small")), fmt(st.get("large")), ratio(st.get("large"), st.get("small"))))
    return "\n".join(out)


def scale_sections(args, xs):
    """The S3, garbage-collection and PostgreSQL sections of the report."""
    L = []
    s3r, gcr, pgr = xs.get("s3") or {}, xs.get("gc") or {}, xs.get("pg")
    if s3r:
        L.append("## Blob throughput on S3 (Garage), same bucket")
        L.append("")
        L.append("Both servers on the same single-node Garage at %s (bucket `%s`), each under its own prefix, "
                 "removed afterwards: berth `--open --storage s3://…` (metadata in SQLite in its data dir), "
                 "Distribution's `s3` driver (`regionendpoint`, path style, `redirect: disable: true`, so both stream "
                 "blob GETs through the registry). The server is pinned to CPU %d and the client to CPU %d; Garage "
                 "is not pinned and shares both. Medians of %d runs; a fresh random blob per upload; every GET "
                 "hashed and compared." % (s3r.get("endpoint", "?"), s3r.get("bucket", "?"), args.server_cpu,
                                           args.client_cpu, args.runs))
        L.append("")
        L.append(s3_table(s3r, args))
        L.append("")
        for k in SERVERS:
            c = (s3r.get(k) or {}).get("cleaned")
            if c:
                L.append("- %s: %s objects under `%s` deleted afterwards (%d multipart uploads aborted, %d left)"
                         % (NAMES[k], "{:,}".format(c["deleted"]), s3r[k]["prefix"], c["aborted"], c["left"]))
        L.append("")
    if gcr:
        any_ = next(iter(gcr.values()))
        L.append("## Garbage collection over %s blobs" % "{:,}".format(any_["blobs"]))
        L.append("")
        L.append("Each store filled through the registry API with distinct %d-byte blobs in %d repositories: half "
                 "used by %s manifests that stay tagged (%d blobs each: a config and %d layers), a quarter used "
                 "only by %s manifests pushed and then DELETEd by digest, a quarter (%s) uploaded and never used. "
                 "Then the server is stopped and the collector runs pinned to CPU %d: berth `berth gc --grace 0s "
                 "--gc-push-window 0s --json` (the push window otherwise keeps never-used uploads an hour) with "
                 "the server's storage flags; Distribution `docker-registry garbage-collect config.yml`, "
                 "**which needs the registry stopped** (berth's also runs beside serving nodes, and every berth "
                 "node runs it every `--gc-interval`). Wall time; peak RSS is the kernel's maximum resident set "
                 "of the process (GNU `time`, %%M). After the collection the server is restarted and a sample of 300 "
                 "manifests/groups is read back: kept blobs and manifests byte for byte, the others 404."
                 % (args.gc_blob_bytes, args.gc_repos, "{:,}".format(any_["kept_manifests"]), any_["per_manifest"],
                    any_["per_manifest"] - 1, "{:,}".format(any_["deleted_manifests"]),
                    "{:,}".format(any_["loose_blobs"]), args.server_cpu))
        L.append("")
        L.append(gc_table(gcr, args))
        L.append("")
        for k, r in gcr.items():
            name = {"berth fs": "berth (files + SQLite)", "distribution fs": "Distribution (files)",
                    "berth s3": "berth (S3 + PostgreSQL)"}.get(k, k)
            parts = ["%s blobs" % "{:,}".format(r["blobs"])]
            if r.get("fill_s"):
                parts.append("filled with %s requests in %.0f s (%s/s)" % (
                    "{:,}".format(r["fill_requests"]), r["fill_s"], fmt(r["fill_requests"] / r["fill_s"])))
            if r.get("where"):
                parts.append("stored in %s" % r["where"])
            if r.get("s3_objects"):
                parts.append("%s objects in the bucket before, %s after" % (
                    "{:,}".format(r["s3_objects"][0]), "{:,}".format((r.get("s3_objects_after") or ["?"])[0])))
            c = (r.get("runs") or {}).get("collect") or {}
            if c.get("report"):
                parts.append("report `%s`" % json.dumps(c["report"], separators=(",", ":")))
            if c.get("marked") is not None:
                parts.append("%s blobs marked, %s blobs and %s manifests eligible for deletion" % (
                    "{:,}".format(c["marked"]), "{:,}".format(c["removed"]), "{:,}".format(c["manifests"])))
            if r.get("surprise"):
                parts.append("**%s**" % r["surprise"].strip("; "))
            L.append("- %s: %s" % (name, "; ".join(parts)))
        L.append("")
    if pgr:
        L.append("## Catalog and tag pages on PostgreSQL")
        L.append("")
        L.append("berth `--open --database postgres://…/%s` (PostgreSQL %s, a scratch database dropped afterwards; "
                 "blobs in files), filled through the API only: one repository with %s tags (PUT by digest with "
                 "100 `?tag=` each) and %s repositories (cross-repository mounts), then the same grown to %s and "
                 "%s. Server restarted pinned to CPU %d before measuring; PostgreSQL is not pinned. oha with %d "
                 "connections for %d s per cell; every page was first checked entry by entry. With %s entries the "
                 "page after the middle holds fewer than 100."
                 % (pgr["database"], pgr["postgres"], "{:,}".format(pgr["sizes"][0]), "{:,}".format(pgr["sizes"][0]),
                    "{:,}".format(pgr["sizes"][1]), "{:,}".format(pgr["sizes"][1]), args.server_cpu, args.conns,
                    args.growth_duration, "{:,}".format(pgr["sizes"][0])))
        L.append("")
        L.append(pg_table(pgr))
        L.append("")
        seed = "; ".join("%s: %s added in %.1f s" % (k, "{:,}".format(v["added"]), v["seconds"])
                         for k, v in pgr["seed"].items())
        L.append("- filling (not measured, server on CPUs %s): %s" % (args.seed_cpus, seed))
        if pgr.get("db_mib"):
            L.append("- database size: %s" % ", ".join("%s %s MiB" % (k, fmt(v)) for k, v in pgr["db_mib"].items()))
        L.append("")
    return L


def busy_cpu_s():
    """CPU seconds the whole machine spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s():
    """CPU seconds used by this script and every child it has waited for (regbench, the
    servers regbench started and reaped, oha, the servers started here)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def machine_info(args):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1024 / 1024)
    except OSError:
        pass
    commit = run_out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    if run_out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]):
        commit += " (with uncommitted changes)"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "berth": "%s, commit %s" % (run_out([args.berth_bin, "--version"]) or "berth", commit or "?"),
        "distribution": run_out([args.dist_bin, "--version"]),
        "nginx": run_out([args.nginx_bin, "-v"]).replace("nginx version: ", ""),
        "oha": run_out(["oha", "--version"]),
        "python": platform.python_version(),
    }


def report(args, info, c, results, g, a, errors, started, command, xs=None):
    L = []
    L.append("# berth vs CNCF Distribution, side by side")
    L.append("")
    L.append("- date: %s; took %.1f min" % (info["date"], (now() - started) / 60))
    L.append("- machine: `nproc` %s, %s, %s RAM, kernel %s"
             % (info["nproc"], info["cpu"], info["memory"], info["kernel"]))
    L.append("- berth: %s; Distribution: %s; nginx %s; %s; Python %s"
             % (info["berth"], info["distribution"], info["nginx"], info["oha"], info["python"]))
    L.append("- servers pinned to CPU %d (`taskset`), every client (regbench, oha, seeding) to CPU %d; "
             "medians of %d runs; MB = 10^6 bytes" % (args.server_cpu, args.client_cpu, args.runs))
    L.append("- command: `%s`" % command)
    if info.get("other_load"):
        L.append("- %s" % info["other_load"])
    L.append("")
    if errors:
        L.append("**Failures in this run (their figures are missing):**")
        L.append("")
        for e in errors:
            L.append("- %s" % e)
        L.append("")
    if results:
        L.append("## Figures (regbench, same arguments for both servers)")
        L.append("")
        L.append("↑ higher is better, ↓ lower is better: a berth/Distribution ratio above 1 favours "
                 "berth on ↑ rows, below 1 on ↓ rows. Every request behind these figures was "
                 "verified by regbench (status, Docker-Content-Digest, bodies hashed or compared).")
        L.append("")
        L.append(main_table(results, c, args))
        L.append("")
    if a:
        L.append("## Sign-ins and memory with auth on")
        L.append("")
        L.append(auth_table(a, c, args))
        L.append("")
    if g:
        L.append("## Cost as work grows")
        L.append("")
        L.append("One small OCI manifest under many tags; repositories made by cross-repository "
                 "mounts of one blob. Small sizes are seeded and measured first, then the same "
                 "storage grows to the large sizes and is measured again; before measuring, the "
                 "server is restarted pinned like above. oha with %d connections for %d s per "
                 "cell (a cell marked `1 conn` was too slow for that: sequential requests "
                 "instead). large/small is the ratio of the two sizes: 1.00× means the cost "
                 "does not grow." % (args.conns, args.growth_duration))
        L.append("")
        L.append(growth_table(g))
        L.append("")
        L.append(seeding_lines(g, args))
        if args.growth_dir:
            L.append("- the servers' storage for this part was under `%s`" % args.growth_dir)
        capped = g.get("distribution") and g["distribution"]["sizes"]["tags"][1] < args.growth_tags
        if capped:
            L.append("- Distribution's large tag repository was capped at %s tags (`--dist-growth-tags`): "
                     "seeding it one PUT per tag is slow." % "{:,}".format(g["distribution"]["sizes"]["tags"][1]))
        if any(g.get(k) and any(r.get("entries", 0) > 100 for r in g[k]["rows"].get(
                "tags/list?n=100&last=<middle>", {}).values()) for k in SERVERS):
            L.append("- Distribution 2.8.2 ignores `n` and `last` on tags/list: it returns every tag "
                     "of the repository, unsorted, on every request.")
        L.append("")
    L.extend(scale_sections(args, xs or {}))
    if (xs or {}).get("trust"):
        L.append("")
        L.append("## Tags and trust")
        L.append("")
        L.append("Manifest PUTs of small images (config + 1 layer of 64 bytes, distinct annotations), %d per run, "
                 "16 connections, server pinned, medians of %d runs. berth with no policy, then with "
                 "`floating-tags semver` (every PUT a new release tag X.Y.Z that reads the repository's tags "
                 "and moves up to three floats in its transaction), then with `require-golden-base enforce` "
                 "against %d golden images (every PUT compared with all of them); an image on no golden base is "
                 "checked to be refused. Distribution pushes the same plain manifests (it has neither feature)."
                 % (args.trust_puts, args.runs, args.trust_golden))
        L.append("")
        L.append(trust_table(xs["trust"], args))
    if (xs or {}).get("mirror"):
        L.append("")
        L.append("## Mirror")
        L.append("")
        L.append("An upstream berth (`--open`, on both CPUs) holds an image with one %d MiB layer. The mirrors, "
                 "pinned to the server CPU: berth with `--upstream`, Distribution 2.8.2 in proxy mode. Timed: the "
                 "first pull of the layer through each mirror (fetched from the upstream, stored and streamed at "
                 "once), then pulls of its cached copy (medians of %d after two reads), every body compared with "
                 "the layer; and the same layer pulled straight from the upstream." % (args.blob_mib, args.runs))
        L.append("")
        L.append(mirror_table(xs["mirror"]))
    if (xs or {}).get("https"):
        L.append("")
        L.append("## HTTPS")
        L.append("")
        L.append("`berth tls init --host 127.0.0.1` makes a CA and a server certificate (ECDSA P-256); berth serves "
                 "it with `--tls-cert`/`--tls-key`, Distribution 2.8.2 with `http.tls`, both pinned to the server "
                 "CPU. Timed: a pull of a %d MiB layer (medians of %d after two reads, every body compared) and "
                 "manifest GETs with oha at 16 connections for %d s, every connection verifying the certificate "
                 "against the CA." % (args.blob_mib, args.runs, args.duration))
        L.append("")
        L.append(https_table(xs["https"]))
    if (xs or {}).get("scan"):
        L.append("")
        L.append("## Scanning")
        L.append("")
        L.append("berth on its embedded default; the image pushed with skopeo, scanned by the `berth scan` "
                 "command (medians of %d). No scanner is installed on these machines to run beside it "
                 "(Distribution has none)." % args.runs)
        L.append("")
        L.append(scan_table(xs["scan"]))
    if (xs or {}).get("web"):
        w = xs["web"]
        L.append("")
        L.append("## The web site and search")
        L.append("")
        L.append("berth on its embedded default (SQLite) with %s repositories in 1,000 namespaces (one in ten "
                 "private, a description each), anonymous visitor, server pinned to one core. Server time is the "
                 "p99 latency at one connection (nothing queues); the rate is at %d connections. Weight: the HTML "
                 "plus the style sheet and the script, uncompressed, no images. RSS after the run: %s MiB. "
                 "Distribution has no web site or search."
                 % ("{:,}".format(w["repositories"]), args.conns, fmt(w.get("rss_mib"))))
        L.append("")
        L.append(web_table(w, args.conns))
    if c:
        L.append("## Ceilings (same machine, same pinning)")
        L.append("")
        L.append("| ceiling | value |")
        L.append("|---|---:|")
        L.append("| SHA-256 of %d MiB from page cache, 1 core, OpenSSL (Python hashlib) | %s MB/s |" % (
            args.blob_mib, fmt(c["sha256_openssl"]["median"])))
        L.append("| the same with coreutils `sha256sum` (Debian's build: no SHA extensions) | %s MB/s |" % (
            fmt(c["sha256sum"]["median"])))
        L.append("| write + fsync of %d MiB | %s MB/s |" % (args.blob_mib, fmt(c["write_fsync"]["median"])))
        L.append("| %d × %d KiB write + fsync + rename, 16 threads | %s /s |" % (
            args.small_count, args.small_kib, fmt(c["small_files"]["median"])))
        L.append("| nginx sendfile GET of %d MiB, verified | %s MB/s |" % (args.blob_mib, fmt(c["nginx_blob_get"]["median"])))
        L.append("| nginx 1 KiB GET, oha -c%d | %s req/s, p99 %s ms |" % (
            args.conns, fmt(c["nginx_get_1k"]["median"]), fmt(c["nginx_get_1k"]["p99"])))
        L.append("| nginx 1 KiB HEAD, oha -c%d | %s req/s, p99 %s ms |" % (
            args.conns, fmt(c["nginx_head_1k"]["median"]), fmt(c["nginx_head_1k"]["p99"])))
        L.append("| regbench's Python client vs nginx 1 KiB GET, %d conns | %s req/s |" % (
            args.conns, fmt(c["pyclient_get_1k"]["median"])))
        L.append("| nginx cold start, exec → first 200 | %s ms |" % fmt(c["nginx_cold_ms"]["median"]))
        L.append("| nginx RSS idle / peak | %s / %s MiB |" % (fmt(c.get("nginx_rss_idle")), fmt(c.get("nginx_rss_peak"))))
        L.append("")
    if results:
        L.append("## Raw regbench rows")
        L.append("")
        L.append("| server | key | measurement | unit | runs | median | server CPU % | client CPU % | note |")
        L.append("|---|---|---|---|---|---:|---:|---:|---|")
        for kind in SERVERS:
            for r in (results.get(kind) or {}).get("rows", []):
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    NAMES[kind], r["key"], r["label"], r["unit"], " / ".join(fmt(x) for x in r["runs"]),
                    fmt(r["median"]), fmt(r["server_cpu_pct"]), fmt(r["client_cpu_pct"]), r["note"]))
        L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="runs per figure, median reported (default 3)")
    ap.add_argument("--blob-mib", type=int, default=1024, help="big blob size for (a)-(c) and ceilings")
    ap.add_argument("--prewarm-mib", type=int, default=4096,
                    help="regbench --prewarm-mib, once per server run before its blob tests (0: off)")
    ap.add_argument("--small-count", type=int, default=2000, help="regbench (d) uploads")
    ap.add_argument("--small-kib", type=int, default=4, help="regbench (d) blob size")
    ap.add_argument("--tags", type=int, default=500, help="regbench (e) manifest PUTs")
    ap.add_argument("--conns", type=int, default=32, help="connections for every load test")
    ap.add_argument("--duration", type=int, default=10, help="seconds per load run (regbench e/f, ceilings)")
    ap.add_argument("--tests", default="abcdefgh", help="regbench tests (default abcdefgh)")
    ap.add_argument("--growth-small", type=int, default=100, help="small size for the growth table")
    ap.add_argument("--growth-tags", type=int, default=100000, help="tags in the large tag repository")
    ap.add_argument("--growth-repos", type=int, default=100000, help="repositories for the large catalog")
    ap.add_argument("--dist-growth-tags", type=int, default=None,
                    help="cap Distribution's large tag repository (one PUT per tag is slow); "
                    "default: --growth-tags")
    ap.add_argument("--growth-duration", type=int, default=5, help="seconds of oha per growth cell")
    ap.add_argument("--skip-growth", action="store_true")
    ap.add_argument("--growth-dir", default=None,
                    help="where the growth test's server storage goes (default: the scratch "
                    "directory; e.g. /dev/shm to skip deleting Distribution's ~1.2 million "
                    "files from disk, ~3 min)")
    ap.add_argument("--skip-ceilings", action="store_true")
    ap.add_argument("--skip-regbench", action="store_true")
    ap.add_argument("--skip-auth", action="store_true",
                    help="leave out the sign-in and memory rows with authentication on")
    ap.add_argument("--only-auth", action="store_true",
                    help="only those rows (= --skip-ceilings --skip-regbench --skip-growth and the "
                    "S3, gc and pg stages); --only-* options add up: --only-s3 --only-gc runs both")
    ap.add_argument("--skip-s3", action="store_true", help="leave out blob throughput on S3 (Garage)")
    ap.add_argument("--only-s3", action="store_true", help="only blob throughput on S3 (Garage)")
    ap.add_argument("--skip-gc", action="store_true", help="leave out garbage collection over --gc-blobs blobs")
    ap.add_argument("--only-gc", action="store_true", help="only garbage collection")
    ap.add_argument("--skip-pg", action="store_true", help="leave out catalog and tag pages on PostgreSQL")
    ap.add_argument("--only-pg", action="store_true", help="only catalog and tag pages on PostgreSQL")
    ap.add_argument("--s3-url", default=os.environ.get("BERTH_TEST_S3"),
                    help="bucket for the S3 stages, s3://BUCKET[/PREFIX] (default $BERTH_TEST_S3); endpoint, "
                    "region and keys from AWS_* (scripts/start-garage.sh prints them all)")
    ap.add_argument("--s3-blob-mib", type=int, default=64, help="blob size for the S3 stage (default 64)")
    ap.add_argument("--s3-chunks", type=int, default=4, help="PATCHes per chunked upload on S3 (default 4)")
    ap.add_argument("--s3-small-count", type=int, default=500,
                    help="--small-kib uploads per run of the S3 small-uploads row, 16 connections (0: leave out)")
    ap.add_argument("--gc-blobs", type=int, default=100000, help="blobs in each garbage-collection store (default 100000)")
    ap.add_argument("--gc-s3-blobs", type=int, default=None,
                    help="blobs for berth on S3 + PostgreSQL (default: --gc-blobs)")
    ap.add_argument("--gc-blob-bytes", type=int, default=64, help="size of each of those blobs (default 64)")
    ap.add_argument("--gc-per-manifest", type=int, default=10, help="blobs per manifest, config included (default 10)")
    ap.add_argument("--gc-repos", type=int, default=100, help="repositories the blobs are spread over (default 100)")
    ap.add_argument("--gc-clients", type=int, default=32, help="connections filling the stores (default 32)")
    ap.add_argument("--gc-backends", default="fs,s3",
                    help="berth's stores for the gc stage: fs (files + SQLite) and/or s3 (S3 + PostgreSQL); "
                    "Distribution runs on files with fs (default fs,s3)")
    ap.add_argument("--gc-dir", default=None, help="where the gc stage's file stores go (default: scratch directory)")
    ap.add_argument("--skip-trust", action="store_true", help="leave out the tags-and-trust rows")
    ap.add_argument("--only-trust", action="store_true",
                    help="only manifest PUTs under tag policies and berth lint")
    ap.add_argument("--skip-mirror", action="store_true", help="leave out the mirror rows")
    ap.add_argument("--only-mirror", action="store_true", help="only the mirror rows (pulls through a pull-through cache)")
    ap.add_argument("--only-https", action="store_true", help="only the HTTPS rows (berth tls init's certificate, both servers)")
    ap.add_argument("--skip-https", action="store_true", help="skip the HTTPS rows")
    ap.add_argument("--only-scan", action="store_true", help="only the scanning rows (inventory, advisory matching)")
    ap.add_argument("--skip-scan", action="store_true", help="skip the scanning rows")
    ap.add_argument("--scan-image-mib", type=int, default=1024, help="size of the scanned image (default 1024)")
    ap.add_argument("--scan-images", type=int, default=10000, help="stored inventories matched again (default 10000)")
    ap.add_argument("--scan-advisories", type=int, default=30000,
                    help="advisories in the synthetic Debian:12 database (default 30000)")
    ap.add_argument("--skip-web", action="store_true", help="leave out the web site and search rows")
    ap.add_argument("--only-web", action="store_true", help="only the web site and search rows")
    ap.add_argument("--web-repos", type=int, default=100000, help="repositories for the web stage (default 100000)")
    ap.add_argument("--trust-puts", type=int, default=2000, help="manifest PUTs per run of the trust rows (default 2000)")
    ap.add_argument("--trust-golden", type=int, default=20, help="golden images the golden check compares with (default 20)")
    ap.add_argument("--pg-url", default=os.environ.get("BERTH_TEST_POSTGRES"),
                    help="PostgreSQL to make scratch databases on (default $BERTH_TEST_POSTGRES; "
                    "scripts/start-postgres.sh prints it); the role needs CREATEDB")
    ap.add_argument("--pg-small", type=int, default=100, help="small size of the PostgreSQL listing stage (default 100)")
    ap.add_argument("--pg-large", type=int, default=100000,
                    help="large size: tags in the repository and repositories (default 100000)")
    ap.add_argument("--auth-signins", type=int, default=1000,
                    help="distinct password sign-ins before the RSS reading (default 1000)")
    ap.add_argument("--auth-distinct", type=int, default=50,
                    help="distinct users per run of the sign-in rate row (default 50)")
    ap.add_argument("--auth-clients", type=int, default=8,
                    help="concurrent clients for the sign-ins and the mix (default 8)")
    ap.add_argument("--auth-mix-iterations", type=int, default=300,
                    help="iterations per pass of the conformance-like mix, spread over --auth-clients "
                    "(default 300)")
    ap.add_argument("--auth-rss-target", type=int, default=48,
                    help="berth's RSS target for the auth rows, MiB (default 48)")
    ap.add_argument("--auth-settle", type=int, default=15,
                    help="seconds between the RSS reading right after and the later one (default 15)")
    ap.add_argument("--servers", default="berth,distribution",
                    help="comma-separated subset of berth,distribution")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--seed-cpus", default="0-%d" % ((os.cpu_count() or 1) - 1),
                    help="taskset list for the servers while the growth test seeds them "
                    "(not measured; default all CPUs)")
    ap.add_argument("--berth-bin", default=os.path.join(ROOT, "target", "release", "berth"))
    ap.add_argument("--dist-bin", default="docker-registry")
    ap.add_argument("--nginx-bin", default="nginx")
    ap.add_argument("--regbench", default=None,
                    help="path to regbench.py (default $BERTH_SHARED_DIR/bench/regbench.py, "
                    "BERTH_SHARED_DIR defaulting to ../shared beside the repository)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.md"))
    ap.add_argument("--tmp", default=None, help="parent of the scratch directory (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, data)")
    args = ap.parse_args()
    if args.dist_growth_tags is None:
        args.dist_growth_tags = args.growth_tags
    only = [x for x in ("auth", "s3", "gc", "pg", "trust", "web", "mirror", "https", "scan") if getattr(args, "only_" + x)]
    for x in only:
        if getattr(args, "skip_" + x):
            ap.error("--only-%s and --skip-%s" % (x, x))
    if only:
        for x in ("ceilings", "regbench", "growth", "auth", "s3", "gc", "pg", "trust", "web", "mirror", "https", "scan"):
            if x not in only:
                setattr(args, "skip_" + x, True)
    args.gc_backends = [x.strip() for x in args.gc_backends.split(",") if x.strip()]
    if any(x not in ("fs", "s3") for x in args.gc_backends):
        ap.error("--gc-backends: fs and/or s3")
    if args.gc_blobs < 4 * args.gc_per_manifest or args.gc_per_manifest < 2:
        ap.error("need --gc-per-manifest >= 2 and --gc-blobs >= 4 × --gc-per-manifest")
    if args.pg_small < 2 or args.pg_large <= args.pg_small:
        ap.error("need 2 <= --pg-small < --pg-large")
    if min(args.auth_signins, args.auth_distinct, args.auth_clients, args.auth_mix_iterations) < 1:
        ap.error("the --auth-* counts must be at least 1")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            ap.error("unknown server %r" % s)
    if args.growth_small < 2 or args.growth_tags <= args.growth_small or args.growth_repos <= args.growth_small:
        ap.error("need 2 <= --growth-small < --growth-tags, --growth-repos")
    shared = os.environ.get("BERTH_SHARED_DIR") or os.path.join(os.path.dirname(ROOT), "shared")
    args.regbench = args.regbench or os.path.join(shared, "bench", "regbench.py")
    args.berth_bin = os.path.abspath(args.berth_bin)

    missing = []
    files = [("berth", args.berth_bin)] if "berth" in servers else []
    if not (args.skip_regbench and args.skip_ceilings):
        files.append(("regbench", args.regbench))
    for what, path in files:
        if not os.path.isfile(path):
            missing.append("%s (%s)" % (what, path))
    tools = ["taskset", "oha"]
    if not args.skip_pg or (not args.skip_gc and "s3" in args.gc_backends):
        tools.append("psql")
    if not args.skip_ceilings:
        tools += ["sha256sum", args.nginx_bin]
    if "distribution" in servers:
        tools.append(args.dist_bin)
        if not args.skip_auth:
            tools.append("htpasswd")
    for tool in tools:
        if not shutil.which(tool):
            missing.append(tool)
    if missing:
        sys.exit("bench: missing %s (scripts/bench.sh installs and builds them)" % ", ".join(missing))
    if len(os.sched_getaffinity(0)) < 2 and os.cpu_count() < 2:
        log("warning: fewer than 2 CPUs; server and client will share one")

    command = os.environ.get("BERTH_BENCH_CMD") or shlex.join(["python3", "bench/compare.py"] + sys.argv[1:])
    started = now()
    busy0, own0 = busy_cpu_s(), own_cpu_s()
    with open("/proc/loadavg") as f:
        loadavg0 = " ".join(f.read().split()[:3])
    info = machine_info(args)
    # every client we start (regbench, oha, sha256sum, seeding threads) runs on client_cpu;
    # servers are started with an explicit taskset to server_cpu
    os.sched_setaffinity(0, {args.client_cpu})
    tmp = tempfile.mkdtemp(prefix="berth-bench-", dir=args.tmp)
    log("scratch directory %s" % tmp)
    errors, c, results, g, a = [], {}, {}, {}, {}
    xs = {}     # the S3, gc and PostgreSQL stages
    ts = stamp()

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        if not args.skip_ceilings:
            try:
                c = ceilings(args, tmp)
            except Exception as e:
                errors.append("ceilings: %s" % e)
                log("FAILED ceilings: %s" % e)
        if not args.skip_regbench:
            for kind in servers:
                try:
                    results[kind] = regbench(kind, args, tmp)
                    if "c" in args.tests:
                        rows = results[kind].setdefault("rows", [])
                        at = next((i + 1 for i, r in enumerate(rows) if r["key"] == "c"), len(rows))
                        rows.insert(at, get_again(kind, args, tmp))
                except Exception as e:
                    errors.append("regbench against %s: %s" % (NAMES[kind], e))
                    log("FAILED: %s" % e)
        if not args.skip_auth:
            for kind in servers:
                try:
                    a[kind] = auth_rows(kind, args, tmp)
                    errors.extend("sign-ins and memory with auth on, %s, %s" % (NAMES[kind], e)
                                  for e in a[kind]["errors"])
                except Exception as e:
                    errors.append("sign-ins and memory with auth on, %s: %s" % (NAMES[kind], e))
                    log("FAILED: %s" % e)
        if not args.skip_growth:
            for kind in servers:
                try:
                    g[kind] = growth(kind, args, tmp, last=kind == servers[-1])
                except Exception as e:
                    errors.append("growth for %s: %s" % (NAMES[kind], e))
                    log("FAILED: %s" % e)
        tgt, tgt_error = None, None
        if not args.skip_s3 or (not args.skip_gc and "s3" in args.gc_backends and "berth" in servers):
            try:
                tgt = S3Target(args.s3_url)
            except Failure as e:
                tgt_error = str(e)
        if not args.skip_s3:
            if tgt is None:
                errors.append("S3 stage: %s" % tgt_error)
                log("FAILED S3 stage: %s" % tgt_error)
            else:
                xs["s3"] = {"endpoint": tgt.endpoint, "bucket": tgt.bucket}
                for kind in servers:
                    try:
                        xs["s3"][kind] = s3_throughput(kind, args, tmp, tgt, ts)
                    except Exception as e:
                        errors.append("S3 stage, %s: %s" % (NAMES[kind], e))
                        log("FAILED: %s" % e)
        if not args.skip_gc:
            xs["gc"] = {}
            for kind in servers:
                for backend in (args.gc_backends if kind == "berth" else ["fs"]):
                    key = "%s %s" % (kind, backend)
                    try:
                        if backend == "s3" and tgt is None:
                            raise Failure(tgt_error)
                        xs["gc"][key] = gc_stage(kind, backend, args, tmp, ts, tgt, args.pg_url)
                    except Exception as e:
                        errors.append("garbage collection, %s on %s: %s" % (NAMES[kind], backend, e))
                        log("FAILED: %s" % e)
        if not args.skip_trust:
            xs["trust"] = {}
            for kind in servers:
                try:
                    xs["trust"][kind] = trust_stage(kind, args, tmp)
                except Exception as e:
                    errors.append("tags and trust, %s: %s" % (NAMES[kind], e))
                    log("FAILED: %s" % e)
        if not args.skip_mirror and "berth" in servers:
            try:
                xs["mirror"] = mirror_stage(args, tmp, servers)
            except Exception as e:
                errors.append("mirror: %s" % e)
                log("FAILED: %s" % e)
        if not args.skip_https:
            try:
                xs["https"] = https_stage(args, tmp, servers)
            except Exception as e:
                errors.append("https: %s" % e)
                log("FAILED: %s" % e)
        if not args.skip_scan and "berth" in servers:
            try:
                xs["scan"] = scan_stage(args, tmp)
            except Exception as e:
                errors.append("scanning: %s" % e)
                log("FAILED: %s" % e)
        if not args.skip_web and "berth" in servers:
            try:
                xs["web"] = web_stage(args, tmp)
            except Exception as e:
                errors.append("web site and search: %s" % e)
                log("FAILED: %s" % e)
        if not args.skip_pg and "berth" in servers:
            try:
                xs["pg"] = pg_listings(args, tmp, args.pg_url, ts)
            except Exception as e:
                errors.append("listings on PostgreSQL: %s" % e)
                log("FAILED: %s" % e)
    except KeyboardInterrupt:
        errors.append("interrupted")
        log("interrupted")
    finally:
        for pr in list(LIVE):
            pr.stop()
        if args.keep:
            log("kept %s" % tmp)
        else:
            remove_tree(tmp)

    wall = now() - started
    other = (busy_cpu_s() - busy0) - (own_cpu_s() - own0)
    info["other_load"] = (
        "other CPU use on the machine during the run: %.0f CPU-seconds, %.0f%% of one core "
        "(kernel threads flushing this run's writes count here too); load average before: %s"
        % (max(other, 0), 100.0 * max(other, 0) / wall, loadavg0))
    if other / wall > 0.10:
        info["other_load"] += " — **the machine was not idle: figures are less reliable**"
    text = report(args, info, c, results, g, a, errors, started, command, xs)
    print()
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"machine": info, "command": command, "ceilings": c, "regbench": results,
                   "growth": {k: dict(v, rows={lab: {str(n): x for n, x in r.items()}
                                               for lab, r in v["rows"].items()})
                              for k, v in g.items()},
                   "auth": a, "s3": xs.get("s3"), "gc": xs.get("gc"), "trust": xs.get("trust"), "web": xs.get("web"), "mirror": xs.get("mirror"),
                   "https": xs.get("https"), "scan": xs.get("scan"),
                   "pg": dict(xs["pg"], rows={lab: {str(n): x for n, x in r.items()}
                                              for lab, r in xs["pg"]["rows"].items()}) if xs.get("pg") else None,
                   "errors": errors}, f, indent=1)
    log("wrote %s (and .json)" % args.out)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
