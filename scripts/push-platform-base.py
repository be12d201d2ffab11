#!/usr/bin/env python3
"""Pushes a busybox base image for several platforms to a registry as one OCI image index.

    push-platform-base.py REGISTRY REPOSITORY:TAG PLATFORM=BUSYBOX [PLATFORM=BUSYBOX ...]

e.g. `127.0.0.1:5000 base/busybox:latest linux/amd64=/bin/busybox linux/arm64=/tmp/arm/bin/busybox`.
Each platform's image is one gzip layer holding busybox, its applet links, /etc/passwd and /tmp.
Nothing can be pulled from a hub here, and `docker import --platform` records the host's
architecture, so the index is written with the registry's own HTTP API (blob uploads and
manifest PUTs). Prints the index's digest.
"""
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import urllib.request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rootfs_tar(busybox: str) -> bytes:
    """A deterministic tar of busybox, its applets as symlinks, and a few files."""
    with open(busybox, "rb") as f:
        binary = f.read()
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        def add(name, kind, data=b"", mode=0o755, link=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for folder, mode in [("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)]:
            add(folder, tarfile.DIRTYPE, mode=mode)
        add("bin/busybox", tarfile.REGTYPE, binary)
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, link="busybox", mode=0o777)
        add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        add("etc/group", tarfile.REGTYPE, b"root:x:0:\n", 0o644)
    return out.getvalue()


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return urllib.request.urlopen(req, timeout=60)


def push_blob(base: str, repository: str, data: bytes) -> str:
    blob = digest(data)
    start = request("POST", f"{base}/v2/{repository}/blobs/uploads/")
    location = start.headers["Location"]
    if location.startswith("/"):
        location = base + location
    separator = "&" if "?" in location else "?"
    request(
        "PUT",
        f"{location}{separator}digest={blob}",
        data,
        {"Content-Type": "application/octet-stream"},
    )
    return blob


def push_manifest(base, repository, reference, media_type, document) -> str:
    body = json.dumps(document, separators=(",", ":")).encode()
    request("PUT", f"{base}/v2/{repository}/manifests/{reference}", body, {"Content-Type": media_type})
    return digest(body)


def platform_manifest(base, repository, platform, busybox):
    os_name, arch = platform.split("/", 1)
    layer_tar = rootfs_tar(busybox)
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": arch,
            "os": os_name,
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        },
        separators=(",", ":"),
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": push_blob(base, repository, config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(base, repository, layer), "size": len(layer)}],
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    pushed = push_manifest(base, repository, digest(body), OCI_MANIFEST, manifest)
    return {
        "mediaType": OCI_MANIFEST,
        "digest": pushed,
        "size": len(body),
        "platform": {"architecture": arch, "os": os_name},
    }


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    registry, reference = sys.argv[1], sys.argv[2]
    repository, tag = reference.rsplit(":", 1)
    base = f"http://{registry}"
    manifests = [
        platform_manifest(base, repository, *spec.split("=", 1)) for spec in sys.argv[3:]
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    print(push_manifest(base, repository, tag, OCI_INDEX, index))


if __name__ == "__main__":
    main()
