"""The one loader of Tashi's layered configuration files.

Search order, as in the original Tashi (``util.getConfig``): the directories ``./etc/``,
``/usr/share/tashi/``, ``/etc/tashi/`` and ``~/.tashi/``; in each, ``TashiDefaults.cfg``,
``Tashi.cfg``, ``<Program>Defaults.cfg`` and ``<Program>.cfg``. Later files override earlier ones;
``TASHI_CONFIG`` names one more file read last. A few environment variables override single
options (``ENV_OVERRIDES``). Unlike the original, no file is required: the defaults live in code.

Values are read without ``%`` interpolation, so a password may contain any character.
"""

from __future__ import annotations

import configparser
import dataclasses
import logging
import math
import os
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tashi.config.options import OptionInfo, option_info
from tashi.config.settings import Settings
from tashi.domain.errors import InvalidInput

log = logging.getLogger(__name__)

PROGRAMS = ("ClusterManager", "NodeManager", "Agent", "Client", "Accounting", "Cluster")

#: environment variable -> (section, option) it overrides
ENV_OVERRIDES: Mapping[str, tuple[str, str]] = {
    "TASHI_CM_HOST": ("Client", "clusterManagerHost"),
    "TASHI_CM_PORT": ("Client", "clusterManagerPort"),
    "TASHI_USER": ("AccessClusterManager", "username"),
    "TASHI_PASSWORD": ("AccessClusterManager", "password"),
    "TASHI_TOKEN": ("AccessClusterManager", "token"),
}


class ConfigError(InvalidInput):
    """A configuration file could not be read or holds a value of the wrong kind."""

    code = "config_error"


def search_dirs(home: Path | None = None) -> list[Path]:
    home = home if home is not None else Path.home()
    return [Path("./etc"), Path("/usr/share/tashi"), Path("/etc/tashi"), home / ".tashi"]


def config_files(
    program: str, dirs: Sequence[Path] | None = None, env: Mapping[str, str] | None = None
) -> list[Path]:
    """The files that exist, in the order they are read (later ones win)."""
    env = os.environ if env is None else env
    names = ["TashiDefaults.cfg", "Tashi.cfg", f"{program}Defaults.cfg", f"{program}.cfg"]
    found = [d / n for d in (dirs if dirs is not None else search_dirs()) for n in names]
    files = [p for p in found if p.is_file()]
    extra = env.get("TASHI_CONFIG")
    if extra:
        path = Path(extra).expanduser()
        if not path.is_file():
            raise ConfigError(f"TASHI_CONFIG names {extra}, which is not a readable file")
        files.append(path)
    return files


@dataclass(frozen=True, slots=True)
class RawConfig:
    """Merged option values, each with where it came from (for error messages)."""

    values: Mapping[tuple[str, str], tuple[str, str]]  # (section, option lower) -> (value, source)
    files: tuple[Path, ...]

    def get(self, section: str, option: str) -> tuple[str, str] | None:
        return self.values.get((section, option.lower()))

    def section(self, section: str) -> dict[str, tuple[str, str]]:
        """Every option of one section (for sections with open-ended keys like ``ipRange<N>``)."""
        return {opt: v for (sec, opt), v in self.values.items() if sec == section}


def load_raw(
    program: str, dirs: Sequence[Path] | None = None, env: Mapping[str, str] | None = None
) -> RawConfig:
    env = os.environ if env is None else env
    files = config_files(program, dirs, env)
    values: dict[tuple[str, str], tuple[str, str]] = {}
    for path in files:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with path.open(encoding="utf-8") as handle:
                parser.read_file(handle)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise ConfigError(f"{path}: cannot read it: {exc}") from exc
        for section in parser.sections():
            for opt, value in parser.items(section, raw=True):
                values[(section, opt.lower())] = (value, str(path))
    for var, (section, opt) in ENV_OVERRIDES.items():
        if env.get(var):
            values[(section, opt.lower())] = (env[var], f"environment variable {var}")
    return RawConfig(values=values, files=tuple(files))


