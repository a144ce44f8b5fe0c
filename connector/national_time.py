"""Time as the national side writes it, one copy of each rule (pure).

- the portal and the Payment Platform: ``yyyyMMddHHmmss``, 24-hour clock, in Asia/Ho_Chi_Minh;
- our Kafka documents: RFC 3339 with an offset (written in UTC, "Z").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

PORTAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
_PORTAL_TIME = re.compile(r"[0-9]{14}")


def portal_time(moment: datetime | None) -> str:
    """``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh, or "" for no value. A time without its zone is refused
    (ValueError): it would be read in the host's zone."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        raise ValueError("a time without its zone cannot be placed in Asia/Ho_Chi_Minh")
    local = moment.astimezone(PORTAL_TZ)
    # Not strftime: %Y does not zero-pad years below 1000 on every platform. printf-style formatting of the
    # six fields takes half the time of the equivalent f-string, and this runs several times per event.
    return "%04d%02d%02d%02d%02d%02d" % (  # noqa: UP031
        local.year, local.month, local.day, local.hour, local.minute, local.second)


def is_portal_time(text: object) -> bool:
    """Fourteen digits (whether they are a real time is ``parse_portal_time``'s question)."""
    return isinstance(text, str) and _PORTAL_TIME.fullmatch(text) is not None


def parse_portal_time(text: str) -> datetime:
    """``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh, as an aware time; ValueError for anything else."""
    if not is_portal_time(text):
        raise ValueError("must be yyyyMMddHHmmss")
    return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[8:10]), int(text[10:12]),
                    int(text[12:14]), tzinfo=PORTAL_TZ)


def rfc3339(moment: datetime) -> str:
    """An aware time as RFC 3339 in UTC ("Z")."""
    if moment.tzinfo is None:
        raise ValueError("a time without its zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """A time our schemas admit (their pattern checked it: RFC 3339 with an offset); ValueError when it is not
    a real date and time."""
    # The pattern admits lower-case "t"/"z" (RFC 3339 does); fromisoformat reads only upper case.
    return datetime.fromisoformat(text.upper())
