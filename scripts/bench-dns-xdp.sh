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
#   BENCH_MAX_QPS=1000000      what kxdpgun tries to send for the maximum
#   BENCH_FIXED_QPS=100000     kxdpgun's fixed rate (the CPU figure)
#   BENCH_DNSPERF_QPS=50000    dnsperf's fixed rate (the geo query mix)
#   BENCH_PERF=1               also sample the whole machine (perf,
#                              cpu-clock) during the fixed-rate run of
#                              tp-xdp and knot-xdp, and print where the
#                              time goes, by command and function
#
# Per server (pinned to CPU 0; the load generators to CPU 1), after a
# settling time and 2 s of its idle cost:
# - max: the replies/s at the highest rate kxdpgun (knot-dnsutils, itself
#   on AF_XDP: dnsperf cannot send fast enough here) drives, its queries
#   the pool's names from the client's own address (the global zone: the
#   benchmarking range is in no country; every answer still looked up and
#   drawn by weight);
# - lost at 80%: kxdpgun at 80% of that server's maximum, queries sent
#   less replies received; then the maximum again, to tell a loss from a
#   machine that slowed meanwhile (and, for tp-xdp, what its socket
#   dropped, from its metrics);
# - kxdpgun at BENCH_FIXED_QPS, a rate every server sustains: the whole
#   machine's CPU per reply (on a veth pair part of the server's work runs
#   in softirq context on either CPU, so the server's own CPU time would
#   flatter it; kxdpgun's own share is in it, the same for every server),
#   and the replies lost;
# - dnsperf at BENCH_DNSPERF_QPS with the static benchmark's query mix
#   (ECS from every country): lost queries and the machine's CPU per
#   query (dnsperf's own, larger, share in it).
# The machine's CPU is measured by what a load leaves to soakers (see
# soak below), not from /proc/stat: on this kind of VM its busy ticks and
# its idle time disagree several-fold (tick sampling, and the haltpoll
# idle driver spinning before it halts), and perf's cpu-clock samples
# halted CPUs unevenly.
# Answers are checked: each server's rcode mix (kxdpgun's and dnsperf's)
# must match timepool's with sockets within 1 point, or the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${BENCH_SECONDS:-5}"
rounds="${BENCH_ROUNDS:-1}"
max_qps="${BENCH_MAX_QPS:-1000000}"
fixed_qps="${BENCH_FIXED_QPS:-100000}"
dnsperf_qps="${BENCH_DNSPERF_QPS:-50000}"
settle="${BENCH_SETTLE:-5}"
profile="${BENCH_PERF:-0}"
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
[ "$profile" = 1 ] && need linux-perf command -v perf
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
# steal) from /proc/stat: only to notice a busy machine or a spinning
# server (see soak for why not the CPU figures).
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
ticks=$(getconf CLK_TCK)

# The CPU left over: one SCHED_IDLE spinner per CPU counts its loop turns
# for SECONDS; any other work on a CPU (a server, a softirq, the load
# generator) takes that CPU from it at once. Prints the turns per CPU.
soak() { # seconds
  local cpu pids=()
  for cpu in $(seq 0 $(($(nproc) - 1))); do
    chrt -i 0 taskset -c "$cpu" python3 -c '
import sys, time
end = time.monotonic() + float(sys.argv[1])
turns = 0
while time.monotonic() < end:
    turns += 1
print(turns)' "$1" > "$work/soak.$cpu" &
    pids+=($!)
  done
  wait "${pids[@]}"
  for cpu in $(seq 0 $(($(nproc) - 1))); do cat "$work/soak.$cpu"; done | paste -sd' '
}
# CPUs busy (of nproc) under a load: each CPU's share of turns lost
# against the same soak without it, summed.
busy_cpus() { # "idle turns", "loaded turns"
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " ");
    for (i = 1; i <= n; i++) { f = 1 - y[i] / x[i]; busy += (f > 0 ? f : 0) } printf "%.3f", busy }'
}
soak_seconds=$((seconds > 3 ? seconds - 2 : 1))

