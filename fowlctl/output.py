"""Where fowlctl writes: results on stdout (text, or one JSON document per line), messages on stderr."""

from __future__ import annotations

import json
import sys
from typing import TextIO


class Output:
    def __init__(self, json_mode: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr

    def result(self, text: str, data: object) -> None:
        """One result: ``text`` for people, or ``data`` as a JSON line for ``--json``."""
        if self.json_mode:
            print(json.dumps(data, sort_keys=True), file=self._stdout, flush=True)
        else:
            print(text, file=self._stdout, flush=True)

    def is_terminal(self) -> bool:
        """Results go to a terminal (a person reads them), not to a pipe or file."""
        return not self.json_mode and self._stdout.isatty()

    def draw(self, text: str) -> None:
        """Terminal output as it is, control sequences included (the live view)."""
        self._stdout.write(text)
        self._stdout.flush()

    def tell(self, text: str) -> None:
        """Errors and guidance for people, on stderr: never part of the results, whatever the mode."""
        print(text, file=self._stderr, flush=True)
