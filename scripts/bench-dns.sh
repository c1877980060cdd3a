#!/usr/bin/env bash
# DNS benchmark: timepool against Knot DNS, NSD and a null reflector, in the
# same invocation and the same way (ARCHITECTURE.md, "The DNS hot path").
#
#   scripts/bench-dns.sh            15 s per run
#   scripts/bench-dns.sh --xdp      the AF_XDP benchmark on a veth pair
#                                   (scripts/bench-dns-xdp.sh; root)
#   BENCH_SECONDS=5 scripts/bench-dns.sh
#   BENCH_ROUNDS=3 scripts/bench-dns.sh   3 rounds of all four servers, one
#                                         after the other, then the median
#                                         of each figure (this machine's
#                                         run-to-run noise is large)
#   BENCH_BASELINE=/path/to/timepool ...  also run another timepool binary
#                                         (an earlier build) the same way,
#                                         right after this one in every
#                                         round, and print the ratio: a
#                                         before/after comparison that the
#                                         machine's drift between runs
#                                         cannot fake
#
# Each server runs pinned to CPU 0 and dnsperf to CPU 1, on 127.0.0.1 only.
# timepool also runs as an anycast node would: on a wildcard address
# (tp-any) and with response rate limiting on (tp-rrl), each compared with
# the plain run.
# For each: an uncapped run (queries/s, lost, latency, server CPU us per
# answered query from /proc/PID/stat), a run with the server capped at 25%
# of a core (cgroup CPU quota) so the server is the bottleneck, and a run at
# 80% of that capped rate (lost queries should be 0). Servers are stopped by
# PID; every run is bounded in time.
#
# A server that answers fast but wrongly would look good: every run counts
# the answers by rcode, and every real server (not the reflector, which
# echoes) must give the same mix, within 1 point, or the script fails. A
# capped server is checked to be in the capped cgroup, every process of
# it. The servers run in an order rotated each round, so the machine's
# drift over a round favours none of them, and each ratio printed is the
# median of the per-round ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
# The AF_XDP benchmark on a veth pair is a script of its own.
if [ "${1:-}" = --xdp ]; then
  exec scripts/bench-dns-xdp.sh
fi
seconds="${BENCH_SECONDS:-15}"
rounds="${BENCH_ROUNDS:-1}"
baseline="${BENCH_BASELINE:-}"
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
  echo "BENCH_BASELINE=$baseline is not an executable"; exit 1
fi

. scripts/packages.sh
. scripts/bench-common.sh
need dnsperf command -v dnsperf
need knot command -v knotd
need nsd command -v nsd
need bind9-dnsutils command -v dig
install_needed
cargo build --release --quiet
timepool=target/release/timepool
geoip=$(scripts/geoip.sh)

work=$(mktemp -d)
server_pid=""
cgroup=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  [ -n "$cgroup" ] && [ -d "$cgroup" ] && rmdir "$cgroup" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$timepool" bench-snapshot --geoip "$geoip" --servers 3000 --out "$work/pool.json" --clients "$work/clients.txt"
python3 scripts/bench-queries.py "$work/pool.json" "$work/clients.txt" "$work/queries.raw" "$work/pool.ntp.org.zone" 20000
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ticks=$(getconf CLK_TCK)

# The cgroup that caps a server at 25% of one core (v2 or v1 hierarchy).
. scripts/cgroup.sh
make_cpu_cgroup "timepool-bench-$$" 25000 100000