# One kxdpgun run from the client namespace. The AF_XDP socket of the
# run before may not be released yet ("requested resource is busy" when
# one starts right after another): then it tries again, for 5 s at most.
kxdpgun_once() { # seconds, qps
  local output status attempt
  for attempt in $(seq 20); do
    status=0
    output=$(in_client taskset -c 1 kxdpgun -t "$1" -Q "$2" -F 1 -I tpbc -i "$work/templates" "$server_ip" 2>&1) \
      || status=$?
    grep -q 'resource is busy' <<<"$output" || { echo "$output"; return "$status"; }
    sleep 0.25
  done
  echo "$output"; return 1
}

# kxdpgun at QPS for BENCH_SECONDS: "sent replies busy_cpus"; its output
# kept as $work/NAME.kxdpgun-TAG.ROUND. With SOAK=1, the CPUs busy in the
# middle of the run (soak_seconds from its second second), else 0.
kxdpgun_run() { # name, qps, tag
  local output="$work/$1.kxdpgun-$3.$round" kxdpgun_pid idle loaded busy=0
  [ "${SOAK:-0}" = 1 ] && idle=$(soak "$soak_seconds")
  kxdpgun_once "$seconds" "$2" > "$output" 2>&1 &
  kxdpgun_pid=$!
  if [ "${SOAK:-0}" = 1 ]; then
    sleep 1
    loaded=$(soak "$soak_seconds")
    busy=$(busy_cpus "$idle" "$loaded")
  fi
  wait "$kxdpgun_pid" || { echo "kxdpgun failed:" >&2; cat "$output" >&2; exit 1; }
  echo "$(awk '/total queries:/ { print $3; exit }' "$output")" \
    "$(awk '/total replies:/ { print $3; exit }' "$output")" "$busy"
}
# kxdpgun's "responded NOERROR: N" lines as "RCODE=PERCENT ..." (sorted).
kxdpgun_mix() {
  awk '/responded [A-Z]+:/ { gsub(":", "", $2); r[$2] = $3 } END { for (k in r) t += r[k]; for (k in r) printf "%s=%.0f\n", k, 100 * r[k] / t }' \
    | sort | paste -sd' '
}
# tp-xdp's AF_XDP socket: the datagrams the kernel dropped so far
# (timepool_dns_xdp_kernel_drops_total: rx ring full, no free frame);
# 0 for the other servers.
socket_drops() { # name
  [ "$1" = tp-xdp ] || { echo 0; return; }
  in_server bash -c 'exec 3<>/dev/tcp/127.0.0.1/9153; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' \
    | awk '/^timepool_dns_xdp_kernel_drops_total/ { n += $2 } END { print n + 0 }'
}

# CPU microseconds per answer: BUSY CPUs at RATE answers per second.
per_query_us() { awk -v b="$1" -v r="$2" 'BEGIN { printf "%.2f", (r > 0 ? b * 1000000 / r : 0) }'; }

# dnsperf at its fixed rate: "lost cpu_us_per_query" (the CPUs busy in
# the middle of the run, as for kxdpgun).
measure_dnsperf() { # name
  local output="$work/$1.dnsperf.$round" dnsperf_pid idle loaded completed lost
  idle=$(soak "$soak_seconds")
  in_client taskset -c 1 dnsperf -B -d "$work/queries.raw" -s "$server_ip" -p 53 \
    -l "$seconds" -c 4 -q 500 -t 1 -Q "$dnsperf_qps" > "$output" 2>&1 &
  dnsperf_pid=$!
  sleep 1
  loaded=$(soak "$soak_seconds")
  wait "$dnsperf_pid" || { echo "dnsperf failed:" >&2; cat "$output" >&2; exit 1; }
  rcode_mix < "$output" > "$work/$1.dnsperf-rcodes.$round"
  completed=$(awk '/Queries completed:/ { print $3 }' "$output")
  lost=$(awk '/Queries lost:/ { print $3 }' "$output")
  echo "$lost $(per_query_us "$(busy_cpus "$idle" "$loaded")" $((completed / seconds)))"
}

