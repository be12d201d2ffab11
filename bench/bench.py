#!/usr/bin/env python3
"""dockpub benchmarks (issue 8). Run through bench/run, which installs and builds first.

Scenarios, each against the real Docker daemon and a loopback registry this script
starts and stops:
  1  end to end: N distinct small Dockerfiles, concurrency 2, dockpub vs
     `docker build && docker push`, alternating A B A B
  2  API: wrk on GET /api/v1/builds?limit=50 and GET /api/v1/builds/{id},
     10 000 builds stored through the store's own insert path (examples/bench_seed.rs)
  3  memory: RSS idle after start, peak during scenario 1 (it runs with 1)
  4  upload: 1 GiB context, RSS growth and MB/s (needs the `context` field)
  5  log-heavy build: RUN seq 1 200000, dockpub vs CLI, every line stored

Writes BENCHMARKS.md (and the raw figures as JSON under target/bench/).
Python 3 standard library only.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKPUB = os.path.join(ROOT, "target", "release", "dockpub")
SEEDER = os.path.join(ROOT, "target", "release", "examples", "bench_seed")
BASE_IMAGE = "dockpub-test-base:latest"
MIB = 1024 * 1024
GIB = 1024 * MIB

TARGETS = {
    "e2e_ratio": 1.05,
    "list_rps": 20000,
    "get_rps": 30000,
    "idle_rss_mib": 20,
    "peak_rss_mib": 40,
    "upload_growth_mib": 32,
    "logs_ratio": 1.10,
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)


def sh_out(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}


def parse_ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value, _unit = line.split()
                    out[key[:-1]] = int(value) * 1024
    except OSError:
        pass
    return out


def proc_cpu(pid):
    """CPU seconds (user + system) a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class RssSampler:
    """Samples a process's VmRSS every `interval` seconds in a thread."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.max_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            rss = proc_status(self.pid).get("VmRSS", 0)
            self.max_rss = max(self.max_rss, rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def multipart(fields):
    """fields: list of (name, value bytes|str, filename or None)."""
    boundary = "dockpubbench" + uuid.uuid4().hex
    parts = []
    for name, value, filename in fields:
        if isinstance(value, str):
            value = value.encode()
        disp = f'form-data; name="{name}"'
        if filename:
            disp += f'; filename="{filename}"'
        parts.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Api:
    """A keep-alive HTTP client for one dockpub."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise

    def json(self, method, path, body=None, headers=None):
        status, data = self.request(method, path, body, headers)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, {"raw": data.decode(errors="replace")}

    def submit(self, dockerfile, repository, tag, push=True, extra=()):
        fields = [("file", dockerfile, "Dockerfile"), ("repository", repository, None),
                  ("tag", tag, None), ("push", "true" if push else "false", None)]
        body, ctype = multipart(fields + list(extra))
        status, doc = self.json("POST", "/api/v1/builds", body, {"Content-Type": ctype})
        if status != 202:
            raise RuntimeError(f"submit answered {status}: {doc}")
        return doc

    def wait_final(self, ids, poll=0.025, timeout=1800):
        """Polls the list until every id is final; returns {id: build}."""
        pending = set(ids)
        done = {}
        limit = min(500, max(50, len(ids)))
        deadline = time.monotonic() + timeout
        while pending:
            status, doc = self.json("GET", f"/api/v1/builds?limit={limit}")
            if status != 200:
                raise RuntimeError(f"list answered {status}: {doc}")
            for build in doc["builds"]:
                if build["id"] in pending and build["status"] in ("succeeded", "failed"):
                    pending.discard(build["id"])
                    done[build["id"]] = build
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"builds {sorted(pending)} not final after {timeout}s")
                time.sleep(poll)
        return done


class Registry:
    """A loopback docker-registry, like scripts/test starts."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "registry")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        with open(os.path.join(self.dir, "config.yml"), "w") as f:
            f.write(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.dir}/data
  delete:
    enabled: true
http:
  addr: {self.addr}
""")
        self.logf = open(os.path.join(self.dir, "registry.log"), "w")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve",
                                      os.path.join(self.dir, "config.yml")],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/v2/")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"registry on {self.addr} did not come up")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


