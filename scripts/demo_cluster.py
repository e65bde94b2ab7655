"""``make demo``: a 3-host Tashi cluster on this machine, six VMs on two networks, a host crash.

    scripts/demo_cluster.py          (re)start the demo cluster under var/demo-cluster and run
    scripts/demo_cluster.py stop     stop it (`make demo-stop`)

Phases, each timed: build the guest images (once: the tiny one, and the Debian cloud-init one the
EC2 walk-through of docs/ec2.md logs in to), `tashi-cluster start 3` with both in its store, `tashi
createMany` six VMs with a NIC on each of the two networks, wait (with a progress line) until all
are Running and have their DHCP leases, `tashi getVmLayout`, ping every VM by DNS name from the
cluster manager's namespace, `tashi-cluster rm` the host with most VMs and wait until its VMs run
elsewhere, then crash the cluster manager (`tashi-cluster rm cm`), start it again 10 s later (`add
cm`) and check that every VM ran on through it: the same qemu processes, every instance Running;
last, the EC2 API with the unmodified AWS CLI (an access key from `tashi createAccessKey`, `aws ec2
run-instances`, `wait instance-running`, `terminate-instances`). The cluster is left running; the
end says how to use and stop it. The demo exits non-zero when the VMs did not survive the cluster
manager's crash (the node managers fence their VMs when their lease, [Cluster] hostLeaseTime, runs
out without the cluster manager).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("TASHI_DEMO_BIN", ROOT / ".venv" / "bin"))
STATE = Path(os.environ.get("TASHI_DEMO_CLUSTER_DIR", ROOT / "var" / "demo-cluster"))
IMAGE = ROOT / "var" / "images" / "tashi-tiny.qcow2"
DEBIAN = IMAGE.with_name("tashi-debian.qcow2")
CLUSTER_CFG = ROOT / "var" / "demo-Cluster.cfg"  # [Cluster] of the demo: the Debian image too
BOOT_TIMEOUT = 240.0
CM_OUTAGE = 10.0  # seconds the cluster manager stays down in the control-plane phase
SETTLE_TIMEOUT = 60.0  # for the hosts to report to the restarted cluster manager
DHCP = re.compile(rb"TASHI-GUEST-DHCP (\S+) (\S+)")
summary: list[tuple[float, str]] = []


def phase(title: str, work: Callable[[], object]) -> object:
    print(f"\n==> {title}", flush=True)
    began = time.monotonic()
    result = work()
    took = time.monotonic() - began
    print(f"    ({took:.1f} s)", flush=True)
    summary.append((took, title))
    return result


def run(*argv: str, check: bool = True, quiet: bool = False, config: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASHI_")}
    if config is not None:
        env["TASHI_CONFIG"] = str(config)
    elif (STATE / "client.cfg").exists():
        env["TASHI_CONFIG"] = str(STATE / "client.cfg")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if not quiet:
        print(done.stdout, end="", flush=True)
    if check and done.returncode != 0:
        sys.exit(f"demo: {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def cluster(*args: str, quiet: bool = False) -> str:
    CLUSTER_CFG.parent.mkdir(parents=True, exist_ok=True)
    CLUSTER_CFG.write_text(f"[Cluster]\nimages = {DEBIAN}\n")
    tool = str(BIN / "tashi-cluster")
    return run(tool, "--state-dir", str(STATE), *args, quiet=quiet, config=CLUSTER_CFG)


def tashi(*args: str, quiet: bool = False) -> str:
    return run(str(BIN / "tashi"), *args, quiet=quiet)


def instances() -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(tashi("getInstances", "--json", quiet=True))
    return listed


def state() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((STATE / "cluster.json").read_text())
    return loaded


def hosts() -> dict[int, str]:
    return {
        int(h["id"]): str(h["name"]) for h in json.loads(tashi("getHosts", "--json", quiet=True))
    }


def leases(inst: dict[str, object], names: dict[int, str]) -> dict[str, str]:
    """The guest's DHCP leases, from its console markers (iface -> ip)."""
    if inst.get("hostId") is None:
        return {}
    host = names.get(int(str(inst["hostId"])), "")
    console = STATE / "hosts" / host / "state" / "vms" / str(inst["id"]) / "console.log"
    try:
        return {m[1].decode(): m[2].decode() for m in DHCP.finditer(console.read_bytes())}
    except FileNotFoundError:
        return {}