declare -A result
run_one() { # name
  local name=$1
  case $name in
    tp-sockets) start_server "$name" "$timepool" dns --listen "$server_ip:53" --snapshot "$work/pool.json" \
      --geoip "$geoip" --threads 1 --reload-interval 3600 ;;
    tp-xdp) start_server "$name" "$timepool" dns --listen "$server_ip:53" --snapshot "$work/pool.json" \
      --geoip "$geoip" --threads 1 --reload-interval 3600 --xdp tpbs --metrics-listen 127.0.0.1:9153 ;;
    knot-sockets) knot_conf "$server_ip@53"; start_server "$name" knotd -c "$work/knot.conf" ;;
    knot-xdp) knot_conf "$server_ip@53" tpbs@53; start_server "$name" knotd -c "$work/knot.conf" ;;
    null) start_server "$name" "$timepool" bench-reflector --listen "$server_ip:53" --threads 1 ;;
  esac
  # What the server costs the machine with no load (after a settling
  # time: timepool's GeoIP table is on huge pages, which khugepaged may
  # still be collapsing after the start), then the two loads.
  sleep "$settle"
  local idle_start idle_end
  idle_start=$(busy_jiffies); sleep 2; idle_end=$(busy_jiffies)
  echo "$(( (idle_end - idle_start) * 100 / (2 * ticks) ))" > "$work/idle"
  # Called directly (not in $(...)), so that a failure ends the script.
  local sent replies busy max lost80 kcpu klost dlost dcpu idle
  # A first short run at full rate, not counted: after the idle seconds
  # the first full-rate run here comes out up to a fifth slower than the
  # next (seen with every server alike).
  kxdpgun_once 2 "$max_qps" > /dev/null 2>&1 || true
  kxdpgun_run "$name" "$max_qps" max > "$work/run"
  read -r sent replies busy < "$work/run"
  max=$((replies / seconds))
  kxdpgun_mix < "$work/$name.kxdpgun-max.$round" > "$work/$name.kxdpgun-rcodes.$round"
  local drops_before drops_after
  drops_before=$(socket_drops "$name")
  kxdpgun_run "$name" $((max * 8 / 10)) at80 > "$work/run"
  read -r sent replies busy < "$work/run"
  lost80=$((sent - replies))
  drops_after=$(socket_drops "$name")
  # The maximum again: a loss at 80% while the machine itself slowed
  # (on a shared VM its speed drifts by a fifth within minutes) shows as
  # a second maximum below the 80% rate.
  kxdpgun_run "$name" "$max_qps" max-again > "$work/run"
  read -r sent replies busy < "$work/run"
  echo "$max $((max * 8 / 10)) $lost80 $((replies / seconds)) $([ "$name" = tp-xdp ] && echo $((drops_after - drops_before)) || echo -)" \
    > "$work/$name.at80.$round"
  SOAK=1 kxdpgun_run "$name" "$fixed_qps" fixed > "$work/run"
  read -r sent replies busy < "$work/run"
  klost=$((sent - replies))
  kcpu=$(per_query_us "$busy" $((replies / seconds)))
  echo "$busy" > "$work/$name.busy.$round"
  if [ "$profile" = 1 ] && [ "$round" = 1 ] && [[ $name == *-xdp ]]; then
    # A run of its own: the soakers would fill the profile.
    perf record -a -e cpu-clock -F 4000 -o "$work/$name.perf" -- sleep "$soak_seconds" \
      > /dev/null 2>&1 &
    local perf_pid=$!
    kxdpgun_run "$name" "$fixed_qps" profile > /dev/null
    wait "$perf_pid" || true
    perf report -i "$work/$name.perf" --no-children --sort comm,dso,symbol --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -n 25 > "$work/$name.profile" || true # head closes the pipe
  fi
  measure_dnsperf "$name" > "$work/run"
  read -r dlost dcpu < "$work/run"
  stop_server
  read -r idle < "$work/idle"
  result[$name,$round]="$max $lost80 $kcpu $klost $dlost $dcpu $idle"
  row "$name" "$max" "$lost80" "$kcpu" "$klost" "$dlost" "$dcpu" "$idle%"
}

