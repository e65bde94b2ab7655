"""A request to 169.254.169.254 from inside a network namespace, as a guest (or a stranger)
makes it: ``fetch(ns, path)`` is ``(status, body)``, status 0 when nothing answered."""

from __future__ import annotations

import json
import subprocess
import sys

_FETCH = """
import json, sys, urllib.request, urllib.error
url, method, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
request = urllib.request.Request(url, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=3) as answer:
        print(json.dumps([answer.status, answer.read().decode()]))
except urllib.error.HTTPError as exc:
    print(json.dumps([exc.code, ""]))
except OSError as exc:
    print(json.dumps([0, str(exc)]))
"""


def fetch(ns: str, path: str, method: str = "GET", **headers: str) -> tuple[int, str]:
    done = subprocess.run(
        [
            "ip", "netns", "exec", ns, sys.executable, "-c", _FETCH,
            f"http://169.254.169.254{path}", method, json.dumps(headers),
        ],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    status, body = json.loads(done.stdout)
    return int(status), str(body)