def wait_all(
    want: Callable[[dict[str, object], dict[int, str]], bool],
    what: str,
    timeout: float = BOOT_TIMEOUT,
    fatal: bool = True,
) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        names = hosts()
        listed = instances()
        done = [i for i in listed if want(i, names)]
        states: dict[str, int] = {}
        for inst in listed:
            states[str(inst["state"])] = states.get(str(inst["state"]), 0) + 1
        line = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        print(f"\r    {len(done)}/{len(listed)} {what}  [{line}]   ", end="", flush=True)
        if len(done) == len(listed):
            print(flush=True)
            return True
        if time.monotonic() > deadline:
            if fatal:
                sys.exit(f"\ndemo: not all VMs {what} after {timeout:.0f} s")
            print(f"\n    not all VMs {what} after {timeout:.0f} s: see tashi getInstances")
            return False
        time.sleep(0.5)


def running_with_leases(inst: dict[str, object], names: dict[int, str]) -> bool:
    return inst["state"] == "Running" and len(leases(inst, names)) == 2


def ping_all() -> None:
    cm_ns = f"tashi-{state()['tag']}-cm"
    domain = _domain()
    names = hosts()
    for inst in instances():
        name = f"{inst['name']}.{domain}" if domain else ""
        target = name if name and _resolves(cm_ns, name) else leases(inst, names).get("eth0", "")
        how = "by name" if target == name else "by address (no DNS answer)"
        ok = subprocess.run(
            ["ip", "netns", "exec", cm_ns, "busybox", "ping", "-c", "1", "-W", "2", target],
            capture_output=True,
            check=False,
        )
        print(f"    ping {target:<28} {how:<26} {'ok' if ok.returncode == 0 else 'FAILED'}")


def _domain() -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(STATE / "scheduler" / "agent.cfg")
    return parser.get("DhcpDns", "dnsDomain", fallback="")


