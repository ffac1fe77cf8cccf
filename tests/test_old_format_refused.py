"""A Redis prefix holding tierd data this router cannot read (the ticket
hashes of the earlier format, or a format it does not know) is refused with
a clear reason, in the log and in every answer, and nothing is written to
it; the same router works on a prefix of its own."""
import signal

import harness
from harness import check


def test(tb):
    redis = tb.start_redis()
    # What an earlier tierd left: ticket hashes and the id counter, no format.
    redis.cmd("SET", "tier:nextid", "7")
    redis.cmd("HSET", "tier:t:7", "state", "1", "level", "1")
    before = redis.state()
    tierd = tb.start_tierd(name="old", wait=False)
    res = harness.wait_until(
        lambda: (lambda r: r if r.returncode != 0 and "format" in r.stderr else None)(
            tb.tierctl("queues", tierd=tierd, expect_rc=None, timeout_ms=500)),
        10, "the refusal that names the format")
    check("UNAVAILABLE" in res.stderr and "earlier format" in res.stderr,
          f"the answer says what is wrong: {res.stderr!r}")
    check("earlier format" in tierd.log(), "the log says it too")
    tierd.kill(signal.SIGTERM)  # lets go of its lock, the only key it made
    check(redis.state() == before, "nothing was written to the old data")

    # Another prefix on the same Redis is fine.
    other = tb.start_tierd(name="new", config="[redis]\nprefix = fresh:\n")
    tid = tb.tierctl("submit", "--subject", "on a prefix of its own", tierd=other)["id"]
    check(tb.tierctl("show", tid, tierd=other)["state"] == "queued", "it takes tickets")
    check(redis.cmd("GET", "fresh:format") == "3", "and marks the prefix with its format")


harness.main(test)
