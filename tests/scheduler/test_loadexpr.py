"""loadExpression is arithmetic over known names only, never Python."""

from __future__ import annotations

import pytest

from tashi.domain.errors import InvalidInput
from tashi.scheduler.loadexpr import LoadExpression


def test_the_sla_at_soi_example() -> None:
    expr = LoadExpression("memUsage + coresUsage * 512 + cpuUsage")
    assert expr({"memUsage": 1024, "coresUsage": 2, "cpuUsage": 0.5}) == 2048.5
    assert expr.names == {"memUsage", "coresUsage", "cpuUsage"}


def test_operators_parentheses_and_division_by_zero() -> None:
    expr = LoadExpression("-(memUsage - 10) / freeMemory + 7 // 2 + 7 % 4")
    assert expr({"memUsage": 30, "freeMemory": 4}) == -5 + 3 + 3
    assert LoadExpression("memUsage / freeCores")({"memUsage": 5, "freeCores": 0}) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "memUsage.__class__",
        "memUsage.real",
        "open('/etc/passwd')",
        "max(memUsage, 1)",
        "[x for x in ()]",
        "memUsage[0]",
        "lambda: 1",
        "memUsage if cpuUsage else 1",
        "memUsage ** 999999999",
        "'text'",
        "True + memUsage",
        "unknownName + 1",
        "memUsage < 5",
        "memUsage; import os",
        "(memUsage := 3)",
        "f'{memUsage}'",
        "1 << 3000",
        "",
        "x" * 600,
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        LoadExpression(text)
