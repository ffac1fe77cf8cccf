#!/usr/bin/python3
"""fault.py — tierd's fault suite: every acknowledged ticket reaches exactly
one terminal state and is never resolved twice, whatever crashes.

    fault.py [--smoke] [--count N] [--rate R] [--out DIR] [--keep-logs] [CASE...]

Each case runs against real processes (redis-server, tierd, tier-worker)
under a load of FAULT_N tickets (default 10000; --smoke: 1000), injects its
fault while the load is running, waits until every queue is empty, then
audits every acknowledged ticket (audit.py) and prints one line:

    case=router_sigkill acked=10000 resolved=9800 lost=0 duplicated=0 ...

Cases (default: all, in this order):
  router_sigkill  tierd SIGKILLed five times during the load and restarted
  worker_sigkill  random busy workers SIGKILLed mid-ticket and restarted
  worker_sigstop  workers SIGSTOPped past their lease, then continued; their
                  late results must be refused
  redis_restart   Redis (AOF on, appendfsync $FAULT_APPENDFSYNC, default
                  everysec) killed and restarted three times
  lost_replies    every answer to a worker is "lost": workers resend each
                  result with the same request id; each applies once
  dead_letters    a handler that cannot handle one ticket in ten: those are
                  dead-lettered after max_attempts, listed by tierctl dead,
                  and finish once requeued (tierctl requeue) after the fix
  netem           delay, loss and a cut between workers and tierd (network
                  namespace + veth + tc netem); needs root and sch_netem
  link_cut        the same link cut twice and rate-shaped (tbf) instead of
                  netem, for kernels without sch_netem; needs root

Exit status: 0 every case that ran passed; 1 a case failed; 77 every case
asked for was skipped (ctest SKIP_RETURN_CODE). A skipped case prints
`case=NAME skipped: WHY` and never counts as passed.
"""

import argparse
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench import Bench, LEASE_S  # noqa: E402
import harness  # noqa: E402
import netns  # noqa: E402

EXIT_SKIPPED = 77
DEFAULT_COUNT = 10000
SMOKE_COUNT = 1000
DEFAULT_RATE = 250           # tickets submitted per second
MIN_LOAD_S = 20              # smaller runs submit slower: faults need time to land
STOP_S = 3 * LEASE_S         # SIGSTOP length: well past liveness and the lease
LATE_CAPACITY = 4            # tickets the late worker holds when stopped
FORGETFUL_WORKERS = 4        # lost_replies: workers that resend every result
POISON_ATTEMPTS = 3          # dead_letters: max_attempts of that case's tierd


# ---------------------------------------------------------------------------
# Cases: each gets a Bench (with the tier-worker fleet up unless its options
# say "fleet": False), starts the load, injects its fault and returns; the
# bench audits afterwards. Faults are spread over the load by acknowledged
# count, so they land while tickets are arriving whatever the machine's speed.

def case_router_sigkill(b):
    b.start_load()
    kills = 0
    for fraction in (0.12, 0.27, 0.42, 0.57, 0.72):
        b.wait_acked(fraction)
        b.tierd.kill(signal.SIGKILL, group=False)
        kills += 1
        time.sleep(b.random.uniform(0.1, 1.0))
        b.tierd.restart()
    b.notes["tierd_kills"] = kills


def case_worker_sigkill(b):
    b.start_load()
    kills, same_id, new_id = 0, 0, 0
    interval = max(0.3, b.count / b.rate / 14)
    while b.load_running() or kills < 10:
        time.sleep(interval)
        agent = b.busy_worker()
        level = agent.split("-")[0]
        held = b.agents().get(agent)
        b.kill_worker(agent)
        kills += 1
        if kills % 2:
            b.workers[agent].start()          # systemd-style restart, same agent id
            same_id += 1
        else:
            b.retired.add(agent)              # gone for good: its lease must expire
            b.start_worker(f"{agent}r{kills}", level)
            new_id += 1
        b.notes.setdefault("killed_holding", 0)
        b.notes["killed_holding"] += held.load if held else 0
    b.notes.update(worker_kills=kills, restarted_same_id=same_id, replaced_new_id=new_id)


