"""Submitting the same external id twice returns the first ticket's id with
duplicate=true and creates nothing: one ticket in the queue and in the
snapshot, and Redis unchanged by the second submit."""
import harness
from harness import check


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    first = tb.tierctl("submit", "--subject", "Where is my order?", "--external-id",
                       "shop-991", "--customer", "c7")
    check(first["duplicate"] is False, f"first submit creates: {first}")
    before = tb.redis.state()
    seq_before = tb.tierctl("snapshot")["seq"]

    again = tb.tierctl("submit", "--subject", "Where is my order??", "--external-id",
                       "shop-991", "--customer", "c7", "--channel", "email")
    check(again["id"] == first["id"], f"same id: {first} vs {again}")
    check(again["duplicate"] is True, f"second submit is a duplicate: {again}")
    check(tb.redis.state() == before, "a duplicate submit changes nothing in Redis")

    check(tb.queue_depth("L1") == 1, "one ticket queued at L1")
    snap = tb.tierctl("snapshot")
    check(snap["seq"] == seq_before, f"no event for a duplicate: seq {seq_before} -> {snap['seq']}")
    ids = [t["id"] for q in snap["queues"] for t in q["tickets"]]
    check(ids == [first["id"]], f"snapshot holds the one ticket: {ids}")
    t = tb.show(first["id"])
    check(t["subject"] == "Where is my order?", f"first subject kept: {t['subject']!r}")
    check(t["external_id"] == "shop-991", f"external id kept: {t}")
    check(len(harness.history_of(t, "created")) == 1, "one created entry")

    # A different external id is a different ticket.
    other = tb.tierctl("submit", "--subject", "Another", "--external-id", "shop-992")
    check(other["id"] != first["id"] and other["duplicate"] is False, f"new ticket: {other}")
    check(tb.queue_depth("L1") == 2, "two tickets queued")


harness.main(test)
