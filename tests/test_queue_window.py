"""A queue longer than its window keeps the tail of each channel in Redis
only (docs/data-model.md, "cold tickets"), and nothing about it shows from
outside but memory: 2,500 chat tickets and 5 e-mails wait in L1; tierd is
SIGKILLed and restarted; then one agent takes them one at a time.

  - Redis holds the cold ones (P q:1::<channel> beyond the window's upto
    in P qw, each also in P qt:1: and P due), tierd's depth counts them,
    the snapshot lists the first of each channel and says how many it left
    out;
  - an agent that may hold one chat at a time gets an e-mail as its second
    ticket, though 2,499 chats come before it in the queue;
  - every chat is offered exactly once, in the order they were submitted,
    across the window's refills and the restart; at the end the cold sets
    are empty;
  - an agent with room for 2,000 gets 2,000 offers: the cold tickets brought
    in wake the dispatcher."""
import signal

import harness
from harness import check

CHATS = 2500
EMAILS = 5
WINDOW = 1024           # BOOK_WINDOW (router/book.h)
CHAT, EMAIL = 1, 2      # Tier__V1__Channel
BIG = 2000              # capacity of the last agent: two windows' worth


def cold_counts(tb):
    return (tb.cold_count("1:", CHAT), tb.cold_count("1:", EMAIL),
            int(tb.redis.cmd("ZCARD", "tier:qt:1:")),
            int(tb.redis.cmd("ZCARD", "tier:due")))


def check_window(tb, when):
    chat_cold, email_cold, qt, due = cold_counts(tb)
    check(CHATS - WINDOW <= chat_cold < CHATS,
          f"{when}: most chats wait in Redis only (beyond P qw in P q:1::{CHAT}): {chat_cold}")
    check(email_cold == 0, f"{when}: the 5 e-mails are all in memory: {email_cold} cold")
    check(qt == chat_cold, f"{when}: P qt:1: has every cold ticket: {qt} vs {chat_cold}")
    check(due == chat_cold, f"{when}: P due has every cold ticket's timer: {due} vs {chat_cold}")
    check(tb.queue_depth("L1") == CHATS + EMAILS, f"{when}: depth counts the cold ones")
    snap = tb.tierctl("snapshot")
    l1 = [q for q in snap["queues"] if q["level"] == "L1" and not q["department"]][0]
    listed = len(l1["tickets"])
    check(listed + l1["omitted"] == CHATS + EMAILS,
          f"{when}: snapshot lists {listed} and omits {l1['omitted']} of {CHATS + EMAILS}")
    check(listed <= WINDOW + EMAILS and l1["omitted"] == chat_cold,
          f"{when}: the snapshot leaves out exactly the cold chats ({l1['omitted']})")
    emails = [t for t in l1["tickets"] if t["channel"] == "email"]
    check(len(emails) == EMAILS, f"{when}: the snapshot lists every e-mail: {len(emails)}")


def test(tb):
    tb.start_redis()
    tierd = tb.start_tierd()
    chats = tb.submit_many(CHATS, channel="chat", subject="chat")
    emails = tb.submit_many(EMAILS, channel="email", subject="email")
    check(len(set(chats + emails)) == CHATS + EMAILS, "distinct ids")
    harness.wait_until(lambda: cold_counts(tb)[0] >= CHATS - WINDOW, 10,
                       "the chats' tail to go to Redis")
    print("cold after the submits:", cold_counts(tb))
    check_window(tb, "after the submits")

    tierd.kill(signal.SIGKILL, group=False)
    tierd.restart()
    check_window(tb, "after a restart")

    raw = tb.raw_worker("one-chat", capacity=2, channel_capacity={"chat": 1})
    pb = raw.pb
    offered = []
    held = {}
    first = raw.wait_push("offer").offer.ticket
    second = raw.wait_push("offer").offer.ticket
    check(first.channel == CHAT and first.id == chats[0],
          f"the first chat is offered first: {first.id} (channel {first.channel})")
    check(second.channel == EMAIL and second.id == emails[0],
          f"with a chat held, the first e-mail comes next: {second.id} "
          f"(channel {second.channel})")
    for t in (first, second):
        offered.append(t)
        held[t.id] = t
    while held:
        for tid, t in list(held.items()):
            r = raw.call(accept=pb.Accept(ticket_id=tid, attempt=t.attempt))
            check(not r.error.code, f"accepted {tid}: {r}")
            r = raw.call(resolve=pb.Resolve(ticket_id=tid, attempt=t.attempt, text="done"))
            check(not r.error.code, f"resolved {tid}: {r}")
            del held[tid]
        if len(offered) < CHATS + EMAILS:
            t = raw.wait_push("offer").offer.ticket
            offered.append(t)
            held[t.id] = t
    chat_order = [t.id for t in offered if t.channel == CHAT]
    check(len(chat_order) == CHATS and len(set(chat_order)) == CHATS,
          f"every chat offered exactly once: {len(chat_order)} offers, "
          f"{len(set(chat_order))} distinct")
    out_of_order = [(a, b) for a, b in zip(chat_order, chat_order[1:]) if int(b) < int(a)]
    check(chat_order == chats, f"chats offered in the order submitted; first inversions: "
          f"{out_of_order[:5]}")
    check(sorted(t.id for t in offered if t.channel == EMAIL) == sorted(emails),
          "every e-mail offered once")
    check(cold_counts(tb) == (0, 0, 0, 0), f"no cold entries left: {cold_counts(tb)}")
    check(tb.queue_depth("L1") == 0, "L1 is empty")
    check(not tb.redis.cmd("HGETALL", "tier:qw"), "every window holds its channel whole again")
    for tid in (chats[0], chats[CHATS // 2], chats[-1]):
        check(tb.state_of(tid) == "resolved", f"{tid} resolved")

    # An agent with room for more than a window: the cold tickets it gets
    # once the window is offered are offered too, with nothing else going on
    # (no result, no new ticket) to wake the dispatcher.
    more = tb.submit_many(CHATS, channel="chat", subject="more", level="L2")
    big = tb.raw_worker("big", level="L2", capacity=BIG)
    got = set()
    while len(got) < BIG:
        msg = big.recv(1000)   # no heartbeat meanwhile: it could wake the dispatcher
        check(msg is not None, f"offers keep coming: {len(got)} of {BIG}")
        if msg.WhichOneof("body") == "offer":
            got.add(msg.offer.ticket.id)
    check(got == set(more[:BIG]), f"the agent got the first {BIG} tickets")


harness.main(test, timeout_s=170)
