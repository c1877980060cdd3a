#!/usr/bin/env bash
# The AF_XDP benchmark (`scripts/bench-dns.sh --xdp`): timepool with
# sockets, timepool with --xdp, Knot DNS with sockets, Knot in its XDP mode
# and the null reflector, one after another and the same way, on a veth
# pair between two network namespaces this script makes (server
# 198.18.10.1, client 198.18.10.2: the benchmarking range, inside those
# namespaces only; removed at the end, however it ends).
#
#   scripts/bench-dns.sh --xdp
#   BENCH_SECONDS=5            seconds per run (default 5)
#   BENCH_ROUNDS=3             rounds, each in a rotated order; medians
#   BENCH_MAX_QPS=1000000      what kxdpgun tries to send
#   BENCH_FIXED_QPS=50000      the fixed rate of the second figure
#
# Two figures per server (pinned to CPU 0; the load generators to CPU 1):
# - max: the replies/s at the highest rate kxdpgun (knot-dnsutils, itself
#   on AF_XDP: dnsperf cannot send fast enough here) drives, its queries
#   the pool's names from the client's own address (the global zone: the
#   benchmarking range is in no country; every answer still looked up and
#   drawn by weight). Lost = sent - replies.
# - fixed: dnsperf at BENCH_FIXED_QPS with the static benchmark's query mix
#   (ECS from every country), lost queries, and the whole machine's CPU per
#   answered query from /proc/stat (on a veth pair part of the server's
#   work runs in softirq context on either CPU, so the server's own CPU
#   time would flatter it). dnsperf's own CPU is in it, the same for every
#   server.
# Answers are checked: each server's rcode mix (kxdpgun's and dnsperf's)
# must match timepool's with sockets within 1 point, or the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-1}"
max_qps="${BENCH_MAX_QPS:-1000000}"
fixed_qps="${BENCH_FIXED_QPS:-50000}"
if [ "$(id -u)" != 0 ]; then
  echo "bench-dns.sh --xdp: needs root (network namespaces, XDP)"; exit 1
fi

. scripts/packages.sh
. scripts/bench-common.sh
need dnsperf command -v dnsperf
need knot command -v knotd
need knot-dnsutils command -v kxdpgun
need bind9-dnsutils command -v dig
need iproute2 command -v ip
install_needed
cargo build --release --quiet
timepool=target/release/timepool
geoip=$(scripts/geoip.sh)

work=$(mktemp -d)
server_ns="tpb-server-$$"
client_ns="tpb-client-$$"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  ip netns del "$client_ns" 2>/dev/null || true
  ip netns del "$server_ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

server_ip=198.18.10.1
ip netns add "$server_ns"
ip netns add "$client_ns"
ip -n "$server_ns" link add tpbs type veth peer name tpbc netns "$client_ns"
ip -n "$server_ns" addr add "$server_ip/24" dev tpbs
ip -n "$client_ns" addr add 198.18.10.2/24 dev tpbc
for ns in "$server_ns" "$client_ns"; do ip -n "$ns" link set lo up; done
ip -n "$server_ns" link set tpbs up
ip -n "$client_ns" link set tpbc up
# `ip netns exec` execs the command: a background one's $! is its PID.
in_server() { ip netns exec "$server_ns" "$@"; }
in_client() { ip netns exec "$client_ns" "$@"; }

"$timepool" bench-snapshot --geoip "$geoip" --servers 3000 --out "$work/pool.json" --clients "$work/clients.txt"
python3 scripts/bench-queries.py "$work/pool.json" "$work/clients.txt" "$work/queries.raw" "$work/pool.ntp.org.zone" 20000
# kxdpgun's templates: every geo and zone name of the static zone, A and
# AAAA, with EDNS ("e"), as "NAME TYPE FLAGS" lines.
awk '$3 == "IN" && ($4 == "A" || $4 == "AAAA") { print $1, $4, "e" }' "$work/pool.ntp.org.zone" | sort -u > "$work/templates"
echo "kxdpgun templates: $(wc -l < "$work/templates") names (e.g. $(head -n 1 "$work/templates"))"

