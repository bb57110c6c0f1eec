"""The network of multi-node parallel jobs' nodes (moto_patches 9): a podman bridge network
of the sandbox's own, and the way from it to the sandbox's moto.

On AWS every node is an instance of its own, with its own private address, and all of a
job's nodes reach each other. Here every node is a container on this network, with its
own network namespace, hostname and address; single-node jobs stay on the host network.

A node does not share the host's loopback, where moto listens for everything else, so:

- moto also listens on the network's gateway (moto_server.py, with IP_FREEBIND: the host
  has that address only while a container is on the network); the nodes' AWS_ENDPOINT_URL
  is `http://<gateway>:<port>`;
- the nodes get their credentials as ECS gives them on AWS, from
  `http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`: an iptables rule (the
  ECS agent sets up the same) sends the network's connections to 169.254.170.2:80 on to
  moto on the gateway. botocore takes AWS_CONTAINER_CREDENTIALS_FULL_URI over http only
  from a loopback address or 169.254.170.2 and a few others, so a FULL_URI on the gateway
  would not do.

The bridge must keep one MAC address while the sandbox runs: a Linux bridge takes the
lowest of its ports' addresses unless it is given one, so a node joining the network could
change the gateway's address under the nodes already running, whose ARP entries then
point nowhere until they expire (a main node lost moto for a minute that way). So `up`
gives the bridge its address explicitly, and a resting container on the network (the
anchor: the sandbox's job image sleeping, with the label of the container that holds the
sandbox's image, podman.HOLD_LABEL) keeps the bridge: without a container, netavark
deletes it, and a new one would have neither that address nor, while the last node's
late teardown runs, a sure existence.

The network, the anchor and the rule carry the sandbox's id, so that `down`, and an `up`
after a sandbox died, find and remove them without the state record.
"""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
from pathlib import Path

from snakemake_executor_plugin_awsbatch.sandbox import podman, prereqs
from snakemake_executor_plugin_awsbatch.sandbox.errors import SandboxError
from snakemake_executor_plugin_awsbatch.sandbox.state import StateDir

# Where ECS's agent serves a task's credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI).
CREDENTIALS_HOST = "169.254.170.2"
CREDENTIALS_PORT = 80
SYS_NET = Path("/sys/class/net")


def name(state: StateDir) -> str:
    return f"awsbatch-sandbox-{state.sandbox_id}-nodes"


def create(state: StateDir, port: int, image: str) -> dict[str, str]:
    """Create the network afresh, its anchor (on image) and the way to moto on port
    -> name, subnet, gateway.

    podman picks a free private /24 (from 10.89.0.0/16 by default), one that no other
    podman network and no interface of this machine uses. No DNS server: the nodes find
    each other by address, as Batch gives them the main node's
    (AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS).
    """
    remove(state)
    network = name(state)
    label = f"{podman.CONTAINER_LABEL}={state.sandbox_id}"
    podman.podman(state, "network", "create", "--disable-dns", "--label", label, network)
    (shown,) = json.loads(podman.podman(state, "network", "inspect", network).stdout)
    subnet = shown["subnets"][0]
    record = {"name": network, "subnet": subnet["subnet"], "gateway": subnet["gateway"]}
    anchor_label = f"{podman.HOLD_LABEL}={state.sandbox_id}"
    podman.podman(
        state,
        *("run", "--detach", "--network", network, "--label", anchor_label),
        *("--name", f"{network}-anchor", image, "sleep", "infinity"),
    )
    _fix_address(shown["network_interface"])
    _iptables("-A", *_credentials_rule(state, record, port))
    return record


def _fix_address(bridge: str) -> None:
    """Give the bridge the address it has now (its anchor's), so that it keeps it."""
    address = (SYS_NET / bridge / "address").read_text().strip()
    tool = prereqs.require({"ip": "iproute2"})["ip"]
    result = subprocess.run(
        [tool, "link", "set", "dev", bridge, "address", address], capture_output=True, text=True
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"setting the address of {bridge} failed: {detail}")


def remove(state: StateDir) -> list[str]:
    """Remove the network (and any container left on it) and the credentials rule ->
    what was removed."""
    removed = []
    for rule in _rules(state):
        _iptables("-D", *rule)
        target = dict(itertools.pairwise(rule)).get("--to-destination", "?")
        removed.append(f"iptables rule {CREDENTIALS_HOST}:{CREDENTIALS_PORT} -> {target}")
    network = name(state)
    if podman.podman(state, "network", "exists", network, check=False).returncode == 0:
        podman.podman(state, "network", "rm", "--force", "--time", "0", network, check=False)
        removed.append(f"network {network}")
    return removed


def _comment(state: StateDir) -> str:
    return f"{podman.CONTAINER_LABEL}={state.sandbox_id}"


def _credentials_rule(state: StateDir, network: dict[str, str], port: int) -> list[str]:
    return [
        "PREROUTING",
        "--source",
        network["subnet"],
        "--destination",
        f"{CREDENTIALS_HOST}/32",
        "--protocol",
        "tcp",
        "--dport",
        str(CREDENTIALS_PORT),
        "-m",
        "comment",
        "--comment",
        _comment(state),
        "--jump",
        "DNAT",
        "--to-destination",
        f"{network['gateway']}:{port}",
    ]


def _rules(state: StateDir) -> list[list[str]]:
    """This sandbox's rules in nat PREROUTING, each as `iptables -S` prints it, less -A."""
    if prereqs.find_tool("iptables") is None:
        return []
    listed = _iptables("-S", "PREROUTING", check=False).stdout.splitlines()
    rules = [shlex.split(line) for line in listed if line.startswith("-A ")]
    return [rule[1:] for rule in rules if _comment(state) in _comments(rule)]


def _comments(rule: list[str]) -> list[str]:
    return [value for option, value in itertools.pairwise(rule) if option == "--comment"]


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = prereqs.require({"iptables": "iptables"})["iptables"]
    result = subprocess.run([tool, "-t", "nat", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"iptables {args[0]} failed: {detail}")
    return result
