"""Segment durations per launch, medians per side and round-by-round (scratch)."""
import statistics, sys
sys.argv, path = sys.argv, sys.argv[1]
exec(open(__import__("os").path.join(__import__("os").path.dirname(__file__), "analyse.py")).read().split("names = collections")[0].replace("sys.argv[1]", "path"))
SEG = [("answer", "begin", "answered"), ("to sched.activate", "answered", "sched.activate.begin"),
       ("activate write", "sched.activate.begin", "cm.instantiate.begin"),
       ("hop to node", "cm.instantiate.begin", "nm.launch.begin"),
       ("disks+taps", "nm.launch.begin", "nm.prepared"), ("guest side", "nm.prepared", "nm.guest_side"),
       ("pre-spawn", "nm.guest_side", "nm.qemu.spawn"), ("qemu launch (daemonize)", "nm.qemu.spawn", "nm.qemu.daemon"), ("attach+cgroup+save", "nm.qemu.daemon", "nm.qemu.saved"), ("QMP connect", "nm.qemu.saved", "nm.qemu.qmp"), ("after QMP", "nm.qemu.qmp", "nm.started"), ("hop back", "nm.started", "cm.instantiate.end"),
       ("to Running", "cm.instantiate.end", "cm.running"), ("TOTAL entered", "begin", "cm.running")]
def at(L, name):
    for t, pid, what, arg in L["events"]:
        w = what.replace("bench.run.", "").replace("bench.create.", "") if what.startswith("bench.") else what
        if w == name and (not what.startswith(("cm.", "nm.", "sched.")) or arg.split()[0] == L["iid"]):
            return t
    return None
rows = {"RunInstances": [], "createVm": []}
for L in launches[2:]:
    rows[L["side"]].append({n: (at(L, b) - at(L, a)) * 1000 if at(L, a) and at(L, b) else float("nan") for n, a, b in SEG})
R, C = rows["RunInstances"], rows["createVm"]
print(f"{'segment':20} {'RunInst':>8} {'createVm':>8} {'rbr diff':>8}  (n={len(R)},{len(C)})")
for n, _, _ in SEG:
    r = statistics.median(x[n] for x in R); c = statistics.median(x[n] for x in C)
    d = statistics.median(a[n] - b[n] for a, b in zip(R, C))
    print(f"{n:20} {r:8.1f} {c:8.1f} {d:+8.1f}")
