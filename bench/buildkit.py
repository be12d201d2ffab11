#!/usr/bin/env python3
"""BuildKit (issue 17), measured in one run and printed as markdown:

1. End to end at concurrency 2: dockpub (BuildKit), dockpub with buildkit=false,
   `DOCKER_BUILDKIT=0 docker build && docker push` (this CLI has no buildx), and
   BuildKit through the bare Engine API (`POST /build?version=2`, then the push, over
   the daemon's socket, no service in between). Rounds alternate the four.
2. A multi-stage Dockerfile with an unused slow stage: dockpub against the CLI.
3. A second build on a cold builder (a private dockerd) with registry cache,
   against the first build on the warm one.

Run by hand on a machine prepared by `DOCKPUB_TEST_SETUP_ONLY=1 scripts/test`:
    source target/test-env.sh && bench/buildkit.py [--binary target/release/dockpub]
"""

import argparse
import base64
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid

from load import multipart_body, wait_listening
from pool import copy_image, start_dockerd

REGISTRY = os.environ.get("DOCKPUB_TEST_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("DOCKPUB_TEST_BASE_IMAGE", "dockpub-test-base:latest")
DOCKER_SOCKET = "/var/run/docker.sock"


def dockerfile(unique):
    """The bench's Dockerfile: its ARG makes every build's RUN a cache miss."""
    return (f"FROM {BASE_IMAGE}\nARG BENCH_ID={unique}\n"
            f"RUN echo {unique} > /bench-id && ls -l / > /bench-ls\n")


def start_server(binary, work, extra=()):
    log_path = os.path.join(work, "server.log")
    process = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0", "--data-dir", os.path.join(work, "data"),
         "--max-concurrent-builds", "2", "--build-network", "none", *extra],
        stderr=open(log_path, "w"), stdout=subprocess.DEVNULL, cwd=work)
    return process, wait_listening(process, log_path)