# The server's process and its children (NSD forks its workers).
tree_pids() {
  local pid=$1
  echo "$pid"
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do tree_pids "$child"; done
}
cpu_ticks() { # utime + stime of the whole process tree
  local total=0
  for pid in $(tree_pids "$1"); do
    [ -r "/proc/$pid/stat" ] || continue
    # Fields after "PID (COMM) ": the name may hold spaces ("nsd: main").
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
move_tree() { # cgroup.procs file
  for pid in $(tree_pids "$server_pid"); do echo "$pid" > "$1" 2>/dev/null || true; done
}

# Ready: the pool's SOA and a country name's A records answered (or, for
# the reflector, which answers every query with itself, any response).
answers_pool() {
  dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short pool.ntp.org SOA >/dev/null 2>&1 \
    && [ -n "$(dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short de.pool.ntp.org A 2>/dev/null)" ]
}
answers_anything() {
  dig @127.0.0.1 -p "$port" +time=1 +tries=1 de.pool.ntp.org A 2>/dev/null | grep -q 'status: NOERROR'
}
start_server() { # name, readiness check, command...
  local name=$1 ready=$2; shift 2
  taskset -c 0 "$@" > "$work/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    if "$ready"; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { echo "$name died:"; cat "$work/$name.log"; exit 1; }
    sleep 0.2
  done
  echo "$name did not answer"; cat "$work/$name.log"; exit 1
}
stop_server() { # SIGTERM, then SIGKILL after 10 s
  kill "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.2
  done
  # Still ours: `wait` below has not reaped it, so the PID is not reused.
  if kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# Every process of the server is in the cgroup whose procs file is given
# (cgroup v2: /proc/PID/cgroup has "0::/PATH"; v1: the cpu controller's
# line), else the capped figures would not be capped: fail.
check_in_cgroup() { # cgroup directory
  local want=${1#/sys/fs/cgroup} pid
  want=${want#/cpu}
  for pid in $(tree_pids "$server_pid"); do
    [ -r "/proc/$pid/cgroup" ] || continue
    if ! grep -Eq "^(0::|[0-9]+:([^:]*,)?cpu(,[^:]*)?:)$want\$" "/proc/$pid/cgroup"; then
      echo "process $pid of the server is not in $want:"; cat "/proc/$pid/cgroup"; exit 1
    fi
  done
}


# One dnsperf run; prints "qps lost avg_latency_us cpu_us_per_query" and
# keeps the rcode mix of the run in $work/NAME.rcodes.
measure() { # name, extra dnsperf args...
  local name=$1 before after output completed lost qps latency
  shift
  before=$(cpu_ticks "$server_pid")
  output=$(taskset -c 1 dnsperf -B -d "$work/queries.raw" -s 127.0.0.1 -p "$port" \
    -l "$seconds" -c 4 -q 200 -t 1 "$@" 2>&1)
  after=$(cpu_ticks "$server_pid")
  rcode_mix <<<"$output" >> "$work/$name.rcodes"
  completed=$(awk '/Queries completed:/ {print $3}' <<<"$output")
  lost=$(awk '/Queries lost:/ {print $3}' <<<"$output")
  qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' <<<"$output")
  latency=$(awk '/Average Latency/ {printf "%.0f", $4 * 1000000}' <<<"$output")
  awk -v q="$qps" -v l="$lost" -v lat="$latency" -v c="$completed" -v t=$((after - before)) -v hz="$ticks" \
    'BEGIN { printf "%s %s %s %.2f\n", q, l, lat, (c > 0 ? t * 1000000 / hz / c : 0) }'
}

declare -A result
columns=10 # q/s, lost, avg us, cpu us/q: uncapped, then capped; q/s, lost at 80%
row() { printf '%-9s | %8s %6s %7s %8s | %8s %6s %7s %8s | %8s %6s\n' "$@"; }
header() {
  printf '%-9s | %-32s | %-32s | %s\n' "" "uncapped" "capped at 25% of a core" "at 80% of capped"
  row server "q/s" lost "avg us" "cpu us/q" "q/s" lost "avg us" "cpu us/q" "q/s" lost
}
run_all() { # name
  local name=$1 q l lat cpu cq cl clat ccpu rate eq el elat ecpu
  read -r q l lat cpu <<<"$(measure "$name")"
  move_tree "$cgroup/cgroup.procs"
  check_in_cgroup "$cgroup"
  read -r cq cl clat ccpu <<<"$(measure "$name")"
  rate=$((cq * 8 / 10))
  read -r eq el elat ecpu <<<"$(measure "$name" -Q "$rate")"
  move_tree "$root_procs"
  result[$name,$round]="$q $l $lat $cpu $cq $cl $clat $ccpu $eq $el"
  row "$name" "$q" "$l" "$lat" "$cpu" "$cq" "$cl" "$clat" "$ccpu" "$eq" "$el"
}

echo "== $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $seconds s per run; $rounds round(s); servers on CPU 0, dnsperf on CPU 1"

# timepool's variants: plain, the baseline, and as an anycast node runs:
# a wildcard listen address (each reply's source set from the query's
# destination, IP_PKTINFO) and response rate limiting on at a rate that
# limits nothing (every query still pays for the check; dnsperf's sockets
# are all one /24).
run_timepool() { # variant
  case $1 in
    timepool)
      start_server timepool answers_pool "$timepool" dns --listen "127.0.0.1:$port" --snapshot "$work/pool.json" \
        --geoip "$geoip" --threads 1 --reload-interval 3600
      echo "timepool RSS with 3000 servers and the GeoIP table: $(awk '/VmRSS/ {print $2, $3}' "/proc/$server_pid/status")" ;;
    baseline)
      start_server baseline answers_pool "$baseline" dns --listen "127.0.0.1:$port" --snapshot "$work/pool.json" \
        --geoip "$geoip" --threads 1 --reload-interval 3600 ;;
    tp-any)
      start_server tp-any answers_pool "$timepool" dns --listen "0.0.0.0:$port" --snapshot "$work/pool.json" \
        --geoip "$geoip" --threads 1 --reload-interval 3600 ;;
    tp-rrl)
      start_server tp-rrl answers_pool "$timepool" dns --listen "127.0.0.1:$port" --snapshot "$work/pool.json" \
        --geoip "$geoip" --threads 1 --reload-interval 3600 --rrl-rate 1000000 ;;
  esac
  run_all "$1"
  stop_server
}
run_knot() {
knot_conf "127.0.0.1@$port"
start_server knot answers_pool knotd -c "$work/knot.conf"
run_all knot
stop_server
}