ready() {
  in_client dig @"$server_ip" +time=1 +tries=1 de.pool.ntp.org A 2>/dev/null | grep -q 'status: NOERROR'
}
start_server() { # name, command...
  local name=$1; shift
  # Not through in_server: a function in the background would be a
  # subshell, and $! its PID, not the server's.
  ip netns exec "$server_ns" taskset -c 0 "$@" > "$work/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || { echo "$name died:"; cat "$work/$name.log"; exit 1; }
    if ready; then
      # Still ours (not an earlier server answering on the port).
      kill -0 "$server_pid" 2>/dev/null || { echo "$name died:"; cat "$work/$name.log"; exit 1; }
      return 0
    fi
    sleep 0.2
  done
  echo "$name did not answer"; cat "$work/$name.log"; exit 1
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  # Knot leaves its XDP program on the interface (its documentation says
  # so); timepool's goes with its BPF link. Either way: none after a run.
  in_server ip link set dev tpbs xdp off 2>/dev/null || true
}

# The whole machine's busy jiffies (user, nice, system, irq, softirq,
# steal) from /proc/stat.
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
ticks=$(getconf CLK_TCK)

# kxdpgun at the highest rate: "replies/s lost% rcodes".
measure_max() { # name
  local output sent replies
  output=$(in_client taskset -c 1 kxdpgun -t "$seconds" -Q "$max_qps" -F 1 -I tpbc -i "$work/templates" "$server_ip" 2>&1) || {
    echo "kxdpgun failed:" >&2; echo "$output" >&2; exit 1; }
  echo "$output" > "$work/$1.kxdpgun.$round"
  sent=$(awk '/total queries:/ { print $3; exit }' <<<"$output")
  replies=$(awk '/total replies:/ { print $3; exit }' <<<"$output")
  awk '/responded [A-Z]+:/ { gsub(":", "", $2); r[$2] = $3 } END { for (k in r) t += r[k]; for (k in r) printf "%s=%.0f\n", k, 100 * r[k] / t }' <<<"$output" \
    | sort | paste -sd' ' > "$work/$1.kxdpgun-rcodes.$round"
  awk -v s="$sent" -v r="$replies" -v t="$seconds" \
    'BEGIN { printf "%.0f %.1f\n", r / t, (s > 0 ? 100 * (s - r) / s : 0) }'
}

# dnsperf at the fixed rate: "q/s lost cpu_us_per_query".
measure_fixed() { # name
  local output before after completed lost qps
  before=$(busy_jiffies)
  output=$(in_client taskset -c 1 dnsperf -B -d "$work/queries.raw" -s "$server_ip" -p 53 \
    -l "$seconds" -c 4 -q 500 -t 1 -Q "$fixed_qps" 2>&1)
  after=$(busy_jiffies)
  rcode_mix <<<"$output" > "$work/$1.dnsperf-rcodes.$round"
  completed=$(awk '/Queries completed:/ { print $3 }' <<<"$output")
  lost=$(awk '/Queries lost:/ { print $3 }' <<<"$output")
  qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' <<<"$output")
  awk -v q="$qps" -v l="$lost" -v c="$completed" -v j=$((after - before)) -v hz="$ticks" \
    'BEGIN { printf "%s %s %.2f\n", q, l, (c > 0 ? j * 1000000 / hz / c : 0) }'
}


