"""bench — one fault case's world: a throwaway Redis, tierd with short
timeouts, a fleet of tier-worker processes running a tiny handler, the
load, and the audit at the end.

Workers: L1 agents resolve nine tickets in ten and escalate the tenth to L2
(so escalation is under fault too); L2 agents resolve everything, each
resolution preceded by one response to the customer (Respond). The
handler is a few lines of sh, so a worker's cost is one process per ticket.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402 - tests/harness.py, shared with the integration tests
from harness import check  # noqa: E402,F401

import audit  # noqa: E402
from load import Load  # noqa: E402

# Short timeouts make recovery fast: a silent worker is gone after
# liveness x heartbeat = 600 ms, its Redis lease after twice that, an
# unaccepted offer goes elsewhere after 1 s. max_attempts is high because
# every fault costs the tickets in flight an attempt; dead letters are
# still counted and requeued by the audit if they happen.
TIERD_CONFIG = """\
[workers]
heartbeat_ms = 200
liveness = 3
offer_timeout_ms = 1000
max_attempts = {max_attempts}
"""
MAX_ATTEMPTS = 50
HEARTBEAT_MS = 200
LIVENESS = 3
LEASE_S = 2 * LIVENESS * HEARTBEAT_MS / 1000   # tierd: LEASE_HEARTBEATS x liveness

# A poisoned handler cannot handle tickets whose id ends in 7 until the file
# named by $FIXED exists (the operator fixed it): it releases them.
POISON = """\
[ -e "$FIXED" ] || case "$TIER_TICKET_ID" in
  *7) cat >/dev/null; echo '{"action":"release","reason":"handler cannot read it"}'; exit 0 ;;
esac
"""
HANDLER = """\
cat >/dev/null
case "$TIER_LEVEL:$TIER_TICKET_ID" in
  L1:*0) echo '{"action":"escalate","level":"L2","reason":"fault suite: needs L2"}' ;;
  *) echo '{"action":"resolve","text":"fault suite: done","response":"on it"}' ;;