run_nsd() {
cat > "$work/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$port
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$work"
    pidfile: "$work/nsd.pid"
    database: ""
    zonelistfile: "$work/zone.list"
    xfrdfile: "$work/xfrd.state"
    xfrdir: "$work"
    verbosity: 0
    # Debian builds NSD with response rate limiting on (200 q/s per
    # source); one benchmark client would be limited, not measured.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: pool.ntp.org
    zonefile: "$work/pool.ntp.org.zone"
CONF
start_server nsd answers_pool nsd -d -c "$work/nsd.conf"
run_all nsd
stop_server
}

run_null() {
start_server null answers_anything "$timepool" bench-reflector --listen "127.0.0.1:$port" --threads 1
run_all null
stop_server
}

# Every server of the benchmark, in the order of round 1; each round
# starts one further along.
servers="timepool${baseline:+ baseline} tp-any tp-rrl knot nsd null"
read -ra order <<<"$servers"
one_round() {
  local count=${#order[@]} i name
  for i in $(seq 0 $((count - 1))); do
    name=${order[$(((i + round - 1) % count))]}
    case $name in
      knot) run_knot ;;
      nsd) run_nsd ;;
      null) run_null ;;
      *) run_timepool "$name" ;;
    esac
  done
}

# Memory at the pool's full size: 10 000 servers, every country zone,
# the GeoIP table loaded.
"$timepool" bench-snapshot --geoip "$geoip" --servers 10000 --out "$work/pool-10k.json" --clients /dev/null
start_server timepool answers_pool "$timepool" dns --listen "127.0.0.1:$port" --snapshot "$work/pool-10k.json" \
  --geoip "$geoip" --threads 1 --reload-interval 3600
