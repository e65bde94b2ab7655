"""``tashi.runtime.filelimit``: a daemon lifts its soft open-file limit to the hard one, and
says when the limit is short for its peers."""

from __future__ import annotations

import resource
import subprocess
import sys

from tashi.runtime import filelimit


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(512, soft)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    code = (
        "import resource; from tashi.runtime import filelimit; got = filelimit.raise_soft();"
        " print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=lower, capture_output=True, text=True, check=True
    ).stdout.split()
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert [int(n) for n in out] == [expected, expected]


def test_a_short_limit_is_told_with_what_is_needed() -> None:
    assert filelimit.shortfall(filelimit.needed(500), 500, "hosts") is None
    told = filelimit.shortfall(1024, 2000, "hosts")
    assert told is not None
    assert "1024" in told and "2000 hosts" in told and str(filelimit.needed(2000)) in told
