"""Reading what arrives from outside: one copy of each rule, for every surface (Kafka events, HTTP bodies the
listeners take in, the adapter's and the Payment Platform's replies, headers).

- ``read_body``: an HTTP body read up to a limit, however many chunks it arrives in ("too large" past it).
  ``StreamReader.read(n)`` returns what is buffered, not ``n`` bytes: one call is not a bounded read.
- ``parse_json``: strict UTF-8 JSON (no byte-order mark, no duplicate keys, no NaN/Infinity, no number
  beyond a float) → a value, or ``UnreadableJson`` with a reason token.
- ``check_text``: every string (and every key) of a parsed value is real text: no lone surrogate, no NUL or
  other C0 control but tab, newline and carriage return; nesting no deeper than ``MAX_DEPTH``. Otherwise
  ``UnsafeText`` naming the field. A lone surrogate cannot be encoded as UTF-8 (it would raise wherever the
  value is serialised next: a digest, a header, a row); a NUL breaks PostgreSQL text columns.
- ``header_text`` and ``bearer_matches``: a request header read as text, never raising on bytes that are not.

Pure: values in, values out, or the module's refusal types.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

MAX_DEPTH = 64
READ_CHUNK = 64 * 1024

# C0 controls except tab, newline and carriage return (free text from Windows systems ends lines with CRLF),
# and lone surrogates (valid JSON as escapes, but not text).
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_UNSAFE_HEADER = re.compile("[\x00-\x1f\x7f]")


class UnreadableJson(ValueError):
    """Bytes that are not one strict JSON value; ``reason`` is a stable token, the message says why."""

    def __init__(self, message: str, *, reason: str = "malformed_json") -> None:
        super().__init__(message)
        self.reason = reason


class UnsafeText(ValueError):
    """A string of a parsed value that is not usable text, or nesting too deep; ``field`` names where."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class BodyTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is over {limit} bytes")
        self.limit = limit


class ChunkedReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_body(stream: ChunkedReader, limit: int) -> bytes:
    """All of ``stream`` up to ``limit`` bytes, whatever the chunks; ``BodyTooLarge`` past it (the rest is not
    read). Time is the caller's to bound (a client timeout, a server's read timeout)."""
    body = bytearray()
    while True:
        chunk = await stream.read(min(READ_CHUNK, limit + 1 - len(body)))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        raise UnreadableJson(f"the key {_shown(key)} appears twice in one object", reason="duplicate_key")
    return document


def _no_constant(name: str) -> Any:
    raise UnreadableJson(f"{name} is not JSON", reason="malformed_json")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise UnreadableJson("a number too large for a float", reason="number_out_of_range")
    return value


def parse_json(raw: bytes) -> Any:
    """One strict JSON value from UTF-8 bytes, its strings checked (``check_text``); ``UnreadableJson`` or
    ``UnsafeText`` otherwise. Never raises anything else, whatever the bytes."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise UnreadableJson("the body starts with a byte-order mark", reason="malformed_json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableJson(f"not UTF-8 (at byte {exc.start})", reason="malformed_json") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                           parse_float=_finite)
    except UnreadableJson:
        raise
    except json.JSONDecodeError as exc:
        raise UnreadableJson(f"not JSON ({exc.msg} at position {exc.pos})", reason="malformed_json") from None
    except RecursionError:
        raise UnreadableJson("JSON nested too deeply to read", reason="too_deep") from None
    except (ValueError, OverflowError) as exc:  # an integer of more than 4,300 digits, say
        raise UnreadableJson(f"not JSON ({type(exc).__name__})", reason="number_out_of_range") from None
    check_text(value)
    return value


def text_problem(text: str) -> str | None:
    """Why ``text`` is not usable text, or None."""
    found = _UNSAFE.search(text)
    if found is None:
        return None
    if "\ud800" <= found.group() <= "\udfff":
        return "must be text: a lone surrogate (U+D800-U+DFFF) is not a character"
    return f"must not contain the control character U+{ord(found.group()):04X}"


def check_text(value: Any, *, path: str = "", max_depth: int = MAX_DEPTH) -> None:
    """Raise ``UnsafeText`` for the first string or key of ``value`` (a parsed JSON value) that is not usable
    text, or for nesting deeper than ``max_depth``. Iterative: depth costs no stack."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                raise UnsafeText(where or "(document)", problem)
        elif isinstance(item, Mapping | list | tuple):
            if depth >= max_depth:
                raise UnsafeText(where or "(document)", f"nested deeper than {max_depth} levels")
            if isinstance(item, Mapping):
                for key, child in item.items():
                    name = f"{where}.{key}" if where else str(key)
                    if isinstance(key, str) and (problem := text_problem(key)) is not None:
                        raise UnsafeText(where or "(document)", f"every key {problem}")
                    stack.append((child, name, depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def _shown(key: str) -> str:
    """A key as an error may show it: a name, not free text (it could be anything)."""
    return repr(key) if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key) else "(a key)"


def header_text(headers: Mapping[str, str], name: str) -> str | None:
    """A request header as text, or None when absent or unusable (control characters). aiohttp decodes header
    bytes that are not UTF-8 with surrogate escapes; those are refused here, never passed on."""
    value = headers.get(name)
    if value is None or text_problem(value) is not None or _UNSAFE_HEADER.search(value) is not None:
        return None
    return value


def bearer_matches(headers: Mapping[str, str], token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time; False for any header that is not that,
    bytes that are not text included, and a request carrying the header twice (a singleton field, RFC 9110:
    which of the two would a proxy in front have checked?)."""
    getall = getattr(headers, "getall", None)
    if getall is not None and len(getall("Authorization", [])) > 1:
        return False
    given = header_text(headers, "Authorization")
    if given is None:
        return False
    scheme, _, credential = given.partition(" ")
    try:
        offered = credential.strip().encode("utf-8")
    except UnicodeEncodeError:
        return False
    return scheme.lower() == "bearer" and hmac.compare_digest(offered, token.encode("utf-8"))



@dataclass(frozen=True)
class UnreadableBody:
    """A listener's body that is not one JSON value, handed on in its place: ``reason`` a token, ``message``
    for the reply."""

    reason: str
    message: str


__all__ = ["MAX_DEPTH", "BodyTooLarge", "UnreadableBody", "UnreadableJson", "UnsafeText", "bearer_matches",
           "check_text", "header_text", "parse_json", "read_body", "text_problem"]
