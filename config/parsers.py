"""Strict JSON for every request body of the API (the one parser DRF uses everywhere).

Refused with a 400 problem document naming the place (a JSON pointer): invalid UTF-8, NaN and
Infinity (also a number too large for a float), a key given twice in one object (parsers
disagree on which one wins), a NUL or an unpaired surrogate in any string or key (PostgreSQL
text rejects NUL, and a surrogate cannot be encoded to UTF-8), and nesting deeper than
``MAX_DEPTH``. Everything past the parser can rely on clean text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rest_framework.parsers import BaseParser

MAX_DEPTH = 32
# No integer of the API comes near this; bigger ones are refused before int() parses them.
MAX_INT_DIGITS = 30


class _Refused(ValueError):
    def __init__(self, pointer: str, detail: str) -> None:
        super().__init__(detail)
        self.pointer = pointer
        self.detail = detail


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _Refused("", f"The key {key!r} appears twice in one object.")
        found[key] = value
    return found


def _no_constants(name: str) -> Any:
    raise _Refused("", f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("", f"The number {text[:40]} is too large.")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused("", f"The number {text[:40]}… is too large.")
    return int(text)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _check_text(text: str, pointer: str) -> None:
    if "\x00" in text:
        raise _Refused(pointer, "NUL characters are not allowed.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(pointer, "Unpaired surrogate characters are not allowed.") from None


def check_value(value: Any, pointer: str = "", depth: int = 0) -> None:
    """Refuse NUL, unpaired surrogates and excessive depth anywhere in a parsed JSON value."""
    if depth > MAX_DEPTH:
        raise _Refused(pointer, f"The document is nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, str):
        _check_text(value, pointer)
    elif isinstance(value, dict):
        for key, item in value.items():
            here = f"{pointer}/{_escape(key)}"
            _check_text(key, here)
            check_value(item, here, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_value(item, f"{pointer}/{index}", depth + 1)


def loads_strict(raw: bytes) -> Any:
    """Parse ``raw`` as strict JSON or raise ``config.problems.InvalidJSON`` (a 400 problem)."""
    # Imported late: DRF imports this parser while config.problems is still importing DRF.
    from config.problems import InvalidJSON

    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
        check_value(value)
    except _Refused as exc:
        raise InvalidJSON(exc.detail, errors=[{"pointer": exc.pointer, "detail": exc.detail}]) from None
    except UnicodeDecodeError:
        raise InvalidJSON("The request body is not UTF-8.") from None
    except RecursionError:
        raise InvalidJSON(f"The document is nested deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:
        # json's message gives the line and column; it names nothing internal.
        raise InvalidJSON(f"The request body is not valid JSON: {exc}") from None
    return value


class StrictJSONParser(BaseParser):
    """DRF's parser for ``application/json`` with the checks of :func:`loads_strict`."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        return loads_strict(raw)
