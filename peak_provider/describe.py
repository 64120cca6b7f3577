"""Bounded, never-failing text for any value: what rejection reasons, keys and the sink quote of a row.

A warehouse value can be a 5 MB BLOB, a string with a lone surrogate or an object whose ``__repr__`` raises;
a message must still be short, printable, valid UTF-8 and built without an exception.
"""

from __future__ import annotations

import reprlib
from typing import Any

#: How many characters of a value's repr a message quotes.
QUOTE_LIMIT = 200

_reprs = reprlib.Repr()  # for containers: a few items, a few levels (3.11's Repr takes no arguments)
_reprs.maxlevel = 3
_reprs.maxstring = _reprs.maxother = _reprs.maxlong = QUOTE_LIMIT


def describe(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``value`` for a message: its type and repr (``'abc'``, ``float nan``, ``Decimal('1E-400')``), or, when
    the repr is longer than ``limit``, its type, size and first ``limit`` characters of it
    (``bytes of 5,242,880 bytes: b'\\x00\\x01…'…``).

    Never raises (a failing ``__repr__`` is named, not called again), never reads a whole huge value and
    returns valid UTF-8 (a surrogate a custom ``__repr__`` returns is escaped).
    """
    kind = type(value)
    name = kind.__name__[:60]
    size: int | None = None
    try:
        if isinstance(value, str):
            size, unit = len(value), "characters"
            text = repr(str.__getitem__(value, slice(0, limit)))
        elif isinstance(value, bytes | bytearray | memoryview):
            view = memoryview(value)
            data = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
            size, unit = len(data), "bytes"
            text = repr(bytes(data[:limit]))
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > min(3 * limit, 14_000):
            return f"{name} of about {int(value.bit_length() * 0.30103) + 1:,} digits"
        else:
            text = _reprs.repr(value)
    except Exception as exc:  # a repr, a len() or a buffer that raises
        return f"{name} (its repr raised {type(exc).__name__})"
    text = printable(text)
    if len(text) > limit or (size is not None and size > limit):
        head = f"{name}: " if size is None else f"{name} of {size:,} {unit}: "
        return f"{head}{text[:limit]}…"
    if kind is str or text.startswith((name, f"{kind.__module__}.{name}", "<")):  # the repr names the type
        return text
    return f"{name} {text}"


def printable(text: str) -> str:
    """``text`` with any lone surrogate escaped (``\\udc80``), so it encodes to UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def clip(text: str, limit: int) -> str:
    """``text`` as at most ``limit`` characters of valid UTF-8: cut (ending in ``…``), lone surrogates escaped."""
    for _ in range(2):  # escaping can lengthen the text: cut again
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
