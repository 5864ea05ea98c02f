#!/usr/bin/env bash
# A/B of two préau binaries on `revision` at the classroom load (100 rooms
# × 30, 0.067 post/s per member: 6,000 deliveries/s), back to back in
# rounds, alternating which goes first, each server started afresh with
# its sled folder on tmpfs; server on cpu 0, generator on cpu 1.
# For refactors that must not change the cost: compare the median over
# rounds of the per-round ratio (noise on this machine: ±13% per round).
#
#   benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]      (default 6)
#
# Results: benches/results/ab/round<K>/revision-preau-{old,new}.json and
# the summary printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1" new="$2" rounds="${3:-6}" rate="${AB_RATE:-0.067}"   # AB_RATE=0.2: 18,000 deliveries/s
export PREAU_SECRET="${PREAU_SECRET:-bench:preau-bench-secret-0123456789abcdef}"
loadgen="$(nice -n 10 cargo bench -p preau-benches --no-run --bench loadgen --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*/loadgen-[^"]*"' | sed 's/"executable":"//; s/"$//' | head -n1)"
out=benches/results/ab
rm -rf "$out"/round* && mkdir -p "$out"
port=18080
for k in $(seq 1 "$rounds"); do
  if [ $((k % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for label in $order; do
    bin="$old"; [ "$label" = new ] && bin="$new"
    dir="$(mktemp -d -p /dev/shm)"
    taskset -c 0 "$bin" serve --listen "127.0.0.1:$port" --data "$dir" --rate-per-sec 1000 \
      --rate-burst 1000 --max-connections 20000 >"$dir.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    mkdir -p "$out/round$k"
    taskset -c 1 "$loadgen" revision --target preau --url "ws://127.0.0.1:$port/ws" --server-pid "$pid" \
      --label "preau-$label" --out "$out/round$k" --rooms 100 --rate "$rate" --warmup 3 --duration 15 >/dev/null
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$dir" "$dir.log"
    port=$((port + 1))
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
cpu, p99 = [], []
print("| round | CPU µs/delivery old | new | ratio | p99 ms old | new | deliveries lost |")
print("|---|---|---|---|---|---|---|")
for k in range(1, rounds + 1):
    r = {}
    for label in ("old", "new"):
        d = json.load(open(f"{out}/round{k}/revision-preau-{label}.json"))
        s = d["result"]["steps"][0]
        lost = d["result"]["deliveries_expected_from_acks"] - d["result"]["deliveries"]
        r[label] = (s["server_cpu_us_per_delivery"], s["latency"]["p99_ms"], lost)
    cpu.append(r["new"][0] / r["old"][0]); p99.append(r["new"][1] / r["old"][1])
    print(f"| {k} | {r['old'][0]:.1f} | {r['new'][0]:.1f} | {cpu[-1]:.3f} | {r['old'][1]:.2f} | {r['new'][1]:.2f} | {r['old'][2]} / {r['new'][2]} |")
print(f"\nmedian ratio new/old: CPU per delivery {statistics.median(cpu):.3f} "
      f"(range {min(cpu):.3f}–{max(cpu):.3f}), p99 {statistics.median(p99):.3f}")
PY
