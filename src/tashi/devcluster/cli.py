"""``tashi-cluster``: a whole Tashi cluster on this machine (seed 002's ssi-start/add/rm/stop).

    tashi-cluster start [N]        N hosts (default [Cluster] hosts, 3)
    tashi-cluster add 4 5          start hosts 4 and 5 (running ones are skipped)
    tashi-cluster rm 2             crash host 2: SIGKILL its node manager and VMs, tell nobody
    tashi-cluster rm cm            crash a control-plane piece: cm, scheduler, dnsmasq[:NET],
                                   nm:N (host N's node manager alone; its VMs keep running)
    tashi-cluster add cm           start it again: same command, config, database and files
    tashi-cluster stop             everything down and removed
    tashi-cluster status           the pieces' processes, hosts, their state, VMs per host
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
from tashi.config.cluster import ClusterSettings
from tashi.devcluster import xmppsetup
from tashi.devcluster.cluster import DevCluster
from tashi.devcluster.state import locked
from tashi.devcluster.targets import Target, parse_target
from tashi.domain.errors import InvalidInput, TashiError

TARGET_COMMANDS = [  # name, one-line help, description
    (
        "add",
        "start hosts afresh, or crashed pieces again (cm, scheduler, dnsmasq, nm:N)",
        "Start hosts (afresh) or crashed control-plane pieces (again, as they were).\n"
        "Examples: `add 4 5`, `add cm`, `add nm:2`, `add dnsmasq`.",
    ),
    (
        "rm",
        "crash hosts or control-plane pieces (cm, scheduler, dnsmasq, nm:N): SIGKILL",
        "Crash hosts or control-plane pieces: SIGKILL by pid, tell nobody.\n"
        "Examples: `rm 2`, `rm cm`, `rm nm:2`, `rm dnsmasq:1`.",
    ),
]
TARGETS = """targets:
  N            host N, the whole machine: rm crashes it (SIGKILL of its node manager, its VMs'
               qemu and the node manager's watchdog); add boots it afresh, with empty state
  nm:N         host N's node manager (tashi-nm) alone: its VMs and watchdog keep running
  cm           the cluster manager (tashi-cm)
  scheduler    the scheduler (tashi-scheduler)
  dnsmasq      every dnsmasq (DHCP and DNS of the VM networks); dnsmasq:NET the one of
               VM network NET

`rm cm` is a crash: SIGKILL by pid, nobody told, nothing cleaned up. `add cm` starts it
again with exactly the same command, config and files (database, leases, VM state), so it
comes back with all its state; pieces still running are skipped. `tashi-cluster status`
shows each piece's pid and whether it runs (down (rm): crashed by rm)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashi-cluster",
        description="A whole Tashi cluster on this machine: each host a network namespace with\n"
        "its own node manager, the cluster manager and scheduler beside them.",
        epilog="Crash and restart: `rm N` / `add N` for host N, `rm cm` / `add cm` for the\n"
        "cluster manager, likewise scheduler, dnsmasq[:NET] and nm:N (host N's node manager\n"
        "alone); `tashi-cluster rm --help` says more.\n"
        "Settings: [Cluster] in ~/.tashi/Cluster.cfg (see docs/cluster.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tashi-cluster {tashi.__version__}")
    parser.add_argument(
        "--state-dir", type=Path, help="the cluster's directory ([Cluster] stateDir)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a cluster of N hosts")
    start.add_argument("hosts", nargs="?", type=int, help="number of hosts ([Cluster] hosts)")
    start.add_argument(
        "--xmpp",
        action="store_true",
        help="also prosody, tashi-xmpp and the XMPP event publisher ([Cluster] xmpp)",
    )
    for name, summary, description in TARGET_COMMANDS:
        command = sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog=TARGETS,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("targets", nargs="+", type=_target, metavar="TARGET", help="see below")
    sub.add_parser("stop", help="stop everything and remove all it made")
    sub.add_parser("status", help="each piece's process (pid, up or down), hosts, VMs per host")
    console = sub.add_parser("console", help="a VM's serial console log")
    console.add_argument("instance", help="instance name or id")
    console.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    return parser


def _target(text: str) -> Target:
    try:
        return parse_target(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed (``SystemExit`` with usage on a bad one): no root needed."""
    return _parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
            if args.xmpp:
                cluster.settings = dataclasses.replace(settings, xmpp=True)
            return _start(cluster, args.hosts or settings.hosts)
        if args.command == "add":
            cluster.add_targets(args.targets)
            return 0
        if args.command == "rm":
            cluster.rm(args.targets)
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
        "  more:     tashi-cluster status | add N | rm N | rm cm | add cm | console VM | stop"
    )
    if cluster.settings.xmpp:
        print(xmppsetup.how_to(layout))
    return 0


def _status(cluster: DevCluster) -> None:
    status = cluster.status()
    print(f"{'piece':<12} {'pid':<8} process")
    for piece in status.pieces:
        print(f"{piece.name:<12} {piece.pid:<8} {piece.process}")
    print(f"\n{'host':<8} {'process':<10} {'cm says':<8} {'state':<10} VMs")
    for row in status.hosts:
        process = row.nm.process if row.nm is not None else "gone"
        up = {True: "up", False: "down", None: "-" if status.cm_problem is None else "?"}[row.up]
        vms = " ".join(row.instances)
        print(f"{row.name:<8} {process:<10} {up:<8} {row.state:<10} {vms}")
    if status.cm_problem is not None:
        print(f"\nthe cluster manager does not answer: {status.cm_problem}")
    down = [p.name for p in status.pieces if not p.running]
    if down:
        print(f"\ndown: {' '.join(down)}; `tashi-cluster add {' '.join(down)}` starts them again")


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
                if handle.tell() > os.fstat(handle.fileno()).st_size:
                    handle.seek(0)  # emptied by its node manager's cap: from its new start
                time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
