#!/usr/bin/env bash
# run.sh — the tierd benchmark, beside BullMQ, in one run (issue 3).
#
#   tests/bench/run.sh [--smoke] [--no-bullmq] [--no-scale] [--runs K]
#                      [--bin-dir DIR] [--profile DIR] [--keep]
#
# Every measurement gets its own redis-server (free port, temp dir,
# appendonly yes, appendfsync everysec) and its own tierd; workers are
# tier_bench worker processes using the tierworker library. Then
# ../shared/bench/bullmq-baseline.sh runs against a Redis started the same
# way, and the summary prints medians of K runs side by side with ratios.
#
#   --smoke      seconds, for CI: N=2000, paced 1 s, one run, no BullMQ, no
#                scale/restart; fails unless every ticket was resolved and
#                every figure was printed
#   --no-bullmq  skip the baseline (it needs node and the npm registry)
#   --no-scale   skip the 1,000-agent and 1,000,000-ticket measurements
#   --runs K     runs of each timed measurement (3; medians are reported)
#   --bin-dir D  the CMake build directory (default: build-bench beside tests/)
#   --profile D  instead: one throughput run under perf record (tierd and
#                redis-server); reports go to D
#   --only LIST  only these, comma-separated: throughput, paced, memory,
#                scale, restart, bullmq (e.g. --only scale,restart)
#   --keep       keep the temp dir (logs, AOF files) and say where it is
# Environment: N (50000), RATE (1000), WORKERS (4), CAPACITY (25),
#   FILL_N (20000), SCALE_AGENTS (1000), SCALE_QUEUED (100000),
#   RESTART_QUEUED (1000000), BULLMQ_CACHE (see bullmq-baseline.sh),
#   REDIS_UNIX (0; 1: tierd reaches Redis over a Unix socket, BullMQ still
#   over TCP: a side measurement, not the comparison), ZMQ_IPC (0; 1: tierd's
#   three endpoints are ipc:// sockets: the same kind of side measurement).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
baseline="$root/../shared/bench/bullmq-baseline.sh"

smoke=0 bullmq=1 scale=1 runs=3 keep=0 profile="" only=""
bin_dir="$root/build-bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --no-bullmq) bullmq=0 ;;
    --no-scale) scale=0 ;;
    --runs) runs=$2; shift ;;
    --bin-dir) bin_dir=$2; shift ;;
    --profile) profile=$2; shift ;;
    --only) only=",$2,"; shift ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

N=${N:-50000} RATE=${RATE:-1000} WORKERS=${WORKERS:-4} CAPACITY=${CAPACITY:-25}
FILL_N=${FILL_N:-20000} SCALE_AGENTS=${SCALE_AGENTS:-1000}
SCALE_QUEUED=${SCALE_QUEUED:-100000} RESTART_QUEUED=${RESTART_QUEUED:-1000000}
PACED_SECONDS=5
if [ $smoke = 1 ]; then
  N=2000 FILL_N=2000 PACED_SECONDS=1 runs=1 bullmq=0 scale=0
fi

tierd="$bin_dir/router/tierd"
tierctl="$bin_dir/client/tierctl"
bench="$bin_dir/tests/bench/tier_bench"
for bin in "$tierd" "$tierctl" "$bench"; do
  [ -x "$bin" ] || { echo "run.sh: $bin is missing: build first (cmake --build $bin_dir)" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "run.sh: redis-server is not installed" >&2; exit 2; }

tmp=$(mktemp -d /tmp/tier-bench.XXXXXX)
results="$tmp/results.txt"
: >"$results"
pids=()
failures=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ $keep = 1 ]; then echo "run.sh: logs and data kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$*" | tee -a "$results"; }
note() { echo "run.sh: $*" >&2; }

