#!/usr/bin/env bash
# Runs one load-generator scenario against préau, then against the peers
# where the scenario applies, and writes benches/results/<scenario>.md with
# the figures and the préau/peer ratios (raw results: benches/results/raw/).
#
#   benches/run.sh <idle|revision|announce|reconnect-storm> [loadgen options…]
#
# Environment:
#   TARGETS="preau bare socketio"   which servers to run (default: all that apply)
#   SERVER_CPU=0 GENERATOR_CPU=1     cores for taskset
#   PREAU_PORT=18080 BARE_PORT=19002 SIO_PORT=19003
#   PREAU_SECRET                     token secret (a fixed bench secret if unset)
#   RESULTS=benches/results          where the report goes (raw results in $RESULTS/raw)
#   LOGS=target/bench-logs           where the servers' logs go
#
# Each server runs alone, pinned to SERVER_CPU; the generator is pinned to
# GENERATOR_CPU. préau runs from a release build with its data in a fresh
# temporary folder, with the per-user post rate limit raised (the scenarios
# post faster than the classroom default of 2/s) and max_connections raised
# to 20,000; every other setting is the default (logs at info, to $LOGS).
set -euo pipefail

scenario="${1:?usage: benches/run.sh <idle|revision|announce|reconnect-storm> [loadgen options...]}"
shift
cd "$(dirname "$0")/.."

SERVER_CPU="${SERVER_CPU:-0}"
GENERATOR_CPU="${GENERATOR_CPU:-1}"
PREAU_PORT="${PREAU_PORT:-18080}"
BARE_PORT="${BARE_PORT:-19002}"
SIO_PORT="${SIO_PORT:-19003}"
RESULTS="${RESULTS:-benches/results}"
RAW="$RESULTS/raw"
LOGS="${LOGS:-target/bench-logs}"   # server logs (not results: one line per join)
export PREAU_SECRET="${PREAU_SECRET:-bench:preau-bench-secret-0123456789abcdef}"

case "$scenario" in
  reconnect-storm) default_targets="preau" ;;
  idle|revision|announce) default_targets="preau bare socketio" ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
TARGETS="${TARGETS:-$default_targets}"

# 10,000 connections need 10,000+ descriptors on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$RAW" "$LOGS"
# One report compares one run: drop this scenario's earlier raw results.
rm -f "$RAW/$scenario-"*.json "$RAW/$scenario-"*.md

echo "== building (release, nice 10)" >&2
nice -n 10 cargo build --release --bin preau >&2
executables="$(nice -n 10 cargo bench --no-run --bench loadgen --bench peer_bare --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | sed 's/"executable":"//; s/"$//')"
LOADGEN="$(grep '/loadgen-' <<<"$executables" | head -n1)"
BARE="$(grep '/peer_bare-' <<<"$executables" | head -n1)"
PREAU="target/release/preau"
[ -x "$LOADGEN" ] && [ -x "$BARE" ] && [ -x "$PREAU" ] || { echo "build failed" >&2; exit 1; }

if [[ " $TARGETS " == *" socketio "* ]]; then
  if [ ! -d benches/peers/socketio/node_modules/socket.io ]; then
    benches/peers/socketio/setup.sh >&2
  fi
fi

server_pid=""
data_dir=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
  if [ -n "$data_dir" ]; then rm -rf "$data_dir"; data_dir=""; fi
}
trap stop_server EXIT

wait_port() {
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || { echo "server died" >&2; return 1; }
    sleep 0.05
  done
  echo "server not listening on $1" >&2
  return 1
}

for target in $TARGETS; do
  log="$LOGS/$scenario-$target.server.log"
  case "$target" in
    preau)
      data_dir="$(mktemp -d)"
      taskset -c "$SERVER_CPU" "$PREAU" serve --listen "127.0.0.1:$PREAU_PORT" --data "$data_dir" \
        --rate-per-sec 1000 --rate-burst 1000 --max-connections 20000 >"$log" 2>&1 &
      server_pid=$!
      port=$PREAU_PORT
      url="ws://127.0.0.1:$PREAU_PORT/ws"
      ;;
    bare)
      taskset -c "$SERVER_CPU" "$BARE" --listen "127.0.0.1:$BARE_PORT" >"$log" 2>&1 &
      server_pid=$!
      port=$BARE_PORT
      url="ws://127.0.0.1:$BARE_PORT/ws"
      ;;
    socketio)
      (cd benches/peers/socketio && exec taskset -c "$SERVER_CPU" node server.js --port "$SIO_PORT") >"$log" 2>&1 &
      server_pid=$!
      port=$SIO_PORT
      url="ws://127.0.0.1:$SIO_PORT/socket.io/?EIO=4&transport=websocket"
      ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
  esac
  wait_port "$port"
  echo "== $scenario against $target (server pid $server_pid on cpu $SERVER_CPU, generator on cpu $GENERATOR_CPU)" >&2
  status=0
  taskset -c "$GENERATOR_CPU" "$LOADGEN" "$scenario" --target "$target" --url "$url" \
    --server-pid "$server_pid" --label "$target" --out "$RAW" "$@" >/dev/null || status=$?
  stop_server
  if [ "$status" -ne 0 ]; then
    echo "loadgen failed against $target (exit $status); see above" >&2
    rm -f "$RAW/$scenario-$target.json" "$RAW/$scenario-$target.md"
  fi
done

"$LOADGEN" report "$scenario" --out "$RAW" --to "$RESULTS/$scenario.md"
cat "$RESULTS/$scenario.md"
