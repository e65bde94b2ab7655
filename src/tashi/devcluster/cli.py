"""``tashi-cluster``: a whole Tashi cluster on this machine (seed 002's ssi-start/add/rm/stop).

    tashi-cluster start [N]        N hosts (default [Cluster] hosts, 3)
    tashi-cluster add 4 5          start hosts 4 and 5 (running ones are skipped)
    tashi-cluster rm 2             crash host 2: SIGKILL its node manager and VMs, tell nobody
    tashi-cluster stop             everything down and removed
    tashi-cluster status           hosts, their state, VMs per host
    tashi-cluster console VM [-f]  the VM's serial console log (-f: follow it)

Settings: ``[Cluster]`` in Cluster.cfg (``~/.tashi/Cluster.cfg`` and the other Tashi config
directories); ``--state-dir`` overrides ``[Cluster] stateDir``. docs/cluster.md has the details.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import tashi
from tashi.config import ConfigError, load_settings
from tashi.config.settings import ClusterSettings
from tashi.devcluster.cluster import DevCluster
from tashi.devcluster.state import locked
from tashi.domain.errors import TashiError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashi-cluster",
        description="A whole Tashi cluster on this machine: each host a network namespace with"
        " its own node manager, the cluster manager and scheduler beside them.",
        epilog="Settings: [Cluster] in ~/.tashi/Cluster.cfg (see docs/cluster.md).",
    )
    parser.add_argument("--version", action="version", version=f"tashi-cluster {tashi.__version__}")
    parser.add_argument(
        "--state-dir", type=Path, help="the cluster's directory ([Cluster] stateDir)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a cluster of N hosts")
    start.add_argument("hosts", nargs="?", type=int, help="number of hosts ([Cluster] hosts)")
    add = sub.add_parser("add", help="start these hosts (ones already up are skipped)")
    add.add_argument("numbers", nargs="+", type=int)
    rm = sub.add_parser("rm", help="crash these hosts: SIGKILL node manager and VMs, tell nobody")
    rm.add_argument("numbers", nargs="+", type=int)
    sub.add_parser("stop", help="stop everything and remove all it made")
    sub.add_parser("status", help="hosts, their state, VMs per host")
    console = sub.add_parser("console", help="a VM's serial console log")
    console.add_argument("instance", help="instance name or id")
    console.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print(
            "tashi-cluster: needs root (it makes network namespaces, links and cgroups):"
            " run it with sudo",
            file=sys.stderr,
        )
        return 1
    try:
        settings = load_settings("Cluster").cluster
    except ConfigError as exc:
        print(f"tashi-cluster: configuration error: {exc.message}", file=sys.stderr)
        return 2
    if args.state_dir is not None:
        settings = dataclasses.replace(settings, state_dir=args.state_dir)
    try:
        return _run(args, settings)
    except TashiError as exc:
        print(f"tashi-cluster: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, settings: ClusterSettings) -> int:
    cluster = DevCluster(settings, say=lambda text: print(text, flush=True))
    root = cluster.layout.root
    if args.command == "console":
        return _console(cluster, args.instance, args.follow)
    if args.command == "status":
        _status(cluster)
        return 0
    with locked(root):
        if args.command == "start":
            return _start(cluster, args.hosts or settings.hosts)
        if args.command == "add":
            cluster.add(args.numbers)
            return 0
        if args.command == "rm":
            cluster.crash(args.numbers)
            return 0
        left = cluster.stop()
        (root.parent / f".{root.name}.lock").unlink(missing_ok=True)
    for problem in left:
        print(f"tashi-cluster: left behind: {problem}", file=sys.stderr)
    print("cluster stopped" if not left else "cluster stopped, with leftovers (see above)")
    return 1 if left else 0


def _start(cluster: DevCluster, hosts: int) -> int:
    began = time.monotonic()
    try:
        state = cluster.start(hosts)
    except BaseException:
        print("tashi-cluster: start failed; removing what it made", file=sys.stderr)
        cluster.stop()
        raise
    took = time.monotonic() - began
    layout = cluster.layout
    print(
        f"cluster {state.tag} is up: {hosts} host(s) in {took:.1f} s\n"
        f"  use it:   export TASHI_CONFIG={layout.client_config}\n"
        "            tashi getHosts; tashi getVmLayout\n"
        f"  logs:     {layout.cm}/tashi-cm.log, {layout.root}/hosts/host<N>/tashi-nm.log\n"
        "  more:     tashi-cluster status | add N | rm N | console VM | stop"
    )
    return 0


def _status(cluster: DevCluster) -> None:
    rows = cluster.status()
    print(f"{'host':<8} {'process':<8} {'cm says':<8} {'state':<10} VMs")
    for row in rows:
        process = "running" if row.running else "gone"
        up = {True: "up", False: "down", None: "-"}[row.up]
        print(f"{row.name:<8} {process:<8} {up:<8} {row.state:<10} {' '.join(row.instances)}")


def _console(cluster: DevCluster, ref: str, follow: bool) -> int:
    path = cluster.console_path(ref)
    if not path.exists():
        print(f"tashi-cluster: no console log at {path} (yet)", file=sys.stderr)
        return 1
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(65536)
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif not follow:
                return 0
            else:
                time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