# A TCP port on 127.0.0.1 nobody listens on now, never the same one twice.
used_ports=" "
free_port() {   # free_port VAR
  local port
  while :; do
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    case "$used_ports" in *" $port "*) continue ;; esac
    used_ports="$used_ports$port "
    printf -v "$1" '%s' "$port"  # not echoed: $(...) would forget used_ports
    return
  done
}

stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# start_redis: REDIS_PORT, REDIS_PID, REDIS_URL (tierd's) — durability as
# tierd's defaults. REDIS_UNIX=1: tierd talks to it over a Unix socket (the
# tools still use the port); round trips are then not counted.
start_redis() {
  free_port REDIS_PORT
  local dir="$tmp/redis-$REDIS_PORT"
  mkdir -p "$dir"
  local unix=()
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  if [ "${REDIS_UNIX:-0}" = 1 ]; then
    unix=(--unixsocket "$dir/redis.sock" --unixsocketperm 700)
    REDIS_URL="unix://$dir/redis.sock"
  fi
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --save '' \
    --appendonly yes --appendfsync everysec --daemonize no "${unix[@]}" >"$dir/log" 2>&1 &
  REDIS_PID=$!
  pids+=("$REDIS_PID")
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  note "redis-server on port $REDIS_PORT did not start:"; cat "$dir/log" >&2; exit 1
}

# start_tierd: TIERD_PID, TIERD_ARGS, ENDPOINTS (tier_bench flags), TIERD_LOG.
start_tierd() {
  local p1 p2 p3
  free_port p1; free_port p2; free_port p3
  local clients="tcp://127.0.0.1:$p1" workers="tcp://127.0.0.1:$p2"
  local events="tcp://127.0.0.1:$p3"
  if [ "${ZMQ_IPC:-0}" = 1 ]; then
    clients="ipc://$tmp/c-$p1" workers="ipc://$tmp/w-$p2" events="ipc://$tmp/e-$p3"
  fi
  TIERD_ARGS=("$tierd" --redis "$REDIS_URL" --clients "$clients"
              --workers "$workers" --events "$events")
  # Several tierds run one after the other: none needs the metrics port.
  if "$tierd" --help 2>&1 | grep -q -- --metrics; then TIERD_ARGS+=(--metrics off); fi
  ENDPOINTS=(--clients "$clients" --workers "$workers" --events "$events"
             --redis-port "$REDIS_PORT")
  TIERD_CLIENTS=$clients
  TIERD_LOG="$tmp/tierd-$REDIS_PORT.log"
  launch_tierd
}

launch_tierd() {
  "${TIERD_ARGS[@]}" >>"$TIERD_LOG" 2>&1 &
  TIERD_PID=$!
  pids+=("$TIERD_PID")
  for _ in $(seq 100); do
    "$tierctl" --router "$TIERD_CLIENTS" --timeout 200 queues >/dev/null 2>&1 && return 0
    kill -0 "$TIERD_PID" 2>/dev/null || break
  done
  note "tierd did not answer on $TIERD_CLIENTS:"; tail -20 "$TIERD_LOG" >&2; exit 1
}

stop_stack() {
  stop "$TIERD_PID"
  stop "$REDIS_PID"
}

# bench NAME ARGS...: tier_bench with this stack's endpoints; its figures go
# to the results, its stderr to a log shown on failure.
bench() {
  local name=$1; shift
  local err="$tmp/$name.err" pid
  # In the background so that a signal to run.sh is handled at once (bash
  # runs traps only between commands); the trap then ends tier_bench, whose
  # workers and tierd die with it.
  "$bench" "$@" >"$tmp/$name.out" 2>"$err" &
  pid=$!
  pids+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  sed "s/^/[$name] /" "$tmp/$name.out" >>"$results"
  cat "$tmp/$name.out"
  if [ $rc != 0 ]; then
    # A failed measurement is a finding, not the end of the run: say what
    # happened, keep going, and exit non-zero at the end.
    failures+=("$name")
    say "FAILED $name: $(tail -1 "$err")"
    note "tier_bench $name failed (exit $rc):"; cat "$err" >&2
    note "tierd log (last lines):"; tail -8 "$TIERD_LOG" >&2
  fi
  return 0
}

