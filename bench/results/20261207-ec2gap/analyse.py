"""Per launch timelines from /tmp/ec2gap-timing.log (scratch)."""
import collections, statistics, sys
lines = [l.split(None, 3) for l in open(sys.argv[1])]
ev = [(float(t), pid, what, (rest[0].strip() if rest else "")) for t, pid, what, *rest in lines]
ev.sort()
launches = []
cur = None
for t, pid, what, arg in ev:
    if what in ("bench.run.begin", "bench.create.begin"):
        cur = {"side": "RunInstances" if "run" in what else "createVm", "t0": t, "iid": None, "events": [], "bench_pid": pid}
        launches.append(cur)
    if cur is None:
        continue
    if what.endswith(".answered") and what.startswith("bench"):
        cur["iid"] = arg.split()[0]
    cur["events"].append((t, pid, what, arg))
    if what == "bench.seen":
        cur = None
names = collections.defaultdict(lambda: collections.defaultdict(list))
skip_first = int(sys.argv[2]) if len(sys.argv) > 2 else 2
for L in launches[skip_first:]:
    iid = L["iid"]
    seen = collections.Counter()
    for t, pid, what, arg in L["events"]:
        first = arg.split()[0] if arg else ""
        if what.startswith(("cm.", "nm.", "sched.", "fw.on")) and first and first not in (iid, ) and not what.startswith("nm.fw_put") :
            continue
        key = what if not what.startswith("fw.on") else f"{what}:{arg.split()[-1]}"
        seen[key] += 1
        if seen[key] > 1:
            key = f"{key}#{seen[key]}"
        names[L["side"]][key].append((t - L["t0"]) * 1000)
if "-v" in sys.argv:
    for L in launches[skip_first:]:
        print(L["side"], L["iid"])
        for t, pid, what, arg in L["events"]:
            print(f"   {(t-L['t0'])*1000:8.1f} {pid} {what} {arg}")
for side, d in names.items():
    print(side)
    for k, v in sorted(d.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"   {statistics.median(v):8.1f} ms  (n={len(v)}, min {min(v):.1f})  {k}")