zones=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["zones"]))' "$work/pool-10k.json")
echo "timepool RSS with 10000 servers in $zones zones and the GeoIP table: $(awk '/VmRSS/ {print $2, $3}' "/proc/$server_pid/status")"
stop_server

header
for round in $(seq "$rounds"); do
  [ "$rounds" -gt 1 ] && echo "-- round $round"
  one_round
done

# Each figure: the median over the rounds (the middle one; the lower
# middle for an even count).
for name in $servers; do
  medians=""
  for column in $(seq "$columns"); do
    value=$(for round in $(seq "$rounds"); do cut -d' ' -f"$column" <<<"${result[$name,$round]}"; done | median)
    medians="$medians $value"
  done
  result[$name]="${medians# }"
done
if [ "$rounds" -gt 1 ]; then
  echo "-- median of $rounds rounds"
  header
  for name in $servers; do
    read -ra values <<<"${result[$name]}"
    row "$name" "${values[@]}"
  done
fi

field() { cut -d' ' -f"$2" <<<"${result[$1]}"; } # name, column (1 q/s, 4 cpu, 5 capped q/s, 10 lost at 80%)
each_round_ratio() { # name, other name: capped q/s ratios of every round, one per line
  for round in $(seq "$rounds"); do
    ratio "$(cut -d' ' -f5 <<<"${result[$1,$round]}")" "$(cut -d' ' -f5 <<<"${result[$2,$round]}")"; echo
  done
}
# The median of the per-round ratios, then every round's: "1.10 (1.08/1.10/1.14)".
round_ratio() { # name, other name
  echo "$(each_round_ratio "$1" "$2" | median) ($(each_round_ratio "$1" "$2" | paste -sd/))"
}
echo
echo "capped q/s ratios (median of the rounds' ratios): timepool/knot $(round_ratio timepool knot)," \
  "timepool/nsd $(round_ratio timepool nsd), timepool/null $(round_ratio timepool null)"
echo "uncapped cpu us per query: timepool $(field timepool 4), knot $(field knot 4), nsd $(field nsd 4)," \
  "null $(field null 4); timepool - null = $(awk -v a="$(field timepool 4)" -v b="$(field null 4)" 'BEGIN { printf "%.2f", a - b }') us"
if [ -n "$baseline" ]; then
  echo "timepool/baseline: capped q/s $(round_ratio timepool baseline)," \
    "uncapped cpu us per query $(field timepool 4) vs $(field baseline 4)"
fi
echo "capped q/s against plain timepool: wildcard address (tp-any) $(round_ratio tp-any timepool)," \
  "rate limiting on (tp-rrl) $(round_ratio tp-rrl timepool)"
every_round() { # name, column: the values of all rounds, a/b/c
  for round in $(seq "$rounds"); do cut -d' ' -f"$2" <<<"${result[$1,$round]}"; done | paste -sd/
}
echo "lost at 80% of the capped rate, each round: timepool $(every_round timepool 10)," \
  "knot $(every_round knot 10), nsd $(every_round nsd 10), null $(every_round null 10)"

# The same answers from every real server: the rcode mix of each run,
# within 1 point of timepool's first (the reflector echoes, so it is left
# out).
reference=$(head -n 1 "$work/timepool.rcodes")
echo "rcode mix (timepool's first run): $reference"
mismatch=0
for name in $servers; do
  [ "$name" = null ] && continue
  while read -r mix; do
    if ! same_mix "$reference" "$mix"; then
      echo "RCODE MIX DIFFERS: $name answered $mix"
      mismatch=1
    fi
  done < "$work/$name.rcodes"
done
if [ "$mismatch" -ne 0 ]; then
  echo "bench-dns.sh: the servers did not give the same answers; the figures above do not compare"
  exit 1
fi
echo "every real server gave the same rcode mix in every run"
