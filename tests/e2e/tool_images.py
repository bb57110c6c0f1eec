"""Tool-only images for the e2e tests, built offline into the sandbox's podman store.

- busybox: one static busybox binary and its applet links, nothing else: no libc, no
  Python, no bash. From Debian's busybox-static package (`make test` installs it).
- samtools: Debian (minbase, from the machine's own apt mirror) with samtools, and no
  Python.

Each is tagged with a digest of what went into it and built once per machine.
"""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
import tempfile
from pathlib import Path

from snakemake_executor_plugin_awsbatch.sandbox import debian, podman, rootfs
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir

BUSYBOX_REPOSITORY = "localhost/awsbatch-test-busybox"
SAMTOOLS_REPOSITORY = "localhost/awsbatch-test-samtools"
BUSYBOX_PATH = "/bin:/usr/bin"
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STATIC_BUSYBOX = Path("/bin/busybox")


def busybox_image(state: StateDir) -> str:
    binary = STATIC_BUSYBOX.read_bytes() if STATIC_BUSYBOX.is_file() else b""
    if not _is_static(binary) or not binary:
        raise RuntimeError(
            f"{STATIC_BUSYBOX} is not a static busybox: apt-get install busybox-static"
        )
    tag = f"{BUSYBOX_REPOSITORY}:{hashlib.sha256(binary).hexdigest()[:16]}"
    if podman.image_exists(state, tag):
        return tag
    applets = subprocess.run(
        [str(STATIC_BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            for directory in ("bin", "tmp", "work"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
                tar.addfile(info)
            tar.add(STATIC_BUSYBOX, "bin/busybox")
            for applet in applets:
                if applet != "busybox":
                    link = tarfile.TarInfo(f"bin/{applet}")
                    link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                    tar.addfile(link)
        podman.podman(state, "import", "--change", f"ENV PATH={BUSYBOX_PATH}", str(archive), tag)
    return tag


def samtools_image(state: StateDir) -> str:
    source = debian.host_source()
    packages = ("samtools",)
    digest = hashlib.sha256("\n".join([source.mirror, source.suite, *packages]).encode())
    tag = f"{SAMTOOLS_REPOSITORY}:{digest.hexdigest()[:16]}"
    if not podman.image_exists(state, tag):
        log = state.logs / "tool-image-build.log"
        rootfs.build_plain(tag, source, packages, log, podman.environment(state))
    return tag


def _is_static(binary: bytes) -> bool:
    """No ELF interpreter named in the first page: the binary needs no libc."""
    return b"ld-linux" not in binary[:4096] and b"ld-musl" not in binary[:4096]
