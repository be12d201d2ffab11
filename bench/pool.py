#!/usr/bin/env python3
"""Builder pool (issue 10): builds per minute with one builder and with two.

Starts a second, private dockerd (own socket, data-root, exec-root, pidfile,
--bridge none --iptables=false, an empty --config-file), copies the base image
into it with `docker save | docker load`, then runs the same batch of builds
(build + push to a loopback registry) twice: on the machine's daemon alone, and
on the machine's daemon plus the private one, each builder with --slots slots.
Stops the private daemon at the end.

Usage: bench/pool.py --registry 127.0.0.1:5000 [--binary target/release/dockpub]
                     [--builds 16] [--slots 2] [--base-image dockpub-test-base:latest]
`source target/test-env.sh` after `DOCKPUB_TEST_SETUP_ONLY=1 scripts/test` gives a
registry and the base image. Prints a Markdown section on stdout."""

import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid

from load import multipart_body, wait_listening


def start_dockerd(work):
    path = lambda name: os.path.join(work, name)
    with open(path("daemon.json"), "w") as f:
        f.write("{}")
    host = "unix://" + path("docker.sock")
    daemon = subprocess.Popen(
        ["dockerd", "--host", host, "--data-root", path("data"), "--exec-root", path("exec"),
         "--pidfile", path("docker.pid"), "--config-file", path("daemon.json"),
         "--bridge", "none", "--iptables=false"],
        stdout=subprocess.DEVNULL, stderr=open(path("dockerd.log"), "w"))
    deadline = time.time() + 60
    while subprocess.run(["docker", "-H", host, "info"], capture_output=True).returncode != 0:
        if time.time() > deadline:
            daemon.terminate()
            raise SystemExit("private dockerd did not start:\n" + open(path("dockerd.log")).read())
        time.sleep(0.2)
    return daemon, host


def copy_image(image, host):
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    subprocess.run(["docker", "-H", host, "load"], stdin=save.stdout, check=True, capture_output=True)
    if save.wait() != 0:
        raise SystemExit(f"docker save {image} failed")


def start_server(binary, work, builders, slots):
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        for name, host in builders:
            f.write(f'[[builders]]\nname = "{name}"\nhost = "{host}"\nmax_concurrent_builds = {slots}\n')
    log_path = os.path.join(work, "server.log")
    process = subprocess.Popen(
        [binary, "serve", "--config", config, "--bind", "127.0.0.1:0", "--data-dir",
         os.path.join(work, "data"), "--build-network", "none"],
        stderr=open(log_path, "w"), stdout=subprocess.DEVNULL, cwd=work)
    return process, wait_listening(process, log_path)


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return json.load(response)


def wait_builders_up(base, count):
    deadline = time.time() + 60
    while sum(b["up"] for b in get(base, "/api/v1/builders")["builders"]) < count:
        if time.time() > deadline:
            raise SystemExit("builders did not come up: %s" % get(base, "/api/v1/builders"))
        time.sleep(0.2)


def submit(base, registry, base_image, n, run_id):
    boundary = uuid.uuid4().hex
    # A little CPU and a few files per build, unique so nothing comes from the cache.
    dockerfile = (f'FROM {base_image}\nARG DOCKPUB_BENCH="{run_id}-{n}"\n'
                  f'RUN i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; seq 1 20000 > /numbers\n')
    fields = [("file", dockerfile, True), ("repository", f"{registry}/bench-pool-{run_id}-{n}", False)]
    body = multipart_body(boundary, fields)
    request = urllib.request.Request(base + "/api/v1/builds", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["id"]


def run_batch(binary, builders, slots, args):
    with tempfile.TemporaryDirectory(prefix="dockpub-bench-pool-") as work:
        process, base = start_server(binary, work, builders, slots)
        try:
            wait_builders_up(base, len(builders))
            run_id = uuid.uuid4().hex[:8]
            began = time.perf_counter()
            ids = [submit(base, args.registry, args.base_image, n, run_id) for n in range(args.builds)]
            builds = []
            for build_id in ids:
                while True:
                    build = get(base, f"/api/v1/builds/{build_id}")
                    if build["status"] in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(0.1)
                builds.append(build)
            elapsed = time.perf_counter() - began
        finally:
            process.terminate()
            process.wait(timeout=60)
    failed = [b for b in builds if b["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} builds did not succeed, e.g. {failed[0]['error']}")
    per_builder = {name: sum(b["builder"] == name for b in builds) for name, _ in builders}
    return elapsed, per_builder


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/dockpub")
    parser.add_argument("--registry", default=os.environ.get("DOCKPUB_TEST_REGISTRY"))
    parser.add_argument("--base-image", default=os.environ.get("DOCKPUB_TEST_BASE_IMAGE", "dockpub-test-base:latest"))
    parser.add_argument("--builds", type=int, default=16)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.registry:
        raise SystemExit("--registry (or DOCKPUB_TEST_REGISTRY) is needed")
    binary = os.path.abspath(args.binary)
    machine = ("machine", "unix:///var/run/docker.sock")
    with tempfile.TemporaryDirectory(prefix="dockpub-bench-dockerd-") as work:
        daemon, host = start_dockerd(work)
        try:
            copy_image(args.base_image, host)
            setups = [
                ("1 (machine)", [machine], args.slots),
                ("1 (machine), twice the slots", [machine], 2 * args.slots),
                ("2 (machine + private dockerd)", [machine, ("second", host)], args.slots),
            ]
            results = {label: [] for label, _, _ in setups}
            # Rounds interleave the setups, so a slow minute of the machine hits all alike.
            for _ in range(args.rounds):
                for label, builders, slots in setups:
                    results[label].append(run_batch(binary, builders, slots, args))
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    cores = os.cpu_count()
    # The heading comes from bench/run.
    print(f"{args.builds} builds (a short shell loop and a 20000-line file on the base image, each unique, "
          f"pushed to a loopback registry), {args.slots} slots per builder. Both daemons run on this "
          f"machine ({cores} cores).\n")
    print(f"Median of {args.rounds} rounds (min–max), rounds interleaved.\n")
    print("| builders | slots in all | wall time | builds/min | builds per builder (median round) |\n|---|---|---|---|---|")
    for label, builders, slots in setups:
        runs = sorted(results[label], key=lambda run: run[0])
        elapsed, per = runs[len(runs) // 2]
        rates = [args.builds / run[0] * 60 for run in runs]
        spread = ", ".join(f"{name}: {count}" for name, count in per.items())
        print(f"| {label} | {slots * len(builders)} | {elapsed:.1f} s | {args.builds / elapsed * 60:.1f} "
              f"({min(rates):.1f}–{max(rates):.1f}) | {spread} |")


if __name__ == "__main__":
    main()
