"""The rules every front end applies to what users type: names, codes, ports, lengths.

One source for each rule, so a profile, a stdio line and a D-Bus call accept
and refuse the same things with the same words.
"""

from __future__ import annotations

import re

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
NAME_RULE = "must be 1-64 characters of letters, digits, '.', '_' or '-'"
# NUMBER-word-word...: the nameplate is digits; the rest goes whole into SPAKE2.
CODE_PATTERN = re.compile(r"[0-9]+(-[A-Za-z0-9]+)+")
CODE_SHAPE = "NUMBER-word-word..., e.g. 7-guitarist-revenge"
CODE_RULE = f"a code looks like {CODE_SHAPE}"
CODE_LENGTH_RANGE = (1, 8)  # words in an allocated code: 8 is already far beyond guessing
PORT_RANGE = (1, 65535)
PORT_TEXT = f"{PORT_RANGE[0]}-{PORT_RANGE[1]}"


DURATION_PATTERN = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|min|h|d)?")
DURATION_UNITS = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
DURATION_RULE = "a duration looks like 90s, 15m, 2h or 30d"


class RuleError(ValueError):
    """A value that breaks one of these rules; the message says which and why."""


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is a valid service, client or profile name."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise RuleError(f"{what} {name!r} {NAME_RULE}")
    return name


def check_code(code: object) -> str:
    """The code, stripped, if it is well-formed. The message never repeats a code: it is a secret."""
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code.strip()):
        raise RuleError(CODE_RULE)
    return code.strip()


def is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and PORT_RANGE[0] <= value <= PORT_RANGE[1]



def check_code_length(value: object, what: str = "code length") -> int:
    low, high = CODE_LENGTH_RANGE
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RuleError(f"{what} must be {low}-{high}")
    return value


def parse_duration(text: object, what: str = "duration") -> float:
    """Seconds in ``15m``, ``2h``, ``30d``, ``90s`` or ``90``; more than zero."""
    m = DURATION_PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    elif m:
        seconds = float(m.group(1)) * DURATION_UNITS[m.group(2)]
    else:
        raise RuleError(f"{what}: {DURATION_RULE}")
    if not 0 < seconds <= 100 * 365 * 86400:
        raise RuleError(f"{what} must be more than 0 and at most 100 years")
    return seconds


def describe_duration(seconds: float) -> str:
    """``7200`` -> ``2 h``: the largest unit that divides it, as a person would write it."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"