# Round trips: tierd's write() calls on its Redis socket, counted by the
# kernel's syscall tracepoint (one write per pipelined batch; reads may be
# several per batch). Needs perf with tracepoint access; else skipped.
perf_ok=0
if [ $smoke = 0 ] && command -v perf >/dev/null &&
   perf stat -e syscalls:sys_enter_write true >/dev/null 2>&1; then
  perf_ok=1
fi

redis_fd_of_tierd() {
  ss -Htnp "dport = :$REDIS_PORT" 2>/dev/null |
    grep -o "pid=$TIERD_PID,fd=[0-9]*" | head -1 | sed 's/.*fd=//'
}

count_start() {
  COUNT_PID=""
  [ $perf_ok = 1 ] && [ "${REDIS_UNIX:-0}" != 1 ] || return 0
  local fd; fd=$(redis_fd_of_tierd)
  [ -n "$fd" ] || { note "cannot find tierd's Redis socket; round trips not counted"; return 0; }
  perf stat -x, -o "$tmp/syscalls.csv" -p "$TIERD_PID" \
    -e syscalls:sys_enter_write --filter "fd == $fd" \
    -e syscalls:sys_enter_read --filter "fd == $fd" 2>/dev/null &
  COUNT_PID=$!
  pids+=("$COUNT_PID")
  sleep 0.3
}

count_stop() {   # count_stop LIFECYCLES [MODE]
  [ -n "$COUNT_PID" ] || return 0
  kill -INT "$COUNT_PID" 2>/dev/null || true
  wait "$COUNT_PID" 2>/dev/null || true
  local writes reads
  writes=$(awk -F, '/sys_enter_write/ {print $1}' "$tmp/syscalls.csv")
  reads=$(awk -F, '/sys_enter_read/ {print $1}' "$tmp/syscalls.csv")
  [ -n "$writes" ] || return 0
  say "tierd roundtrips ${2:-throughput} writes=$writes reads=$reads round_trips_per_lifecycle=$(
    python3 -c "print('%.3f' % ($writes / $1))")"
}

# ---------------------------------------------------------------------------
# Measurements

# CPU time (user + system, seconds) a process has used so far.
cpu_seconds() {
  awk -v tck="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / tck}' "/proc/$1/stat"
}

throughput() {   # throughput RUN
  start_redis; start_tierd
  count_start
  local tierd_cpu redis_cpu
  tierd_cpu=$(cpu_seconds "$TIERD_PID") redis_cpu=$(cpu_seconds "$REDIS_PID")
  bench "throughput-$1" throughput "${ENDPOINTS[@]}" --tierd-pid "$TIERD_PID" \
    -n "$N" --procs "$WORKERS" --capacity "$CAPACITY"
  # CPU per lifecycle does not depend on what else runs on the machine.
  say "tierd cpu throughput tierd_us_per_lifecycle=$(python3 -c "print('%.0f' % (
    ($(cpu_seconds "$TIERD_PID") - $tierd_cpu) * 1e6 / $N))") redis_us_per_lifecycle=$(
    python3 -c "print('%.0f' % (($(cpu_seconds "$REDIS_PID") - $redis_cpu) * 1e6 / $N))")"
  count_stop "$N" throughput
  stop_stack
}

paced() {   # paced RUN
  start_redis; start_tierd
  count_start
  bench "paced-$1" paced "${ENDPOINTS[@]}" --tierd-pid "$TIERD_PID" \
    --rate "$RATE" --seconds "$PACED_SECONDS" --procs "$WORKERS" --capacity "$CAPACITY"
  count_stop $((RATE * PACED_SECONDS)) paced
  stop_stack
}

