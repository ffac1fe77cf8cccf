"""harness — real processes for the tierd tests (Python 3 standard library only;
the raw-protocol helpers also import python3-zmq and the tier_pb2 module they
generate with protoc at test time).

Every test builds a Testbed, which owns everything the test starts: a private
redis-server on a free port in a temporary directory, tierd, tier-worker
processes, and the temporary files. Whatever happens in the test, the Testbed
kills every process it started (process groups, so handlers die too) and
removes its directory; when the test fails it prints the daemons' logs first.

    import harness
    def test(tb):
        tb.start_redis()
        tb.start_tierd()
        ok = tb.handler("ok", "cat >/dev/null; echo '{\"action\":\"resolve\",\"text\":\"ok\"}'\n")
        tb.start_worker("L1", exec_cmd=ok)
        tid = tb.tierctl("submit", "--subject", "hello")["id"]
        tb.wait_state(tid, "resolved", timeout=10)
    harness.main(test)

Binaries come from $TIER_BIN_DIR (the CMake build directory):
router/tierd, worker/tier-worker, client/tierctl.
"""

import atexit
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BIN_DIR = os.environ.get("TIER_BIN_DIR", "")
SOURCE_DIR = os.environ.get(
    "TIER_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STARTUP_TIMEOUT_S = 10       # a daemon that is not up after this is broken
TIERCTL_TIMEOUT_MS = 3000    # tierctl --timeout for ordinary requests
POLL_INTERVAL_S = 0.05       # wait_until's polling period
TEST_TIMEOUT_S = 55          # a test fails (with logs) before ctest's TIMEOUT kills it
PR_SET_PDEATHSIG = 1         # prctl option: signal the child when its parent dies

_handed_out_ports = set()


class TestFailure(AssertionError):
    """A behaviour the test protects did not hold."""


def check(condition, message):
    """assert that survives python -O and says what was expected."""
    if not condition:
        raise TestFailure(message)


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now.

    The kernel picks it; the harness never hands out the same port twice in
    one process, so the three endpoints of one tierd never collide."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out_ports:
            _handed_out_ports.add(port)
            return port


def wait_until(predicate, timeout, what="condition", interval=POLL_INTERVAL_S):
    """Poll predicate() until it returns a true value (returned) or time is up
    (TestFailure naming `what`). Exceptions inside predicate count as false
    until the deadline, then the last one is reported."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported at the deadline
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TestFailure(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def binary(name):
    """Path of a tierd binary under TIER_BIN_DIR."""
    rel = {"tierd": "router/tierd", "tier-worker": "worker/tier-worker",
           "tierctl": "client/tierctl"}[name]
    path = os.path.join(BIN_DIR, rel)
    check(BIN_DIR, "TIER_BIN_DIR is not set (ctest sets it to the build directory)")
    check(os.access(path, os.X_OK), f"{path} is missing: build it first")
    return path


# ---------------------------------------------------------------------------
# Processes

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """preexec_fn: SIGKILL this child if the test process dies without
    cleaning up (ctest kills a test that overruns its TIMEOUT with SIGKILL)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


class Daemon:
    """One child process in its own process group, output to a log file."""

    def __init__(self, tb, name, argv, env=None):
        self.tb = tb
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = os.path.join(tb.dir, f"{name}.log")
        self.proc = None
        self.start()

    def start(self):
        with open(self.log_path, "ab") as log:
            log.write(f"--- start: {shlex.join(self.argv)}\n".encode())
            log.flush()
            env = dict(os.environ, **(self.env or {}))
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self, sig=signal.SIGKILL, group=True, wait=True, timeout=15):
        """Send sig to the process (group=True: its whole process group, so
        handler children die too) and, with wait, reap it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                if group:
                    os.killpg(self.proc.pid, sig)
                else:
                    os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        if wait:
            return self.proc.wait(timeout=timeout)
        return None

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def reap_group(self):
        """Kill anything left in the process group (orphaned handlers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


class Redis(Daemon):
    """A throwaway redis-server: no persistence unless aof=True."""

    def __init__(self, tb, aof=False, unix_socket=False):
        self.port = free_port()
        self.data_dir = os.path.join(tb.dir, f"redis-{self.port}")
        os.makedirs(self.data_dir)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", self.data_dir, "--save", "",
                "--appendonly", "yes" if aof else "no", "--daemonize", "no"]
        # unix_socket: also listen on a Unix socket (a short path: sun_path
        # holds 108 bytes), self.socket_path.
        self.socket_path = None
        if unix_socket:
            socket_dir = tempfile.mkdtemp(prefix="tr-")
            atexit.register(shutil.rmtree, socket_dir, True)
            self.socket_path = os.path.join(socket_dir, "redis.sock")
            argv += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        super().__init__(tb, f"redis-{self.port}", argv)
        wait_until(lambda: self.cmd("PING") == "PONG", STARTUP_TIMEOUT_S, "redis PING")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cmd(self, *args):
        """Run one command over a fresh connection; bytes values come back as
        str when they decode as UTF-8 (DUMP payloads stay bytes)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(_resp_encode(args))
            return _resp_read(s.makefile("rb"))

    def get_bytes(self, key):
        """GET key as bytes, never decoded (stored tickets are protobuf)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(_resp_encode(("GET", key)))
            return _resp_read(s.makefile("rb"), raw=True)

    def cli(self, *args):
        """redis-cli -p PORT ARGS..., stdout as text."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                             capture_output=True, check=True, timeout=30)
        return out.stdout.decode()

    def keys(self):
        """Every key, sorted (redis-cli --scan | sort)."""
        return sorted(k for k in self.cli("--scan").splitlines() if k)

    def state(self, volatile_prefixes=()):
        """A comparable picture of the whole database: DBSIZE, the sorted key
        list and the DUMP of every key (values, not just names). Keys starting
        with one of volatile_prefixes count by name only: agent presence and
        lease timers change on every heartbeat."""
        keys = self.keys()
        dumps = {k: self.cmd("DUMP", k) for k in keys
                 if not k.startswith(tuple(volatile_prefixes))}
        return {"dbsize": self.cmd("DBSIZE"), "keys": keys, "dumps": dumps}


def _resp_encode(args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
    return b"".join(out)


def _resp_read(f, raw=False):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        if raw:
            return data
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RuntimeError(f"unexpected RESP line {line!r}")


class Tierd(Daemon):
    """tierd on three free ports. restart() keeps the ports and the Redis."""

    def __init__(self, tb, redis, extra_args=(), config=None, name="tierd", wait=True):
        self.redis = redis
        self.clients = f"tcp://127.0.0.1:{free_port()}"
        self.workers = f"tcp://127.0.0.1:{free_port()}"
        self.events = f"tcp://127.0.0.1:{free_port()}"
        # TIER_TIERD_WRAPPER: a command tierd runs under, e.g. valgrind
        # (tests/run-valgrind.sh).
        argv = shlex.split(os.environ.get("TIER_TIERD_WRAPPER", "")) + [binary("tierd")]
        if config is not None:
            path = os.path.join(tb.dir, f"{name}.conf")
            with open(path, "w") as f:
                f.write(config)
            argv += ["--config", path]
        argv += ["--redis", redis.url, "--clients", self.clients,
                 "--workers", self.workers, "--events", self.events, *extra_args]
        super().__init__(tb, name, argv)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=STARTUP_TIMEOUT_S):
        """Until tierd answers a queues request (it has loaded its state)."""
        def answers():
            check(self.alive(), f"tierd exited with {self.proc.returncode}")
            return self.tb.tierctl("queues", timeout_ms=500, expect_rc=None,
                                  tierd=self).returncode == 0
        wait_until(answers, timeout, "tierd to answer on " + self.clients)

    def restart(self, wait_ready=True):
        if self.alive():
            self.kill(signal.SIGKILL)
        self.start()
        if wait_ready:
            self.wait_ready()


class Worker(Daemon):
    def __init__(self, tb, tierd, level, departments=(), capacity=1, exec_cmd="",
                 agent=None, extra_args=()):
        self.agent = agent or f"{level}-w{len(tb.workers) + 1}"
        self.level = level
        argv = [binary("tier-worker"), "--router", tierd.workers, "--level", level,
                "--capacity", str(capacity), "--agent", self.agent]
        for d in departments:
            argv += ["--department", d]
        argv += [*extra_args, "--exec", exec_cmd]
        super().__init__(tb, f"worker-{self.agent}", argv)


class RawWorker:
    """A DEALER on the workers endpoint driven message by message, to test
    what tier-worker would never send (late results, garbage)."""

    def __init__(self, tb, tierd, agent, level, departments, capacity, channel_capacity=None):
        import zmq
        self.pb = tb.pb()
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(tierd.workers)
        tb.raw_sockets.append(self.sock)
        self.next_id = 1
        self.pushes = []      # Offers and Revokes received while waiting for replies
        reg = self.pb.Register(agent_id=agent, level=self.pb.Level.Value("LEVEL_" + level),
                               departments=list(departments), capacity=capacity)
        for channel, n in (channel_capacity or {}).items():
            reg.channel_capacity.add(channel=self.pb.Channel.Value("CHANNEL_" + channel.upper()),
                                     capacity=n)
        reply = self.call(register=reg)
        check(reply.WhichOneof("body") == "registered" and not reply.error.code,
              f"raw worker {agent} registered: {reply}")
        self.heartbeat_ms = reply.registered.heartbeat_ms

    def send(self, **body):
        """Send a WorkerMessage with the given body; returns its request_id."""
        rid = self.next_id
        self.next_id += 1
        msg = self.pb.WorkerMessage(request_id=rid, protocol_version=1, **body)
        self.sock.send(msg.SerializeToString())
        return rid

    def recv(self, timeout_ms):
        """The next RouterMessage, or None after timeout_ms."""
        if not self.sock.poll(timeout_ms):
            return None
        msg = self.pb.RouterMessage()
        msg.ParseFromString(self.sock.recv())
        return msg

    def call(self, timeout_ms=3000, **body):
        """Send and wait for the answer with the same request_id; pushes that
        arrive meanwhile are kept in self.pushes."""
        rid = self.send(**body)
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            msg = self.recv(max(1, int((deadline - time.monotonic()) * 1000)))
            if msg is None:
                break
            if msg.request_id == rid:
                return msg
            if msg.request_id == 0:
                self.pushes.append(msg)
        raise TestFailure(f"no answer to worker request {rid} ({list(body)}) in {timeout_ms} ms")

    def wait_push(self, kind, timeout_s=10):
        """The next push of kind "offer" or "revoke" (heartbeating meanwhile)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, msg in enumerate(self.pushes):
                if msg.WhichOneof("body") == kind:
                    return self.pushes.pop(i)
            msg = self.recv(200)
            if msg is not None and msg.request_id == 0:
                self.pushes.append(msg)
            elif msg is None:
                self.call(heartbeat=self.pb.Heartbeat())
        raise TestFailure(f"no {kind} pushed within {timeout_s}s")


