"""Capacity per channel (an agent who handles several chats but one call):
a worker with --capacity 3 --channel-capacity phone=1 holds at most one
phone ticket at a time. With two phone tickets and one chat ticket queued
it gets one phone and the chat; the second phone ticket waits until the
first call ends."""
import time

import sla_harness as sh
from sla_harness import check

HOLD_S = 1.0   # long enough for a wrong second phone offer to show


def test(tb):
    sh.start(tb)
    cmd = tb.handler("hold", f"""cat >/dev/null
while [ ! -e {tb.path('go-')}"$TIER_TICKET_ID" ]; do sleep 0.02; done
printf '%s' '{{"action":"resolve","text":"done"}}'
""")
    phone1 = sh.submit(tb, "call 1", "--channel", "phone")
    phone2 = sh.submit(tb, "call 2", "--channel", "phone")
    chat = sh.submit(tb, "chat 1", "--channel", "chat")
    tb.start_worker("L1", capacity=3, exec_cmd=cmd, agent="multi",
                    extra_args=("--channel-capacity", "phone=1"))
    tb.wait_state(chat, "assigned", timeout=10)
    time.sleep(HOLD_S)
    states = {tid: tb.state_of(tid) for tid in (phone1, phone2)}
    held = sorted(t for t, s in states.items() if s in ("offered", "assigned"))
    check(len(held) == 1, f"one phone call at a time (--channel-capacity phone=1), but the "
          f"agent holds {held}: {states}; agents {tb.tierctl('agents')['agents']}")
    first = held[0]
    other = phone2 if first == phone1 else phone1
    open(tb.path(f"go-{first}"), "w").close()
    tb.wait_state(other, "assigned", timeout=10)
    for tid in (other, chat):
        open(tb.path(f"go-{tid}"), "w").close()
        tb.wait_state(tid, "resolved", timeout=10)


sh.main(test)