def _stale_lines(log):
    return sum(1 for line in log.splitlines()
               if "stale" in line or "router forgot us" in line)


def case_worker_sigstop(b):
    pb_dir = os.path.join(b.tb.dir, "pb")
    late = harness.Daemon(b.tb, "late-worker",
                          ["/usr/bin/python3", os.path.join(HERE, "late_worker.py"), pb_dir,
                           b.tierd.workers, "late-1", str(LATE_CAPACITY)])
    b.tb.daemons.append(late)
    b.tb.wait_agent("late-1", timeout=20)
    # The late worker alone first, so that the first tickets are surely its.
    b.start_load()
    harness.wait_until(lambda: "holding" in late.log(), 60, "the late worker to hold tickets")
    b.start_fleet()
    stopped, holding = [], 0
    for fraction in (0.15, 0.45, 0.75):
        b.wait_acked(fraction)
        agent = b.busy_worker("L1")
        held = b.agents().get(agent)
        holding += held.load if held else 0
        stopped.append(agent)
        victims = [b.workers[agent]] + ([late] if len(stopped) == 1 else [])
        for d in victims:
            d.send_signal(signal.SIGSTOP)
        time.sleep(STOP_S)
        for d in victims:
            d.send_signal(signal.SIGCONT)
    late.wait(60)
    fields = _tally(late, "late-worker:")
    late_ok = (fields["applied"] == "0" and fields["other"] == "0"
               and fields["stale_results"] == fields["held"])
    refused = sum(_stale_lines(b.workers[a].log()) for a in set(stopped))
    b.notes.update(stops=len(stopped) + 1, stopped_holding=holding,
                   stopped_worker_stale_lines=refused, late_held=fields["held"],
                   late_not_registered=fields["not_registered"],
                   late_stale_on_register=fields["stale_on_register"],
                   late_stale_results=fields["stale_results"], late_applied=fields["applied"])
    # The late worker proves refusal deterministically. A stopped tier-worker
    # may finish its tickets in the instant before SIGSTOP lands, so its
    # refusals are reported, not required; anything it got applied late
    # would show in the audit (misapplied, duplicated).
    harness.check(late_ok, f"late results all refused: {fields}")


def case_redis_restart(b):
    fsync = os.environ.get("FAULT_APPENDFSYNC", "everysec")

    def configure():
        b.redis.cmd("CONFIG", "SET", "appendfsync", fsync)

    configure()
    b.start_load()
    restarts = 0
    for fraction, sig in ((0.2, signal.SIGKILL), (0.45, signal.SIGTERM), (0.7, signal.SIGKILL)):
        b.wait_acked(fraction)
        b.redis.kill(sig, group=False)
        time.sleep(b.random.uniform(0.5, 2.0))
        b.redis.start()
        harness.wait_until(lambda: b.redis.cmd("PING") == "PONG", 30, "redis PING")
        configure()
        restarts += 1
    b.notes.update(redis_restarts=restarts, appendfsync=b.redis.cmd("CONFIG", "GET",
                                                                    "appendfsync")[1])


def _tally(daemon, prefix):
    """key=value fields of the last line starting with prefix in a log."""
    lines = [line for line in daemon.log().splitlines() if line.startswith(prefix)]
    harness.check(lines, f"{daemon.name} printed its tally: {daemon.log()[-2000:]}")
    return dict(kv.split("=") for kv in lines[-1].split()[1:])