def load_settings(
    program: str, dirs: Sequence[Path] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read the files of ``program`` and parse them into typed settings."""
    if program not in PROGRAMS:
        raise ValueError(f"unknown program {program!r}")
    return parse_settings(load_raw(program, dirs, env))


def parse_settings(raw: RawConfig) -> Settings:
    sections: dict[str, Any] = {}
    known: set[tuple[str, str]] = set()
    for top in dataclasses.fields(Settings):
        cls = _factory_type(top)
        table = getattr(cls, "TABLE", None)
        if table is not None:  # a table section: every line is an entry (config/ec2.py)
            entries = dict(table)
            entries.update({opt: value for opt, (value, _) in raw.section(cls.SECTION).items()})
            known.update((cls.SECTION, name) for name in entries)
            sections[top.name] = cls(entries=tuple(entries.items()))
            continue
        kwargs: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            info = option_info(field)
            known.add((cls.SECTION, info.name.lower()))
            found = raw.get(cls.SECTION, info.name)
            if found is not None:
                value, source = found
                where = f"{source}: [{cls.SECTION}] {info.name} = {value!r}"
                converted = _convert(hints[field.name], value, where)
                kwargs[field.name] = _check_bounds(converted, info, where)
        sections[top.name] = cls(**kwargs)
    classes = [_factory_type(f) for f in dataclasses.fields(Settings)]
    open_options = {c.SECTION: c.OPEN_OPTIONS for c in classes if hasattr(c, "OPEN_OPTIONS")}
    _warn_unknown(raw, known, {c.SECTION for c in classes}, open_options)
    return Settings(**sections)


def _factory_type(top: dataclasses.Field[Any]) -> Any:
    factory = top.default_factory
    if factory is dataclasses.MISSING:
        raise TypeError(f"Settings.{top.name} needs a default_factory")
    return factory


def _warn_unknown(
    raw: RawConfig,
    known: set[tuple[str, str]],
    ours: Iterable[str],
    open_options: Mapping[str, str] | None = None,
) -> None:
    """Warn about options Tashi will not read. Sections of other programs pass silently."""
    mine = set(ours)
    open_options = open_options or {}
    by_lower = {section.lower(): section for section in mine}
    for (section, opt), (_, source) in raw.values.items():
        if section in open_options and re.fullmatch(open_options[section], opt, re.IGNORECASE):
            continue  # open-ended names such as [Scheduler] hook1, hook2, ...
        if section in mine and (section, opt) not in known and not _open_ended(section, opt):
            log.warning("%s: [%s] %s is not an option Tashi knows; ignored", source, section, opt)
        elif section not in mine and section.lower() in by_lower:
            # configparser's section names are case-sensitive (as in the original Tashi); a
            # silently ignored [clustermanagerservice] would be a nasty surprise.
            log.warning(
                "%s: [%s] %s is ignored: section names are case-sensitive; did you mean [%s]?",
                source,
                section,
                opt,
                by_lower[section.lower()],
            )


#: Options whose names carry a number, read by their owner from ``RawConfig.section``.
_OPEN_ENDED = {"DhcpDns": re.compile(r"iprange\d+")}


def _open_ended(section: str, opt: str) -> bool:
    pattern = _OPEN_ENDED.get(section)
    return pattern is not None and pattern.fullmatch(opt) is not None


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def _convert(kind: Any, text: str, where: str) -> Any:
    value = text.strip()
    if kind is bool:
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{where}: expected a boolean (True/False, yes/no, 1/0)")
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a whole number") from None
    if kind is float:
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number") from None
        if math.isnan(number):
            raise ConfigError(f"{where}: expected a number")
        return number
    if kind is Path:
        if not value:
            raise ConfigError(f"{where}: expected a path")
        return Path(value).expanduser()
    if kind is str:
        return value
    raise TypeError(f"no converter for {kind!r} ({where})")


def _check_bounds(value: Any, info: OptionInfo, where: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and not info.allows(value):
        raise ConfigError(f"{where}: expected a number {info.bounds()}")
    return value