memory() {
  start_redis; start_tierd
  bench memory fill "${ENDPOINTS[@]}" --tierd-pid "$TIERD_PID" -n "$FILL_N" --ticket-bytes 200
  stop_stack
}

scale_run() {
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  start_redis; start_tierd
  bench scale scale "${ENDPOINTS[@]}" --tierd-pid "$TIERD_PID" --agents "$SCALE_AGENTS" \
    --queued "$SCALE_QUEUED" --procs "$WORKERS"
  stop_stack
}

restart_run() {
  start_redis; start_tierd
  note "queueing $RESTART_QUEUED tickets for the restart measurement (takes a while)"
  bench restart-fill fill "${ENDPOINTS[@]}" --tierd-pid "$TIERD_PID" -n "$RESTART_QUEUED" \
    --ticket-bytes 200
  stop "$TIERD_PID"
  # A rewrite of a multi-GB AOF forks Redis and slows it for seconds: that
  # is Redis housekeeping, not a restart of tierd. Measure once it is over.
  for _ in $(seq 600); do
    redis-cli -p "$REDIS_PORT" info persistence | grep -q '^aof_rewrite_in_progress:1' || break
    sleep 1
  done
  for run in $(seq "$runs"); do
    bench "restart-$run" restart "${ENDPOINTS[@]}" --queued "$RESTART_QUEUED" -- "${TIERD_ARGS[@]}"
  done
  stop "$REDIS_PID"
}

# Commands Redis executed so far (commandstats, INFO itself left out).
redis_calls() {
  redis-cli -p "$REDIS_PORT" info commandstats |
    awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" {sum += $3} END {print sum + 0}'
}

bullmq_run() {   # bullmq_run RUN
  start_redis
  local out="$tmp/bullmq-$1.out" calls cpu jobs=$((N + 5 * RATE))
  calls=$(redis_calls) cpu=$(cpu_seconds "$REDIS_PID")
  # Judged by its output: with REDIS_PORT set, the baseline script's EXIT
  # trap ends on a false test and makes its exit status 1 after a good run.
  REDIS_PORT=$REDIS_PORT bash "$baseline" "$N" "$RATE" >"$out" 2>"$tmp/bullmq-$1.err" || true
  if grep -q '^bullmq throughput' "$out" && grep -q '^bullmq paced' "$out"; then
    # Both phases together (the script runs them back to back): N + 5 * RATE jobs.
    echo "bullmq redis commands_per_job=$(python3 -c "print('%.2f' % (($(redis_calls) - $calls) / $jobs))") redis_us_per_job=$(python3 -c "print('%.0f' % (($(cpu_seconds "$REDIS_PID") - $cpu) * 1e6 / $jobs))")" >>"$out"
    sed "s/^/[bullmq-$1] /" "$out" >>"$results"
    cat "$out"
  else
    note "BullMQ baseline failed (node, npm and the npm registry are needed):"
    cat "$tmp/bullmq-$1.err" >&2
    bullmq=0
  fi
  stop "$REDIS_PID"
}

profile_run() {
  mkdir -p "$profile"
  start_redis; start_tierd
  perf record -q --call-graph dwarf,16384 -o "$profile/tierd.perf" -p "$TIERD_PID" >/dev/null 2>&1 &
  local p1=$!
  perf record -q -g -o "$profile/redis.perf" -p "$REDIS_PID" >/dev/null 2>&1 &
  local p2=$!
  sleep 0.3
  bench profile throughput "${ENDPOINTS[@]}" --tierd-pid "$TIERD_PID" -n "$N" \
    --procs "$WORKERS" --capacity "$CAPACITY"
  kill -INT "$p1" "$p2"; wait "$p1" "$p2" 2>/dev/null || true
  for who in tierd redis; do
    perf report -i "$profile/$who.perf" --stdio --no-children --sort dso,sym -g none \
      2>/dev/null | grep -v '^#' | grep '%' | head -40 >"$profile/$who.top.txt" || true
    note "profile of $who: $profile/$who.top.txt"
  done
  stop_stack
}