def _resolves(netns: str, name: str) -> bool:
    found = subprocess.run(
        ["ip", "netns", "exec", netns, "busybox", "nslookup", name],
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


def crash() -> None:
    by_host: dict[int, list[str]] = {}
    for inst in instances():
        if inst.get("hostId") is not None:
            by_host.setdefault(int(str(inst["hostId"])), []).append(str(inst["name"]))
    host_id, victims = max(by_host.items(), key=lambda item: len(item[1]))
    name = hosts()[host_id]
    print(f"    crashing {name} (VMs {', '.join(victims)}): tashi-cluster rm {name[4:]}")
    cluster("rm", name[4:])
    began = time.monotonic()
    while any(
        h["name"] == name and h["up"] for h in json.loads(tashi("getHosts", "--json", quiet=True))
    ):
        if time.monotonic() - began > 60:
            print(f"    {name} is still up after 60 s: see tashi getHosts")
            return
        time.sleep(0.2)
    print(f"    the cluster manager marked {name} down after {time.monotonic() - began:.1f} s")

    def moved(inst: dict[str, object], names: dict[int, str]) -> bool:
        if inst["name"] not in victims:
            return True
        return running_with_leases(inst, names) and inst.get("hostId") != host_id

    what = f"Running with leases (the {len(victims)} of {name} elsewhere)"
    if wait_all(moved, what, 120.0, fatal=False):
        print(f"    {name}'s VMs run again {time.monotonic() - began:.1f} s after the crash")
    tashi("getVmLayout")


def vm_processes() -> dict[str, int]:
    """Each instance's qemu pid (instance name -> pid), found in /proc by its command line: a
    qemu of this cluster (its state directory) running that instance's directory."""
    by_id = {str(inst["id"]): str(inst["name"]) for inst in instances()}
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" not in argv or str(STATE) not in argv:
            continue
        for iid, name in by_id.items():
            if f"/vms/{iid}/" in argv:
                found[name] = int(proc.name)
    return found


def survived(
    before: Mapping[str, int], after: Mapping[str, int], states: Mapping[str, str]
) -> list[str]:
    """What shows the VMs did not run on through the crash (empty: they did): a qemu gone or
    replaced, an instance not Running."""
    problems = []
    for name, pid in sorted(before.items()):
        now = after.get(name)
        if now is None:
            problems.append(f"{name}: its qemu (pid {pid}) is gone")
        elif now != pid:
            problems.append(f"{name}: its qemu changed (pid {pid}, now {now})")
    for name, state in sorted(states.items()):
        if state != "Running":
            problems.append(f"{name}: {state}, not Running")
    return problems


def heartbeats_since(moment: datetime) -> bool:
    """Every host the cluster manager sees up has sent a heartbeat since ``moment`` (so the
    instance states it shows are the node managers' word, not the database's)."""
    listed = json.loads(tashi("getHosts", "--json", quiet=True))
    up = [h for h in listed if h["up"]]
    return bool(up) and all(
        h["lastHeartbeat"] and datetime.fromisoformat(h["lastHeartbeat"]) > moment for h in up
    )


def crash_cm() -> bool:
    before = vm_processes()
    daemons = json.loads((STATE / "cluster.json").read_text())["daemons"]
    pid = daemons["tashi-cm"]["pid"]
    print(f"    {len(before)} VMs, qemu pids {' '.join(str(p) for _, p in sorted(before.items()))}")
    print(f"    crashing the cluster manager (pid {pid}): tashi-cluster rm cm")
    cluster("rm", "cm")
    began = time.monotonic()
    print(f"    the cluster manager stays down {CM_OUTAGE:.0f} s")
    time.sleep(CM_OUTAGE)  # the outage itself: the node managers are on their own meanwhile
    restarted = datetime.now().astimezone()
    adding = time.monotonic()
    cluster("add", "cm")
    now = time.monotonic()
    print(f"    tashi-cluster add cm took {now - adding:.1f} s: down {now - began:.1f} s in all")
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not heartbeats_since(restarted):
        if time.monotonic() > deadline:
            print(f"    not every host reported within {SETTLE_TIMEOUT:.0f} s: see tashi getHosts")
            break
        time.sleep(0.2)
    else:
        print(f"    every host reported again {time.monotonic() - began:.1f} s after the crash")
    after = vm_processes()
    states = {str(i["name"]): str(i["state"]) for i in instances()}
    tashi("getVmLayout")
    for name, was in sorted(before.items()):
        now = after.get(name)
        verdict = "same" if now == was else "GONE" if now is None else "CHANGED"
        print(f"    {name:<10} qemu {was:<8} -> {now or '-':<8} {verdict:<8} {states.get(name)}")
    problems = survived(before, after, states)
    if problems:
        print("    FAILED: the VMs did not run on through the cluster manager's crash:")
        for problem in problems:
            print(f"      {problem}")
    else:
        print(f"    every VM ran on: {len(before)} qemu processes unchanged, all Running")
    return not problems


def ec2_env() -> tuple[str, dict[str, str]]:
    """The EC2 endpoint and the environment of an ``aws`` CLI holding a new access key of the
    demo's admin (``tashi createAccessKey``)."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(STATE / "client.cfg")
    host = config["Client"]["clusterManagerHost"]
    key = json.loads(tashi("createAccessKey", "--json", quiet=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TASHI_"))}
    env.update(
        AWS_ACCESS_KEY_ID=key["accessKeyId"],
        AWS_SECRET_ACCESS_KEY=key["secretAccessKey"],
        AWS_DEFAULT_REGION="tashi-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return f"http://{host}:8773", env


def ec2_phase() -> None:
    """The EC2 API with the unmodified AWS CLI: launch one VM, wait for it, terminate it."""
    endpoint, env = ec2_env()

    def aws(*argv: str) -> str:
        command = [str(BIN / "aws"), "--endpoint-url", endpoint, "--output", "text", "ec2", *argv]
        print("    $ aws ec2 " + " ".join(argv), flush=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"demo: aws ec2 {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
        print("      " + done.stdout.strip().replace("\n", "\n      "), flush=True)
        return done.stdout.strip()

    ami = aws(
        "describe-images",
        "--filters",
        f"Name=name,Values={IMAGE.name}",
        "--query",
        "Images[0].ImageId",
    )
    iid = aws(
        "run-instances",
        "--image-id",
        ami,
        "--instance-type",
        "tashi.tiny",
        "--count",
        "1",
        "--query",
        "Instances[0].InstanceId",
    )
    aws("wait", "instance-running", "--instance-ids", iid)
    aws(
        "describe-instances",
        "--instance-ids",
        iid,
        "--query",
        "Reservations[].Instances[].[InstanceId,State.Name,InstanceType]",
    )
    aws(
        "terminate-instances",
        "--instance-ids",
        iid,
        "--query",
        "TerminatingInstances[].CurrentState.Name",
    )


def start() -> None:
    if os.geteuid() != 0:
        sys.exit("demo: make demo needs root (network namespaces): run it with sudo")
    if (STATE / "cluster.json").exists():
        phase("stopping the previous demo cluster", lambda: cluster("stop"))
    phase(
        "building the tiny guest image (once)",
        lambda: run(str(BIN / "tashi-image"), "build", "--out", str(IMAGE.parent)),
    )
    phase(
        "building the Debian cloud-init guest image (once; about 100 s the first time)",
        lambda: run(str(BIN / "tashi-image"), "debian", "--out", str(DEBIAN.parent)),
    )
    phase("tashi-cluster start 3", lambda: cluster("start", "3"))
    phase(
        "tashi createMany: six VMs, each with a NIC on network 1 and one on network 2",
        lambda: tashi(
            "createMany",
            "--basename",
            "demo",
            "--count",
            "6",
            "--memory",
            "128",
            "--disks",
            IMAGE.name,
            "--nics",
            "1::,2::",
        ),
    )
    phase(
        "waiting until every VM is Running with its two DHCP leases",
        lambda: wait_all(running_with_leases, "Running with leases"),
    )
    phase("tashi getVmLayout", lambda: tashi("getVmLayout"))
    phase("ping every VM from the cluster manager's side", ping_all)
    phase("crash the busiest host; its VMs come back elsewhere", crash)
    ok = phase(
        f"crash the cluster manager, start it again after {CM_OUTAGE:.0f} s; every VM runs on",
        crash_cm,
    )
    phase("the EC2 API, driven by the unmodified AWS CLI", ec2_phase)
    print("\nphase times:")
    for took, title in summary:
        print(f"  {took:7.1f} s  {title}")
    print(
        f"\nThe cluster is still running. Use it:\n  export TASHI_CONFIG={STATE / 'client.cfg'}\n"
        f"  tashi getVmLayout\n  {BIN / 'tashi-cluster'} --state-dir {STATE} status\n"
        "Its EC2 API (docs/ec2.md): tashi createAccessKey, then aws --endpoint-url"
        " http://<clusterManagerHost of that file>:8773 --region tashi-1 ec2 ...\n"
        "Its OCCI API (docs/occi.md): curl -u <username>:<password of that file>"
        " http://<clusterManagerHost>:8787/-/\n"
        "Stop it with: make demo-stop"
    )
    if not ok:
        sys.exit(
            "\ndemo: FAILED: the VMs did not run on through the cluster manager's crash"
            " (see the last phase)"
        )


def main() -> None:
    if sys.argv[1:] == ["stop"]:
        if (STATE / "cluster.json").exists():
            cluster("stop")
        else:
            print("no demo cluster is running")
        return
    start()


if __name__ == "__main__":
    main()
