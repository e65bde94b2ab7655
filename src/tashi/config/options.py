"""How a setting is declared: a dataclass field that carries its Tashi option name and its doc.

    max_memory: int = option("maxMemory", 8192, "Largest memory (MB) one VM may ask for.")

The option name is what users write in ``.cfg`` files (the original Tashi's name where one
existed); the doc becomes the comment above it in the shipped ``TashiDefaults.cfg``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True, slots=True)
class OptionInfo:
    name: str
    doc: str
    minimum: float | None = None  # for numbers: the smallest value allowed (inclusive)
    maximum: float | None = None  # and the largest

    def allows(self, value: float) -> bool:
        low, high = self.minimum, self.maximum
        return (low is None or value >= low) and (high is None or value <= high)

    def bounds(self) -> str:
        """The allowed range in words ("from 1 to 65535", "at least 1"), or "" if unbounded."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"from {_number(low)} to {_number(high)}"
        if low is not None:
            return f"at least {_number(low)}"
        if high is not None:
            return f"at most {_number(high)}"
        return ""

    def comment(self) -> str:
        """The doc, with the allowed range when there is one (the shipped file's comment)."""
        return f"{self.doc} Allowed: {self.bounds()}." if self.bounds() else self.doc


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def option(
    name: str,
    default: Any,
    doc: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """Declare one setting (use as a dataclass field default).

    ``minimum``/``maximum`` bound a number, so that ``port = 99999`` or ``maxCores = 0`` stops
    the program at start-up with the file and option, not later with a puzzling error."""
    info = OptionInfo(name, doc, minimum, maximum)
    return dataclasses.field(default=default, metadata={"tashi": info})


class SectionSettings(Protocol):
    """A frozen dataclass of options that all live in one ``[SECTION]``."""

    SECTION: ClassVar[str]
    DOC: ClassVar[str]


def option_info(field: dataclasses.Field[Any]) -> OptionInfo:
    info = field.metadata.get("tashi")
    if not isinstance(info, OptionInfo):
        raise TypeError(f"setting {field.name} was not declared with option()")
    return info
