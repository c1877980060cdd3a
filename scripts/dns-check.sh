#!/usr/bin/env bash
# End-to-end checks of `timepool dns` with real clients: dig for each kind
# of answer, dnsperf while the snapshot is swapped under load (no query
# may be lost), then a daemon on wildcard addresses with cookies and rate
# limiting (replies from 127.0.0.2, 127.0.0.3 and ::1, dig +dnssec and
# +cookie). Only loopback; bounded in time; daemons are stopped by PID.
#
#   scripts/dns-check.sh [PATH-TO-TIMEPOOL-BINARY] [DNSPERF-SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-target/debug/timepool}"
perf_seconds="${2:-8}"
for tool in dig dnsperf python3; do
  command -v "$tool" >/dev/null || { echo "dns-check.sh: $tool is missing (scripts/test.sh installs it)" >&2; exit 1; }
done

work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
snapshot="$work/snapshot.json"
publish() { # serial: write aside, then rename into place (atomic)
  python3 - "$1" "$snapshot" <<'PY'
import json, os, sys
serial, path = int(sys.argv[1]), sys.argv[2]
doc = json.load(open("zones/example.json"))
doc["serial"] = serial
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f)
    f.flush(); os.fsync(f.fileno())
os.rename(tmp, path)
PY
}
publish 1
# A lowered EDNS floor so that TC can be seen (every pool answer fits 512).
"$binary" dns --listen "127.0.0.1:$port" --snapshot "$snapshot" --reload-interval 0.2 \
  --identity dns-check --nsid node-check --edns-min-payload 64 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 50); do
  dig @127.0.0.1 -p "$port" +time=1 +tries=1 pool.ntp.org SOA >/dev/null 2>&1 && break
  sleep 0.1
done

failures=0
DIG=(dig @127.0.0.1 -p "$port" +time=2 +tries=1)
expect() { # description, command output, pattern
  if grep -qE -- "$3" <<<"$2"; then echo "ok   $1"; else echo "FAIL $1"; echo "$2" | sed 's/^/     /'; failures=$((failures + 1)); fi
}
distinct_count() { sort | uniq | grep -c . || true; }

out=$("${DIG[@]}" pool.ntp.org SOA)
expect "SOA at the apex" "$out" "status: NOERROR.*"$'\n'".*flags: qr aa"
expect "SOA record" "$out" "IN	SOA	ns1.pool.ntp.org. hostmaster.pool.ntp.org. 1 "
out=$("${DIG[@]}" +short pool.ntp.org NS | wc -l)
expect "four NS records" "$out" "^4$"
for name in pool.ntp.org 0.pool.ntp.org de.pool.ntp.org 3.europe.pool.ntp.org gb.pool.ntp.org 1.debian.pool.ntp.org nz.pool.ntp.org; do
  for i in 1 2 3 4 5; do
    addresses=$("${DIG[@]}" +short "$name" A)
    total=$(grep -c . <<<"$addresses" || true)
    distinct=$(distinct_count <<<"$addresses")
    if [ "$total" -lt 1 ] || [ "$total" -gt 4 ] || [ "$total" != "$distinct" ]; then
      echo "FAIL $name A: $total addresses, $distinct distinct"; failures=$((failures + 1))
    fi
  done
  echo "ok   $name A: 1..4 distinct addresses (5 queries)"
done
out=$("${DIG[@]}" +short 2.pool.ntp.org AAAA | distinct_count)
expect "2.pool.ntp.org AAAA: 4 distinct" "$out" "^4$"
out=$("${DIG[@]}" nope.pool.ntp.org A)
expect "NXDOMAIN" "$out" "status: NXDOMAIN"
expect "NXDOMAIN has the SOA in authority" "$out" "AUTHORITY: 1"
out=$("${DIG[@]}" pool.ntp.org AAAA)
expect "NODATA (AAAA outside 2.*)" "$out" "status: NOERROR.*ANSWER: 0, AUTHORITY: 1|ANSWER: 0, AUTHORITY: 1"
expect "NODATA is NOERROR" "$out" "status: NOERROR"
out=$("${DIG[@]}" example.com A)
expect "REFUSED outside the origin" "$out" "status: REFUSED"
out=$("${DIG[@]}" +opcode=status pool.ntp.org 2>&1)
expect "NOTIMP for opcode STATUS" "$out" "status: NOTIMP"
out=$("${DIG[@]}" +edns=1 +noednsnegotiation pool.ntp.org 2>&1)
expect "BADVERS for EDNS version 1" "$out" "status: BADVERS"
out=$("${DIG[@]}" +bufsize=100 +ignore 2.pool.ntp.org AAAA)
expect "TC on a small EDNS size" "$out" "flags: qr tc aa|flags: qr aa tc|flags:.* tc"
out=$("${DIG[@]}" +tcp +short 2.pool.ntp.org AAAA | distinct_count)
expect "the full answer over TCP" "$out" "^4$"
out=$("${DIG[@]}" +short id.server CH TXT)
expect "CH TXT id.server" "$out" '"dns-check"'
out=$("${DIG[@]}" +nsid pool.ntp.org)
expect "NSID" "$out" 'NSID: .*"node-check"'
out=$("${DIG[@]}" +short pool.ntp.org MX)
expect "null MX" "$out" "^0 \.$"