class Server:
    """One `dockpub serve` on a fresh port, started from an empty directory so no
    ./config.toml is read."""

    def __init__(self, workdir, name, data_dir=None, extra=()):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data_dir = data_dir or os.path.join(self.dir, "data")
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "dockpub.log")
        self.logf = open(self.log_path, "a")
        cmd = [DOCKPUB, "serve", "--bind", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir,
               "--max-concurrent-builds", "2", "--build-network", "none", *extra]
        self.cmd = cmd
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKPUB_")}
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=env)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while True:
            with open(self.log_path) as f:
                if "dockpub listening on http://" in f.read():
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log_path) as f:
                    tail = f.read()[-2000:]
                self.stop()
                raise RuntimeError(f"dockpub did not start: {tail}")
            time.sleep(0.02)
        self.api = Api(self.port)
        status, _ = self.api.request("GET", "/healthz")
        if status != 200:
            raise RuntimeError(f"/healthz answered {status}")

    def memory(self):
        return proc_status(self.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def dockerfile(unique, run_line=None):
    """A small Dockerfile whose ARG (before the RUN) makes every build distinct,
    so neither builder's cache answers for the RUN (a LABEL would not do under
    BuildKit: it is no part of a RUN's cache key)."""
    run_line = run_line or f"RUN echo {unique} > /bench-id && ls -l / > /bench-ls"
    return f'FROM {BASE_IMAGE}\nARG BENCH_ID="{unique}"\n{run_line}\n'


def cli_build_push(ref, context_dir, log_path):
    """`docker build && docker push` exactly as a user types it, classic builder
    (what dockpub's API build uses), RUN steps without network."""
    cmd = (f"docker build --network none -t {shlex.quote(ref)} {shlex.quote(context_dir)} "
           f"&& docker push {shlex.quote(ref)}")
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    start = time.monotonic()
    with open(log_path, "w") as out:
        status = subprocess.run(["sh", "-c", cmd], stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if status != 0:
        with open(log_path) as f:
            raise RuntimeError(f"CLI build/push of {ref} failed: {f.read()[-1500:]}")
    return time.monotonic() - start


def remove_images(refs):
    refs = list(refs)
    for i in range(0, len(refs), 50):
        subprocess.run(["docker", "rmi", "--force", *refs[i:i + 50]], capture_output=True)


# --------------------------------------------------------------------------- scenarios


def scenario_e2e(ctx):
    """1 (and 3's peak): N builds, concurrency 2, dockpub vs docker CLI, A B A B."""
    n, rounds, reg, work = ctx.builds, ctx.rounds, ctx.registry.addr, ctx.work
    repo_a = f"{reg}/bench/e2e-dockpub"
    repo_b = f"{reg}/bench/e2e-cli"
    server = Server(work, "s1")
    out = {"n": n, "rounds": rounds, "rounds_detail": [], "server_cmd": server.cmd}
    try:
        time.sleep(1.0)
        out["idle_rss_first"] = server.memory().get("VmRSS")
        # Warm-up, not timed: the base layer reaches both repositories once.
        tag = f"warm-{ctx.run_id}"
        b = server.api.submit(dockerfile(f"{ctx.run_id}-warm-a"), repo_a, tag)
        warm = server.api.wait_final([b["id"]])
        if warm[b["id"]]["status"] != "succeeded":
            raise RuntimeError(f"warm-up build failed: {warm[b['id']].get('error')}")
        d = os.path.join(work, "s1-cli", "warm")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "Dockerfile"), "w") as f:
            f.write(dockerfile(f"{ctx.run_id}-warm-b"))
        cli_build_push(f"{repo_b}:{tag}", d, os.path.join(d, "log"))
        remove_images([f"{repo_a}:{tag}", f"{repo_b}:{tag}"])

        for r in range(rounds):
            # A: dockpub
            tags = [f"r{r}-{i}-{ctx.run_id}" for i in range(n)]
            cpu0 = proc_cpu(server.pid)
            with RssSampler(server.pid) as sampler:
                t0 = time.monotonic()
                ids = [server.api.submit(dockerfile(f"{ctx.run_id}-a-{r}-{i}"), repo_a, tags[i])["id"]
                       for i in range(n)]
                submitted = time.monotonic() - t0
                builds = server.api.wait_final(ids)
                wall_a = time.monotonic() - t0
            cpu_a = proc_cpu(server.pid) - cpu0
            failed = [b for b in builds.values() if b["status"] != "succeeded"]
            if failed:
                raise RuntimeError(f"dockpub build {failed[0]['id']} failed: {failed[0].get('error')}")
            created = min(parse_ts(b["created_at"]) for b in builds.values())
            finished = max(parse_ts(b["finished_at"]) for b in builds.values())
            per_build = [parse_ts(b["finished_at"]) - parse_ts(b["started_at"]) for b in builds.values()]
            build_phase = [parse_ts(b["built_at"]) - parse_ts(b["started_at"]) for b in builds.values()]
            push_phase = [parse_ts(b["finished_at"]) - parse_ts(b["built_at"]) for b in builds.values()]
            remove_images(f"{repo_a}:{t}" for t in tags)
            log(f"e2e round {r + 1}/{rounds}: dockpub {wall_a:.2f}s (own timestamps "
                f"{finished - created:.2f}s, peak RSS {sampler.max_rss / MIB:.1f} MiB)")

            # B: docker CLI, two at a time
            dirs = []
            for i in range(n):
                d = os.path.join(work, "s1-cli", f"r{r}-{i}")
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "Dockerfile"), "w") as f:
                    f.write(dockerfile(f"{ctx.run_id}-b-{r}-{i}"))
                dirs.append(d)
            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=2) as pool:
                cli_times = list(pool.map(
                    lambda i: cli_build_push(f"{repo_b}:{tags[i]}", dirs[i],
                                             os.path.join(dirs[i], "log")), range(n)))
            wall_b = time.monotonic() - t0
            remove_images(f"{repo_b}:{t}" for t in tags)
            log(f"e2e round {r + 1}/{rounds}: docker CLI {wall_b:.2f}s -> ratio {wall_a / wall_b:.3f}")
            out["rounds_detail"].append({
                "dockpub_wall": wall_a, "dockpub_submit_all": submitted,
                "dockpub_own_span": finished - created,
                "dockpub_per_build_median": statistics.median(per_build),
                "dockpub_build_phase_median": statistics.median(build_phase),
                "dockpub_push_phase_median": statistics.median(push_phase),
                "cli_wall": wall_b, "cli_per_build_median": statistics.median(cli_times),
                "ratio": wall_a / wall_b, "own_ratio": (finished - created) / wall_b,
                "peak_rss_sampled": sampler.max_rss, "dockpub_cpu_per_build": cpu_a / n,
            })
        mem = server.memory()
        out["vmhwm_end"] = mem.get("VmHWM")
        out["vmrss_end"] = mem.get("VmRSS")
    finally:
        server.stop()
    rd = out["rounds_detail"]
    for key in ("dockpub_wall", "dockpub_own_span", "cli_wall", "ratio", "own_ratio",
                "dockpub_per_build_median", "cli_per_build_median", "dockpub_build_phase_median",
                "dockpub_push_phase_median", "peak_rss_sampled", "dockpub_cpu_per_build"):
        out[key] = stats([x[key] for x in rd])
    return out


