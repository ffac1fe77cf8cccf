"""Assignment strategy per level ([workers] strategy_L1): two agents of
capacity 3 each, ana and bia, both full (3 tickets each, capacity never
exceeded). Ana finishes one ticket first (2 left); a moment later bia
finishes two (1 left). The next ticket goes to

  longest_idle  ana: her free slot has been waiting longest (she finished
                first and, in this fill, was also assigned to least recently)
  least_loaded  bia: 1 of 3 is less than ana's 2 of 3

and, for the ticket after that, with longest_idle ana is full so bia; with
least_loaded the loads are equal (2 of 3) and the longer idle, ana, wins.

Usage: test_strategy.py longest_idle|least_loaded
"""
import sys
import time

import sla_harness as sh
from sla_harness import check

CAPACITY = 3
GAP_S = 0.3   # between ana's and bia's finishing: distinct idle times

EXPECTED = {"longest_idle": ("ana", "bia"), "least_loaded": ("bia", "ana")}


def holder(tb):
    """A handler that holds its ticket until the file go-ID exists."""
    return tb.handler("hold", f"""cat >/dev/null
while [ ! -e {tb.path('go-')}"$TIER_TICKET_ID" ]; do sleep 0.02; done
printf '%s' '{{"action":"resolve","text":"done"}}'
""")


def held_by(tb):
    return {a["id"]: sorted(a["tickets"], key=int) for a in tb.tierctl("agents")["agents"]}


def finish(tb, ids):
    for tid in ids:
        open(tb.path(f"go-{tid}"), "w").close()
    for tid in ids:
        tb.wait_state(tid, "resolved", timeout=10)


def assigned_to(tb, tid):
    t = sh.wait_ticket(tb, tid, lambda t: t["state"] == "assigned", timeout=10,
                       what="assigned")
    return t["agent"]


def test_with(strategy):
    def test(tb):
        sh.start(tb, workers={"strategy_L1": strategy})
        cmd = holder(tb)
        for agent in ("ana", "bia"):
            tb.start_worker("L1", capacity=CAPACITY, exec_cmd=cmd, agent=agent)
            tb.wait_agent(agent)
        fill = [sh.submit(tb, f"fill {i}") for i in range(2 * CAPACITY)]
        for tid in fill:
            assigned_to(tb, tid)
        held = held_by(tb)
        check(len(held["ana"]) == CAPACITY and len(held["bia"]) == CAPACITY,
              f"a burst fills both agents to capacity, never beyond: {held}")

        finish(tb, held["ana"][:1])
        time.sleep(GAP_S)
        finish(tb, held["bia"][:2])
        time.sleep(0.1)
        check({a: len(ids) for a, ids in held_by(tb).items()} == {"ana": 2, "bia": 1},
              f"ana holds 2, bia 1: {held_by(tb)}")

        first_expected, second_expected = EXPECTED[strategy]
        first = assigned_to(tb, sh.submit(tb, "next"))
        check(first == first_expected, f"{strategy}: the next ticket goes to "
              f"{first_expected}, went to {first} (held before: ana 2, bia 1)")
        second = assigned_to(tb, sh.submit(tb, "after"))
        check(second == second_expected, f"{strategy}: the ticket after goes to "
              f"{second_expected}, went to {second}")
        finish(tb, [t for ids in held_by(tb).values() for t in ids])
    return test


if len(sys.argv) != 2 or sys.argv[1] not in EXPECTED:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(EXPECTED)}")
sh.main(test_with(sys.argv[1]), name=f"strategy_{sys.argv[1]}")
