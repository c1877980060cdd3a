#!/usr/bin/env bash
# Where the DNS daemon's CPU time goes under the benchmark's load, split
# into user and kernel time per query, for timepool and for the null
# reflector (the same recvmmsg/sendmmsg loop, echo only), and timepool's
# user time by source line.
#
#   scripts/profile-dns.sh            8 s of load per server
#   PROFILE_SECONDS=15 PROFILE_ROUNDS=3 scripts/profile-dns.sh
#
# Hardware counters are not available on these virtual machines, but the
# kernel's cpu-clock software event is: `perf record -e cpu-clock` samples
# CPU 0 (the server's) at ~10 kHz while dnsperf (on CPU 1) sends the query
# mix of scripts/bench-dns.sh to 127.0.0.1. Samples of the server's threads
# in user space and in the kernel, divided by the queries answered in the
# same window, give microseconds per query; /proc/PID/stat's tick-based
# utime/stime are too coarse for a 0.1 us difference. Servers are stopped
# by PID; every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${PROFILE_SECONDS:-8}"
rounds="${PROFILE_ROUNDS:-1}"

. scripts/packages.sh
need dnsperf command -v dnsperf
need linux-perf command -v perf
need binutils command -v addr2line
need bind9-dnsutils command -v dig
install_needed
cargo build --release --quiet
timepool=$(realpath target/release/timepool)
geoip=$(scripts/geoip.sh)

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$timepool" bench-snapshot --geoip "$geoip" --servers 3000 --out "$work/pool.json" --clients "$work/clients.txt" >/dev/null
python3 scripts/bench-queries.py "$work/pool.json" "$work/clients.txt" "$work/queries.raw" "$work/pool.ntp.org.zone" 20000 >/dev/null

# One profiled run: NAME, then the server's command with PORT for the port.
profile() {
  local name=$1; shift
  local port
  port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  taskset -c 0 "${@//PORT/$port}" > "$work/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    dig @127.0.0.1 -p "$port" +time=1 +tries=1 pool.ntp.org SOA >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { echo "$name died:"; cat "$work/$name.log"; exit 1; }
    sleep 0.2
  done
  taskset -c 1 dnsperf -B -d "$work/queries.raw" -s 127.0.0.1 -p "$port" \
    -l "$((seconds + 2))" -c 4 -q 200 -t 1 > "$work/$name.dnsperf" 2>&1 &
  local dnsperf_pid=$!
  sleep 1
  perf record -q -e cpu-clock -F 9999 -C 0 -o "$work/$name.perf" -- sleep "$seconds" 2>/dev/null
  wait "$dnsperf_pid"
  local pid=$server_pid
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=""
  local qps
  qps=$(awk '/Queries per second:/ {print $4}' "$work/$name.dnsperf")
  python3 scripts/perf-lines.py --split "$work/$name.perf" "$pid" "$qps" "$name"
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); server on CPU 0, dnsperf on CPU 1, $seconds s sampled per run"
for round in $(seq "$rounds"); do
  profile timepool "$timepool" dns --listen 127.0.0.1:PORT --snapshot "$work/pool.json" \
    --geoip "$geoip" --threads 1 --reload-interval 3600
  profile null "$timepool" bench-reflector --listen 127.0.0.1:PORT --threads 1
done
echo
echo "timepool's user time by source line (last run; % of its user samples):"
python3 scripts/perf-lines.py --lines "$work/timepool.perf" "$timepool" 25
