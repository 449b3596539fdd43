"""Working days over China's holiday calendar: public holidays off, 调休 weekend days on.

The calendar is a YAML file (``holidays.yaml`` beside this module, or the setting
``tickets_holidays_file``), one entry per year: ``holidays`` (dates or ``A..B`` ranges),
``workdays`` (the Saturdays and Sundays that are working days) and ``provisional`` (the year's
State Council notice is not in the file yet). A file with a problem is refused with one line
that names the file, the year and the problem. No I/O but :func:`load_calendar`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hotline.yamlfile import YAMLFileError, read_yaml

__all__ = ["CalendarError", "HOLIDAYS_FILE", "WorkCalendar", "load_calendar", "parse_calendar"]

HOLIDAYS_FILE = Path(__file__).with_name("holidays.yaml")
MAX_RANGE_DAYS = 31


class CalendarError(ValueError):
    """The holiday calendar file is wrong; the message is one line."""


@dataclass(frozen=True)
class WorkCalendar:
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()       # weekend days that are working days
    years: frozenset[int] = frozenset()              # the years the file speaks of
    provisional: frozenset[int] = frozenset()        # years whose notice is not in the file yet

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def known(self, day: dt.date) -> bool:
        """Whether the calendar is sure of this day (its year is in the file and not provisional)."""
        return day.year in self.years and day.year not in self.provisional


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        raise CalendarError(f"{where}: {value!r} is a date-time, not a date (YYYY-MM-DD)")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise CalendarError(f"{where}: {str(value)[:40]!r} is not a date (YYYY-MM-DD)") from None


def _days(value: Any, where: str) -> list[dt.date]:
    """One date, or a range ``A..B`` (both included)."""
    if isinstance(value, str) and ".." in value:
        first_text, last_text = value.split("..", 1)
        first, last = _date(first_text, where), _date(last_text, where)
        if last < first or (last - first).days >= MAX_RANGE_DAYS:
            raise CalendarError(f"{where}: range {value!r} must run forward, at most {MAX_RANGE_DAYS} days")
        return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    return [_date(value, where)]


def parse_calendar(data: Any, source: str = "holiday calendar") -> WorkCalendar:
    """The calendar from the file's data (a mapping of year -> entry)."""
    if not isinstance(data, dict) or not data:
        raise CalendarError(f"{source}: must be a mapping of year: {{holidays, workdays}}")
    holidays: set[dt.date] = set()
    workdays: set[dt.date] = set()
    years: set[int] = set()
    provisional: set[int] = set()
    for year_key, entry in data.items():
        try:
            year = int(year_key)
        except (TypeError, ValueError):
            raise CalendarError(f"{source}: {year_key!r} is not a year") from None
        where = f"{source}: {year}"
        if not 2000 <= year <= 2200:
            raise CalendarError(f"{where}: not a year of this century or the next")
        if not isinstance(entry, dict):
            raise CalendarError(f"{where}: must be a mapping with holidays and workdays")
        unknown = set(entry) - {"holidays", "workdays", "provisional"}
        if unknown:
            raise CalendarError(f"{where}: unknown key {sorted(map(str, unknown))[0]!r} "
                                "(holidays, workdays, provisional)")
        if not isinstance(entry.get("provisional", False), bool):
            raise CalendarError(f"{where}: provisional must be true or false")
        year_holidays: set[dt.date] = set()
        year_workdays: set[dt.date] = set()
        for label, into in (("holidays", year_holidays), ("workdays", year_workdays)):
            values = entry.get(label) or []
            if not isinstance(values, list):
                raise CalendarError(f"{where}: {label} must be a list of dates")
            for value in values:
                for day in _days(value, f"{where} {label}"):
                    if day.year != year:
                        raise CalendarError(f"{where} {label}: {day} is not in {year}")
                    into.add(day)
        for day in sorted(year_workdays):
            if day.weekday() < 5:
                raise CalendarError(f"{where} workdays: {day} is a week day (only Saturdays and Sundays are "
                                    "made working days)")
        both = sorted(year_holidays & year_workdays)
        if both:
            raise CalendarError(f"{where}: {both[0]} is both a holiday and a working day")
        holidays |= year_holidays
        workdays |= year_workdays
        years.add(year)
        if entry.get("provisional"):
            provisional.add(year)
    return WorkCalendar(frozenset(holidays), frozenset(workdays), frozenset(years), frozenset(provisional))


def load_calendar(path: Optional[Path] = None) -> WorkCalendar:
    """Read and check the calendar file (the shipped one by default)."""
    path = path or HOLIDAYS_FILE
    try:
        data = read_yaml(path)
    except YAMLFileError as exc:
        raise CalendarError(f"holiday calendar {path}: {exc}") from None
    return parse_calendar(data, f"holiday calendar {path}")
