"""fowld's log lines carry their syslog priority when stderr is the journal, and never a code."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from test_fowlctl import FOWLCTL, _clean_env

from fowld.daemon import journal
from harness.servers import ProcessGroup, read_line
from harness.wait import until

RUN_TIMEOUT = 60.0
PREFIXED = re.compile(r"<[2-7]>")


def test_priorities_by_level_on_every_line() -> None:
    out = io.StringIO()
    observer = journal.JournalObserver(out)
    from twisted.logger import LogLevel

    for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical):
        observer({"log_level": level, "log_format": "one\ntwo", "log_namespace": "x", "log_time": 0})
    assert out.getvalue().splitlines() == [
        "<7>[x#debug] one", "<7>two",
        "<6>[x#info] one", "<6>two",
        "<4>[x#warn] one", "<4>two",
        "<3>[x#error] one", "<3>two",
        "<2>[x#critical] one", "<2>two",
    ]  # fmt: skip


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path: Path) -> None:
    with open(tmp_path / "err", "w") as f:
        st = os.fstat(f.fileno())
        assert journal.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f)
        assert not journal.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, f)
        assert not journal.stderr_is_journal({}, f)


def _spawn_fowld(processes: ProcessGroup, stderr_path: Path, env: dict, journal_stream: bool, *args: str):
    stderr = open(stderr_path, "w")  # noqa: SIM115 (the child keeps it; closed below)
    if journal_stream:
        st = os.fstat(stderr.fileno())
        env = {**env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    try:
        return processes.spawn([sys.executable, "-m", "fowld", *args], env=env, stderr=stderr, name="fowld")
    finally:
        stderr.close()


def test_fowld_under_the_journal_logs_priorities_and_no_code(
    dbus_bus, processes: ProcessGroup, tmp_path: Path, mailbox, transit_relay
) -> None:
    profiles = tmp_path / "fowl" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "broken.yaml").write_text("clients:\n  - nam: web\n")
    env = _clean_env(DBUS_SESSION_BUS_ADDRESS=dbus_bus.address, XDG_CONFIG_HOME=str(tmp_path))
    log = tmp_path / "fowld.stderr"
    fowld = _spawn_fowld(
        processes,
        log,
        env,
        True,
        "-vv",
        "--relay-only",
        "--mailbox",
        mailbox.url,
        "--transit-relay",
        transit_relay.hint,
    )

    def fowlctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FOWLCTL, *args], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)

    until(lambda: fowlctl("profiles").returncode == 0, "fowld on its bus", RUN_TIMEOUT, 0.1)
    invite = processes.spawn(
        [*FOWLCTL, "invite", "--offer", "web=8080", "--json"], env=env, stdout=subprocess.PIPE, name="invite"
    )
    code = json.loads(read_line(invite.stdout, RUN_TIMEOUT))["code"]
    accepted = fowlctl("accept", code, "--want", "web", "--timeout", "40")  # both sides in one fowld
    assert accepted.returncode == 0, accepted.stderr
    assert invite.wait(RUN_TIMEOUT) == 0
    fowld.send_signal(signal.SIGTERM)
    assert fowld.wait(RUN_TIMEOUT) == 0

    lines = log.read_text().splitlines()
    assert lines and all(PREFIXED.match(line) for line in lines), [
        line for line in lines if not PREFIXED.match(line)
    ][:5]
    assert any(line.startswith("<3>") and "profile skipped" in line for line in lines)
    assert any(line.startswith("<6>") and "session adhoc-2 started" in line for line in lines)
    text = log.read_text()  # -vv: info and debug too
    assert code.partition("-")[2] not in text  # a secret at every level, debug included


def test_fatal_errors_are_error_lines(processes: ProcessGroup, tmp_path: Path) -> None:
    env = _clean_env(DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus", XDG_CONFIG_HOME=str(tmp_path))
    fowld = _spawn_fowld(processes, tmp_path / "a", env, True)
    assert fowld.wait(RUN_TIMEOUT) == 1
    (line,) = (tmp_path / "a").read_text().splitlines()
    assert line.startswith("<3>fowld: ")
    fowld = _spawn_fowld(processes, tmp_path / "b", env, False)  # a terminal or a file: as before
    assert fowld.wait(RUN_TIMEOUT) == 1
    assert (tmp_path / "b").read_text().startswith("fowld: ")
    fowld = _spawn_fowld(processes, tmp_path / "c", env, False, "--log-priorities")
    assert fowld.wait(RUN_TIMEOUT) == 1
    assert (tmp_path / "c").read_text().startswith("<3>fowld: ")