esac
"""
L1_WORKERS, L2_WORKERS = 4, 2
CAPACITY = 8
QUIET_TIMEOUT_S = 120        # after the load: until every queue is empty
GHOST_TIMEOUT_S = 10         # a dead agent must leave the agents list by then
WORKER_GRACE_S = "1"
STOP_TIMEOUT_S = 15          # SIGTERM to exit, for tierd and each worker


class Bench:
    def __init__(self, case, count, rate, aof=False, link=None, verbose_workers=False,
                 max_attempts=MAX_ATTEMPTS, poison=False):
        self.case = case
        self.count = count
        self.rate = rate
        self.link = link
        self.verbose_workers = verbose_workers
        self.started = time.monotonic()
        self.tb = harness.Testbed(f"fault-{case}")
        self.pb = self.tb.pb()
        self.redis = self.tb.start_redis(aof=aof)
        extra = ()
        if link:
            extra = ("--workers", f"tcp://{link.host_ip}:{harness.free_port()}")
        self.tierd = self.tb.start_tierd(config=TIERD_CONFIG.format(max_attempts=max_attempts),
                                         extra_args=extra)
        if link:
            self.tierd.workers = extra[1]
        self.fixed = self.tb.path("fixed")    # POISON: the handler works once this exists
        self.handler = self.tb.handler("work", f"FIXED={self.fixed}\n"
                                       + (POISON if poison else "") + HANDLER)
        self.workers = {}            # agent -> harness.Daemon (latest process)
        self.retired = set()         # agents whose process was killed for good
        self.random = random.Random(os.environ.get("FAULT_SEED", case))
        self.notes = {}              # extra key=value for the case line
        self.load = None
        self.after_quiet = None      # case check once the work is done: -> [problem]

    # -- workers
    def start_worker(self, agent, level, capacity=CAPACITY):
        argv = list(self.link.prefix()) if self.link else []
        argv += [harness.binary("tier-worker"), "--router", self.tierd.workers,
                 "--level", level, "--capacity", str(capacity), "--agent", agent,
                 "--grace", WORKER_GRACE_S]
        if self.verbose_workers:
            argv.append("--verbose")
        argv += ["--exec", self.handler]
        d = harness.Daemon(self.tb, f"worker-{agent}", argv)
        self.tb.daemons.append(d)
        self.workers[agent] = d
        return d

    def start_fleet(self):
        for i in range(L1_WORKERS):
            self.start_worker(f"L1-{i + 1}", "L1")
        for i in range(L2_WORKERS):
            self.start_worker(f"L2-{i + 1}", "L2")
        for agent in self.workers:
            self.tb.wait_agent(agent, timeout=20)

    def live_agents(self):
        return {a for a, d in self.workers.items() if d.alive() and a not in self.retired}

    def agents(self):
        """tierd's agents list: {agent: AgentInfo}."""
        reply = self.tb.client_call(self.pb.ClientRequest(agents=self.pb.AgentsRequest()),
                                    tierd=self.tierd)
        check(not reply.error.code, f"agents: {reply.error}")
        return {a.id: a for a in reply.agents.agents}

    def busy_worker(self, level=None, timeout=5):
        """A live worker that holds tickets right now (mid-ticket)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                busy = [a.id for a in self.agents().values()
                        if a.load > 0 and a.id in self.live_agents()
                        and (level is None or a.id.startswith(level))]
            except Exception:  # noqa: BLE001 - tierd may be restarting
                busy = []
            if busy:
                return self.random.choice(sorted(busy))
            time.sleep(0.05)
        return self.random.choice(sorted(self.live_agents()))

    # -- load
    def start_load(self, cancel_every=50):
        run = f"{self.case}-{os.getpid()}-{int(time.time())}"
        self.load = Load(self.pb, self.tierd.clients, self.count, self.rate, run,
                         cancel_every=cancel_every).start()
        return self.load

    def wait_acked(self, fraction, timeout=None):
        """Until this fraction of the load is acknowledged."""
        target = int(self.count * fraction)
        timeout = timeout or max(60, 4 * self.count / self.rate)

        self.wait(lambda: self.load.acked_count() >= target or self.load.done.is_set(),
                  timeout, f"{target} acknowledged submits", interval=0.01)

    def wait(self, predicate, timeout, what, interval=0.05):
        """harness.wait_until, but a tierd that died stops the wait at once."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_tierd()
            try:
                if predicate():
                    return
            except Exception:  # noqa: BLE001 - tierd restarting: try again
                pass
            if time.monotonic() >= deadline:
                raise harness.TestFailure(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def check_tierd(self):
        """TestFailure if tierd exited by itself (crash, sanitizer abort)."""
        if not self.tierd.alive():
            raise harness.TestFailure(f"tierd exited with {self.tierd.proc.returncode}: "
                                      f"{self.tierd.log()[-1500:]}")

    def _revive_tierd(self, problems):
        """A crashed tierd is a failure (added to problems); it is restarted
        anyway so that the audit can still say what the crash cost."""
        if not self.tierd.alive():
            problems.append(f"tierd crashed (exit {self.tierd.proc.returncode}): "
                            f"{self.tierd.log()[-1500:]}")
            self.tierd.restart()

    def load_running(self):
        return not self.load.done.is_set()

    # -- the end
    def _quiet(self):
        reply = self.tb.client_call(self.pb.ClientRequest(snapshot=self.pb.SnapshotRequest()),
                                    tierd=self.tierd)
        if reply.error.code:
            return False
        snap = reply.snapshot
        return all(not q.tickets for q in snap.queues) and all(a.load == 0 for a in snap.agents)

    def _redis_view(self):
        """(number of stored tickets, {external id: ticket id}) straight from Redis."""
        count = self.redis.cmd("EVAL", "return #redis.call('KEYS', ARGV[1])", 0, "tier:tk:*")
        flat = self.redis.cmd(
            "EVAL", "local o = {} for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
            "o[#o + 1] = k; o[#o + 1] = redis.call('GET', k) end return o", 0, "tier:x:*")
        return count, {flat[i][len("tier:x:"):]: flat[i + 1] for i in range(0, len(flat), 2)}

    def _requeue_dead(self, tickets):
        """Dead letters are parked, not finished: an operator requeues them
        (tierctl requeue, as the runbook says) and they must then end."""
        dead = [tid for tid, t in tickets.items()
                if t is not None and t.state == self.pb.STATE_DEAD]
        for tid in dead:
            self.tb.tierctl("requeue", tid, "--reason", "fault suite: operator requeue",
                            tierd=self.tierd)
        return dead

    def finish(self, timeout=None):
        """Wait for the load and the work to end, audit, and return
        (passed, line, verdict, problems, tickets)."""
        problems = []
        timeout = timeout or max(120, 3 * self.count / self.rate)
        self._revive_tierd(problems)
        if not self.load.wait(timeout):
            self.load.stop()
        self.phases = {"load_s": time.monotonic()}
        tickets, quiet = self._settle(problems)
        dead = self._requeue_dead(tickets)
        if dead:
            tickets, quiet = self._settle(problems)
        count, ext_map = self._redis_view()
        verdict = audit.judge(self.pb, self.load, tickets, count, ext_map)
        self.phases["audit_s"] = time.monotonic()
        problems += self.after_quiet() if self.after_quiet else []
        problems += self._end_problems(verdict, quiet)
        problems += self.shutdown()
        self.phases["total_s"] = time.monotonic()
        self.notes.setdefault("dead", len(dead))
        return not problems, self._line(verdict), verdict, problems, tickets

    def _settle(self, problems):
        """Until every queue is empty, then every acknowledged ticket as
        tierd has it. A tierd that crashed meanwhile is restarted (and the
        crash recorded) so that the audit still says what it cost."""
        quiet = self._wait_quiet()
        self._revive_tierd(problems)
        if not quiet:
            quiet = self._wait_quiet()
        return audit.fetch(self.pb, self.tierd.clients, list(self.load.acked.values())), quiet

    def _end_problems(self, verdict, quiet):
        problems = []
        ghosts, busy = self._agents_at_end()
        if not self.load.done.is_set() or len(self.load.acked) != self.count:
            problems.append(f"only {len(self.load.acked)} of {self.count} submits acknowledged")
        if self.load.failures:
            problems.append(f"unexpected answers: {self.load.failures[:3]}")
        if not quiet:
            problems.append("queues or agents never went idle")
        if ghosts:
            problems.append(f"dead agents still listed: {ghosts}")
        if busy:
            problems.append(f"agents still loaded: {busy}")
        if not verdict.ok():
            problems.append("audit failed")
        return problems

    def shutdown(self):
        """Stop workers and tierd the polite way (SIGTERM): each must exit 0.
        Under sanitizers this is also when leaks are reported."""
        daemons = [d for d in self.workers.values() if d.alive()] + [self.tierd]
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        problems = []
        for d in daemons:
            try:
                rc = d.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problems.append(f"{d.name} did not exit within {STOP_TIMEOUT_S}s of SIGTERM")
                continue
            if rc != 0:
                problems.append(f"{d.name} exited {rc} on SIGTERM: {d.log()[-1500:]}")
        return problems

    def _wait_quiet(self):
        try:
            self.wait(self._quiet, QUIET_TIMEOUT_S, "queues empty and agents idle", interval=0.5)
            return True
        except harness.TestFailure:
            return False

    def _agents_at_end(self):
        live = self.live_agents()
        ghosts = []
        deadline = time.monotonic() + GHOST_TIMEOUT_S
        while time.monotonic() < deadline:
            agents = self.agents()
            ghosts = sorted(a for a in agents if a not in live)
            if not ghosts:
                break
            time.sleep(0.2)
        busy = sorted(f"{a.id}={a.load}" for a in self.agents().values() if a.load)
        return ghosts, busy

    def _line(self, v):
        fields = [f"case={self.case}", f"acked={v.acked}", f"resolved={v.resolved}",
                  f"lost={len(v.lost)}", f"duplicated={len(v.duplicated)}",
                  f"abandoned={v.abandoned}", f"misapplied={len(v.misapplied)}",
                  f"responded_twice={len(v.responded_twice)}"]
        fields += [f"{k}={val}" for k, val in self.notes.items()]
        log = self.tierd.log()
        fields += [f"requeued={v.requeued}", f"max_attempt={v.max_attempt}",
                   f"agents_lost={log.count('silent for') + log.count('lease expired')}"]
        fields += [f"resends={self.load.resends}", f"unavailable={self.load.unavailable}",
                   *(f"{k}={t - self.started:.0f}" for k, t in self.phases.items())]
        return " ".join(fields)

    # -- evidence
    def save(self, out_dir, line, verdict, problems, tickets, keep_logs):
        """Write the case's findings (and with keep_logs, every log) to out_dir/case."""
        path = os.path.join(out_dir, self.case)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        examples = {}
        for tid, why in (verdict.lost + verdict.duplicated + verdict.responded_twice)[:20]:
            t = tickets.get(tid)
            examples[tid] = {"why": why, "history": [] if t is None else [
                {"at_ms": h.at_ms, "kind": self.pb.HistoryKind.Name(h.kind), "actor": h.actor,
                 "text": h.text, "reason": h.reason} for h in t.history]}
        report = {"line": line, "problems": problems, "lost": verdict.lost[:50],
                  "duplicated": verdict.duplicated[:50], "misapplied": verdict.misapplied[:50],
                  "cancel_broken": verdict.cancel_broken[:50],
                  "responded_twice": verdict.responded_twice[:50],
                  "created_twice": self.load.created_twice[:50], "examples": examples}
        with open(os.path.join(path, "report.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
        if keep_logs:
            for d in self.tb.daemons:
                if os.path.exists(d.log_path):
                    shutil.copy(d.log_path, path)
        return path

    def close(self):
        if self.load:
            self.load.stop()
        self.tb.close()

    # -- faults shared by cases
    def kill_worker(self, agent, sig=signal.SIGKILL):
        self.workers[agent].kill(sig, group=True)
