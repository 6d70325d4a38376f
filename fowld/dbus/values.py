"""Python values as D-Bus values: variants that carry their exact type, and object paths.

txdbus guesses a variant's type from the Python value (an ``int`` becomes
``i``, an empty list cannot be typed at all). Properties travel in variants,
so every value is wrapped with the type its declaration names.
"""

from __future__ import annotations

from txdbus import marshal


class _TypedList(list):
    dbusSignature: str


class _TypedDict(dict):
    dbusSignature: str


def typed(signature: str, value: object) -> object:
    """``value`` as it must travel in a variant of type ``signature``."""
    if signature == "b":
        return bool(value)
    if signature == "s":
        return str(value)
    if signature == "d":
        return float(value)
    if signature in marshal.variantClassMap:
        return marshal.variantClassMap[signature](value)
    if signature.startswith("a{"):
        result = _TypedDict(value)
    elif signature.startswith("a"):
        result = _TypedList(value)
    else:
        raise ValueError(f"no variant wrapper for signature {signature!r}")
    result.dbusSignature = signature
    return result
