"""SLA@SOI's ``loadExpression``: a host's load as arithmetic over named figures, evaluated safely.

    loadExpression = memUsage + coresUsage * 512 + cpuUsage

The expression is parsed once with ``ast`` and compiled to a tree of small closures; only
numbers, the variables below, ``+ - * / // %``, unary minus and parentheses are accepted. There
is no ``eval``: attribute access, calls, subscripts, comprehensions, names outside the list and
``**`` (a cheap way to hang a process) are refused when the configuration is read.

Variables (per host, after the placements already decided in this round):
``memUsage`` (MB used), ``coresUsage`` (cores used), ``cpuUsage`` (the load its node manager
reports, 0 if none), ``memory``/``cores`` (capacity), ``freeMemory``/``freeCores``,
``cpuSpeed`` (MHz), ``instances`` (how many VMs it runs).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping

from tashi.domain.errors import InvalidInput

VARIABLES = (
    "memUsage",
    "coresUsage",
    "cpuUsage",
    "memory",
    "cores",
    "freeMemory",
    "freeCores",
    "cpuSpeed",
    "instances",
)
MAX_LENGTH = 500

Values = Mapping[str, float]
Compiled = Callable[[Values], float]

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: a / b if b else 0.0,
    ast.FloorDiv: lambda a, b: a // b if b else 0.0,
    ast.Mod: lambda a, b: a % b if b else 0.0,
}


class LoadExpression:
    """A compiled expression; ``LoadExpression(text)`` raises ``InvalidInput`` if it is not
    allowed."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_LENGTH:
            raise InvalidInput(f"loadExpression is longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise InvalidInput(f"loadExpression {text!r} is not an expression: {exc.msg}") from None
        self.text = text
        self.names: frozenset[str] = frozenset()
        self._run = self._compile(tree.body)

    def __call__(self, values: Values) -> float:
        return self._run(values)

    def _compile(self, node: ast.expr) -> Compiled:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self._refuse(f"the constant {value!r}")
            number = float(value)
            return lambda _values: number
        if isinstance(node, ast.Name):
            name = node.id
            if name not in VARIABLES:
                raise self._refuse(f"the name {name!r} (known: {', '.join(VARIABLES)})")
            self.names |= {name}
            return lambda values: float(values.get(name, 0.0))
        if isinstance(node, ast.BinOp):
            function = _BINARY.get(type(node.op))
            if function is None:
                raise self._refuse(f"the operator {type(node.op).__name__}")
            left, right = self._compile(node.left), self._compile(node.right)
            return lambda values: function(left(values), right(values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = self._compile(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda values: -inner(values)
            return inner
        raise self._refuse(type(node).__name__)

    def _refuse(self, what: str) -> InvalidInput:
        return InvalidInput(
            f"loadExpression {self.text!r}: {what} is not allowed; use numbers, the variables"
            " and + - * / // % ( )"
        )