class CtlResult:
    """What a tierctl run gave: returncode, stdout, stderr, json (parsed
    stdout, None when empty or not JSON)."""

    def __init__(self, argv, proc):
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode(errors="replace")
        self.stderr = proc.stderr.decode(errors="replace")
        try:
            self.json = json.loads(self.stdout) if self.stdout.strip() else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return (f"tierctl {shlex.join(self.argv[1:])} -> rc {self.returncode}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}")


# ---------------------------------------------------------------------------
# The testbed

class Testbed:
    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"tier-{name}-")
        self.daemons = []
        self.workers = []
        self.redis = None
        self.tierd = None
        self._pb = None
        self.raw_sockets = []
        self._closed = False
        atexit.register(self.close)

    # -- fixtures
    def start_redis(self, aof=False, unix_socket=False):
        r = Redis(self, aof=aof, unix_socket=unix_socket)
        self.daemons.append(r)
        self.redis = self.redis or r
        return r

    def start_tierd(self, redis=None, extra_args=(), config=None, name="tierd", wait=True):
        """tierd on free ports; wait=False: do not wait until it answers (a
        standby does not)."""
        redis = redis or self.redis or self.start_redis()
        t = Tierd(self, redis, extra_args, config, name, wait)
        self.daemons.append(t)
        self.tierd = self.tierd or t
        return t

    def start_worker(self, level, departments=(), capacity=1, exec_cmd="", agent=None,
                     tierd=None, extra_args=()):
        w = Worker(self, tierd or self.tierd, level, departments, capacity, exec_cmd,
                   agent, extra_args)
        self.daemons.append(w)
        self.workers.append(w)
        return w

    def wait_agent(self, agent, timeout=10, state="ready"):
        """Until tierd lists the agent (in the given state)."""
        def listed():
            for a in self.tierctl("agents", timeout_ms=1000)["agents"]:
                if a["id"] == agent and (state is None or a["state"] == state):
                    return a
            return None
        return wait_until(listed, timeout, f"agent {agent} to be {state or 'listed'}")

    def handler(self, name, script, lang="sh"):
        """Write a handler script into the testbed directory and return the
        --exec command that runs it. lang "sh" or "py" (run by /usr/bin/python3)."""
        path = os.path.join(self.dir, f"handler-{name}.{lang}")
        with open(path, "w") as f:
            if lang == "sh":
                f.write("#!/bin/sh\n" + script)
            else:
                f.write("#!/usr/bin/python3\n" + script)
        os.chmod(path, 0o755)
        return shlex.quote(path)

    def path(self, name):
        return os.path.join(self.dir, name)

    # -- tierctl
    def tierctl(self, *args, expect_rc=0, timeout_ms=TIERCTL_TIMEOUT_MS, tierd=None,
                json_out=True):
        """Run `tierctl --router R --events E --timeout T --json ARGS`.

        expect_rc=0 (default): check the exit code is 0 and return the parsed
        JSON. expect_rc=N: check the exit code is N and return the CtlResult.
        expect_rc=None: return the CtlResult whatever the exit code."""
        tierd = tierd or self.tierd
        argv = [binary("tierctl"), "--router", tierd.clients, "--events", tierd.events,
                "--timeout", str(timeout_ms)]
        if json_out:
            argv.append("--json")
        argv += [str(a) for a in args]
        proc = subprocess.run(argv, capture_output=True, timeout=timeout_ms / 1000 + 30)
        res = CtlResult(argv, proc)
        if expect_rc is None:
            return res
        check(res.returncode == expect_rc, f"expected exit {expect_rc}: {res!r}")
        if expect_rc == 0 and json_out:
            check(res.json is not None, f"tierctl printed no JSON: {res!r}")
            return res.json
        return res

    def show(self, tid):
        return self.tierctl("show", tid)

    def state_of(self, tid):
        return self.show(tid)["state"]

    def wait_state(self, tid, state, timeout=20):
        def reached():
            t = self.show(tid)
            return t if t["state"] == state else None
        return wait_until(reached, timeout, f"ticket {tid} to be {state}")

    def queue_depth(self, level="L1", department=""):
        for q in self.tierctl("queues")["queues"]:
            if q["level"] == level and q["department"] == department:
                return q["depth"]
        raise TestFailure(f"queue {level}/{department!r} not listed by tierctl queues")

    def cold_count(self, queue="1:", channel=1, prefix="tier:"):
        """Tickets of a queue's channel that wait in Redis only: the members
        of P q:NAME:C beyond the window's upto in P qw (docs/data-model.md)."""
        upto = self.redis.cmd("HGET", f"{prefix}qw", f"{queue}:{channel}")
        if upto is None:
            return 0
        return int(self.redis.cmd("ZCOUNT", f"{prefix}q:{queue}:{channel}", f"({upto}", "+inf"))

    # -- raw protocol (python protobuf generated at test time)
    def pb(self):
        """The tier_pb2 module, generated now by protoc from proto/tier.proto
        into the testbed directory (never committed); store_pb2 (how tierd
        stores a ticket, proto/store.proto) beside it."""
        if self._pb is None:
            out = os.path.join(self.dir, "pb")
            os.makedirs(out)
            proto_dir = os.path.join(SOURCE_DIR, "proto")
            subprocess.run(["protoc", f"--python_out={out}", "-I", proto_dir,
                            os.path.join(proto_dir, "tier.proto"),
                            os.path.join(proto_dir, "store.proto")], check=True)
            sys.path.insert(0, out)
            import tier_pb2  # noqa: E402 - generated just above
            self._pb = tier_pb2
        return self._pb

    def stored(self, tid, prefix="tier:"):
        """Ticket tid as Redis holds it (tier.store.StoredTicket: the fields
        as they are now and the whole history), or None if it has no key."""
        self.pb()
        import store_pb2  # noqa: E402 - generated by pb()
        raw = self.redis.get_bytes(f"{prefix}tk:{tid}")
        if raw is None:
            return None
        ticket = store_pb2.StoredTicket()
        ticket.ParseFromString(raw)
        return ticket

    def raw_request(self, endpoint, payload, timeout_ms=3000):
        """Send one frame on a fresh DEALER and return the one-frame answer
        (bytes), or None when nothing arrives within timeout_ms."""
        import zmq
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
            sock.send(payload)
            if sock.poll(timeout_ms):
                frames = sock.recv_multipart()
                check(len(frames) == 1, f"expected one frame, got {len(frames)}")
                return frames[0]
            return None
        finally:
            sock.close()

    def client_call(self, request, timeout_ms=3000, tierd=None):
        """Send a ClientRequest (protocol_version 1 is set) and return the
        decoded ClientReply."""
        pb = self.pb()
        if not request.protocol_version:
            request.protocol_version = 1
        raw = self.raw_request((tierd or self.tierd).clients, request.SerializeToString(),
                               timeout_ms)
        check(raw is not None, "tierd did not answer a ClientRequest")
        reply = pb.ClientReply()
        reply.ParseFromString(raw)
        return reply

    def submit_many(self, count, channel="chat", subject="ticket", level="L1", in_flight=100,
                    timeout_s=60):
        """Submit `count` tickets over one DEALER, up to in_flight requests
        at a time (thousands go in within seconds). Returns their ids, in
        the order of the submits."""
        import zmq
        pb = self.pb()
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.tierd.clients)
        ids = [None] * count
        sent = answered = 0
        deadline = time.monotonic() + timeout_s
        try:
            while answered < count:
                while sent < count and sent - answered < in_flight:
                    ticket = pb.Ticket(subject=f"{subject} {sent}",
                                       channel=pb.Channel.Value("CHANNEL_" + channel.upper()),
                                       level=pb.Level.Value("LEVEL_" + level))
                    sock.send(pb.ClientRequest(request_id=sent + 1, protocol_version=1,
                                               submit=pb.SubmitRequest(ticket=ticket))
                              .SerializeToString())
                    sent += 1
                check(time.monotonic() < deadline and sock.poll(5000),
                      f"tierd answered {answered} of {count} submits")
                reply = pb.ClientReply()
                reply.ParseFromString(sock.recv())
                check(not reply.error.code and reply.submitted.id,
                      f"submit {reply.request_id} acknowledged: {reply}")
                ids[reply.request_id - 1] = reply.submitted.id
                answered += 1
        finally:
            sock.close()
        return ids

    def error_name(self, error):
        return self.pb().ErrorCode.Name(error.code)

    def raw_worker(self, agent, level="L1", departments=(), capacity=1, tierd=None,
                   channel_capacity=None):
        """A worker speaking the wire protocol from Python (registered);
        channel_capacity: {"chat": 1, ...}."""
        return RawWorker(self, tierd or self.tierd, agent, level, departments, capacity,
                         channel_capacity)

    # -- teardown
    def dump_logs(self):
        for d in self.daemons:
            sys.stderr.write(f"\n===== log of {d.name} ({d.log_path}) =====\n{d.log()}")
        sys.stderr.flush()

    def close(self):
        if self._closed:
            return
        self._closed = True
        for sock in self.raw_sockets:
            sock.close()
        for d in reversed(self.daemons):
            d.reap_group()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(test, name=None, timeout_s=TEST_TIMEOUT_S):
    """Run test(tb) with a fresh Testbed; exit 0 on success, 1 on failure
    (after printing the traceback and every daemon's log). A test still
    running after timeout_s fails the same way."""
    name = name or os.path.splitext(os.path.basename(sys.argv[0]))[0]
    tb = Testbed(name)

    def on_alarm(_signum, _frame):
        raise TestFailure(f"{name} did not finish within {timeout_s}s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout_s)

    def on_signal(signum, _frame):
        # ctest's TIMEOUT sends SIGTERM: still clean up and show the logs
        sys.stderr.write(f"{name}: killed by signal {signum}\n")
        tb.dump_logs()
        tb.close()
        os._exit(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    try:
        test(tb)
        signal.alarm(0)
    except BaseException:  # noqa: BLE001 - any failure: logs, then exit 1
        signal.alarm(0)
        traceback.print_exc()
        tb.dump_logs()
        tb.close()
        sys.exit(1)
    tb.close()
    print(f"{name}: ok ({time.monotonic() - started:.1f}s)")
    sys.exit(0)


# Keys tierd rewrites on every worker heartbeat (docs/data-model.md): agent
# hashes, the agents index and the timers (agent leases) zset.
HEARTBEAT_KEYS = ("tier:a:", "tier:agents", "tier:timers")


def assert_redis_unchanged(tb, what, action, volatile=()):
    """Run action() and check Redis is exactly as before (see Redis.state).
    Returns what action() returned."""
    before = tb.redis.state(volatile)
    result = action()
    time.sleep(0.2)  # anything tierd would write late shows up too
    after = tb.redis.state(volatile)
    if before != after:
        added = sorted(set(after["keys"]) - set(before["keys"]))
        removed = sorted(set(before["keys"]) - set(after["keys"]))
        changed = sorted(k for k in after["dumps"]
                         if k in before["dumps"] and before["dumps"][k] != after["dumps"][k])
        raise TestFailure(f"{what} changed Redis: dbsize {before['dbsize']} -> "
                          f"{after['dbsize']}, added {added}, removed {removed}, "
                          f"changed {changed}")
    return result


def assert_daemon_works(tb):
    """tierd still answers and still takes a ticket (run after the Redis
    comparison: this writes)."""
    check(tb.tierd.alive(), "tierd is still running")
    tid = tb.tierctl("submit", "--subject", "still alive?")["id"]
    check(tb.show(tid)["subject"] == "still alive?", "tierd stores and returns tickets")
    return tid


def history_of(ticket, kind):
    """The ticket's history entries of one kind ("escalated", ...)."""
    return [h for h in ticket["history"] if h["kind"] == kind]