declare -A result
run_one() { # name
  local name=$1 max lost q l cpu
  case $name in
    tp-sockets) start_server "$name" "$timepool" dns --listen "$server_ip:53" --snapshot "$work/pool.json" \
      --geoip "$geoip" --threads 1 --reload-interval 3600 ;;
    tp-xdp) start_server "$name" "$timepool" dns --listen "$server_ip:53" --snapshot "$work/pool.json" \
      --geoip "$geoip" --threads 1 --reload-interval 3600 --xdp tpbs ;;
    knot-sockets) knot_conf "$server_ip@53"; start_server "$name" knotd -c "$work/knot.conf" ;;
    knot-xdp) knot_conf "$server_ip@53" tpbs@53; start_server "$name" knotd -c "$work/knot.conf" ;;
    null) start_server "$name" "$timepool" bench-reflector --listen "$server_ip:53" --threads 1 ;;
  esac
  # Called directly (not in $(...)), so that a failure ends the script.
  measure_max "$name" > "$work/max"
  measure_fixed "$name" > "$work/fixed"
  read -r max lost < "$work/max"
  read -r q l cpu < "$work/fixed"
  stop_server
  result[$name,$round]="$max $lost $q $l $cpu"
  printf '%-13s | %10s %7s | %9s %7s %9s\n' "$name" "$max" "$lost%" "$q" "$l" "$cpu"
}

# The CPU figure counts the whole machine: say so when it is not idle.
idle_before=$(busy_jiffies); sleep 1; idle_after=$(busy_jiffies)
if [ $((idle_after - idle_before)) -gt $((ticks / 10)) ]; then
  echo "warning: the machine is busy before the runs ($((100 * (idle_after - idle_before) / ticks))% of a CPU): the CPU figures count that too"
fi
servers=(tp-sockets tp-xdp knot-sockets knot-xdp null)
echo "== $(nproc) CPUs; $seconds s per run; $rounds round(s); servers on CPU 0, load on CPU 1; veth pair, $(in_server cat /sys/class/net/tpbs/queues/rx-0/../../tx_queue_len 2>/dev/null || echo '?') tx queue"
printf '%-13s | %-18s | %s\n' "" "max (kxdpgun)" "at $fixed_qps q/s (dnsperf)"
printf '%-13s | %10s %7s | %9s %7s %9s\n' server "replies/s" lost "q/s" lost "cpu us/q"
for round in $(seq "$rounds"); do
  [ "$rounds" -gt 1 ] && echo "-- round $round"
  for i in $(seq 0 $((${#servers[@]} - 1))); do
    run_one "${servers[$(((i + round - 1) % ${#servers[@]}))]}"
  done
done

column() { for round in $(seq "$rounds"); do cut -d' ' -f"$2" <<<"${result[$1,$round]}"; done | median; }
echo "-- median of $rounds round(s)"
for name in "${servers[@]}"; do
  printf '%-13s | %10s %7s | %9s %7s %9s\n' "$name" "$(column "$name" 1)" "$(column "$name" 2)%" \
    "$(column "$name" 3)" "$(column "$name" 4)" "$(column "$name" 5)"
done
echo "max replies/s: tp-xdp/tp-sockets $(ratio "$(column tp-xdp 1)" "$(column tp-sockets 1)")," \
  "tp-xdp/knot-xdp $(ratio "$(column tp-xdp 1)" "$(column knot-xdp 1)")," \
  "knot-xdp/knot-sockets $(ratio "$(column knot-xdp 1)" "$(column knot-sockets 1)")"
echo "machine cpu us per query at $fixed_qps q/s: tp-xdp $(column tp-xdp 5), knot-xdp $(column knot-xdp 5)," \
  "tp-sockets $(column tp-sockets 5), knot-sockets $(column knot-sockets 5), null $(column null 5)"

# The same answers from every real server, on both load generators.
mismatch=0
for kind in kxdpgun-rcodes dnsperf-rcodes; do
  reference=$(cat "$work/tp-sockets.$kind.1")
  echo "rcode mix ($kind, tp-sockets round 1): $reference"
  for name in tp-xdp knot-sockets knot-xdp; do
    for round in $(seq "$rounds"); do
      mix=$(cat "$work/$name.$kind.$round")
      if ! same_mix "$reference" "$mix"; then
        echo "RCODE MIX DIFFERS ($kind): $name answered $mix"
        mismatch=1
      fi
    done
  done
done
if [ "$mismatch" -ne 0 ]; then
  echo "bench-dns.sh --xdp: the servers did not give the same answers; the figures above do not compare"
  exit 1
fi
echo "every real server gave the same rcode mix in every run"
