"""Run only the ec2 bench's launch part, with timing marks (scratch, not committed)."""
import json, statistics, sys, time
from pathlib import Path
from bench import ec2launch
from bench.cluster import Workspace
from bench.e2eboot import uptime
from tashi._timing import mark

quick = "--quick" in sys.argv
rounds = int(next((a.split("=")[1] for a in sys.argv if a.startswith("--rounds=")), 0))
if rounds:
    ec2launch.LAUNCHES = rounds
LB = ec2launch.LaunchBench
orig_run, orig_create = LB._run_instances, LB._create_vm
def _run(self, t0):
    mark("bench.run.begin"); r = orig_run(self, t0); mark("bench.run.answered", r[0]); return r
def _create(self, t0):
    mark("bench.create.begin"); r = orig_create(self, t0); mark("bench.create.answered", r[0]); return r
LB._run_instances, LB._create_vm = _run, _create
orig_wait = LB._wait
def _wait(self, iid, running):
    r = orig_wait(self, iid, running); mark("bench.seen", iid); return r
LB._wait = _wait
ws = Workspace()
res = ec2launch.LaunchResults()
before = uptime()
try:
    ec2launch.run(ws.subdir("launch"), quick, print, res)
finally:
    after = uptime()
    ws.remove()
out = Path(sys.argv[1])
out.write_text(json.dumps({"load": [before, after], "samples": [__import__("dataclasses").asdict(s) for s in res.samples]}, default=str))
R = res.of("RunInstances"); C = res.of("createVm")
for f in ("answered", "entered", "running", "up"):
    a = statistics.median(getattr(s, f) for s in R); b = statistics.median(getattr(s, f) for s in C)
    d = statistics.median(getattr(r, f) - getattr(c, f) for r, c in zip(R, C))
    print(f"{f}: RunInstances {a:.3f} createVm {b:.3f} ratio {a/b:.2f}x round-by-round {d*1000:+.1f} ms")
print("load", before, after, "neighbours", statistics.median(s.neighbours for s in res.samples))
