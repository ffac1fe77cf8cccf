"""A worker with capacity 2 never holds or runs more than 2 tickets at once:
tierd's agent load stays <= 2 while 10 tickets drain, the handlers never
overlap more than twice, and capacity is used (2 at once does happen)."""
import threading

import harness
from harness import check

CAPACITY = 2
TICKETS = 10
HANDLER_SLEEP_S = 0.8

HANDLER = r'''
import fcntl, json, os, sys, time
sys.stdin.read()
state = sys.argv[1]
def bump(delta):
    with open(state + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(state) as f:
                now, peak = map(int, f.read().split())
        except (OSError, ValueError):
            now, peak = 0, 0
        now += delta
        peak = max(peak, now)
        with open(state, "w") as f:
            f.write(f"{now} {peak}")
bump(+1)
time.sleep(float(sys.argv[2]))
bump(-1)
print(json.dumps({"action": "resolve", "text": "done " + os.environ["TIER_TICKET_ID"]}))
'''


def test(tb):
    tb.start_redis()
    tb.start_tierd()
    conc = tb.path("concurrency")
    cmd = tb.handler("slow", HANDLER, lang="py") + f" {conc} {HANDLER_SLEEP_S}"
    tb.start_worker("L1", capacity=CAPACITY, exec_cmd=cmd, agent="cap2")
    tb.wait_agent("cap2")

    loads, stop = [], threading.Event()
    errors = []

    def poll_agents():
        while not stop.is_set():
            try:
                for a in tb.tierctl("agents", timeout_ms=2000)["agents"]:
                    if a["id"] == "cap2":
                        loads.append((a["load"], len(a["tickets"]), a["capacity"]))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    poller = threading.Thread(target=poll_agents)
    poller.start()
    try:
        ids = [tb.tierctl("submit", "--subject", f"capacity {i}")["id"] for i in range(TICKETS)]
        for tid in ids:
            tb.wait_state(tid, "resolved", timeout=40)
    finally:
        stop.set()
        poller.join()

    check(not errors, f"agents polling failed: {errors[:3]}")
    check(len(loads) >= 5, f"polled the agent often enough: {len(loads)} samples")
    check(all(cap == CAPACITY for _, _, cap in loads), f"capacity reported as 2: {set(loads)}")
    over = [s for s in loads if s[0] > CAPACITY or s[1] > CAPACITY]
    check(not over, f"load or held tickets above capacity: {over}")
    check(max(load for load, _, _ in loads) == CAPACITY, f"capacity was used: {loads}")
    with open(conc) as f:
        now, peak = map(int, f.read().split())
    check(now == 0, f"every handler finished: {now}")
    check(peak == CAPACITY, f"at most (and at some time exactly) 2 handlers ran at once: {peak}")
    for tid in ids:
        t = tb.show(tid)
        res = harness.history_of(t, "resolved")
        check(len(res) == 1 and res[0]["actor"] == "cap2", f"{tid} resolved once: {res}")


harness.main(test)