def submit(base, text, repository, tag, buildkit=True):
    boundary = uuid.uuid4().hex
    fields = [("file", text, True), ("repository", repository, False), ("tag", tag, False),
              ("buildkit", "true" if buildkit else "false", False)]
    request = urllib.request.Request(
        base + "/api/v1/builds", data=multipart_body(boundary, fields), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["id"]


def wait_final(base, build_id):
    while True:
        with urllib.request.urlopen(f"{base}/api/v1/builds/{build_id}", timeout=60) as response:
            build = json.load(response)
        if build["status"] in ("succeeded", "failed", "cancelled"):
            if build["status"] != "succeeded":
                raise SystemExit(f"build {build_id} {build['status']}: {build['error']}")
            return build
        time.sleep(0.025)


def dockpub_batch(base, texts, buildkit):
    started = time.perf_counter()
    ids = [submit(base, text, f"{REGISTRY}/bench-bk-dockpub", f"t{n}-{uuid.uuid4().hex[:8]}", buildkit)
           for n, text in enumerate(texts)]
    for build_id in ids:
        wait_final(base, build_id)
    return time.perf_counter() - started


def two_workers(texts, one):
    """Runs `one(text)` for every text, two at a time; the wall time."""
    queue = list(texts)
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                if not queue:
                    return
                text = queue.pop()
            one(text)

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def cli_build_and_push(text):
    with tempfile.TemporaryDirectory() as context:
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(text)
        ref = f"{REGISTRY}/bench-bk-cli:t{uuid.uuid4().hex[:12]}"
        subprocess.run(f"docker build -q --network none -t {ref} {context} > /dev/null && "
                       f"docker push -q {ref} > /dev/null", shell=True, check=True,
                       env={**os.environ, "DOCKER_BUILDKIT": "0"}, stderr=subprocess.DEVNULL)


class DockerSocket(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("docker", timeout=120)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(DOCKER_SOCKET)


def engine_call(method, path, body=None, headers=None):
    """One Engine API call; reads its JSON stream to the end and fails on an error in it."""
    connection = DockerSocket()
    connection.request(method, path, body=body, headers=headers or {})
    answer = connection.getresponse().read().decode()
    connection.close()
    for line in answer.splitlines():
        if line.strip() and "error" in json.loads(line):
            raise SystemExit(f"{method} {path}: {line}")


def engine_build_and_push(text):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repository, tag = f"{REGISTRY}/bench-bk-engine", f"t{uuid.uuid4().hex[:12]}"
    engine_call("POST", f"/build?version=2&networkmode=none&t={repository}:{tag}", archive.getvalue(),
                {"Content-Type": "application/x-tar"})
    auth = base64.urlsafe_b64encode(b"{}").decode()
    engine_call("POST", f"/images/{repository}/push?tag={tag}", headers={"X-Registry-Auth": auth})


def end_to_end(base, builds, rounds):
    sides = {
        "dockpub (BuildKit)": lambda texts: dockpub_batch(base, texts, True),
        "dockpub, buildkit=false": lambda texts: dockpub_batch(base, texts, False),
        "`docker build && docker push` (legacy CLI)": lambda texts: two_workers(texts, cli_build_and_push),
        "BuildKit through the bare Engine API": lambda texts: two_workers(texts, engine_build_and_push),
    }
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            texts = [dockerfile(uuid.uuid4().hex) for _ in range(builds)]
            times[name].append(run(texts))
    return times


def unused_stage(base):
    unique = uuid.uuid4().hex
    text = (f"FROM {BASE_IMAGE} AS unused\nARG BENCH_ID={unique}\nRUN sleep 10\n"
            f"FROM {BASE_IMAGE}\nARG BENCH_ID={unique}\nRUN echo used > /used\n")
    started = time.perf_counter()
    wait_final(base, submit(base, text, f"{REGISTRY}/bench-bk-stages", "latest"))
    dockpub = time.perf_counter() - started
    started = time.perf_counter()
    cli_build_and_push(text)
    return dockpub, time.perf_counter() - started


def cold_builder(binary, work, base):
    """The first build on the warm daemon, then the same on a fresh private one."""
    text = f"FROM {BASE_IMAGE}\nARG BENCH_ID={uuid.uuid4().hex}\nRUN sleep 3 && date > /slow\n"
    repository = f"{REGISTRY}/bench-bk-cold"
    started = time.perf_counter()
    wait_final(base, submit(base, text, repository, "latest"))
    first = time.perf_counter() - started
    os.makedirs(os.path.join(work, "cold"))
    daemon, host = start_dockerd(os.path.join(work, "cold"))
    try:
        copy_image(BASE_IMAGE, host)
        cold_work = os.path.join(work, "cold-server")
        os.makedirs(cold_work)
        server, cold_base = start_server(binary, cold_work, ["--docker-host", host])
        try:
            started = time.perf_counter()
            wait_final(cold_base, submit(cold_base, text, repository, "latest"))
            second = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait()
    finally:
        daemon.terminate()
        daemon.wait()
    return first, second


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_binary = "target/release/dockpub" if os.path.exists("target/release/dockpub") else "target/debug/dockpub"
    parser.add_argument("--binary", default=default_binary)
    parser.add_argument("--builds", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    args.binary = os.path.abspath(args.binary)
    with tempfile.TemporaryDirectory(prefix="bench-buildkit-") as work:
        server_work = os.path.join(work, "server")
        os.makedirs(server_work)
        server, base = start_server(args.binary, server_work)
        try:
            dockpub_batch(base, [dockerfile(uuid.uuid4().hex)], True)  # warm-up: the base layer
            times = end_to_end(base, args.builds, args.rounds)
            stage = unused_stage(base)
            cold = cold_builder(args.binary, work, base)
        finally:
            server.terminate()
            server.wait()
    cli = statistics.median(times["`docker build && docker push` (legacy CLI)"])
    engine = statistics.median(times["BuildKit through the bare Engine API"])
    print(f"Binary: `{args.binary}`; {args.builds} builds per batch, concurrency 2, {args.rounds} rounds.\n")
    print("| what | median (min–max) | × CLI | × bare Engine API BuildKit |\n|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f}s ({min(values):.2f}–{max(values):.2f}) "
              f"| {median / cli:.2f}× | {median / engine:.2f}× |")
    print(f"\nUnused stage with `RUN sleep 10`: dockpub {stage[0]:.2f}s, CLI {stage[1]:.2f}s "
          f"({stage[0] / stage[1]:.2f}×).")
    print(f"\nRegistry cache: first build on the warm builder {cold[0]:.2f}s, the same Dockerfile on a "
          f"cold builder {cold[1]:.2f}s ({cold[1] / cold[0]:.2f}×).")


if __name__ == "__main__":
    main()
