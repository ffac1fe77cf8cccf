"""A window never splits a score (docs/data-model.md, "cold tickets"): more
tickets than a window holds (1,024 per channel) with one score stay in
memory together. Promises make such ties: a ticket whose promised time has
come goes to the front of its queue at score 0, so 1,300 chats deferred to
one time by an agent that then leaves all come back at score 0.

  - they are all queued, none of them cold (no field in P qw, nothing
    beyond it in P q:1::1), and tierd is quiet: it does not give them back
    to Redis and read them again without end (it did: the window's upto
    went below the score and the refill read the whole score again);
  - the same after a restart;
  - a new agent gets each of them exactly once."""
import signal
import time

import harness
from harness import check

N = 1300                # over BOOK_WINDOW (router/book.h) tickets of one channel
CHAT = 1                # Tier__V1__Channel
HEARTBEAT_MS = 200
CONFIG = f"[workers]\nheartbeat_ms = {HEARTBEAT_MS}\nliveness = 2\n"


def commands(tb):
    info = tb.redis.cmd("INFO", "stats")
    return int(info.split("total_commands_processed:")[1].split()[0])


def check_quiet(tb, when):
    """All N in memory, and tierd's Redis traffic over 2 s stays that of an
    idle router (lock renewal, the cold timers read every 100 ms)."""
    check(tb.queue_depth("L1") == N, f"{when}: all {N} queued: {tb.queue_depth('L1')}")
    check(tb.cold_count("1:", CHAT) == 0, f"{when}: none cold: {tb.cold_count('1:', CHAT)}")
    check(not tb.redis.cmd("HGETALL", "tier:qw"), f"{when}: the window holds the channel whole")
    before = commands(tb)
    time.sleep(2)
    spent = commands(tb) - before
    print(f"{when}: {spent} Redis commands in 2 s")
    check(spent < 400, f"{when}: tierd is quiet: {spent} Redis commands in 2 s")


def test(tb):
    tb.start_redis()
    tierd = tb.start_tierd(config=CONFIG)
    ids = tb.submit_many(N, channel="chat", subject="call me back")

    # One agent takes them all and promises each a call at the same time,
    # pipelining accept + defer, then leaves without a word.
    until = int(time.time() * 1000) + 8000
    promiser = tb.raw_worker("promiser", capacity=N)
    pb = promiser.pb
    offered, pending, answers = set(), set(), 0
    while answers < 2 * N:
        msg = promiser.recv(HEARTBEAT_MS // 2)
        if msg is None:
            promiser.send(heartbeat=pb.Heartbeat())
            continue
        body = msg.WhichOneof("body")
        if msg.request_id == 0 and body == "offer":
            t = msg.offer.ticket
            check(t.id not in offered, f"{t.id} offered once")
            offered.add(t.id)
            pending.add(promiser.send(accept=pb.Accept(ticket_id=t.id, attempt=t.attempt)))
            pending.add(promiser.send(defer=pb.Defer(
                ticket_id=t.id, attempt=t.attempt, until_ms=until,
                reason="call at the same time as everyone")))
        elif msg.request_id in pending:
            pending.discard(msg.request_id)
            check(not msg.error.code, f"accept/defer answered without error: {msg}")
            answers += 1
    check(offered == set(ids), f"the promiser got all {N}")
    check(int(time.time() * 1000) < until - 1000, "all deferred well before the promised time")
    promiser.sock.close()

    harness.wait_until(lambda: tb.queue_depth("L1") == N, (until / 1000 - time.time()) + 10,
                       "the promises to come due")
    check(int(time.time() * 1000) >= until, "they came back at the promised time")
    print("back at", int(time.time() * 1000) - until, "ms after the promised time")
    check_quiet(tb, "once the promises came due")

    tierd.kill(signal.SIGKILL, group=False)
    tierd.restart()
    check_quiet(tb, "after a restart")

    taker = tb.raw_worker("taker", capacity=N)
    got = []
    while len(got) < N:
        msg = taker.recv(HEARTBEAT_MS // 2)
        if msg is None:
            taker.send(heartbeat=taker.pb.Heartbeat())
            continue
        if msg.request_id == 0 and msg.WhichOneof("body") == "offer":
            got.append(msg.offer.ticket.id)
    check(len(set(got)) == N and set(got) == set(ids),
          f"the new agent got each of them once: {len(got)} offers, {len(set(got))} distinct")


harness.main(test, timeout_s=120)
