"""Hostile calendar files (mappings/calendar/<year>.yaml): each is a ``CalendarInvalid`` naming the file and the
field or rule, never a traceback nor a silently different calendar; every problem of a directory is listed at
once; the shipped files load clean, from where the package is installed."""

from __future__ import annotations

import time
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.stats.calendar import DEFAULT_CALENDAR_DIR, CalendarInvalid, load_calendar

GOOD = (b'year: 2026\ndays_off:\n  - date: 2026-01-02\n    notice: "swap"\n'
        b'working_days:\n  - date: 2026-01-10\n    notice: "swap"\n')

HOSTILE: dict[str, tuple[str, bytes, tuple[str, ...]]] = {
    # case: (file name, content, what the message must say)
    "year not the file's": ("2026.yaml", b"year: 2025\n", ("2026.yaml: year", "named for 2026")),
    "year as text": ("2026.yaml", b'year: "2026"\n', ("2026.yaml: year", "integer")),
    "year missing": ("2026.yaml", b"days_off: []\n", ("2026.yaml: year", "required")),
    "a date of another year": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2025-12-31, notice: "x"}\n',
                               ("2026.yaml: days_off[0].date", "not in 2026")),
    "both off and working": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-04-30, notice: "x"}\n'
                                          b'working_days:\n  - {date: 2026-04-30, notice: "y"}\n',
                             ("2026.yaml: working_days[0].date", "both a day off and a working day")),
    "listed twice": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-01-02, notice: "x"}\n'
                                  b'  - {date: 2026-01-02, notice: "x"}\n',
                     ("2026.yaml: days_off[1].date", "listed twice")),
    "a working day on a plain weekday": ("2026.yaml",
                                         b'year: 2026\nworking_days:\n  - {date: 2026-01-06, notice: "x"}\n',
                                         ("2026.yaml: working_days[0].date", "a working day already")),
    "a day off on a weekend day": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-01-03, notice: "x"}\n',
                                   ("2026.yaml: days_off[0].date", "weekly rest day")),
    "unknown top-level key": ("2026.yaml", b"year: 2026\nholidays: []\n", ("2026.yaml: holidays", "Extra inputs")),
    "unknown key in an entry": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-01-02, notice: "x", why: y}\n',
                                ("2026.yaml: days_off[0].why", "Extra inputs")),
    "missing notice": ("2026.yaml", b"year: 2026\ndays_off:\n  - {date: 2026-01-02}\n",
                       ("2026.yaml: days_off[0].notice", "required")),
    "blank notice": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-01-02, notice: "  "}\n',
                     ("2026.yaml: days_off[0].notice", "must name the notice")),
    "notice as a number": ("2026.yaml", b"year: 2026\ndays_off:\n  - {date: 2026-01-02, notice: 5}\n",
                           ("2026.yaml: days_off[0].notice",)),
    "confirmed as text": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-01-02, notice: "x", confirmed: "no"}\n',
                          ("2026.yaml: days_off[0].confirmed",)),
    "date as a number": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 20260102, notice: "x"}\n',
                         ("2026.yaml: days_off[0].date", "YYYY-MM-DD")),
    "date with a time of day": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-01-02 10:00:00, notice: "x"}\n',
                                ("2026.yaml: days_off[0].date", "time of day")),
    "date not padded": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-1-2, notice: "x"}\n',
                        ("2026.yaml: days_off[0].date", "YYYY-MM-DD")),
    "impossible date": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: 2026-02-30, notice: "x"}\n',
                        ("2026.yaml", "not valid YAML", "out of range")),
    "impossible date, quoted": ("2026.yaml", b'year: 2026\ndays_off:\n  - {date: "2026-02-30", notice: "x"}\n',
                                ("2026.yaml: days_off[0].date",)),
    "days_off not a list": ("2026.yaml", b'year: 2026\ndays_off: {date: 2026-01-02, notice: "x"}\n',
                            ("2026.yaml: days_off",)),
    "an entry not a mapping": ("2026.yaml", b"year: 2026\ndays_off: [2026-01-02]\n", ("2026.yaml: days_off[0]",)),
    "a key given twice": ("2026.yaml", b'year: 2026\ndays_off: []\ndays_off:\n  - {date: 2026-01-02, notice: "x"}\n',
                          ("2026.yaml", "given twice")),
    "not YAML": ("2026.yaml", b"year: 2026\ndays_off: [\n", ("2026.yaml", "not valid YAML")),
    "python object tag": ("2026.yaml", b"year: !!python/object/apply:os.system ['true']\n",
                          ("2026.yaml", "not valid YAML")),
    "invalid UTF-8": ("2026.yaml", b"year: 2026\ndays_off:\n  - {date: 2026-01-02, notice: \xff\xfe}\n",
                      ("2026.yaml", "not UTF-8")),
    "a list at the top": ("2026.yaml", b"- 2026-01-02\n", ("2026.yaml", "top level must be a mapping")),
    "an empty file": ("2026.yaml", b"", ("2026.yaml", "top level must be a mapping")),
    "larger than 1 MB": ("2026.yaml", GOOD + b"#" * (1024 * 1024), ("2026.yaml", "larger than 1 MB")),
    "nested too deeply": ("2026.yaml", b"year: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", ("2026.yaml",)),
    "alias bomb": ("2026.yaml", b'a: &a [{date: 2026-01-02, notice: "x"}, {date: 2026-01-02, notice: "x"}]\n'
                                b"b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
                                b"d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\nyear: 2026\ndays_off: [*d, *d, *d, *d]\n",
                   ("2026.yaml: a", "Extra inputs", "2026.yaml: days_off[0]")),
    "not named for a year": ("calendar.yaml", GOOD, ("calendar.yaml", "<year>.yaml")),
    "a .yml file": ("2026.yml", GOOD, ("2026.yml", "<year>.yaml")),
}