def case_lost_replies(b):
    pb_dir = os.path.join(b.tb.dir, "pb")
    agents = [f"forgetful-{i + 1}" for i in range(FORGETFUL_WORKERS)]
    for agent in agents:
        d = harness.Daemon(b.tb, f"worker-{agent}",
                           ["/usr/bin/python3", os.path.join(HERE, "forgetful_worker.py"),
                            pb_dir, b.tierd.workers, agent])
        b.tb.daemons.append(d)
        b.workers[agent] = d
    for agent in agents:
        b.tb.wait_agent(agent, timeout=20)

    def after_quiet():
        totals = {}
        for agent in agents:
            b.workers[agent].send_signal(signal.SIGTERM)
            b.workers[agent].wait(30)
            for k, v in _tally(b.workers[agent], "forgetful-worker:").items():
                totals[k] = totals.get(k, 0) + int(v)
        b.notes.update({f"resent_{k}": v for k, v in totals.items() if k != "tickets"})
        return [f"resent results answered neither success nor STALE: {totals['other']}"
                ] if totals["other"] else []

    b.after_quiet = after_quiet
    b.start_load()


def case_dead_letters(b):
    b.start_load()
    harness.check(b.load.wait(max(120, 3 * b.count / b.rate)), "the load was acknowledged")
    harness.check(b._wait_quiet(), "queues empty: every poisoned ticket dead-lettered")
    listed = {t["id"]: t for t in
              b.tb.tierctl("dead", "--limit", b.count, tierd=b.tierd)["tickets"]}
    poisoned = {tid for tid in b.load.acked.values()
                if tid.endswith("7") and tid not in b.load.cancelled}
    missing = sorted(poisoned - set(listed))
    wrong = [tid for tid in poisoned & set(listed)
             if listed[tid]["state"] != "dead" or listed[tid]["attempt"] != POISON_ATTEMPTS]
    harness.check(poisoned and not missing and not wrong,
                  f"every poisoned ticket is a dead letter offered {POISON_ATTEMPTS} times: "
                  f"{len(poisoned)} poisoned, missing {missing[:5]}, wrong {wrong[:5]}")
    shown = b.tb.tierctl("show", sorted(poisoned)[0], tierd=b.tierd)
    reasons = [h["reason"] for h in shown["history"] if h["kind"] in ("released",
                                                                       "dead_lettered")]
    harness.check(len(reasons) == POISON_ATTEMPTS + 1, f"history says why: {reasons}")
    # Others may be dead too (offers timing out on a loaded machine): they
    # are requeued like the rest and must finish.
    b.notes.update(dead_listed=len(listed), dead_poisoned=len(poisoned))
    with open(b.fixed, "w"):
        pass                                  # the operator fixed the handler
    # finish() requeues every dead letter with tierctl requeue; they must end.


def _impair(b, phases):
    """Run (at_fraction, action, hold_s) phases against the link while the
    load runs; hold_s > 0 restores the link afterwards."""
    for fraction, action, hold_s, restore in phases:
        b.wait_acked(fraction)
        action()
        if hold_s:
            time.sleep(hold_s)
            restore()


def case_netem(b):
    link = b.link
    b.start_load()
    mild = ("netem", "delay", "30ms", "10ms", "loss", "2%")
    bad = ("netem", "delay", "100ms", "50ms", "loss", "10%")
    cut = ("netem", "loss", "100%")
    _impair(b, [
        (0.1, lambda: link.shape(*mild), 0, None),
        (0.35, lambda: link.shape(*cut), STOP_S, lambda: link.shape(*mild)),
        (0.6, lambda: link.shape(*bad), 0, None),
        (0.8, link.clear, 0, None),
    ])
    b.notes.update(impairments="delay30ms+loss2%,cut,delay100ms+loss10%")


def case_link_cut(b):
    link = b.link
    b.start_load()
    shaped = ("tbf", "rate", "2mbit", "burst", "16kb", "latency", "20ms")
    _impair(b, [
        (0.1, lambda: link.shape(*shaped), 0, None),
        (0.3, lambda: link.link(False), STOP_S, lambda: link.link(True)),
        (0.6, lambda: link.link(False), LEASE_S / 2, lambda: link.link(True)),
        (0.8, link.clear, 0, None),
    ])
    b.notes.update(impairments="tbf2mbit,cut,short-cut")