# ---------------------------------------------------------------------------
# Summary: medians of every figure, side by side, and the ratios.

summary() {
  python3 - "$results" "$runs" <<'EOF'
import re, statistics, sys
path, runs = sys.argv[1], sys.argv[2]
groups = {}
for line in open(path):
    m = re.match(r'(?:\[[^\]]*\] )?(\w+ \w+(?: \w+)?) ((?:\S+=\S+ ?)+)$', line.strip())
    if not m:
        continue
    words = m.group(1).split()
    head = ' '.join(w for w in words if '=' not in w)
    fields = dict(kv.split('=', 1) for kv in m.group(2).split())
    # Figures of different sizes (a 20,000 and a 1,000,000 fill) stay apart.
    key = head + ''.join(' %s=%s' % (k, fields[k]) for k in ('n', 'queued') if k in fields)
    for k, v in fields.items():
        try:
            groups.setdefault(key, {}).setdefault(k, []).append(float(v))
        except ValueError:
            pass
def fmt(x):   # 1000000, not 1e+06
    return str(int(x)) if x == int(x) else '%.6g' % x
def med(head, field):   # the first group whose key is head, or head plus n=/queued=
    for key, fields in groups.items():
        if (key == head or key.startswith(head + ' ')) and fields.get(field):
            return statistics.median(fields[field])
    return None
print("== summary: medians of %s run(s) of each timed measurement ==" % runs)
for key, fields in groups.items():
    print("%-26s %s" % (key, ' '.join('%s=%s' % (k, fmt(statistics.median(v))) for k, v in fields.items())))
t, b = med('tierd throughput', 'lifecycles_per_s'), med('bullmq throughput', 'jobs_per_s')
if t and b:
    print("ratio throughput tierd/bullmq=%.2f (target >= 3)" % (t / b))
for p in ('p50_ms', 'p99_ms'):
    tp, bp = med('tierd paced', p), med('bullmq paced', p)
    if tp and bp:
        print("ratio paced %s bullmq/tierd=%.2f (tierd %.3f ms, bullmq %.3f ms)" % (p, bp / tp, tp, bp))
EOF
}

# ---------------------------------------------------------------------------

if [ -n "$profile" ]; then
  profile_run
  exit 0
fi

wanted() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }

if wanted throughput; then for run in $(seq "$runs"); do throughput "$run"; done; fi
if wanted paced; then for run in $(seq "$runs"); do paced "$run"; done; fi
if wanted memory; then memory; fi
if [ $scale = 1 ] && wanted scale; then scale_run; fi
if [ $scale = 1 ] && wanted restart; then restart_run; fi
if [ $bullmq = 1 ] && wanted bullmq; then
  [ -x "$baseline" ] || [ -f "$baseline" ] || { note "no $baseline: BullMQ skipped"; bullmq=0; }
  for run in $(seq "$runs"); do [ $bullmq = 1 ] && bullmq_run "$run"; done
fi
echo
{ summary; grep '^FAILED' "$results" || true; } | tee "$tmp/summary.txt"

if [ ${#failures[@]} -gt 0 ]; then
  note "failed: ${failures[*]} (see FAILED lines above)"
  exit 1
fi
if [ $smoke = 1 ]; then
  # The smoke test proves the run completed, not the targets.
  for want in "tierd throughput n=$N" "tierd redis commands_per_lifecycle=" \
              "tierd rss throughput rss_mb=" "tierd paced rate=$RATE" \
              "tierd memory n=$FILL_N" "tierd check submitted=$N acknowledged=$N resolved=$N "; do
    grep -q "$want" "$results" || { note "smoke: missing \"$want\" in the output"; exit 1; }
  done
  note "smoke: every ticket resolved, every figure printed"
fi
