#!/usr/bin/env python3
"""Reads that scale (issue 15): one run, every ratio against /healthz measured in the same run.

  1. 10 000 builds stored (examples/bench_seed): ApacheBench `-k -c 32` on /healthz,
     GET /api/v1/builds/{id} and GET /api/v1/builds?limit=50 (non-2xx counted);
  2. a build of `RUN seq 1 2000000`: GET .../logs read whole, every number line checked
     in order, the server's VmRSS sampled every 10 ms during the read; then 10 readers
     at once (each body's SHA-256 must equal the checked one's);
  3. 50 concurrent submits: latency p50/p99, and dockpub_sqlite_busy_waits before/after;
  4. from /metrics: per read request, the most CPU time one poll held an async thread.

Needs the release binaries (`cargo build --release --bin dockpub --example bench_seed`),
ApacheBench (`apt-get install apache2-utils`), the Docker daemon and the base image
dockpub-test-base:latest. Prints a Markdown section on stdout:
    bench/reads.py >> BENCHMARKS.md
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (start_server, multipart_body, submit, percentile)
from bench import RssSampler  # noqa: E402

BUILDS = 10_000
LOG_LINES = 2_000_000
READERS = 10
SUBMITS = 50


def log(message):
    print(f"reads: {message}", file=sys.stderr, flush=True)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ab(url, seconds):
    out = subprocess.run(["ab", "-k", "-q", "-c", "32", "-t", str(seconds), "-n", "5000000", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))
    done = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {"rps": rps, "requests": done, "failed": failed, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0}


def get(base, path):
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    conn.request("GET", path)
    return conn.getresponse()


def metric(base, name):
    text = get(base, "/metrics").read().decode()
    return text, [line for line in text.splitlines() if line.startswith(name)]


def read_log_checked(base, build_id):
    """Streams the log; checks the number lines are 1..LOG_LINES in order; returns its SHA-256."""
    response = get(base, f"/api/v1/builds/{build_id}/logs")
    assert response.status == 200, response.status
    digest, expected, rest = hashlib.sha256(), 1, b""
    while True:
        chunk = response.read(1 << 16)
        if not chunk:
            break
        digest.update(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.isdigit():
                if int(line) != expected:
                    raise SystemExit(f"log line {line} where {expected} was due")
                expected += 1
    if expected - 1 != LOG_LINES:
        raise SystemExit(f"the log ended after {expected - 1} of {LOG_LINES} numbered lines")
    return digest.hexdigest()


def read_log_hash(base, build_id):
    response = get(base, f"/api/v1/builds/{build_id}/logs")
    digest = hashlib.sha256()
    while chunk := response.read(1 << 16):
        digest.update(chunk)
    return digest.hexdigest()


def wait_final(base, build_id, limit=900):
    deadline = time.time() + limit
    while time.time() < deadline:
        build = json.load(get(base, f"/api/v1/builds/{build_id}"))
        if build["status"] in ("succeeded", "failed", "cancelled"):
            return build
        time.sleep(0.5)
    raise SystemExit(f"build {build_id} not final after {limit}s")


def submit_log_build(base):
    boundary = uuid.uuid4().hex
    dockerfile = (f"FROM dockpub-test-base:latest\nLABEL dockpub.bench=\"{boundary}\"\n"
                  f"RUN seq 1 {LOG_LINES}\n")
    body = load.multipart_body(boundary, [("file", dockerfile, True),
                                          ("repository", "127.0.0.1:1/bench/reads-log", False),
                                          ("push", "false", False),
                                          # BuildKit clips a step's output at 200 KiB/s.
                                          ("buildkit", "false", False)])
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    conn.request("POST", "/api/v1/builds", body,
                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = conn.getresponse()
    answer = json.load(response)
    assert response.status == 202, answer
    return answer["id"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8, help="per ab run")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.path.join(root, "target/release/dockpub")
    seeder = os.path.join(root, "target/release/examples/bench_seed")
    with tempfile.TemporaryDirectory(prefix="dockpub-reads-") as work:
        data_dir = os.path.join(work, "data")
        began = time.time()
        subprocess.run([seeder, data_dir, str(BUILDS), "127.0.0.1:5000/bench/seed"], check=True,
                       stdout=subprocess.DEVNULL)
        seeded = time.time() - began
        log(f"{BUILDS} builds seeded in {seeded:.1f}s")
        # The 2 000 000-line log is past the default max_log_lines: this run keeps it all.
        keep_all = ["--max-log-lines", str(LOG_LINES + 1000), "--max-log-bytes", str(1 << 30)]
        process, base = load.start_server(binary, data_dir, os.path.join(work, "server.log"),
                                          keep_all)
        try:
            run(base, process.pid, args.seconds, seeded)
        finally:
            process.terminate()
            process.wait(timeout=60)
        server_log = open(os.path.join(work, "server.log")).read()
        print(f"\n\"database is locked\" in the server log: {server_log.count('database is locked')}.")


def run(base, pid, seconds, seeded):
    load_avg = os.getloadavg()
    get_path = f"/api/v1/builds/{BUILDS // 2}"
    list_path = "/api/v1/builds?limit=50"
    for path in (get_path, list_path):  # warm: the first answer is read from SQLite
        get(base, path).read()
    figures = {}
    for name, path in (("healthz", "/healthz"), ("get", get_path), ("list", list_path),
                       ("healthz again", "/healthz")):
        figures[name] = ab(base + path, seconds)
        log(f"{name}: {figures[name]['rps']:.0f} req/s")
    healthz = (figures["healthz"]["rps"] + figures["healthz again"]["rps"]) / 2
    _, poll_lines = metric(base, "dockpub_http_longest_poll_seconds")

    build_id = submit_log_build(base)
    build = wait_final(base, build_id)
    assert build["status"] == "succeeded", build
    log(f"log build {build_id}: {build['status']}")
    before = vm_rss_kib(pid)
    with RssSampler(pid, interval=0.01) as one:
        started = time.time()
        checked = read_log_checked(base, build_id)
        one_seconds = time.time() - started
    before_many = vm_rss_kib(pid)
    with RssSampler(pid, interval=0.01) as many:
        with concurrent.futures.ThreadPoolExecutor(READERS) as pool:
            hashes = list(pool.map(lambda _: read_log_hash(base, build_id), range(READERS)))
    assert all(h == checked for h in hashes), "a reader got a different log"
    one_peak, many_peak = one.max_rss // 1024, many.max_rss // 1024
    log(f"log read: one reader +{one_peak - before} KiB, {READERS} readers +{many_peak - before_many} KiB")

    _, busy_before = metric(base, "dockpub_sqlite_busy_waits ")
    run_id = uuid.uuid4().hex[:8]
    with concurrent.futures.ThreadPoolExecutor(SUBMITS) as pool:
        results = list(pool.map(lambda n: load.submit(base, n, run_id), range(SUBMITS)))
    _, busy_after = metric(base, "dockpub_sqlite_busy_waits ")
    latencies = [seconds * 1000 for _, _, seconds in results]
    assert all(status == 202 for status, _, _ in results)

    print("## Reads that scale (issue 15): one run, `bench/reads.py`\n")
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, release build; load average at start "
          f"{load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f} (other engineers compile and test on the "
          f"same 2 cores).")
    print(f"- {BUILDS} builds stored through the store's own write path (`examples/bench_seed`, {seeded:.0f} s).")
    print(f"- ApacheBench `ab -k -c 32 -t {seconds}` per route, on the same 2 cores as the server; get is "
          f"`{get_path}`, list is `{list_path}`. Ratios are to the mean of the two /healthz runs.\n")
    print("| route | req/s | ratio to /healthz | target | requests | non-2xx | failed |")
    print("|---|---|---|---|---|---|---|")
    targets = {"get": 0.6, "list": 0.3}
    for name, path in (("healthz", "/healthz"), ("get", get_path), ("list", list_path),
                       ("healthz again", "/healthz")):
        f = figures[name]
        ratio = f["rps"] / healthz
        target = f"≥ {targets[name]} ({'met' if ratio >= targets[name] else 'missed'})" if name in targets else ""
        print(f"| `GET {path}` | {f['rps']:.0f} | {ratio:.2f} | {target} | {f['requests']} | {f['non_2xx']} | {f['failed']} |")
    print()
    print(f"**Log of `RUN seq 1 {LOG_LINES}`** (build {build_id}, {build['status']}): `GET …/logs` returned all "
          f"{LOG_LINES} number lines in order in {one_seconds:.1f} s. Server VmRSS, sampled every 10 ms:\n")
    print("| readers | VmRSS before | peak during | growth | target |")
    print("|---|---|---|---|---|")
    for name, start, peak in (("1", before, one_peak), (f"{READERS} at once (same bytes)", before_many, many_peak)):
        growth = (peak - start) / 1024
        print(f"| {name} | {start / 1024:.1f} MiB | {peak / 1024:.1f} MiB | {growth:.1f} MiB | ≤ 16 MiB "
              f"({'met' if growth <= 16 else 'missed'}) |")
    print()
    p99 = load.percentile(latencies, 0.99)
    print(f"**{SUBMITS} concurrent submits** (`FROM scratch` + `LABEL`, push=false): all 202; latency p50 "
          f"{load.percentile(latencies, 0.5):.0f} ms, p99 {p99:.0f} ms (target: no worse than 1.16 s: "
          f"{'met' if p99 <= 1160 else 'missed'}). `dockpub_sqlite_busy_waits` before / after: "
          f"{busy_before[0].split()[-1]} / {busy_after[0].split()[-1]}.\n")
    print("**Async threads.** `dockpub_http_longest_poll_seconds` after the ab runs (per request, the most "
          "CPU time one poll of its handler took on an async thread; cumulative buckets):\n")
    print("| route | requests | ≤ 25 µs | ≤ 50 µs | ≤ 100 µs | ≤ 250 µs | ≤ 1 ms |")
    print("|---|---|---|---|---|---|---|")
    for route in ("/healthz", "/api/v1/builds/{id}", "/api/v1/builds"):
        series = [line for line in poll_lines if f'route="{route}"' in line and 'method="GET"' in line]
        counts = [next(int(float(line.split()[-1])) for line in series if key in line)
                  for key in ("_count", *(f'le="{le}"' for le in ("0.000025", "0.00005", "0.0001", "0.00025", "0.001")))]
        print(f"| `{route}` | " + " | ".join(map(str, counts)) + " |")


if __name__ == "__main__":
    main()