def scenario_idle(ctx):
    """3: RSS after start (empty data dir, one /healthz, 1 s later), fresh server each run."""
    values = []
    for i in range(ctx.repeats):
        server = Server(ctx.work, f"s3-idle-{i}")
        try:
            time.sleep(1.0)
            values.append(server.memory().get("VmRSS"))
        finally:
            server.stop()
    return {"idle_rss": stats(values)}


WRK_GET_LUA = """
math.randomseed(%d)
request = function()
  return wrk.format("GET", "/api/v1/builds/" .. math.random(1, %d))
end
"""


def parse_wrk(text):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)", text)
    lat = re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", text)
    p99 = re.search(r"99%\s+([\d.]+\w+)", text)
    return {"rps": rps, "requests": requests, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else "",
            "latency_avg": lat.group(1) if lat else None, "latency_p99": p99.group(1) if p99 else None}


def scenario_api(ctx):
    """2: wrk on the list and the get route with ctx.rows builds stored."""
    data_dir = os.path.join(ctx.work, "s2", "data")
    os.makedirs(data_dir, exist_ok=True)
    t0 = time.monotonic()
    run([SEEDER, data_dir, str(ctx.rows), f"{ctx.registry.addr}/bench/seeded"])
    seed_secs = time.monotonic() - t0
    log(f"api: {ctx.rows} builds stored through the store in {seed_secs:.1f}s")
    server = Server(ctx.work, "s2", data_dir=data_dir)
    out = {"rows": ctx.rows, "seed_secs": seed_secs, "wrk": ctx.wrk_args, "duration": ctx.wrk_secs,
           "list": [], "get": []}
    try:
        status, doc = server.api.json("GET", "/api/v1/builds?limit=50")
        assert status == 200 and len(doc["builds"]) == 50 and doc["next"], (status, str(doc)[:300])
        out["list_body_bytes"] = len(json.dumps(doc))
        status, doc = server.api.json("GET", f"/api/v1/builds/{ctx.rows // 2}")
        assert status == 200 and doc["id"] == ctx.rows // 2, (status, doc)
        out["get_body_bytes"] = len(json.dumps(doc))
        time.sleep(0.5)
        out["idle_rss_with_rows"] = server.memory().get("VmRSS")
        lua = os.path.join(ctx.work, "s2", "get.lua")
        with open(lua, "w") as f:
            f.write(WRK_GET_LUA % (42, ctx.rows))
        base = f"http://127.0.0.1:{server.port}"
        # Warm-up (page cache, statement cache, connection pool).
        run(["wrk", *ctx.wrk_args, "-d2s", f"{base}/api/v1/builds?limit=50"])
        for r in range(ctx.repeats):
            for kind, cmd in (
                ("list", ["wrk", *ctx.wrk_args, f"-d{ctx.wrk_secs}s", "--latency",
                          f"{base}/api/v1/builds?limit=50"]),
                ("get", ["wrk", *ctx.wrk_args, f"-d{ctx.wrk_secs}s", "--latency", "-s", lua,
                         f"{base}/api/v1/builds/1"]),
            ):
                server_cpu, wrk_cpu = proc_cpu(server.pid), children_cpu()
                result = parse_wrk(run(cmd).stdout)
                result["server_us"] = (proc_cpu(server.pid) - server_cpu) / result["requests"] * 1e6
                result["wrk_us"] = (children_cpu() - wrk_cpu) / result["requests"] * 1e6
                # What 2 otherwise idle cores would serve at these CPU costs per request.
                result["capacity"] = os.cpu_count() * 1e6 / (result["server_us"] + result["wrk_us"])
                out[kind].append(result)
                log(f"api run {r + 1}/{ctx.repeats}: {kind} {result['rps']:.0f} req/s "
                    f"(p99 {result['latency_p99']}, non-2xx {result['non2xx']}, dockpub "
                    f"{result['server_us']:.1f} µs CPU/request, wrk {result['wrk_us']:.1f})")
        out["peak_rss_under_load"] = server.memory().get("VmHWM")
    finally:
        server.stop()
    for kind in ("list", "get"):
        for key in ("rps", "server_us", "wrk_us", "capacity"):
            out[f"{kind}_{key}"] = stats([x[key] for x in out[kind]])
    return out


def tar_bytes(members):
    """A plain tar of (name, bytes) members, in memory, without padding to a full
    10 KiB record (a small archive stays small)."""
    out = []
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        out.append(info.tobuf(format=tarfile.USTAR_FORMAT))
        out.append(data + b"\0" * (-len(data) % 512))
    out.append(b"\0" * 1024)
    return b"".join(out)