def _load(tmp_path: Path, name: str, content: bytes) -> str:
    directory = tmp_path / "calendar"
    directory.mkdir()
    (directory / name).write_bytes(content)
    with pytest.raises(CalendarInvalid) as caught:
        load_calendar(directory)
    return str(caught.value)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_calendar_file_is_refused_naming_the_file_and_the_field(tmp_path: Path, case: str) -> None:
    name, content, says = HOSTILE[case]
    began = time.monotonic()
    message = _load(tmp_path, name, content)
    assert time.monotonic() - began < 10, "a hostile file must not take long to refuse"
    for part in says:
        assert part in message, message
    assert len(message.splitlines()) < 60, "a hostile file must not make an endless message"


def test_a_file_of_many_bad_entries_makes_a_bounded_message(tmp_path: Path) -> None:
    content = b"year: 2026\ndays_off:\n" + b'  - {date: 2026-01-03, notice: "a Saturday"}\n' * 5000
    message = _load(tmp_path, "2026.yaml", content)
    assert "2026.yaml: days_off[0].date" in message
    assert "more problem(s)" in message
    assert len(message.splitlines()) < 60


def test_calendar_invalid_is_a_config_error() -> None:
    assert issubclass(CalendarInvalid, ConfigError)


def test_every_problem_of_every_file_is_listed_at_once(tmp_path: Path) -> None:
    directory = tmp_path / "calendar"
    directory.mkdir()
    (directory / "2025.yaml").write_bytes(b'year: 2025\ndays_off:\n  - {date: 2025-02-01, notice: "x"}\n'
                                          b'working_days:\n  - {date: 2025-02-03, notice: ""}\n')
    (directory / "2026.yaml").write_bytes(b"year: 2027\n")
    with pytest.raises(CalendarInvalid) as caught:
        load_calendar(directory)
    message = str(caught.value)
    assert message.startswith(f"{directory}: 3 problem(s)"), message
    assert "2025.yaml: days_off[0].date" in message
    assert "2025.yaml: working_days[0].notice" in message
    assert "2026.yaml: year" in message


def test_a_directory_named_like_a_file_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "calendar"
    (directory / "2026.yaml").mkdir(parents=True)
    with pytest.raises(CalendarInvalid, match=r"2026\.yaml: not a regular file"):
        load_calendar(directory)


def test_a_calendar_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calendar"
    path.write_bytes(GOOD)
    with pytest.raises(CalendarInvalid, match="not a directory"):
        load_calendar(path)


def test_bad_sessions_are_a_calendar_problem(tmp_path: Path) -> None:
    from datetime import time as clock

    with pytest.raises(CalendarInvalid, match="sessions"):
        load_calendar(tmp_path / "none", sessions=[(clock(17), clock(7))])


def test_a_missing_directory_is_the_package_alone(tmp_path: Path) -> None:
    calendar = load_calendar(tmp_path / "none")
    assert not calendar.is_working_day(date(2026, 4, 30))  # the package's holiday
    assert not calendar.is_working_day(date(2026, 1, 10))  # no make-up Saturday without the files


def test_files_other_than_yaml_are_left_alone(tmp_path: Path) -> None:
    directory = tmp_path / "calendar"
    directory.mkdir()
    (directory / "2026.yaml").write_bytes(GOOD)
    (directory / "notes.txt").write_bytes(b"\xff not a calendar")
    assert load_calendar(directory).is_working_day(date(2026, 1, 10))


# --- the shipped files ------------------------------------------------------------------------------------------


def test_the_shipped_directory_is_package_data() -> None:
    shipped = Path(str(resources.files("connector") / "mappings" / "calendar"))
    assert shipped == DEFAULT_CALENDAR_DIR
    assert {path.name for path in shipped.glob("*.yaml")} >= {"2024.yaml", "2025.yaml", "2026.yaml"}


def test_the_shipped_files_load_clean() -> None:
    calendar = load_calendar(DEFAULT_CALENDAR_DIR)
    assert [o.day for o in calendar.unapplied] == [date(2025, 2, 15)]
    assert all(o.notice.strip() for o in (*calendar.overrides, *calendar.unapplied))
    assert all(o.day.weekday() == 5 for o in calendar.overrides if not o.off)  # make-up days are Saturdays


def test_the_shipped_files_list_every_weekday_the_package_closes() -> None:
    # The files, not the package, decide 2024–2026: a package version that closes another weekday is a
    # disagreement for a person to settle (add the day with its notice, or a working_days entry).
    import holidays

    calendar = load_calendar(DEFAULT_CALENDAR_DIR)
    listed = {o.day for o in calendar.overrides if o.off}
    for year in (2024, 2025, 2026):
        package = {day for day in holidays.country_holidays("VN", years=year) if day.weekday() < 5}
        assert package - listed == set(), year
