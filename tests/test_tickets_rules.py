"""The ticket hand-off's rules without servers: the holiday calendar and deadlines (a holiday
week, a 调休 Saturday), the catalogue and the category an IVR path implies (checked against the
shipped menus), the signature, and how the delivery worker judges answers and backs off."""
from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from cti.tickets.calendar import CalendarError, WorkCalendar, load_calendar, parse_calendar
from cti.tickets.catalogue import CatalogueError, load_catalogue, parse_catalogue
from cti.tickets.deadlines import Urgency, add_working_days, deadline_for
from cti.tickets.retry import Verdict, backoff_s, judge_answer, judge_failure
from cti.tickets.signing import sign, signed_headers, verify
from ivr.menu import load_lines

CAL = load_calendar()
D = dt.date


# ---- calendar and deadlines ---------------------------------------------------------------
def test_the_2026_notice_is_in_the_shipped_calendar() -> None:
    assert all(not CAL.is_working_day(D(2026, 10, day)) for day in range(1, 8))      # 国庆 week
    assert all(not CAL.is_working_day(D(2026, 2, day)) for day in range(15, 24))     # 春节
    for saturday_or_sunday in (D(2026, 1, 4), D(2026, 2, 14), D(2026, 2, 28), D(2026, 5, 9), D(2026, 9, 20),
                               D(2026, 10, 10)):
        assert saturday_or_sunday.weekday() >= 5 and CAL.is_working_day(saturday_or_sunday)
    assert not CAL.is_working_day(D(2026, 10, 17))       # an ordinary Saturday
    assert CAL.is_working_day(D(2026, 10, 8))            # the Thursday after the holiday
    assert CAL.known(D(2026, 6, 1)) and not CAL.known(D(2027, 3, 1)) and not CAL.known(D(2028, 1, 3))


@pytest.mark.parametrize("filed, urgency, due", [
    (D(2026, 9, 30), Urgency.URGENT, D(2026, 10, 8)),     # across the National Day week
    (D(2026, 9, 30), Urgency.PRIORITY, D(2026, 10, 10)),  # ... the 调休 Saturday counts
    (D(2026, 9, 30), Urgency.NORMAL, D(2026, 10, 15)),
    (D(2026, 2, 13), Urgency.URGENT, D(2026, 2, 14)),     # Friday -> the working Saturday before 春节
    (D(2026, 2, 14), Urgency.URGENT, D(2026, 2, 24)),     # filed on it: the next is after the holiday
    (D(2026, 11, 20), Urgency.URGENT, D(2026, 11, 23)),   # Friday -> Monday (a plain weekend)
    (D(2026, 11, 21), Urgency.PRIORITY, D(2026, 11, 25)), # filed on a Saturday: Mon, Tue, Wed
])
def test_deadlines_count_working_days_from_the_day_after(filed, urgency, due) -> None:
    deadline = deadline_for(CAL, urgency, filed)
    assert deadline.due == due and deadline.working_days == {"urgent": 1, "priority": 3, "normal": 7}[urgency]
    assert not deadline.provisional


def test_a_deadline_in_a_year_without_its_notice_says_so() -> None:
    deadline = deadline_for(CAL, Urgency.NORMAL, D(2026, 12, 28))
    assert deadline.provisional and deadline.due == D(2027, 1, 7)     # 1 Jan 2027 off (statutory)
    assert not deadline_for(CAL, Urgency.URGENT, D(2026, 12, 29)).provisional


def test_calendar_of_only_holidays_is_refused_not_looped() -> None:
    closed = WorkCalendar(holidays=frozenset(D(2026, 1, 1) + dt.timedelta(days=n) for n in range(400)))
    with pytest.raises(ValueError):
        add_working_days(closed, D(2025, 12, 31), 1)


@pytest.mark.parametrize("data, problem", [
    ({2026: {"holidays": ["2026-13-01"]}}, "is not a date"),
    ({2026: {"holidays": ["2027-01-01"]}}, "is not in 2026"),
    ({2026: {"workdays": ["2026-10-08"]}}, "is a week day"),
    ({2026: {"holidays": ["2026-10-10"], "workdays": ["2026-10-10"]}}, "both a holiday and a working day"),
    ({2026: {"holidays": ["2026-10-07..2026-10-01"]}}, "must run forward"),
    ({2026: {"holiday": []}}, "unknown key 'holiday'"),
    ({"next": {"holidays": []}}, "is not a year"),
    ([], "must be a mapping"),
])
def test_a_bad_calendar_is_one_clear_line(data, problem) -> None:
    with pytest.raises(CalendarError, match=problem) as err:
        parse_calendar(data)
    assert "\n" not in str(err.value)


def test_a_bad_calendar_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "holidays.yaml"
    path.write_text("2026:\n  holidays: [2026-10-01\n", encoding="utf-8")
    with pytest.raises(CalendarError, match=f"holiday calendar {path}: line"):
        load_calendar(path)
    with pytest.raises(CalendarError, match="cannot read"):
        load_calendar(tmp_path / "missing.yaml")


# ---- catalogue ----------------------------------------------------------------------------
CATALOGUE = load_catalogue()