def write_big_context(path, total):
    """A plain tar of exactly `total` bytes: small.txt, then big.bin filling the rest
    with incompressible data, then the two zero blocks that end an archive."""
    if os.path.exists(path) and os.path.getsize(path) == total:
        return
    big_size = total - 512 - 512 - 512 - 1024
    assert big_size > 0 and big_size % 512 == 0
    small = b"small file copied by the benchmark\n"
    block = os.urandom(MIB)
    with open(path + ".tmp", "wb") as f:
        for name, size in (("small.txt", len(small)), ("big.bin", big_size)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, int(time.time())
            f.write(info.tobuf(format=tarfile.USTAR_FORMAT))
            if name == "small.txt":
                f.write(small + b"\0" * (512 - len(small)))
            else:
                left = size
                while left:
                    chunk = block[:min(left, len(block))]
                    f.write(chunk)
                    left -= len(chunk)
        f.write(b"\0" * 1024)
    os.rename(path + ".tmp", path)


def serve_help_mentions(flag):
    return flag in run([DOCKPUB, "serve", "--help"], check=False).stdout


def scenario_upload(ctx):
    """4: a 1 GiB context upload with push=false: RSS growth and upload MB/s."""
    extra = ["--max-upload-bytes", str(2 * GIB)]
    if serve_help_mentions("--max-context-bytes"):
        extra += ["--max-context-bytes", str(2 * GIB)]
    server = Server(ctx.work, "s4", extra=extra)
    repo = f"{ctx.registry.addr}/bench/upload"
    df = f"FROM {BASE_IMAGE}\nLABEL bench.id=\"{ctx.run_id}-upload\"\nCOPY small.txt /small.txt\n"
    out = {"size": ctx.context_bytes, "runs": []}
    refs = []
    try:
        # Probe with a tiny context: does this dockpub take a `context` field?
        small = tar_bytes([("small.txt", b"probe\n")])
        fields = [("file", df, "Dockerfile"), ("context", small, "context.tar"),
                  ("repository", repo, None), ("tag", "probe", None), ("push", "false", None)]
        body, ctype = multipart(fields)
        status, doc = server.api.json("POST", "/api/v1/builds", body, {"Content-Type": ctype})
        error = doc.get("error", {}) if isinstance(doc, dict) else {}
        if status == 400 and error.get("code") == "unknown_field" and "context" in error.get("message", ""):
            out["available"] = False
            out["probe"] = doc["error"]["message"]
            log(f"upload: not available in this build ({doc['error']['message']})")
            return out
        if status != 202:
            raise RuntimeError(f"context probe answered {status}: {doc}")
        probe = server.api.wait_final([doc["id"]])[doc["id"]]
        refs.append(f"{repo}:probe")
        if probe["status"] != "succeeded":
            raise RuntimeError(f"context probe build failed: {probe.get('error')}")
        out["available"] = True

        path = os.path.join(ctx.work, "context-1GiB.tar")
        log(f"upload: writing a {ctx.context_bytes / MIB:.0f} MiB context to {path}")
        write_big_context(path, ctx.context_bytes)
        dfile = os.path.join(ctx.work, "s4", "Dockerfile")
        for r in range(ctx.repeats):
            with open(dfile, "w") as f:
                f.write(df.replace("-upload", f"-upload-{r}"))
            tag = f"u{r}-{ctx.run_id}"
            before = server.memory().get("VmRSS")
            with RssSampler(server.pid, interval=0.01) as sampler:
                t0 = time.monotonic()
                curl = run(["curl", "--noproxy", "*", "-sS", "-o", "-", "-w", "\n%{http_code}",
                            "-H", "Expect:",
                            "-F", f"file=@{dfile};filename=Dockerfile",
                            "-F", f"context=@{path};filename=context.tar;type=application/x-tar",
                            "-F", f"repository={repo}", "-F", f"tag={tag}", "-F", "push=false",
                            f"http://127.0.0.1:{server.port}/api/v1/builds"])
                upload_secs = time.monotonic() - t0
                body, code = curl.stdout.rsplit("\n", 1)
                if code != "202":
                    raise RuntimeError(f"1 GiB upload answered {code}: {body[:500]}")
                build_id = json.loads(body)["id"]
                uploaded_rss = sampler.max_rss
                build = server.api.wait_final([build_id])[build_id]
                total_secs = time.monotonic() - t0
            refs.append(f"{repo}:{tag}")
            if build["status"] != "succeeded":
                raise RuntimeError(f"upload build {build_id} failed: {build.get('error')}")
            run_out = {"upload_secs": upload_secs, "mb_per_s": ctx.context_bytes / 1e6 / upload_secs,
                       "mib_per_s": ctx.context_bytes / MIB / upload_secs,
                       "total_secs": total_secs, "rss_before": before,
                       "growth_upload": max(0, uploaded_rss - before),
                       "growth": max(0, sampler.max_rss - before)}
            out["runs"].append(run_out)
            log(f"upload run {r + 1}/{ctx.repeats}: {run_out['mb_per_s']:.0f} MB/s, RSS growth "
                f"{run_out['growth'] / MIB:.1f} MiB, built in {total_secs:.1f}s")
        out["vmhwm_end"] = server.memory().get("VmHWM")
    finally:
        server.stop()
        remove_images(refs)
    for key in ("mb_per_s", "mib_per_s", "growth", "growth_upload", "upload_secs", "total_secs"):
        out[key] = stats([x[key] for x in out["runs"]])
    return out


def check_seq_log(text, count):
    numbers = [line for line in text.split("\n") if line.isdigit()]
    expected = [str(i) for i in range(1, count + 1)]
    return numbers == expected, len(numbers)


def scenario_logs(ctx):
    """5: RUN seq 1 200000, dockpub vs CLI, A B A B, and every line stored."""
    reg, work, count = ctx.registry.addr, ctx.work, ctx.seq_lines
    repo_a, repo_b = f"{reg}/bench/logs-dockpub", f"{reg}/bench/logs-cli"
    server = Server(work, "s5")
    out = {"lines": count, "runs": []}
    try:
        for r in range(ctx.repeats):
            tag = f"l{r}-{ctx.run_id}"
            run_line = f"RUN seq 1 {count}"
            cpu0 = proc_cpu(server.pid)
            t0 = time.monotonic()
            # The classic builder, as the CLI side: the daemon's BuildKit clips a step's
            # output at 200 KiB/s, so no BuildKit build could store every line.
            b = server.api.submit(dockerfile(f"{ctx.run_id}-la-{r}", run_line), repo_a, tag,
                                  extra=[("buildkit", "false", None)])
            build = server.api.wait_final([b["id"]])[b["id"]]
            wall_a = time.monotonic() - t0
            cpu_a = proc_cpu(server.pid) - cpu0
            if build["status"] != "succeeded":
                raise RuntimeError(f"log build failed: {build.get('error')}")
            t1 = time.monotonic()
            status, data = server.api.request("GET", f"/api/v1/builds/{b['id']}/logs")
            logs_secs = time.monotonic() - t1
            complete, stored = check_seq_log(data.decode(), count)
            own = parse_ts(build["finished_at"]) - parse_ts(build["created_at"])
            remove_images([f"{repo_a}:{tag}"])

            d = os.path.join(work, "s5-cli", f"r{r}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "Dockerfile"), "w") as f:
                f.write(dockerfile(f"{ctx.run_id}-lb-{r}", run_line))
            log_path = os.path.join(work, "s5-cli", f"r{r}.log")
            wall_b = cli_build_push(f"{repo_b}:{tag}", d, log_path)
            with open(log_path) as f:
                cli_complete, cli_lines = check_seq_log(f.read(), count)
            remove_images([f"{repo_b}:{tag}"])
            run_out = {"dockpub_wall": wall_a, "dockpub_own": own, "dockpub_cpu": cpu_a, "cli_wall": wall_b,
                       "ratio": wall_a / wall_b, "stored_lines": stored, "complete": complete,
                       "cli_lines": cli_lines, "cli_complete": cli_complete,
                       "get_logs_secs": logs_secs, "log_bytes": len(data), "http_status": status}
            out["runs"].append(run_out)
            log(f"logs run {r + 1}/{ctx.repeats}: dockpub {wall_a:.2f}s, CLI {wall_b:.2f}s, ratio "
                f"{run_out['ratio']:.3f}, {stored}/{count} lines stored, in order: {complete}")
        out["vmhwm_end"] = server.memory().get("VmHWM")
    finally:
        server.stop()
    for key in ("dockpub_wall", "dockpub_own", "dockpub_cpu", "cli_wall", "ratio", "get_logs_secs"):
        out[key] = stats([x[key] for x in out["runs"]])
    out["all_complete"] = all(x["complete"] for x in out["runs"])
    return out


# --------------------------------------------------------------------------- report


def machine_info():
    mem = sh_out("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    cpu = sh_out("awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo")
    return {
        "nproc": sh_out("nproc"), "cpu": cpu, "memory": mem, "kernel": platform.release(),
        "docker": sh_out("docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'"),
        "storage_driver": sh_out("docker info --format '{{.Driver}}'"),
        "wrk": sh_out("wrk --version 2>&1 | head -1 | sed 's/ Copyright.*//'"),
        "rustc": sh_out("rustc --version"),
        "commit": sh_out(f"git -C {shlex.quote(ROOT)} rev-parse --short HEAD") +
        (" (with uncommitted changes)" if sh_out(f"git -C {shlex.quote(ROOT)} status --porcelain -- src Cargo.toml Cargo.lock") else ""),
    }


def fmt_s(st, unit="s", digits=2, scale=1.0):
    if not st:
        return "n/a"
    m, lo, hi = st["median"] * scale, st["min"] * scale, st["max"] * scale
    return f"{m:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f})"


def mib(st, digits=1):
    return fmt_s(st, " MiB", digits, 1 / MIB)


def verdict(ok):
    return "**met**" if ok else "**missed**"


def write_report(ctx, results, path):
    m = ctx.machine
    L = []
    add = L.append
    add("# dockpub benchmarks\n")
    add("Generated by `bench/run` (bench/bench.py) — do not edit by hand; the notes at the end come "
        "from bench/notes.md.\n")
    add(f"- Date: {ctx.started.strftime('%Y-%m-%d %H:%M UTC')}, {ctx.elapsed / 60:.1f} min")
    add(f"- Command: `{ctx.command}`" + (" (quick smoke run: fewer repetitions, not for comparing)" if ctx.quick else ""))
    add(f"- dockpub: commit {m['commit']}, `cargo build --release`, {m['rustc']}")
    add(f"- Machine: {m['nproc']} cores ({m['cpu']}), {m['memory']} memory, kernel {m['kernel']}")
    add(f"- Docker: {m['docker']}, storage driver {m['storage_driver']}; registry: docker-registry "
        f"(distribution 2.8) on loopback, filesystem storage; {m['wrk']}")
    add(f"- Load average at start / end: {ctx.load_start} / {ctx.load_end}")
    add("- Noise: other engineers run test suites (builds, pushes, cargo) on this machine and its "
        "Docker daemon at the same time, so figures move between runs. Each figure is the median of "
        f"{ctx.repeats} runs with min–max in brackets; scenarios 1 and 5 alternate dockpub and the CLI "
        "(A B A B) so noise hits both sides.\n")

    add("## Summary\n")
    add("| # | what | measured (median, min–max) | target | |")
    add("|---|---|---|---|---|")
    e2e, api, idle, up, lg = (results.get(k) for k in ("e2e", "api", "idle", "upload", "logs"))
    if e2e:
        r = e2e["ratio"]
        add(f"| 1 | end to end, {e2e['n']} builds, concurrency 2: dockpub wall / CLI wall | "
            f"{fmt_s(r, '×', 3)} | ≤ {TARGETS['e2e_ratio']:.2f}× | {verdict(r['median'] <= TARGETS['e2e_ratio'])} |")
    if api:
        add(f"| 2 | `GET /api/v1/builds?limit=50`, {api['rows']} builds stored | "
            f"{fmt_s(api['list_rps'], ' req/s', 0)} | ≥ {TARGETS['list_rps']} req/s | "
            f"{verdict(api['list_rps']['median'] >= TARGETS['list_rps'])} |")
        add(f"| 2 | `GET /api/v1/builds/{{id}}`, random ids | {fmt_s(api['get_rps'], ' req/s', 0)} | "
            f"≥ {TARGETS['get_rps']} req/s | {verdict(api['get_rps']['median'] >= TARGETS['get_rps'])} |")
    if idle:
        add(f"| 3 | RSS idle after start | {mib(idle['idle_rss'])} | ≤ {TARGETS['idle_rss_mib']} MiB | "
            f"{verdict(idle['idle_rss']['median'] <= TARGETS['idle_rss_mib'] * MIB)} |")
    if e2e:
        peak = e2e["vmhwm_end"]
        add(f"| 3 | RSS peak during scenario 1 (VmHWM over all rounds; per round sampled: "
            f"{mib(e2e['peak_rss_sampled'])}) | {peak / MIB:.1f} MiB | ≤ {TARGETS['peak_rss_mib']} MiB | "
            f"{verdict(peak <= TARGETS['peak_rss_mib'] * MIB)} |")
    if up is not None:
        if up.get("available"):
            add(f"| 4 | 1 GiB context upload: RSS growth | {mib(up['growth'])} | ≤ {TARGETS['upload_growth_mib']} MiB | "
                f"{verdict(up['growth']['median'] <= TARGETS['upload_growth_mib'] * MIB)} |")
            add(f"| 4 | 1 GiB context upload: speed | {fmt_s(up['mb_per_s'], ' MB/s', 0)} | reported | |")
        else:
            add("| 4 | 1 GiB context upload | not available in this build (no `context` field yet) | "
                f"≤ {TARGETS['upload_growth_mib']} MiB growth | not run |")
    if lg:
        r = lg["ratio"]
        add(f"| 5 | `RUN seq 1 {lg['lines']}`: dockpub wall / CLI wall | {fmt_s(r, '×', 3)} | "
            f"≤ {TARGETS['logs_ratio']:.2f}× | {verdict(r['median'] <= TARGETS['logs_ratio'])} |")
        add(f"| 5 | every line stored, in order | {sum(x['complete'] for x in lg['runs'])}/{len(lg['runs'])} runs "
            f"complete | all | {verdict(lg['all_complete'])} |")
    add("")

    if e2e:
        add("## 1. End to end: dockpub vs `docker build && docker push`\n")
        add(f"{e2e['n']} distinct Dockerfiles per side and round (`FROM {BASE_IMAGE}`, a unique `ARG`, then "
            "one `RUN` writing two small files, so the RUN is never a cache hit), pushed to the loopback "
            f"registry, two at a time. {e2e['rounds']} rounds, each dockpub (A) then the CLI (B); one untimed "
            "warm-up build per side first puts the base layer in both repositories.\n")
        add("- A, dockpub: `" + " ".join(shlex.quote(os.path.basename(c) if i == 0 else c)
                                         for i, c in enumerate(e2e['server_cmd'])) + "` (empty work dir, so no "
            "config.toml); the client submits all builds (multipart POST) at once, then polls the list every "
            "25 ms until every build is `succeeded`. One repository, one tag per build.")
        add("- B, CLI: two workers, each running `DOCKER_BUILDKIT=0 docker build --network none -t REF DIR && "
            "docker push REF` per Dockerfile (this CLI has no buildx, so the classic builder; dockpub builds with "
            "the daemon's BuildKit by default; RUN without network on both sides). Output goes to a file.\n")
        add("| per round | median | min–max |")
        add("|---|---|---|")
        rows = [("dockpub wall, client clock (first POST → last `succeeded` seen)", e2e["dockpub_wall"], "s"),
                ("dockpub span, builds' own timestamps (first `created_at` → last `finished_at`)", e2e["dockpub_own_span"], "s"),
                ("CLI wall", e2e["cli_wall"], "s"),
                ("ratio dockpub / CLI (client clock)", e2e["ratio"], "×"),
                ("ratio dockpub / CLI (own timestamps)", e2e["own_ratio"], "×"),
                ("dockpub, one build started → finished (median over the round)", e2e["dockpub_per_build_median"], "s"),
                ("  of which build (started → built)", e2e["dockpub_build_phase_median"], "s"),
                ("  of which push and registry check (built → finished)", e2e["dockpub_push_phase_median"], "s"),
                ("CLI, one `build && push` (median over the round)", e2e["cli_per_build_median"], "s"),
                ("dockpub's own CPU (user + system) per build", e2e["dockpub_cpu_per_build"], "s")]
        for name, st, unit in rows:
            d = 3 if unit == "×" or st["median"] < 1 else 2
            add(f"| {name} | {st['median']:.{d}f}{unit} | {st['min']:.{d}f}–{st['max']:.{d}f}{unit} |")
        add("\nRounds (dockpub / CLI, seconds): " + ", ".join(
            f"{x['dockpub_wall']:.2f} / {x['cli_wall']:.2f}" for x in e2e["rounds_detail"]) + "\n")

    if api:
        add("## 2. API throughput\n")
        add(f"{api['rows']} builds stored through **the store's own insert path**: `examples/bench_seed.rs` calls "
            "`Store::insert_build` (row and stored Dockerfile, as a submit does) and `Store::transition` through "
            "building → pushing → succeeded (every tenth → failed), into a data dir that `Store::open` created "
            f"with dockpub's migrations; {api['seed_secs']:.1f}s for all of them. dockpub is started on that dir "
            "afterwards. No route was added for this.\n")
        add(f"`wrk {' '.join(api['wrk'])} -d{api['duration']}s --latency` on the same 2 cores as the server (wrk's "
            "own CPU use is part of the cost here); after a 2 s warm-up, list and get alternate. The get run "
            "picks a random id from 1 to the row count for every request (a Lua script).\n")
        add(f"Response sizes: list of 50 ≈ {api['list_body_bytes']} bytes, one build ≈ {api['get_body_bytes']} bytes.\n")
        add("| route | req/s median (min–max) | latency avg / p99 per run | non-2xx | dockpub CPU per request | wrk CPU per request | req/s 2 idle cores would give |")
        add("|---|---|---|---|---|---|---|")
        for kind, name in (("list", "`GET /api/v1/builds?limit=50`"), ("get", "`GET /api/v1/builds/{id}`")):
            lat = ", ".join(f"{x['latency_avg']} / {x['latency_p99']}" for x in api[kind])
            add(f"| {name} | {fmt_s(api[kind + '_rps'], '', 0)} | {lat} | {sum(x['non2xx'] for x in api[kind])} | "
                f"{fmt_s(api[kind + '_server_us'], ' µs', 1)} | {fmt_s(api[kind + '_wrk_us'], ' µs', 1)} | "
                f"{fmt_s(api[kind + '_capacity'], '', 0)} |")
        add("\nThe CPU columns are read from /proc (dockpub's utime + stime over the run, and wrk's from "
            "getrusage) and divided by the requests served: unlike req/s they depend much less on what "
            "else the machine runs (cache and scheduler effects still move them by 10–20 %). The last column is cores × 10⁶ / (dockpub µs + wrk µs): what the same two "
            "programs would reach on two otherwise idle cores. It is derived, not measured; the targets "
            "are judged on the measured req/s.")
        add(f"\nRSS with {api['rows']} rows: {api['idle_rss_with_rows'] / MIB:.1f} MiB idle, "
            f"{api['peak_rss_under_load'] / MIB:.1f} MiB peak (VmHWM) under wrk.\n")

    if idle or e2e:
        add("## 3. Memory\n")
        add("Read from `/proc/PID/status` of the dockpub process: VmRSS, and VmHWM (the kernel's own "
            "peak of VmRSS since the process started).\n")
        if idle:
            add(f"- Idle after start (empty data dir, `/healthz` answered, 1 s later), fresh process each run: "
                f"{mib(idle['idle_rss'])}.")
        if e2e:
            add(f"- Peak during scenario 1: VmHWM {e2e['vmhwm_end'] / MIB:.1f} MiB after all rounds; VmRSS sampled "
                f"every 20 ms during each dockpub side: {mib(e2e['peak_rss_sampled'])}. VmRSS at the end: "
                f"{e2e['vmrss_end'] / MIB:.1f} MiB.")
        if lg:
            add(f"- For comparison, VmHWM after scenario 5 (200 000 log lines per build): {lg['vmhwm_end'] / MIB:.1f} MiB.")
        add("")

    if up is not None:
        add("## 4. Upload: 1 GiB build context\n")
        if not up.get("available"):
            add("**Not available in this build**: this dockpub answered the probe (a tiny `context` tar) with "
                f"400 `unknown_field`: \"{up.get('probe')}\". The scenario is written and runs by itself once "
                "the `context` field (issue 3) is merged: a plain tar of exactly 1 GiB (`small.txt` and 1 GiB of "
                "random bytes) sent with curl as the `context` field beside a Dockerfile that `COPY`s small.txt, "
                "push=false; it reports upload MB/s (until the 202) and VmRSS growth sampled every 10 ms until "
                "the build ends.\n")
        else:
            add(f"A plain tar of exactly {up['size']} bytes (`small.txt` plus random bytes, incompressible) sent "
                "with curl as the `context` field beside a Dockerfile that `COPY`s small.txt, push=false, "
                "to a dockpub started with `--max-upload-bytes 2147483648`. VmRSS sampled every 10 ms from "
                "before the upload until the build ends.\n")
            add("| | median (min–max) |")
            add("|---|---|")
            add(f"| upload speed (until the 202) | {fmt_s(up['mb_per_s'], ' MB/s', 0)} |")
            add(f"| upload time | {fmt_s(up['upload_secs'])} |")
            add(f"| until `succeeded` (daemon reads the context too) | {fmt_s(up['total_secs'])} |")
            add(f"| RSS growth during the upload | {mib(up['growth_upload'])} |")
            add(f"| RSS growth until the build ended | {mib(up['growth'])} |")
            add("")

    if lg:
        add(f"## 5. Log-heavy build: `RUN seq 1 {lg['lines']}`\n")
        add("One build per side and round, alternating dockpub and the CLI, both build and push as in "
            "scenario 1. After each dockpub build, `GET /api/v1/builds/{id}/logs` is read and its number "
            f"lines compared with 1…{lg['lines']} in order. Both sides use the classic builder (dockpub's "
            "`buildkit=false`): the daemon's BuildKit clips a step's output at 200 KiB/s (its log, and "
            "dockpub's, then says `[output clipped, log limit 200KiB/s reached]`), so this measures "
            "dockpub's log path, not BuildKit's limit.\n")
        add("| | median (min–max) |")
        add("|---|---|")
        add(f"| dockpub wall (client clock, submit → `succeeded`) | {fmt_s(lg['dockpub_wall'])} |")
        add(f"| dockpub span, own timestamps | {fmt_s(lg['dockpub_own'])} |")
        add(f"| dockpub's own CPU (user + system) per build | {fmt_s(lg['dockpub_cpu'])} |")
        add(f"| CLI wall (`docker build … > file && docker push`) | {fmt_s(lg['cli_wall'])} |")
        add(f"| ratio | {fmt_s(lg['ratio'], '×', 3)} |")
        add(f"| `GET …/logs` of the whole log | {fmt_s(lg['get_logs_secs'], 's', 3)} |")
        add("\nLines stored per run: " + ", ".join(
            f"{x['stored_lines']} ({'complete, in order' if x['complete'] else 'INCOMPLETE'})" for x in lg["runs"]) +
            f"; the CLI's own output had {lg['runs'][0]['cli_lines']}.\n")

    notes = os.path.join(ROOT, "bench", "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            add(f.read().rstrip() + "\n")
    with open(path, "w") as f:
        f.write("\n".join(L))


# --------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round of 6 builds, 1 run per figure, 3 s wrk runs, 64 MiB context")
    p.add_argument("--scenarios", default="1,2,3,4,5", help="comma-separated subset of 1-5 (3 needs 1 for its peak)")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"), help="report path [BENCHMARKS.md]")
    p.add_argument("--rounds", type=int, help="A/B rounds and runs per figure [3; quick 1]")
    args = p.parse_args()

    for path in (DOCKPUB, SEEDER):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench: {path} missing: run bench/run, which builds it")

    class Ctx:
        pass
    ctx = Ctx()
    ctx.quick = args.quick
    ctx.repeats = args.rounds or (1 if args.quick else 3)
    ctx.rounds = ctx.repeats
    ctx.builds = 6 if args.quick else 20
    ctx.rows = 10000
    ctx.wrk_secs = 3 if args.quick else 10
    ctx.wrk_args = ["-t2", "-c64"]
    ctx.seq_lines = 200000
    ctx.context_bytes = 64 * MIB if args.quick else GIB
    ctx.run_id = uuid.uuid4().hex[:8]
    ctx.started = datetime.datetime.now(datetime.timezone.utc)
    ctx.command = "bench/run" + ("".join(f" {shlex.quote(a)}" for a in sys.argv[1:]))
    ctx.load_start = sh_out("cut -d' ' -f1-3 /proc/loadavg")
    ctx.machine = machine_info()
    ctx.work = os.path.join(ROOT, "target", "bench", f"run-{ctx.started.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(ctx.work, exist_ok=True)
    wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    log(f"work dir {ctx.work}; scenarios {sorted(wanted)}; {ctx.repeats} run(s) per figure")

    t_start = time.monotonic()
    ctx.registry = Registry(ctx.work)
    results = {}
    try:
        if "3" in wanted:
            results["idle"] = scenario_idle(ctx)
        if "1" in wanted:
            results["e2e"] = scenario_e2e(ctx)
        if "2" in wanted:
            results["api"] = scenario_api(ctx)
        if "5" in wanted:
            results["logs"] = scenario_logs(ctx)
        if "4" in wanted:
            results["upload"] = scenario_upload(ctx)
    finally:
        ctx.registry.stop()
        big = os.path.join(ctx.work, "context-1GiB.tar")
        if os.path.exists(big):
            os.remove(big)
        with open(os.path.join(ctx.work, "results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
    ctx.elapsed = time.monotonic() - t_start
    ctx.load_end = sh_out("cut -d' ' -f1-3 /proc/loadavg")
    write_report(ctx, results, args.out)
    # Keep the work dir small: the seeded data and registry blobs are not needed afterwards.
    for sub in ("s2", "registry"):
        shutil.rmtree(os.path.join(ctx.work, sub), ignore_errors=True)
    log(f"wrote {args.out} ({ctx.elapsed / 60:.1f} min); raw figures in {ctx.work}/results.json")


if __name__ == "__main__":
    main()
