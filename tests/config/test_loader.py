"""The loader of Tashi's layered ``.cfg`` files (``tashi.config.loader``).

Every test passes its own ``dirs`` and ``env``, so nothing on the machine (``/etc/tashi``,
``~/.tashi``, the caller's environment) leaks in.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tashi.config import ConfigError, Settings, config_files, load_raw, load_settings
from tashi.config.loader import ENV_OVERRIDES, PROGRAMS, search_dirs

NAMES = ("TashiDefaults.cfg", "Tashi.cfg", "ClusterManagerDefaults.cfg", "ClusterManager.cfg")


@pytest.fixture
def dirs(tmp_path: Path) -> list[Path]:
    """Four directories standing in for ./etc, /usr/share/tashi, /etc/tashi and ~/.tashi."""
    made = []
    for name in ("etc", "usr-share-tashi", "etc-tashi", "home-tashi"):
        path = tmp_path / name
        path.mkdir()
        made.append(path)
    return made


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def cm(dirs: list[Path], env: dict[str, str] | None = None) -> Settings:
    return load_settings("ClusterManager", dirs=dirs, env=env or {})


# --- which files, in which order -----------------------------------------------------------------


def test_the_search_directories_are_the_original_tashi_ones(tmp_path: Path) -> None:
    assert search_dirs(home=tmp_path) == [
        Path("./etc"),
        Path("/usr/share/tashi"),
        Path("/etc/tashi"),
        tmp_path / ".tashi",
    ]


def test_files_are_read_directory_by_directory_in_tashi_order(dirs: list[Path]) -> None:
    for directory in reversed(dirs):  # create them out of order: the order must not come from it
        for name in reversed(NAMES):
            write(directory / name, "")
    expected = [directory / name for directory in dirs for name in NAMES]
    assert config_files("ClusterManager", dirs=dirs, env={}) == expected


def test_only_the_programs_own_files_are_read(dirs: list[Path]) -> None:
    for name in (
        "NodeManager.cfg",
        "ClusterManagerDefaults.cfg",
        "Agent.cfg",
        "tashi.cfg",
        "Tashi.conf",
    ):
        write(dirs[0] / name, "")
    mine = write(dirs[0] / "Client.cfg", "")
    assert config_files("Client", dirs=dirs, env={}) == [mine]


def test_no_file_at_all_gives_the_defaults(dirs: list[Path]) -> None:
    assert cm(dirs) == Settings()
    assert load_raw("ClusterManager", dirs=dirs, env={}).files == ()


def test_a_directory_named_like_a_file_is_not_read(dirs: list[Path]) -> None:
    (dirs[0] / "Tashi.cfg").mkdir()
    assert config_files("ClusterManager", dirs=dirs, env={}) == []


def test_every_later_file_overrides_every_earlier_one(dirs: list[Path]) -> None:
    slots = [directory / name for directory in dirs for name in NAMES]
    for number, path in enumerate(slots, start=1):
        write(path, f"[ClusterManagerService]\nmaxMemory = {number}\n")
    # Remove the winner each time: the one before it must win next.
    for number in range(len(slots), 0, -1):
        assert cm(dirs).cluster_manager_service.max_memory == number
        slots[number - 1].unlink()
    assert (
        cm(dirs).cluster_manager_service.max_memory == Settings().cluster_manager_service.max_memory
    )


def test_a_later_file_overrides_only_what_it_sets(dirs: list[Path]) -> None:
    write(dirs[0] / "TashiDefaults.cfg", "[ClusterManagerService]\nmaxMemory = 100\nmaxCores = 3\n")
    write(dirs[3] / "ClusterManager.cfg", "[ClusterManagerService]\nmaxCores = 5\n")
    service = cm(dirs).cluster_manager_service
    assert (service.max_memory, service.max_cores) == (100, 5)


def test_each_value_remembers_the_file_it_came_from(dirs: list[Path]) -> None:
    write(dirs[0] / "Tashi.cfg", "[Vfs]\nprefix = /a\n[SQL]\nuri = sqlite:///x\n")
    late = write(dirs[2] / "Tashi.cfg", "[Vfs]\nprefix = /b\n")
    raw = load_raw("ClusterManager", dirs=dirs, env={})
    assert raw.get("Vfs", "prefix") == ("/b", str(late))
    assert raw.get("SQL", "URI") == ("sqlite:///x", str(dirs[0] / "Tashi.cfg"))


# --- TASHI_CONFIG ---------------------------------------------------------------------------------


def test_tashi_config_is_read_after_every_searched_file(dirs: list[Path], tmp_path: Path) -> None:
    write(dirs[3] / "ClusterManager.cfg", "[ClusterManagerService]\nport = 1000\n")
    extra = write(tmp_path / "extra.cfg", "[ClusterManagerService]\nport = 2000\n")
    env = {"TASHI_CONFIG": str(extra)}
    assert config_files("ClusterManager", dirs=dirs, env=env)[-1] == extra
    assert cm(dirs, env).cluster_manager_service.port == 2000


def test_tashi_config_expands_the_home_directory(
    dirs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "mine.cfg", "[Client]\nclusterManagerHost = cm.example\n")
    settings = load_settings("Client", dirs=dirs, env={"TASHI_CONFIG": "~/mine.cfg"})
    assert settings.client.cluster_manager_host == "cm.example"


@pytest.mark.parametrize("target", ["missing.cfg", "."])
def test_a_tashi_config_that_is_not_a_file_is_a_clear_error(
    dirs: list[Path], tmp_path: Path, target: str
) -> None:
    named = str(tmp_path / target)
    with pytest.raises(ConfigError) as caught:
        cm(dirs, {"TASHI_CONFIG": named})
    assert "TASHI_CONFIG" in caught.value.message
    assert named in caught.value.message


def test_an_empty_tashi_config_adds_nothing(dirs: list[Path]) -> None:
    assert config_files("ClusterManager", dirs=dirs, env={"TASHI_CONFIG": ""}) == []


# --- environment overrides ------------------------------------------------------------------------


def test_the_environment_overrides_the_client_target_and_credentials(
    dirs: list[Path], tmp_path: Path
) -> None:
    write(
        dirs[0] / "Client.cfg",
        "[Client]\nclusterManagerHost = from-file\nclusterManagerPort = 1\n"
        "[AccessClusterManager]\nusername = file-user\npassword = file-pass\ntoken = file-token\n",
    )
    extra = write(tmp_path / "extra.cfg", "[Client]\nclusterManagerHost = from-tashi-config\n")
    env = {
        "TASHI_CONFIG": str(extra),
        "TASHI_CM_HOST": "cm.example",
        "TASHI_CM_PORT": "19882",
        "TASHI_USER": "alice",
        "TASHI_PASSWORD": "s3cret%(x)s",
        "TASHI_TOKEN": "tok",
    }
    settings = load_settings("Client", dirs=dirs, env=env)
    assert settings.client.cluster_manager_host == "cm.example"
    assert settings.client.cluster_manager_port == 19882
    access = settings.access_cluster_manager
    assert (access.username, access.password, access.token) == ("alice", "s3cret%(x)s", "tok")


def test_every_documented_environment_variable_is_honoured(dirs: list[Path]) -> None:
    assert set(ENV_OVERRIDES) == {
        "TASHI_CM_HOST",
        "TASHI_CM_PORT",
        "TASHI_USER",
        "TASHI_PASSWORD",
        "TASHI_TOKEN",
    }
    for variable, (section, option) in ENV_OVERRIDES.items():
        value = "4242" if variable == "TASHI_CM_PORT" else "from-env"
        raw = load_raw("Client", dirs=dirs, env={variable: value})
        assert raw.get(section, option) == (value, f"environment variable {variable}")


def test_an_empty_environment_variable_overrides_nothing(dirs: list[Path]) -> None:
    write(dirs[0] / "Client.cfg", "[AccessClusterManager]\nusername = bob\n")
    settings = load_settings("Client", dirs=dirs, env={"TASHI_USER": ""})
    assert settings.access_cluster_manager.username == "bob"


def test_a_bad_port_in_the_environment_names_the_variable(dirs: list[Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("Client", dirs=dirs, env={"TASHI_CM_PORT": "http"})
    message = caught.value.message
    assert "TASHI_CM_PORT" in message
    assert "clusterManagerPort" in message
    assert "whole number" in message


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "option", "bad", "expected"),
    [
        ("ClusterManagerService", "port", "eighty", "expected a whole number"),
        ("ClusterManagerService", "maxMemory", "8G", "expected a whole number"),
        ("ClusterManagerService", "maxCores", "1.5", "expected a whole number"),
        ("ClusterManagerService", "expireHostTime", "soon", "expected a number"),
        ("ClusterManagerService", "expireHostTime", "nan", "expected a number"),
        ("Security", "tokenLifetime", "", "expected a number"),
        ("ClusterManagerService", "allowDuplicateNames", "maybe", "expected a boolean"),
        ("ClusterManagerService", "allowMismatchedVersions", "2", "expected a boolean"),
        ("Vfs", "prefix", "", "expected a path"),
        ("ClusterManager", "stateDir", "   ", "expected a path"),
        ("ClusterManagerService", "port", "0", "expected a number from 1 to 65535"),
        ("ClusterManagerService", "port", "99999", "expected a number from 1 to 65535"),
        ("ClusterManagerService", "maxCores", "0", "expected a number at least 1"),
        ("ClusterManagerService", "maxMemory", "-512", "expected a number at least 1"),
        ("ClusterManagerService", "defaultNetwork", "16777216", "from 0 to 16777215"),
        ("ClusterManagerService", "expireHostTime", "0", "expected a number at least 0.1"),
        ("Client", "clusterManagerPort", "-1", "expected a number from 1 to 65535"),
    ],
)
def test_a_bad_value_names_file_section_option_and_what_was_expected(
    dirs: list[Path], section: str, option: str, bad: str, expected: str
) -> None:
    path = write(dirs[2] / "Tashi.cfg", f"[{section}]\n{option} = {bad}\n")
    with pytest.raises(ConfigError) as caught:
        cm(dirs)
    message = caught.value.message
    assert str(path) in message
    assert f"[{section}] {option} = {bad.strip()!r}" in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("option", "edge"),
    [("port", "1"), ("port", "65535"), ("defaultNetwork", "0"), ("allowDecayed", "0")],
)
def test_the_edges_of_a_range_are_allowed(dirs: list[Path], option: str, edge: str) -> None:
    write(dirs[0] / "Tashi.cfg", f"[ClusterManagerService]\n{option} = {edge}\n")
    assert cm(dirs)  # no error


def test_a_port_out_of_range_in_the_environment_names_the_variable(dirs: list[Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings("Client", dirs=dirs, env={"TASHI_CM_PORT": "70000"})
    assert "environment variable TASHI_CM_PORT" in caught.value.message
    assert "from 1 to 65535" in caught.value.message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("True", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("1", True),
        ("False", False),
        ("no", False),
        ("Off", False),
        ("0", False),
    ],
)
def test_booleans_in_every_spelling_the_original_accepted(
    dirs: list[Path], text: str, value: bool
) -> None:
    write(dirs[0] / "Tashi.cfg", f"[ClusterManagerService]\nallowDuplicateNames = {text}\n")
    assert cm(dirs).cluster_manager_service.allow_duplicate_names is value


def test_values_are_typed_and_trimmed(dirs: list[Path], tmp_path: Path) -> None:
    write(
        dirs[0] / "Tashi.cfg",
        "[ClusterManagerService]\nport =   9999  \nexpireHostTime = 2.5\nallowDecayed = 7\n"
        f"[ClusterManager]\nstateDir = {tmp_path}/state\n",
    )
    settings = cm(dirs)
    assert settings.cluster_manager_service.port == 9999
    assert settings.cluster_manager_service.expire_host_time == 2.5
    assert settings.cluster_manager_service.allow_decayed == 7.0
    assert settings.cluster_manager.state_dir == tmp_path / "state"
    assert isinstance(settings.cluster_manager.state_dir, Path)


def test_paths_expand_the_home_directory(
    dirs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write(dirs[0] / "Tashi.cfg", "[Vfs]\nprefix = ~/vfs\n")
    assert cm(dirs).vfs.prefix == tmp_path / "vfs"


@pytest.mark.parametrize("spelling", ["maxMemory", "maxmemory", "MAXMEMORY", "MaxMemory"])
def test_option_names_are_case_insensitive(dirs: list[Path], spelling: str) -> None:
    write(dirs[0] / "Tashi.cfg", f"[ClusterManagerService]\n{spelling} = 512\n")
    assert cm(dirs).cluster_manager_service.max_memory == 512


def test_the_same_option_in_two_spellings_in_two_files_is_one_option(dirs: list[Path]) -> None:
    write(dirs[0] / "Tashi.cfg", "[ClusterManagerService]\nMAXCORES = 2\n")
    write(dirs[1] / "Tashi.cfg", "[ClusterManagerService]\nmaxcores = 6\n")
    assert cm(dirs).cluster_manager_service.max_cores == 6


@pytest.mark.parametrize(
    "secret", ["50%off", "%(username)s", "a%%b", "%", "p@ss;word # not a comment"]
)
def test_a_percent_sign_in_a_password_is_kept_literally(dirs: list[Path], secret: str) -> None:
    write(dirs[0] / "Client.cfg", f"[AccessClusterManager]\nusername = u\npassword = {secret}\n")
    settings = load_settings("Client", dirs=dirs, env={})
    assert settings.access_cluster_manager.password == secret


def test_an_unknown_option_only_warns(dirs: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    path = write(
        dirs[0] / "Tashi.cfg",
        "[ClusterManagerService]\nmaxMemory = 300\nconvertExceptions = True\n",
    )
    with caplog.at_level(logging.WARNING, logger="tashi.config.loader"):
        settings = cm(dirs)
    assert settings.cluster_manager_service.max_memory == 300
    [record] = caplog.records
    assert str(path) in record.getMessage()
    assert "[ClusterManagerService] convertexceptions" in record.getMessage()


def test_sections_of_other_programs_pass_silently(
    dirs: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Old Tashi files carry [XenPV], [Primitive], logging sections ...: not our business here.
    write(dirs[0] / "Tashi.cfg", "[XenPV]\ntransientDir = /tmp\n[loggers]\nkeys = root\n")
    with caplog.at_level(logging.WARNING, logger="tashi.config.loader"):
        assert cm(dirs) == Settings()
    assert caplog.records == []


def test_a_section_in_the_wrong_case_is_flagged(
    dirs: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    write(dirs[0] / "Tashi.cfg", "[clustermanagerservice]\nport = 1\n")
    with caplog.at_level(logging.WARNING, logger="tashi.config.loader"):
        assert cm(dirs).cluster_manager_service.port == Settings().cluster_manager_service.port
    [record] = caplog.records
    assert "did you mean [ClusterManagerService]" in record.getMessage()


@pytest.mark.parametrize(
    "text",
    [
        "port = 1\n",  # no section header
        "[Vfs]\nprefix = /a\nprefix = /b\n",  # the same option twice in one file
        "[Vfs]\n[Vfs]\n",  # the same section twice
    ],
)
def test_a_file_that_is_not_valid_ini_names_the_file(dirs: list[Path], text: str) -> None:
    path = write(dirs[1] / "ClusterManager.cfg", text)
    with pytest.raises(ConfigError) as caught:
        cm(dirs)
    assert str(path) in caught.value.message


def test_a_file_that_is_not_utf8_names_the_file(dirs: list[Path]) -> None:
    path = dirs[0] / "Tashi.cfg"
    path.write_bytes(b"[Vfs]\nprefix = /caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        cm(dirs)
    assert str(path) in caught.value.message


def test_open_ended_sections_can_be_read_whole(dirs: list[Path]) -> None:
    write(dirs[0] / "Agent.cfg", "[DhcpDns]\nipRange1 = 198.18.0.10-198.18.0.99\nipRange999 = x\n")
    raw = load_raw("Agent", dirs=dirs, env={})
    assert set(raw.section("DhcpDns")) == {"iprange1", "iprange999"}


def test_every_program_loads(dirs: list[Path]) -> None:
    for program in PROGRAMS:
        assert load_settings(program, dirs=dirs, env={}) == Settings()


def test_an_unknown_program_is_a_programming_error(dirs: list[Path]) -> None:
    with pytest.raises(ValueError, match="unknown program"):
        load_settings("Scheduler", dirs=dirs, env={})


def test_settings_are_frozen(dirs: list[Path]) -> None:
    settings = cm(dirs)
    with pytest.raises(AttributeError):
        settings.vfs.prefix = Path("/elsewhere")  # type: ignore[misc]
