#!/bin/bash
# demo.sh — the main job: install, build, and watch tickets flow L1 -> L2 -> L3.
#
#   sudo tests/demo.sh        (or as root without sudo; as a normal user when
#                              the packages are installed already)
#
# Starts a private redis-server on a free port (unless TIER_REDIS=redis://HOST:PORT
# names one; tierd then uses its own key prefix there), tierd on three free
# ports, and one tier-worker per level running the handlers in tests/demo/:
#   L1  resolves simple questions, escalates crashes and outages to L2
#   L2  (also serves department billing) escalates outages to L3, invoice
#       problems to billing, resolves billing tickets and the rest
#   L3  resolves
# Then submits a few tickets, prints the event stream (`tierctl watch`) as they
# move, shows one ticket's full history, and stops everything it started.
# DEMO_DELAY (seconds, default 1) is how long each handler "works".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${TIER_BUILD_DIR:-$root/build}
demo_timeout_s=90

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# --- install and build ------------------------------------------------------
say "installing dependencies (if missing) and building into $build"
"$root/tests/install-deps.sh"
cmake -S "$root" -B "$build" -DTIER_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
tierd=$build/router/tierd
worker=$build/worker/tier-worker
tierctl=$build/client/tierctl

# --- everything started here is stopped on exit -----------------------------
work=$(mktemp -d /tmp/tierd-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    echo "demo failed (exit $rc); logs:" >&2
    tail -n 30 "$work"/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# free_port VAR: a TCP port on 127.0.0.1 that nothing listens on and that we
# have not handed out, into VAR (not echoed: a command substitution would run
# in a subshell and forget the ports handed out).
used_ports=" "
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    case "$used_ports" in *" $port "*) continue ;; esac
    if [ -z "$(ss -Htln "sport = :$port")" ]; then
      used_ports+="$port "
      printf -v "$1" '%s' "$port"
      return
    fi
  done
}

wait_for() { # wait_for SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "demo: $what did not come up in time" >&2
      return 1
    fi
    sleep 0.1
  done
}

# --- Redis -------------------------------------------------------------------
config=$work/tierd.conf
: >"$config"
if [ -n "${TIER_REDIS:-}" ]; then
  redis_url=$TIER_REDIS
  # A shared Redis: keep the demo's keys apart from anything else there.
  printf '[redis]\nprefix = tierdemo:%s:\n' "$$" >"$config"
  say "using Redis $redis_url (key prefix tierdemo:$$:)"
else
  free_port redis_port
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
    --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
  pids+=($!)
  redis_url=redis://127.0.0.1:$redis_port
  wait_for 10 "redis-server" redis-cli -p "$redis_port" ping
  say "private redis-server on port $redis_port"
fi

# --- tierd and the workers ---------------------------------------------------
ctl() { "$tierctl" --router "$clients" --events "$events" "$@"; }
# A port found free can be taken by another program before tierd binds it
# (a busy machine): then tierd exits at once, and we try other ports.
for attempt in 1 2 3; do
  free_port p1; free_port p2; free_port p3
  clients=tcp://127.0.0.1:$p1 workers=tcp://127.0.0.1:$p2 events=tcp://127.0.0.1:$p3
  "$tierd" --config "$config" --redis "$redis_url" --clients "$clients" \
    --workers "$workers" --events "$events" >>"$work/tierd.log" 2>&1 &
  tierd_pid=$!
  pids+=("$tierd_pid")
  tierd_up() { ctl --timeout 500 queues || ! kill -0 "$tierd_pid" 2>/dev/null; }
  wait_for 10 "tierd" tierd_up
  kill -0 "$tierd_pid" 2>/dev/null && break
  say "tierd could not start (attempt $attempt): $(tail -n 1 "$work/tierd.log")"
  [ "$attempt" = 3 ] && exit 1
done
say "tierd: clients $clients, workers $workers, events $events"

start_worker() { # start_worker LEVEL AGENT HANDLER [ARGS...]
  local level=$1 agent=$2 handler=$3
  shift 3
  "$worker" --router "$workers" --level "$level" --agent "$agent" --capacity 2 \
    "$@" --exec "$root/tests/demo/$handler" >"$work/worker-$agent.log" 2>&1 &
  pids+=($!)
}
start_worker L1 ana-L1 l1.sh
start_worker L2 bruno-L2 l2.sh --department billing
start_worker L3 carla-L3 l3.sh
agents_ready() { [ "$(ctl agents | grep -c ready)" -ge 3 ]; }
wait_for 10 "the three workers" agents_ready
ctl agents

# --- the flow ----------------------------------------------------------------
say "events as they happen (tierctl watch)"
"$tierctl" --router "$clients" --events "$events" watch &
pids+=($!)
sleep 0.5 # let the subscription reach tierd before the first event

ids=()
submit() { # submit SUBJECT CHANNEL  -> remembers the ticket id
  local out
  out=$(ctl --json submit --subject "$1" --channel "$2" --customer "demo-${#ids[@]}")
  ids+=("$(printf '%s' "$out" | sed -n 's/.*"id"[[:space:]]*:[[:space:]]*"\([0-9]*\)".*/\1/p')")
}
submit "Where is my order 1042?" chat
submit "App crash when I open settings" email
submit "Total outage: checkout is down for all customers" phone
submit "Crash while downloading my invoice, and the amount is wrong" whatsapp
submit "How do I return a pair of shoes?" web
outage=${ids[2]}

terminal() {
  local id
  for id in "${ids[@]}"; do
    ctl --json show "$id" | grep -qE '"state"[[:space:]]*:[[:space:]]*"(resolved|abandoned)"' ||
      return 1
  done
}
wait_for "$demo_timeout_s" "the resolution of every ticket" terminal
sleep 0.5 # the last events reach the watcher

say "final state of the outage ticket $outage (L1 -> L2 -> L3)"
ctl show "$outage"
say "queues"
ctl queues
say "done: stopping the workers, tierd and the private Redis"
