#!/usr/bin/env python3
"""Load: 500 concurrent submissions of `FROM scratch` + `LABEL` builds (push=false)
against one dockpub with a pool of 2. All must succeed, with no "database is
locked" anywhere; reports submit latency p50/p99 and the time to drain the queue.

Usage: bench/load.py [--binary target/release/dockpub] [--submissions 500]
Prints a Markdown section on stdout (bench/run puts it into BENCHMARKS.md)."""

import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid


def start_server(binary, data_dir, log_path, extra=()):
    log = open(log_path, "w")
    process = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0", "--data-dir", data_dir,
         "--max-concurrent-builds", "2", "--build-network", "none", *extra],
        stderr=log, stdout=subprocess.DEVNULL, cwd=os.path.dirname(data_dir),
    )
    return process, wait_listening(process, log_path)


def wait_listening(process, log_path):
    """The server's URL from its `listening on` log line; stops the run if it never comes."""
    deadline = time.time() + 30
    while time.time() < deadline:
        found = re.search(r"listening on (http://\S+)", open(log_path).read())
        if found:
            return found.group(1)
        time.sleep(0.05)
    process.kill()
    raise SystemExit("dockpub did not start:\n" + open(log_path).read())


def multipart_body(boundary, fields):
    """A multipart/form-data body from (name, value, is_file) fields."""
    body = b""
    for name, value, is_file in fields:
        filename = '; filename="Dockerfile"' if is_file else ""
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n{value}\r\n'.encode()
    return body + f"--{boundary}--\r\n".encode()


def submit(base, n, run_id):
    boundary = uuid.uuid4().hex
    dockerfile = f'FROM scratch\nLABEL dockpub.bench="{run_id}-{n}"\n'
    fields = [("file", dockerfile, True), ("repository", f"127.0.0.1:1/bench/load-{n}", False), ("push", "false", False)]
    body = multipart_body(boundary, fields)
    request = urllib.request.Request(base + "/api/v1/builds", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
        status = response.status
    return status, answer["id"], time.perf_counter() - started


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/dockpub")
    parser.add_argument("--submissions", type=int, default=500)
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    with tempfile.TemporaryDirectory(prefix="dockpub-load-") as work:
        data_dir, log_path = os.path.join(work, "data"), os.path.join(work, "server.log")
        process, base = start_server(binary, data_dir, log_path)
        try:
            run_id = uuid.uuid4().hex[:8]
            began = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(max_workers=args.submissions) as pool:
                results = list(pool.map(lambda n: submit(base, n, run_id), range(args.submissions)))
            submitted = time.perf_counter() - began
            assert all(status == 202 for status, _, _ in results), "a submission was refused"
            ids = [build_id for _, build_id, _ in results]
            while True:
                with urllib.request.urlopen(base + "/api/v1/builds?limit=500&status=succeeded") as r:
                    succeeded = len(json.load(r)["builds"])
                with urllib.request.urlopen(base + "/api/v1/builds?limit=500&status=failed") as r:
                    failed = json.load(r)["builds"]
                if failed:
                    raise SystemExit(f"{len(failed)} builds failed, e.g. {failed[0]['error']}")
                if succeeded >= len(ids):
                    break
                time.sleep(0.5)
            drained = time.perf_counter() - began
        finally:
            process.terminate()
            process.wait(timeout=60)
        log = open(log_path).read()
        locked = log.count("database is locked")
        latencies = [seconds * 1000 for _, _, seconds in results]
        print("## Load: %d concurrent submissions (issue 5)\n" % args.submissions)
        print("`FROM scratch` + `LABEL` builds, push=false, pool of 2, %d client threads at once.\n" % args.submissions)
        print("| measure | value |\n|---|---|")
        print(f"| submissions answered 202 | {len(results)} of {args.submissions} |")
        print(f"| builds succeeded | {succeeded} (failed: 0) |")
        print(f"| submit latency p50 | {statistics.median(latencies):.1f} ms |")
        print(f"| submit latency p99 | {percentile(latencies, 0.99):.1f} ms |")
        print(f"| all submitted after | {submitted:.2f} s |")
        print(f"| queue drained after | {drained:.1f} s ({args.submissions / drained:.1f} builds/s) |")
        print(f"| \"database is locked\" in the server log | {locked} |")
        if locked:
            raise SystemExit("database is locked appeared in the log")


if __name__ == "__main__":
    main()
