"""Which system tools the sandbox needs, and a message naming the package when one is missing."""

from __future__ import annotations

import os
import shutil

from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError

# tool -> Debian/Ubuntu package that provides it
# (iptables, ip: multi-node jobs' network, node_network.py)
RUNTIME_TOOLS = {"podman": "podman", "runc": "runc", "iptables": "iptables", "ip": "iproute2"}
BUILD_TOOLS = {"debootstrap": "debootstrap", "chroot": "coreutils"}

# runc and debootstrap live in sbin, which a non-root PATH often lacks.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def find_tool(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=path)


def require(tools: dict[str, str]) -> dict[str, str]:
    """Absolute path of each tool; one SandboxError naming every missing package otherwise."""
    found = {tool: find_tool(tool) for tool in tools}
    missing = sorted({tools[tool] for tool, path in found.items() if path is None})
    if missing:
        names = ", ".join(tool for tool, path in found.items() if path is None)
        packages = " ".join(missing)
        raise SandboxError(
            f"the sandbox needs {names}, which is not installed: "
            f"install the Debian/Ubuntu package(s) with `sudo apt-get install -y {packages}` "
            "(or run `make system-deps` as root)"
        )
    return {tool: path for tool, path in found.items() if path is not None}


def require_root(purpose: str) -> None:
    # debootstrap and chroot need root; rootless podman is not supported either.
    if os.geteuid() != 0:
        raise SandboxError(f"{purpose} needs root (debootstrap, chroot, podman); run it as root")