row() { printf '%-13s | %10s %9s | %8s %7s | %7s %8s | %5s\n' "$@"; }

# The CPU figure counts the whole machine: say so when it is not idle.
idle_before=$(busy_jiffies); sleep 1; idle_after=$(busy_jiffies)
if [ $((idle_after - idle_before)) -gt $((ticks / 10)) ]; then
  echo "warning: the machine is busy before the runs ($((100 * (idle_after - idle_before) / ticks))% of a CPU): the CPU figures count that too"
fi
servers=(tp-sockets tp-xdp knot-sockets knot-xdp null)
echo "== $(nproc) CPUs; $seconds s per run; $rounds round(s); servers on CPU 0, load on CPU 1; veth pair, $(in_server cat /sys/class/net/tpbs/queues/rx-0/../../tx_queue_len 2>/dev/null || echo '?') tx queue"
printf '%-13s | %-20s | %-16s | %-16s | %s\n' "" "kxdpgun" "kxdpgun $fixed_qps/s" "dnsperf $dnsperf_qps/s" "idle"
row server "max r/s" "lost @80%" "cpu us/q" lost lost "cpu us/q" cpu
for round in $(seq "$rounds"); do
  [ "$rounds" -gt 1 ] && echo "-- round $round"
  for i in $(seq 0 $((${#servers[@]} - 1))); do
    run_one "${servers[$(((i + round - 1) % ${#servers[@]}))]}"
  done
done

column() { for round in $(seq "$rounds"); do cut -d' ' -f"$2" <<<"${result[$1,$round]}"; done | median; }
echo "-- median of $rounds round(s)"
for name in "${servers[@]}"; do
  row "$name" "$(column "$name" 1)" "$(column "$name" 2)" "$(column "$name" 3)" "$(column "$name" 4)" \
    "$(column "$name" 5)" "$(column "$name" 6)" "$(column "$name" 7)%"
done
echo "max replies/s: tp-xdp/tp-sockets $(ratio "$(column tp-xdp 1)" "$(column tp-sockets 1)")," \
  "tp-xdp/knot-xdp $(ratio "$(column tp-xdp 1)" "$(column knot-xdp 1)")," \
  "knot-xdp/knot-sockets $(ratio "$(column knot-xdp 1)" "$(column knot-sockets 1)")"
echo "machine cpu us per reply at $fixed_qps/s (kxdpgun): tp-xdp $(column tp-xdp 3), knot-xdp $(column knot-xdp 3)," \
  "tp-sockets $(column tp-sockets 3), knot-sockets $(column knot-sockets 3), null $(column null 3)"
every_round() { for round in $(seq "$rounds"); do cut -d' ' -f"$2" <<<"${result[$1,$round]}"; done | paste -sd/; }
echo "each round: max r/s tp-xdp $(every_round tp-xdp 1), knot-xdp $(every_round knot-xdp 1);" \
  "cpu us/reply tp-xdp $(every_round tp-xdp 3), knot-xdp $(every_round knot-xdp 3);" \
  "lost at 80% tp-xdp $(every_round tp-xdp 2), knot-xdp $(every_round knot-xdp 2)"
echo "at 80% (max, 80% rate, lost, max again after it; for tp-xdp the datagrams its socket dropped at 80%):"
for name in tp-xdp knot-xdp; do
  for round in $(seq "$rounds"); do
    read -r max rate lost again drops < "$work/$name.at80.$round"
    echo "  $name round $round: max $max, at $rate/s lost $lost, max again $again$([ "$drops" != - ] && echo ", socket drops $drops")$([ "$again" -lt "$rate" ] && echo " (the machine slowed below the 80% rate)")"
  done
done

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
if [ "$profile" = 1 ]; then
  for name in tp-xdp knot-xdp; do
    echo "-- where the machine's time goes at $fixed_qps/s, $name (round 1; perf cpu-clock, all CPUs)"
    cat "$work/$name.profile"
  done
fi
