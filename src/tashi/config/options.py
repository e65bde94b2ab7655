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


def option(name: str, default: Any, doc: str) -> Any:
    """Declare one setting (use as a dataclass field default)."""
    return dataclasses.field(default=default, metadata={"tashi": OptionInfo(name, doc)})


class SectionSettings(Protocol):
    """A frozen dataclass of options that all live in one ``[SECTION]``."""

    SECTION: ClassVar[str]
    DOC: ClassVar[str]


def option_info(field: dataclasses.Field[Any]) -> OptionInfo:
    info = field.metadata.get("tashi")
    if not isinstance(info, OptionInfo):
        raise TypeError(f"setting {field.name} was not declared with option()")
    return info
