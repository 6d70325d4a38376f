"""Log lines that systemd's journal understands: each starts with its syslog priority, ``<3>``.

journald reads a ``<N>`` prefix on every line of a service's stderr as the line's
priority, so ``journalctl -p err`` shows only errors. fowld prefixes its lines
when stderr is the journal (``$JOURNAL_STREAM`` names stderr's device and inode,
as systemd sets it) or when asked to.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from twisted.logger import LogLevel, eventAsText

# syslog priorities (sd-daemon.h): 2 critical, 3 error, 4 warning, 6 info, 7 debug.
PRIORITIES = {
    LogLevel.critical: 2,
    LogLevel.error: 3,
    LogLevel.warn: 4,
    LogLevel.info: 6,
    LogLevel.debug: 7,
}
ERROR = PRIORITIES[LogLevel.error]


def stderr_is_journal(environ: Mapping[str, str] = os.environ, stream: TextIO | None = None) -> bool:
    """``$JOURNAL_STREAM`` (``DEVICE:INODE``) is the file stderr writes to."""
    expected = environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def with_priority(text: str, priority: int) -> str:
    """Every line of ``text`` prefixed with ``<priority>`` (a traceback keeps its level)."""
    return "".join(f"<{priority}>{line}\n" for line in text.rstrip("\n").split("\n"))


class JournalObserver:
    """A log observer writing each event as prefixed lines, without a timestamp (journald adds one)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, event: dict) -> None:
        text = eventAsText(event, includeTimestamp=False)
        priority = PRIORITIES.get(event.get("log_level"), PRIORITIES[LogLevel.info])
        self._stream.write(with_priority(text, priority))
        self._stream.flush()


_prefixing = False


def use_priorities(enabled: bool) -> None:
    """Whether messages written straight to stderr (``tell_error``) carry a priority too."""
    global _prefixing
    _prefixing = enabled


def tell_error(message: str) -> None:
    """A fatal message on stderr, as ``fowld: MESSAGE`` (an error line in the journal)."""
    text = f"fowld: {message}"
    sys.stderr.write(with_priority(text, ERROR) if _prefixing else text + "\n")
    sys.stderr.flush()
