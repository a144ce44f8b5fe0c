"""Working days and deadlines in Asia/Ho_Chi_Minh (pure: values in, values out; only ``load_calendar`` reads files).

The rules (PORTAL.md §3):

- **Working day.** Monday to Friday, except the statutory holidays (the ``holidays`` package, Vietnam, with its
  weekend make-up rule) and the days off of the yearly notices; the make-up Saturday of a swap is a working day.
  The notices come from ``mappings/calendar/<year>.yaml``; an override always wins over the package. For
  2024–2026 the shipped files list every weekday off and every make-up day, so those years do not depend on
  the package's version.
- **Unconfirmed entries** (``confirmed: false``) are listed (``WorkCalendar.unapplied``) but not applied unless
  ``apply_unconfirmed`` is set: a rumoured swap must not move anybody's deadline.
- **Hours and working days (one-stop practice).** Time counts only inside the work sessions of working days
  (default 07:00–11:30 and 13:30–17:00: 8 hours a day). A start outside a session (at lunch, after the close,
  on a day off) counts from the next session's start. N working days are N × the sessions' total, counted the
  same way: Mon 10:00 + 1 working day = Tue 10:00; a receipt at Mon 17:30 + 1 working day = Tue 17:00. A count
  that ends exactly at a session's end ends there (11:30, 17:00), not at the next session's start. Hours are
  rounded to the second.
- **Days and months (Civil Code, Art. 147–148).** The first day is not counted; the period ends at the end of
  its last day, which for an office is the close of its last session (``close_of``); a last day that is a
  weekend day or holiday moves to the close of the next working day. Months: the same day number ``months``
  later, the month's last day when it has no such day (31/1 + 1 month = 28/2 or 29/2).

Every time taken must be aware (ValueError otherwise); every time returned is in ``PORTAL_TZ``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import holidays
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from connector.config import DEFAULT_MAPPINGS_DIR
from connector.errors import ConfigError
from connector.national_time import PORTAL_TZ

DEFAULT_SESSIONS: tuple[tuple[time, time], ...] = ((time(7, 0), time(11, 30)), (time(13, 30), time(17, 0)))
DEFAULT_CALENDAR_DIR = DEFAULT_MAPPINGS_DIR / "calendar"
MAX_FILE_BYTES = 1024 * 1024
# Counting loops walk day by day; a span longer than this is no deadline but bad data, refused rather than walked.
MAX_SPAN_DAYS = 100 * 366
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ONE_DAY = timedelta(days=1)


class CalendarInvalid(ConfigError):
    """The calendar directory is wrong; the message lists every problem with file and field."""


@dataclass(frozen=True)
class DayOverride:
    """One day of a notice: ``off`` (closed on a day that would be worked) or a make-up working day."""

    day: date
    off: bool
    notice: str
    confirmed: bool = True


@lru_cache(maxsize=256)
def _package_holidays(year: int) -> dict[date, str]:
    # language fixed: the names must not follow the host's locale.
    return dict(holidays.country_holidays("VN", years=year, language="vi"))


@dataclass(frozen=True)
class _Year:
    closed: frozenset[date]  # weekdays not worked
    makeup: frozenset[date]  # weekend days worked
    names: dict[date, str]  # why a day is off: override notices over package names


def _plain_date(day: date) -> date:
    # A datetime is a date too, but never equal to one: it would silently miss every set lookup.
    if isinstance(day, datetime):
        raise TypeError("a date, not a datetime: take .astimezone(PORTAL_TZ).date() first")
    return day


def _local(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a time without its zone cannot be placed in Asia/Ho_Chi_Minh")
    return moment.astimezone(PORTAL_TZ)


def _at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=PORTAL_TZ)


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a whole number ≥ 0, got {value!r}")
    return value


def _check_sessions(sessions: Sequence[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
    try:
        checked = tuple((start, end) for start, end in sessions)
    except (TypeError, ValueError):
        raise ValueError("sessions are (start, end) pairs of datetime.time") from None
    if not checked:
        raise ValueError("at least one work session is needed")
    previous_end: time | None = None
    for start, end in checked:
        if not isinstance(start, time) or not isinstance(end, time):
            raise ValueError(f"a session is two datetime.time values, got {start!r}–{end!r}")
        if start.tzinfo is not None or end.tzinfo is not None:
            raise ValueError("session times are wall-clock times in Asia/Ho_Chi_Minh, without a zone")
        if start >= end:
            raise ValueError(f"a session must start before it ends: {start}–{end}")
        if previous_end is not None and start < previous_end:
            raise ValueError(f"sessions must be in order and must not overlap: {start} is before {previous_end}")
        previous_end = end
    return checked


class WorkCalendar:
    """The working days of Vietnam's public offices and the deadline arithmetic on them."""

    def __init__(self, overrides: Iterable[DayOverride] = (), *,
                 sessions: Sequence[tuple[time, time]] = DEFAULT_SESSIONS, apply_unconfirmed: bool = False) -> None:
        self.sessions: tuple[tuple[time, time], ...] = _check_sessions(sessions)
        self._day_length = sum((_at(date(2000, 1, 1), end) - _at(date(2000, 1, 1), start)
                                for start, end in self.sessions), timedelta(0))
        self.hours_per_day: float = self._day_length / timedelta(hours=1)
        applied: dict[date, DayOverride] = {}
        unapplied: list[DayOverride] = []
        seen: set[date] = set()
        for override in overrides:
            if not isinstance(override, DayOverride):
                raise ValueError(f"an override is a DayOverride, got {type(override).__name__}")
            day = _plain_date(override.day)
            if day in seen:  # a day both off and worked, or listed twice: which one wins would be arbitrary
                raise ValueError(f"{day} is overridden more than once")
            seen.add(day)
            if override.confirmed or apply_unconfirmed:
                applied[day] = override
            else:
                unapplied.append(override)
        self.overrides: tuple[DayOverride, ...] = tuple(sorted(applied.values(), key=lambda o: o.day))
        self.unapplied: tuple[DayOverride, ...] = tuple(sorted(unapplied, key=lambda o: o.day))
        self._applied = applied
        self._years: dict[int, _Year] = {}

    def _year(self, year: int) -> _Year:
        # Called for every day looked at, thousands of times per report: one dict lookup once the year is built.
        cached = self._years.get(year)
        if cached is not None:
            return cached
        names = dict(_package_holidays(year))
        closed = {day for day in names if day.weekday() < 5}
        makeup: set[date] = set()
        for day, override in self._applied.items():
            if day.year != year:
                continue
            if override.off:
                names[day] = override.notice
                if day.weekday() < 5:
                    closed.add(day)
            elif day.weekday() < 5:
                closed.discard(day)
            else:
                makeup.add(day)
        built = _Year(frozenset(closed), frozenset(makeup), names)
        self._years[year] = built
        return built

    def is_working_day(self, day: date) -> bool:
        day = _plain_date(day)
        year = self._year(day.year)
        if day.weekday() >= 5:
            return day in year.makeup
        return day not in year.closed

    def holiday_name(self, day: date) -> str | None:
        """Why ``day`` is off (the override's notice, else the package's holiday name); None for a working day or
        a plain weekend day."""
        if self.is_working_day(day):
            return None
        return self._year(day.year).names.get(day)

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        current = _plain_date(day)
        try:
            for _ in range(MAX_SPAN_DAYS):
                current += _ONE_DAY
                if self.is_working_day(current):
                    return current
        except OverflowError:
            raise ValueError("no working day before the end of the year 9999") from None
        raise ValueError(f"no working day within {MAX_SPAN_DAYS} days after {day}")

    def close_of(self, day: date) -> datetime:
        """The end of the day's last session (whether or not the day is worked)."""
        return _at(_plain_date(day), self.sessions[-1][1])

    # ------------------------------------------------------------------------------------------------------------
    # One-stop practice: working hours inside sessions

    def _open_spans(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The rest of the sessions of working days from ``moment`` on, in order, each cut to start no earlier."""
        day = moment.date()
        for _ in range(MAX_SPAN_DAYS + 1):
            if self.is_working_day(day):
                for start, end in self.sessions:
                    closes = _at(day, end)
                    if closes > moment:
                        yield max(_at(day, start), moment), closes
            day += _ONE_DAY

    def _add(self, start: datetime, remaining: timedelta) -> datetime:
        moment = _local(start)
        if remaining <= timedelta(0):
            return moment
        if remaining > self._day_length * MAX_SPAN_DAYS:
            raise ValueError(f"a period of more than {MAX_SPAN_DAYS} days is not a deadline")
        try:
            for begin, end in self._open_spans(moment):
                span = end - begin
                if remaining <= span:  # "<=": a count ending at a session's end ends there (11:30, 17:00)
                    return begin + remaining
                remaining -= span
        except OverflowError:
            raise ValueError("the period ends after the year 9999") from None
        raise ValueError(f"a period of more than {MAX_SPAN_DAYS} days is not a deadline")

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """``start`` + ``hours`` counted only inside sessions of working days (rounded to the second)."""
        if not math.isfinite(hours) or hours < 0:
            raise ValueError(f"hours must be a finite number ≥ 0, got {hours!r}")
        if hours > 24 * MAX_SPAN_DAYS:
            raise ValueError(f"a period of more than {MAX_SPAN_DAYS} days is not a deadline")
        # Whole seconds: float hours (0.1, 1/60) become exact durations, so sums of periods add up exactly.
        return self._add(start, timedelta(seconds=round(hours * 3600)))

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """``days`` × the sessions' total, as working hours: Mon 10:00 + 1 = Tue 10:00; Mon 17:30 + 1 = Tue 17:00."""
        days = _count(days, "days")
        if days > MAX_SPAN_DAYS:
            raise ValueError(f"a period of more than {MAX_SPAN_DAYS} days is not a deadline")
        return self._add(start, self._day_length * days)

    def working_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Working time inside sessions from ``start`` to ``end``; minus the reverse when ``end`` < ``start``."""
        low, high = _local(start), _local(end)
        if high < low:
            return -self.working_time_between(end, start)
        if (high.date() - low.date()).days > MAX_SPAN_DAYS:
            raise ValueError(f"a span of more than {MAX_SPAN_DAYS} days is not a deadline")
        total = timedelta(0)
        day = low.date()
        while day <= high.date():
            if self.is_working_day(day):
                for session_start, session_end in self.sessions:
                    lo, hi = max(_at(day, session_start), low), min(_at(day, session_end), high)
                    if hi > lo:
                        total += hi - lo
            day += _ONE_DAY
        return total

    def working_days_between(self, start: date, end: date) -> int:
        """The working days in (``start``, ``end``]; 0 when ``end`` <= ``start``."""
        start, end = _plain_date(start), _plain_date(end)
        if end <= start:
            return 0
        if (end - start).days > MAX_SPAN_DAYS:
            raise ValueError(f"a span of more than {MAX_SPAN_DAYS} days is not a deadline")
        return sum(1 for offset in range(1, (end - start).days + 1) if self.is_working_day(start + offset * _ONE_DAY))

    # ------------------------------------------------------------------------------------------------------------
    # Civil Code: days and months

    def _close_on_or_after(self, day: date) -> datetime:
        return self.close_of(day if self.is_working_day(day) else self.next_working_day(day))

    def add_calendar_days(self, start: datetime, days: int) -> datetime:
        """Civil Code days: the first day not counted, ending at the close of the last day, moved to the close of
        the next working day when that day is not worked."""
        days = _count(days, "days")
        try:
            last = _local(start).date() + timedelta(days=days)
        except OverflowError:
            raise ValueError("the period ends after the year 9999") from None
        return self._close_on_or_after(last)

    def add_months(self, start: datetime, months: int) -> datetime:
        """Civil Code months: the same day number ``months`` later (the month's last day when it has none), at its
        close, moved to the close of the next working day when that day is not worked."""
        months = _count(months, "months")
        local = _local(start)
        year, month = divmod(local.year * 12 + local.month - 1 + months, 12)
        if year > 9999:
            raise ValueError("the period ends after the year 9999")
        month += 1
        last_day = 31 if month == 12 else (date(year, month + 1, 1) - _ONE_DAY).day
        return self._close_on_or_after(date(year, month, min(local.day, last_day)))


# ----------------------------------------------------------------------------------------------------------------
# The override files: mappings/calendar/<year>.yaml

_FILE_NAME = re.compile(r"([0-9]{4})\.yaml")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_PROBLEMS_PER_FILE = 50  # a hostile file must not make a message of a million lines


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, refusing a key given twice (PyYAML would keep the last one silently: a second
    ``days_off:`` would drop the first list)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key '{key_node.value}' is given twice",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    day: date = Field(alias="date")
    notice: StrictStr = Field(max_length=500)
    confirmed: StrictBool = True

    @field_validator("day", mode="before")
    @classmethod
    def _a_date(cls, value: object) -> date:
        # Not pydantic's lax date: it would read 20260102 as seconds since 1970 and accept a time of day.
        if isinstance(value, datetime):
            raise ValueError("a date without a time of day (YYYY-MM-DD)")
        if isinstance(value, date):
            return value
        if isinstance(value, str) and _ISO_DATE.fullmatch(value):
            return date.fromisoformat(value)  # ValueError for 2026-02-30
        raise ValueError("must be a date written YYYY-MM-DD")

    @field_validator("notice")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the notice the day comes from")
        return value


class _CalendarFile(BaseModel):
    """The file's top level; its entries are validated one by one (``_Entry``), so one bad entry hides no other
    problem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    year: StrictInt
    days_off: list[Any] = Field(default_factory=list)
    working_days: list[Any] = Field(default_factory=list)


_SECTIONS = (("days_off", True), ("working_days", False))


def _where(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _rules(name: str, year: int, entries: list[tuple[str, int, _Entry]]) -> list[str]:
    problems: list[str] = []
    first_seen: dict[date, tuple[str, str]] = {}  # date → (section, field)
    for section, index, entry in entries:
        field, day = f"{section}[{index}].date", entry.day
        where, weekday = f"{name}: {field}", _WEEKDAYS[day.weekday()]
        if day.year != year:
            problems.append(f"{where}: {day} is not in {year}")
        if day in first_seen:
            other_section, other = first_seen[day]
            problems.append(f"{where}: {day} is both a day off and a working day (also {other})"
                            if other_section != section else f"{where}: {day} is listed twice (also {other})")
        else:
            first_seen[day] = (section, field)
        if section == "days_off" and day.weekday() >= 5:
            problems.append(f"{where}: {day} is a {weekday}, a weekly rest day already: a day off is a weekday")
        if section == "working_days" and day.weekday() < 5 and day not in _package_holidays(day.year):
            problems.append(f"{where}: {day} is a {weekday} and no holiday, a working day already: a make-up "
                            f"working day is a weekend day or a holiday")
    return problems


def _content(name: str, content: dict[Any, Any], named_year: int) -> tuple[list[DayOverride], list[str]]:
    problems: list[str] = []
    try:
        _CalendarFile.model_validate(content)
    except ValidationError as exc:
        problems.extend(f"{name}: {_where(err['loc'])}: {err['msg']}"
                        for err in exc.errors(include_url=False, include_input=False))
    year = content.get("year")
    if type(year) is int and year != named_year:
        problems.append(f"{name}: year: {year}, but the file is named for {named_year}")
    entries: list[tuple[str, int, _Entry]] = []
    for section, _ in _SECTIONS:
        items = content.get(section)
        for index, item in enumerate(items if isinstance(items, list) else []):
            try:
                entries.append((section, index, _Entry.model_validate(item)))
            except ValidationError as exc:
                problems.extend(f"{name}: {_where((section, index, *err['loc']))}: {err['msg']}"
                                for err in exc.errors(include_url=False, include_input=False))
    problems.extend(_rules(name, named_year, entries))
    off = dict(_SECTIONS)
    return [DayOverride(e.day, off=off[section], notice=e.notice, confirmed=e.confirmed)
            for section, _, e in entries], problems


def _read_file(path: Path) -> tuple[list[DayOverride], list[str]]:
    name = path.name
    match = _FILE_NAME.fullmatch(name)
    if match is None:
        return [], [f"{name}: a calendar file is named <year>.yaml (for example 2026.yaml)"]
    if not path.is_file():
        return [], [f"{name}: not a regular file"]
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)  # bounded read: the size check holds for pipes and growing files
    except OSError as exc:
        return [], [f"{name}: cannot be read ({exc.strerror or type(exc).__name__})"]
    if len(raw) > MAX_FILE_BYTES:
        return [], [f"{name}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB: not a calendar"]
    try:
        content = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except UnicodeDecodeError:
        return [], [f"{name}: not UTF-8 text"]
    except yaml.YAMLError as exc:
        return [], [f"{name}: not valid YAML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"]
    except ValueError as exc:  # PyYAML's own date constructor: 2026-02-30
        return [], [f"{name}: not valid YAML ({exc})"]
    except RecursionError:
        return [], [f"{name}: nested too deeply to be a calendar"]
    if not isinstance(content, dict):
        return [], [f"{name}: the top level must be a mapping of year, days_off, working_days"]
    return _content(name, content, int(match.group(1)))


def load_calendar(directory: Path, *, sessions: Sequence[tuple[time, time]] = DEFAULT_SESSIONS,
                  apply_unconfirmed: bool = False) -> WorkCalendar:
    """The calendar of ``directory/<year>.yaml`` over the package's holidays; a missing directory: the package
    alone. Raise CalendarInvalid listing every problem with its file and field."""
    overrides: list[DayOverride] = []
    problems: list[str] = []
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir():
            raise CalendarInvalid(f"{directory}: not a directory")
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            if path.suffix == ".yml":  # silently ignored, it would hide a year's swaps
                problems.append(f"{path.name}: a calendar file is named <year>.yaml, not .yml")
                continue
            found, wrong = _read_file(path)
            overrides.extend(found)
            if len(wrong) > _MAX_PROBLEMS_PER_FILE:
                more = len(wrong) - _MAX_PROBLEMS_PER_FILE
                wrong = [*wrong[:_MAX_PROBLEMS_PER_FILE], f"{path.name}: … and {more} more problem(s)"]
            problems.extend(wrong)
    try:
        _check_sessions(sessions)
    except ValueError as exc:
        problems.append(f"sessions: {exc}")
    if problems:
        raise CalendarInvalid(f"{directory}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))
    # Each date sits in the file of its year and is checked unique there: the constructor cannot refuse these.
    return WorkCalendar(overrides, sessions=sessions, apply_unconfirmed=apply_unconfirmed)
