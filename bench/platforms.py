#!/usr/bin/env python3
"""Two-platform images (issue 27), measured in one run and printed as markdown.

Per round, on the same Dockerfile shape (a unique ARG, so every RUN is a cache miss):
1. dockpub: one build with `platform=linux/amd64,linux/arm64` (two slots, one builder
   offering both), from submit to `succeeded` (the index confirmed at the tag).
2. The bare Engine API doing the same by hand: BuildKit builds of both platforms side
   by side (`POST /build?version=2&platform=...`), each pushed, then an OCI index naming
   both manifests PUT under the tag with the registry's own API.
3. Each platform alone through the bare Engine API (build + push): the two-platform
   wall time should be close to the slower one, since the platforms run side by side.
Rounds alternate the sides, so load on the shared machine hits each of them.

Run on a machine prepared by `DOCKPUB_TEST_SETUP_ONLY=1 scripts/test` (it registers
arm64 emulation and pushes the two-platform base):
    source target/test-env.sh && bench/platforms.py [--binary target/release/dockpub]
"""

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid

from buildkit import engine_call, wait_final
from load import multipart_body, wait_listening

REGISTRY = os.environ.get("DOCKPUB_TEST_REGISTRY", "127.0.0.1:5000")
BASE = os.environ.get("DOCKPUB_TEST_PLATFORM_BASE")
PLATFORMS = ("linux/amd64", "linux/arm64")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def dockerfile():
    """A little CPU in the step, so emulation shows (arm64 runs under QEMU here)."""
    unique = uuid.uuid4().hex
    return (f"FROM {BASE}\nARG BENCH_ID={unique}\n"
            "RUN uname -m > /arch && i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; "
            "echo $i > /count\n")


def start_server(binary, work):
    config = os.path.join(work, "config.toml")
    with open(config, "w") as f:
        f.write('[[builders]]\nname = "local"\nhost = "unix:///var/run/docker.sock"\n'
                'max_concurrent_builds = 2\nplatforms = ["linux/amd64", "linux/arm64"]\n')
    log_path = os.path.join(work, "server.log")
    process = subprocess.Popen(
        [binary, "serve", "--bind", "127.0.0.1:0", "--data-dir", os.path.join(work, "data"),
         "--config", config, "--build-network", "none"],
        stderr=open(log_path, "w"), stdout=subprocess.DEVNULL, cwd=work)
    return process, wait_listening(process, log_path)


def dockpub_two_platforms(base, text):
    boundary = uuid.uuid4().hex
    fields = [("file", text, True), ("repository", f"{REGISTRY}/bench-mp-dockpub", False),
              ("tag", f"t{uuid.uuid4().hex[:12]}", False), ("platform", ",".join(PLATFORMS), False)]
    request = urllib.request.Request(
        base + "/api/v1/builds", data=multipart_body(boundary, fields), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        build_id = json.load(response)["id"]
    wait_final(base, build_id)
    return time.perf_counter() - started


def context_tar(text):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def registry_manifest(repository, reference):
    """The registry's manifest for `reference`: (media type, digest, size)."""
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{repository}/manifests/{reference}",
                                     headers={"Accept": MANIFEST_TYPES})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        return (response.headers["Content-Type"], response.headers["Docker-Content-Digest"],
                len(body))


def engine_platform(text, repository, platform):
    """BuildKit build of one platform and its push, over the daemon's socket."""
    tag = f"{platform.replace('/', '-')}-{uuid.uuid4().hex[:12]}"
    reference = f"{REGISTRY}/{repository}"
    engine_call("POST", f"/build?version=2&networkmode=none&platform={platform}&t={reference}:{tag}",
                context_tar(text), {"Content-Type": "application/x-tar"})
    auth = base64.urlsafe_b64encode(b"{}").decode()
    engine_call("POST", f"/images/{reference}/push?tag={tag}", headers={"X-Registry-Auth": auth})
    return tag


def engine_two_platforms(text):
    """Both platforms side by side, then the index put under a tag by hand."""
    repository = "bench-mp-engine"
    started = time.perf_counter()
    tags = {}

    def one(platform):
        tags[platform] = engine_platform(text, repository, platform)

    threads = [threading.Thread(target=one, args=(p,)) for p in PLATFORMS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(tags) != len(PLATFORMS):
        raise SystemExit("a platform's Engine API build failed")
    manifests = []
    for platform in PLATFORMS:
        media_type, digest, size = registry_manifest(repository, tags[platform])
        os_name, arch = platform.split("/")
        manifests.append({"mediaType": media_type, "digest": digest, "size": size,
                          "platform": {"os": os_name, "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    request = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repository}/manifests/t{uuid.uuid4().hex[:12]}", data=index,
        method="PUT", headers={"Content-Type": OCI_INDEX})
    urllib.request.urlopen(request, timeout=60).close()
    return time.perf_counter() - started


def engine_one_platform(text, platform):
    started = time.perf_counter()
    engine_platform(text, "bench-mp-engine-alone", platform)
    return time.perf_counter() - started


def measure(base, rounds):
    sides = {
        "dockpub, `platform=linux/amd64,linux/arm64`": lambda: dockpub_two_platforms(base, dockerfile()),
        "bare Engine API: both platforms side by side + index by hand":
            lambda: engine_two_platforms(dockerfile()),
        "bare Engine API: linux/amd64 alone": lambda: engine_one_platform(dockerfile(), "linux/amd64"),
        "bare Engine API: linux/arm64 alone": lambda: engine_one_platform(dockerfile(), "linux/arm64"),
    }
    times = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            times[name].append(run())
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_binary = "target/release/dockpub" if os.path.exists("target/release/dockpub") else "target/debug/dockpub"
    parser.add_argument("--binary", default=default_binary)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not BASE:
        raise SystemExit("DOCKPUB_TEST_PLATFORM_BASE is not set: source target/test-env.sh "
                         "after `DOCKPUB_TEST_SETUP_ONLY=1 scripts/test`")
    args.binary = os.path.abspath(args.binary)
    with tempfile.TemporaryDirectory(prefix="bench-platforms-") as work:
        server, base = start_server(args.binary, work)
        try:
            dockpub_two_platforms(base, dockerfile())  # warm-up: the base's layers
            engine_two_platforms(dockerfile())
            times = measure(base, args.rounds)
        finally:
            server.terminate()
            server.wait()
    names = list(times)
    dockpub = statistics.median(times[names[0]])
    engine = statistics.median(times[names[1]])
    slower = max(statistics.median(times[names[2]]), statistics.median(times[names[3]]))
    print(f"Binary: `{args.binary}`; one two-platform build per side and round, {args.rounds} rounds, "
          f"base `{BASE}` (an OCI index), arm64 under QEMU.\n")
    print("| what | median (min–max) | × bare Engine API, two platforms |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f}s ({min(values):.2f}–{max(values):.2f}) | {median / engine:.2f}× |")
    print(f"\ndockpub / bare Engine API (two platforms and the index): **{dockpub / engine:.2f}×** "
          f"(goal ≤ 1.1×). dockpub's two-platform wall / the slower platform alone: "
          f"**{dockpub / slower:.2f}×** (side by side, not one after the other, is about 1×).")


if __name__ == "__main__":
    main()
