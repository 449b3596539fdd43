"""The call book's guards against lost, duplicated and late events (acd/callbook.py): no I/O."""
from __future__ import annotations

from acd.callbook import ENDED_KEPT_S, CallBook
from hotline.live import LiveCall


class Clock:
    def __init__(self) -> None:
        self.now = 1795340000.0

    def __call__(self) -> float:
        return self.now


def call(uid: str, **kw) -> LiveCall:
    return LiveCall(uid, f"PJSIP/trunk-{uid}", uid, "main", "13800000001", 1795340000.0, **kw)


def test_one_ring_at_a_time_and_duplicates_counted_once():
    book = CallBook(Clock())
    assert book.dial_begun("1.1", "leg-a") and not book.dial_begun("1.1", "leg-a")
    assert book.ringing("1.1")
    # The next agent is rung: the first Dial is over, even with its DialEnd lost.
    assert book.dial_begun("1.1", "leg-b")
    assert not book.dial_ended("1.1", "leg-a")          # a late DialEnd of the earlier ring
    assert book.ringing("1.1")
    assert book.dial_ended("1.1", "leg-b") and not book.dial_ended("1.1", "leg-b")
    assert not book.ringing("1.1")


def test_an_ended_call_is_remembered_for_a_while_under_both_of_its_ids():
    clock = Clock()
    book = CallBook(clock)
    first = call("2.1", callback="13800000001", leg="2.1-cb1")
    book.follow(first, new=True)
    book.follow_leg(first, first.leg)
    assert book.followed == 1 and book.followed_calls() == {"2.1": first}
    book.drop(first)
    book.ended(first)
    assert book.get("2.1") is None and book.get("2.1-cb1") is None
    assert book.has_ended("2.1") and book.call_of("2.1-cb1") == "2.1"
    clock.now += ENDED_KEPT_S + 1
    book.ended(call("2.2"))                             # the next end forgets what is older
    assert not book.has_ended("2.1") and book.call_of("2.1-cb1") == "" and book.has_ended("2.2")


def test_a_call_another_node_follows_is_let_go_and_witnessed():
    book = CallBook(Clock())
    mine = call("3.1", ring_attempts=1, answered_at=1795340010.0)
    book.follow(mine)
    book.let_go(mine)
    assert book.get("3.1") is None and book.witnessed["3.1"].answered_at == 1795340010.0
    newchannel = {"Event": "Newchannel", "Uniqueid": "3.2", "Linkedid": "3.2", "Context": "from-trunk"}
    assert book.witness(newchannel, watching=False, inbound_contexts={"from-trunk"}) is None
    seen = book.witness(newchannel, watching=True, inbound_contexts={"from-trunk"})
    assert seen is not None and book.witness({"Uniqueid": "3.2"}, watching=True, inbound_contexts=()) is seen
    agent_leg = {"Event": "Newchannel", "Uniqueid": "3.3", "Linkedid": "3.2", "Context": "from-trunk"}
    assert book.witness(agent_leg, watching=True, inbound_contexts={"from-trunk"}) is None
    book.witnessed_end("3.2", seen, 16)
    book.witnessed_end("3.2", seen, 17)                 # a duplicate Hangup: the first end counts
    assert (seen.cause, seen.ended_at) == (16, 1795340000.0)
