"""Typed settings and the one loader of Tashi's layered ``.cfg`` files.

``load_settings("ClusterManager")`` reads the files in the original Tashi order and returns a
frozen ``Settings``; a bad value fails at once with the file, section, option and what was expected.
"""

from tashi.config.loader import ConfigError, RawConfig, config_files, load_raw, load_settings
from tashi.config.settings import Settings

__all__ = ["ConfigError", "RawConfig", "Settings", "config_files", "load_raw", "load_settings"]