def test_every_ivr_choice_of_the_catalogue_exists_in_the_shipped_menus() -> None:
    lines = load_lines()
    nodes = {node for plan in lines.values() for node in plan.nodes}
    queues = {"general", "complaint", "enterprise", "elderly", "policy-market"}
    for key in CATALOGUE.by_node:
        assert key.split(":")[0] in nodes, key
    assert set(CATALOGUE.by_queue) <= queues
    assert {c.code for c in CATALOGUE.categories} >= set(CATALOGUE.by_node.values()) | set(CATALOGUE.by_queue.values())


def test_the_category_an_ivr_path_implies() -> None:
    step = lambda node, digits=None: {"node": node, "digits": digits, "prompt": None, "result": "ok"}
    complaint = {"steps": [step("language", "1"), step("main-menu", "2")], "queue": "complaint"}
    assert CATALOGUE.category_for_ivr(complaint) == "complaint"
    policy = {"steps": [step("enterprise-menu", "2"), step("policy-menu", "3"), step("market-hours")],
              "queue": "policy-market"}
    assert CATALOGUE.category_for_ivr(policy) == "enterprise-policy"
    only_queue = {"steps": [step("elderly-lane")], "queue": "elderly"}
    assert CATALOGUE.category_for_ivr(only_queue) == "help"
    assert CATALOGUE.category_for_ivr({"steps": "garbage", "queue": 3}) is None
    assert CATALOGUE.category_for_ivr(None) is None


@pytest.mark.parametrize("data, problem", [
    ({"categories": []}, "non-empty list"),
    ({"categories": [{"code": "A", "zh": "x", "en": "x", "urgency": "normal"}]}, "code 'A'"),
    ({"categories": [{"code": "a", "zh": "x", "en": "x", "urgency": "soon"}]}, "urgency must be one of"),
    ({"categories": [{"code": "a", "zh": "x", "en": "x", "urgency": "normal"}],
      "ivr": {"queues": {"general": "b"}}}, "unknown category 'b'"),
    ({"categories": [{"code": "a", "zh": "x", "en": "x", "urgency": "normal"}] * 2}, "given twice"),
])
def test_a_bad_catalogue_is_one_clear_line(data, problem) -> None:
    with pytest.raises(CatalogueError, match=problem):
        parse_catalogue(data)


# ---- signature ----------------------------------------------------------------------------
SECRET = "k" * 40


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac
    body = b'{"kind":"ticket"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, body) == f"sha256={expected}"
    headers = signed_headers(SECRET, 1700000000, body, "key-1")
    assert headers["Idempotency-Key"] == "key-1" and headers["X-Hotline-Timestamp"] == "1700000000"
    assert verify(SECRET, "1700000000", headers["X-Hotline-Signature"], body, now=1700000100) is None


@pytest.mark.parametrize("timestamp, signature, body, now, why", [
    ("1700000000", sign(SECRET, 1700000000, b"{}"), b"{ }", 1700000000, "bad signature"),
    ("1700000000", sign("x" * 40, 1700000000, b"{}"), b"{}", 1700000000, "bad signature"),
    ("1700000000", sign(SECRET, 1700000000, b"{}"), b"{}", 1700000301, "outside"),
    ("1700000000", sign(SECRET, 1700000001, b"{}"), b"{}", 1700000000, "bad signature"),
    (None, None, b"{}", 1700000000, "required"),
    ("soon", "sha256=00", b"{}", 1700000000, "epoch seconds"),
])
def test_a_bad_or_stale_signature_is_refused(timestamp, signature, body, now, why) -> None:
    assert why in (verify(SECRET, timestamp, signature, body, now=now) or "")


# ---- answers and backoff ------------------------------------------------------------------
@pytest.mark.parametrize("status, body, kind, verdict", [
    (201, b'{"ticket_id": "1234567890"}', "ticket", Verdict.DELIVERED),
    (200, b'{"ticket_id": 42}', "ticket", Verdict.DELIVERED),
    (200, b'{"ok": true}', "ticket", Verdict.RETRY),          # a ticket must come back with its id
    (200, b'not json', "call", Verdict.DELIVERED),
    (400, b'{"error": "bad"}', "ticket", Verdict.DEAD),
    (401, b'', "ticket", Verdict.DEAD),
    (422, b'', "ticket", Verdict.DEAD),
    (408, b'', "ticket", Verdict.RETRY),
    (429, b'', "ticket", Verdict.RETRY),
    (500, b'boom', "ticket", Verdict.RETRY),
    (503, b'', "call", Verdict.RETRY),
    (302, b'', "ticket", Verdict.RETRY),
])
def test_answers_are_judged(status, body, kind, verdict) -> None:
    outcome = judge_answer(status, body, kind)
    assert outcome.verdict == verdict
    if verdict != Verdict.DELIVERED:
        assert outcome.reason and str(status) in outcome.reason
    assert judge_failure("refused").verdict == Verdict.RETRY


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    top = lambda: 1.0
    assert [backoff_s(n, 2.0, 600.0, top) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(20, 2.0, 600.0, top) == 600.0 and backoff_s(500, 2.0, 600.0, top) == 600.0
    assert backoff_s(3, 2.0, 600.0, lambda: 0.0) == 0.0
    draws = itertools.cycle([0.25, 0.5])
    assert backoff_s(3, 2.0, 600.0, lambda: next(draws)) == 2.0