CASES = {
    "router_sigkill": (case_router_sigkill, {}),
    "worker_sigkill": (case_worker_sigkill, {}),
    "worker_sigstop": (case_worker_sigstop, {"verbose_workers": True, "fleet": False}),
    "redis_restart": (case_redis_restart, {"aof": True}),
    "lost_replies": (case_lost_replies, {"fleet": False}),
    "dead_letters": (case_dead_letters, {"max_attempts": POISON_ATTEMPTS, "poison": True}),
    "netem": (case_netem, {"link": "netem"}),
    "link_cut": (case_link_cut, {"link": "cut"}),
}


# ---------------------------------------------------------------------------

def run_case(name, args):
    fn, opts = CASES[name]
    link = None
    if opts.get("link"):
        link = netns.Link(opts["link"][:3])
        try:
            link.setup()
            if opts["link"] == "netem":
                link.require_netem()
        except netns.Unavailable as why:
            link.teardown()
            print(f"case={name} skipped: {why}", flush=True)
            return "skipped"
    b = None
    try:
        b = Bench(name, args.count, args.rate, link=link,
                  **{k: v for k, v in opts.items() if k not in ("link", "fleet")})
        if opts.get("fleet", True):
            b.start_fleet()
        error = None
        try:
            fn(b)
        except Exception:  # noqa: BLE001 - still audit what happened
            error = traceback.format_exc()
        if link:
            link.clear()
            link.link(True)
        passed, line, verdict, problems, tickets = b.finish()
        if error:
            problems.append(f"the case itself failed:\n{error}")
            passed = False
        print(line, flush=True)
        path = b.save(args.out, line, verdict, problems, tickets,
                      args.keep_logs or not passed)
        if not passed:
            print(f"case={name} FAILED: {'; '.join(p.splitlines()[0] for p in problems)}"
                  f" (details: {path})", flush=True)
            for p in problems:
                sys.stderr.write(p + "\n")
        return "passed" if passed else "failed"
    except Exception:  # noqa: BLE001 - a broken bench is a failed case
        traceback.print_exc()
        print(f"case={name} FAILED: the bench broke (traceback above)", flush=True)
        if b is not None:
            b.tb.dump_logs()
        return "failed"
    finally:
        if b is not None:
            b.close()
        if link:
            link.teardown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=", ".join(CASES))
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_COUNT} tickets per case (CI)")
    parser.add_argument("--count", type=int, default=None,
                        help=f"tickets per case (default $FAULT_N or {DEFAULT_COUNT})")
    parser.add_argument("--rate", type=float, default=os.environ.get("FAULT_RATE"),
                        help=f"submits per second (default $FAULT_RATE, or {DEFAULT_RATE} but"
                             f" slow enough for the load to last {MIN_LOAD_S}s)")
    parser.add_argument("--out", default=os.environ.get("FAULT_OUT", "/tmp/tier-fault"),
                        help="where findings and logs go (default %(default)s)")
    parser.add_argument("--keep-logs", action="store_true", help="keep logs of passed cases too")
    args = parser.parse_args()
    if args.count is None:
        args.count = SMOKE_COUNT if args.smoke else int(os.environ.get("FAULT_N", DEFAULT_COUNT))
    if args.rate is None:
        args.rate = min(DEFAULT_RATE, args.count / MIN_LOAD_S)
    args.rate = float(args.rate)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]} (cases: {', '.join(CASES)})")
    os.makedirs(args.out, exist_ok=True)
    results = {name: run_case(name, args) for name in (args.cases or list(CASES))}
    ran = [r for r in results.values() if r != "skipped"]
    print("summary: " + " ".join(f"{n}={r}" for n, r in results.items()), flush=True)
    if not ran:
        return EXIT_SKIPPED
    return 0 if all(r == "passed" for r in ran) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
