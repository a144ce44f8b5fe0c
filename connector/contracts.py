"""The JSON Schemas of ``connector/schemas/`` as the code checks them: every contract one way.

A document is checked by the Rust validator first (a few microseconds for a valid one); only a document it
refuses, or cannot take in, goes to the reference validator, which words every error and decides. By default
the reference reads ``pattern`` as JSON Schema means it (ECMA-262): a final ``$`` is the end of the text, not
also the place before a final newline as in Python's ``re``, so the two validators agree ("REF-1\\n" is no
reference). The older contracts were published with Python's reading and keep it; each says whether a
document the fast validator refuses and that reading accepts is valid (the dossier event) or refused as a
whole (the submission record).
Errors are named by field and rule, never by the offending value: it may be an ID number or a phone.

``read_document`` is the one reading of a Kafka record's value before its contract's schema: no tombstone,
bounded size, strict UTF-8 JSON, usable text, schema version 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
from pydantic_core import from_json

from connector.errors import InvalidInput
from connector.untrusted import UnsafeText, check_text

# A dossier number, as every contract writes it (dossier-event.v1 dossier.no, the payment documents' dossier_no).
DOSSIER_NO = re.compile(r"[0-9A-Za-z.\-_/]{3,100}")

def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
                  ) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    python = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    if re.search(python, instance) is None:
        yield jsonschema.ValidationError(f"does not match {pattern!r}")


# The stubs leave ``extend`` untyped; it returns a validator class like Draft202012Validator.
_Reference = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern})


class Contract:
    """One schema file, read and checked against the metaschema on first use."""

    def __init__(self, path: Path, *, ecma_patterns: bool = True, refuse_disagreement: bool = False) -> None:
        self.path = path
        self._ecma_patterns = ecma_patterns
        self._refuse_disagreement = refuse_disagreement

    @cached_property
    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        return schema

    @cached_property
    def reference(self) -> Any:
        """The reference validator (a Draft202012Validator with ECMA-262 patterns)."""
        return (_Reference if self._ecma_patterns else jsonschema.Draft202012Validator)(self.schema)

    @cached_property
    def fast(self) -> jsonschema_rs.Validator:
        return jsonschema_rs.validator_for(self.schema)

    def errors(self, document: Any) -> list[jsonschema.ValidationError]:
        """Every way ``document`` breaks the contract, shallowest first; empty when it is valid. ``document``
        comes from a JSON parser (the fast check takes a tuple for an array, which JSON never makes)."""
        try:
            fast_refused = not self.fast.is_valid(document)
        except (ValueError, TypeError, OverflowError):  # a value the Rust side cannot take in: the reference judges
            fast_refused = False
        else:
            if not fast_refused:
                return []
        errors = sorted(self.reference.iter_errors(document),
                        key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
        if not errors and fast_refused and self._refuse_disagreement:
            return [jsonschema.ValidationError("fails the schema", validator="schema")]
        return errors


def field_path(error: jsonschema.ValidationError, *, whole: str = "(document)") -> str:
    """The failing field as a dotted path (``whole`` when the document itself fails)."""
    return ".".join(str(p) for p in error.absolute_path) or whole


_NAMED_CONSTRAINTS = frozenset({"type", "enum", "const", "pattern", "minLength", "maxLength", "minimum", "maximum",
                                "maxItems", "minItems"})


def rule(error: jsonschema.ValidationError) -> str:
    """The failing keyword and its constraint; never the offending value."""
    if error.validator == "required":
        message = str(error.message)
        missing = message.split("'")[1] if message.count("'") >= 2 else "?"
        return f"required property '{missing}' is missing"
    if error.validator in _NAMED_CONSTRAINTS:
        return f"must satisfy {error.validator}={json.dumps(error.validator_value, ensure_ascii=False)}"
    return f"fails {error.validator}"


def first_error(errors: list[jsonschema.ValidationError], *, whole: str = "(document)") -> tuple[str, str]:
    """(field, rule) of the first error, the rule noting how many more there are."""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return field_path(errors[0], whole=whole), rule(errors[0]) + more



# ---------------------------------------------------------------------------------------------------------
# A Kafka record's value, read as every document of a contract is read (the dossier event, the payment request)


def parse_record_json(value: bytes) -> Any:
    """``json.loads(value)``, nearly twice as fast on the events we meet.

    pydantic-core's parser also shares short strings between events (keys, codes, names that recur),
    which shrinks what an event in flight keeps alive. It refuses a few inputs that json.loads reads (lone
    surrogate escapes, deep nesting) and words its errors its own way: on any refusal json.loads reads the
    value again, so the result, or the error, is json.loads's own. Both read UTF-8 only: json.loads alone
    would also take UTF-16 or UTF-32, a byte-order mark, or surrogates encoded as bytes.
    """
    try:
        return from_json(value)
    except (ValueError, TypeError):
        return json.loads(value.decode("utf-8"))


# In JSON text, a lone surrogate or a control character can only arrive escaped: ``\\uD800``..``\\uDFFF``,
# ``\\u0000``..``\\u001F``, or the short forms of backspace and form feed, ``\\b`` and ``\\f`` (raw control bytes
# inside a string are not JSON; ``\\t \\n \\r`` are allowed). Events that hold no such escape (nearly all) skip
# the walk over every string; a match may be a false alarm (an escaped backslash), which the walk then clears.
_SUSPECT_ESCAPE = re.compile(rb"\\(?:u(?:[dD][89a-fA-F]|00[01])|[bf])")


def read_document(value: bytes | None, *, max_bytes: int, refusal: type[InvalidInput]) -> Any:
    """The JSON document of one Kafka record's value, read as every record of the contract is read: no
    tombstone, at most ``max_bytes``, strict UTF-8 JSON, usable text (no lone surrogate, no C0 control but
    tab, CR, LF), schema version 1. Raises ``refusal`` (the decoder's own InvalidInput) naming the field and
    the rule."""
    if value is None:
        raise refusal("the record has no value (tombstone)", reason="empty_value", field="(value)")
    if len(value) > max_bytes:
        raise refusal(f"the record is {len(value)} bytes, over the limit of {max_bytes}", reason="too_large",
                      field="(value)")
    try:
        document: Any = parse_record_json(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refusal(f"not valid UTF-8 JSON ({exc.__class__.__name__} at position "
                      f"{getattr(exc, 'pos', getattr(exc, 'start', '?'))})",
                      reason="malformed_json", field="(value)") from None
    except RecursionError:
        raise refusal("JSON nested too deeply to read", reason="malformed_json", field="(value)") from None
    except ValueError:  # what else json.loads refuses: an integer of more than 4,300 digits
        raise refusal("not valid UTF-8 JSON (a number out of range)", reason="malformed_json",
                      field="(value)") from None
    if _SUSPECT_ESCAPE.search(value) is not None:
        try:
            check_text(document)
        except UnsafeText as exc:
            raise refusal(exc.rule, reason="invalid_text", field=exc.field) from None
    if isinstance(document, dict) and document.get("schema_version") not in (None, 1):
        raise refusal("unsupported schema_version; this build reads version 1",
                      reason="unsupported_schema_version", field="schema_version")
    return document


__all__ = ["DOSSIER_NO", "Contract", "field_path", "first_error", "parse_record_json", "read_document", "rule"]