# dnsperf while the snapshot is swapped: no query lost.
queries="$work/queries.txt"
for name in pool.ntp.org 0.pool.ntp.org 1.pool.ntp.org 2.pool.ntp.org de.pool.ntp.org 2.de.pool.ntp.org us.pool.ntp.org nope.pool.ntp.org; do
  echo "$name A"; echo "$name AAAA"
done > "$queries"
dnsperf -s 127.0.0.1 -p "$port" -d "$queries" -l "$perf_seconds" -Q 4000 -c 4 > "$work/dnsperf.txt" 2>&1 &
perf=$!
serial=1
end=$((SECONDS + perf_seconds - 1))
while [ $SECONDS -lt $end ]; do
  sleep 0.5
  serial=$((serial + 1))
  publish "$serial"
done
wait "$perf"
sleep 0.5
cat "$work/dnsperf.txt" | grep -E "Queries (sent|completed|lost)|Response codes|Queries per second" | sed 's/^/     /'
out=$(cat "$work/dnsperf.txt")
expect "dnsperf: no query lost across $((serial - 1)) swaps" "$out" "Queries lost: +0 "
out=$("${DIG[@]}" +short pool.ntp.org SOA)
expect "the last snapshot (serial $serial) is served" "$out" " $serial 5400 "
loads=$(grep -c "zone snapshot loaded" "$work/daemon.log" || true)
echo "     daemon logged $loads snapshot loads"

kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

# As an anycast node runs: wildcard addresses, a shared cookie secret,
# rate limiting on. Every reply must come from the address the query was
# sent to (127.0.0.2, 127.0.0.3 and ::1 are all this host's).
echo "0123456789abcdef0123456789abcdef" > "$work/cookie-secret"
chmod 600 "$work/cookie-secret"
any_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$binary" dns --listen "0.0.0.0:$any_port,[::]:$any_port" --snapshot "$snapshot" \
  --cookie-secret-file "$work/cookie-secret" --rrl-rate 1000 --identity dns-check 2>"$work/anycast.log" &
pid=$!
for _ in $(seq 50); do
  dig @127.0.0.1 -p "$any_port" +time=1 +tries=1 pool.ntp.org SOA >/dev/null 2>&1 && break
  sleep 0.1
done
for server in 127.0.0.2 127.0.0.3 ::1; do
  out=$(dig @"$server" -p "$any_port" +time=2 +tries=1 pool.ntp.org A)
  expect "wildcard listener: @$server answers from $server" "$out" "status: NOERROR"
  expect "wildcard listener: @$server, 4 addresses" "$out" "ANSWER: 4"
  out=$(dig @"$server" -p "$any_port" +time=2 +tries=1 +tcp pool.ntp.org A)
  expect "wildcard listener: @$server over TCP" "$out" "SERVER: $server#$any_port\(.*\) \(TCP\)"
done
out=$(dig @127.0.0.2 -p "$any_port" +time=2 +tries=1 +dnssec pool.ntp.org A)
expect "the DO bit is copied (dig +dnssec)" "$out" "EDNS: version: 0, flags: do;"
out=$(dig @127.0.0.2 -p "$any_port" +time=2 +tries=1 +cookie pool.ntp.org A)
expect "a server cookie for a client cookie" "$out" "COOKIE: [0-9a-f]{48} \(good\)"
cookie=$(awk '/COOKIE:/ {print $3}' <<<"$out")
out=$(dig @127.0.0.2 -p "$any_port" +time=2 +tries=1 +cookie="$cookie" pool.ntp.org A)
expect "the server cookie sent back is good" "$out" "COOKIE: [0-9a-f]{48} \(good\)"
out=$(dig @127.0.0.1 -p "$any_port" +time=2 +tries=1 +short _status.pool.ntp.org TXT)
expect "_status from loopback" "$out" '"version timepool .*" "node dns-check" "snapshot serial [0-9]+ loaded [0-9]+s ago" "uptime [0-9]+s"'

if [ "$failures" -gt 0 ]; then
  echo "dns-check.sh: $failures check(s) failed"; exit 1
fi
echo "dns-check.sh: all checks passed"
