"""A ticket's deadline: its urgency's class of 1, 3 or 7 working days, counted over the holiday
calendar from the day after it was filed. Pure functions."""
from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from .calendar import WorkCalendar

__all__ = ["Deadline", "URGENCY_DAYS", "Urgency", "add_working_days", "deadline_for"]


class Urgency(enum.StrEnum):
    URGENT = "urgent"          # 特急: one working day
    PRIORITY = "priority"      # 紧急: three working days
    NORMAL = "normal"          # 一般: seven working days


URGENCY_DAYS: dict[Urgency, int] = {Urgency.URGENT: 1, Urgency.PRIORITY: 3, Urgency.NORMAL: 7}
MAX_SEARCH_DAYS = 366          # a calendar with no working day for a year is a broken calendar


@dataclass(frozen=True)
class Deadline:
    urgency: Urgency
    working_days: int
    due: dt.date               # the end of this day (local time) is the deadline
    provisional: bool          # the count crossed days the calendar is not sure of (a year's notice missing)

    def to_json(self) -> dict[str, object]:
        return {"urgency": self.urgency.value, "working_days": self.working_days, "due": self.due.isoformat(),
                "provisional": self.provisional}


def add_working_days(calendar: WorkCalendar, start: dt.date, days: int) -> tuple[dt.date, bool]:
    """The ``days``-th working day after ``start`` (the day of filing does not count), and whether
    a day on the way was one the calendar is not sure of."""
    if days < 1:
        raise ValueError("days must be 1 or more")
    day, counted, unsure = start, 0, False
    for _ in range(MAX_SEARCH_DAYS):
        day += dt.timedelta(days=1)
        unsure = unsure or not calendar.known(day)
        if calendar.is_working_day(day):
            counted += 1
            if counted == days:
                return day, unsure
    raise ValueError(f"no {days} working days within {MAX_SEARCH_DAYS} days of {start}")


def deadline_for(calendar: WorkCalendar, urgency: Urgency, filed_on: dt.date) -> Deadline:
    days = URGENCY_DAYS[urgency]
    due, unsure = add_working_days(calendar, filed_on, days)
    return Deadline(urgency, days, due, unsure)
