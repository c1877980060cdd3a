#!/usr/bin/env bash
# Soak run (issue 18, point 5): the pool's parts at once on loopback under
# mixed load for MINUTES (default 60), a row every 10 s, then a condensed
# table and a verdict; exits 1 when the verdict is FAIL. What runs and what
# is checked: examples/soak.rs.
#
#   scripts/soak.sh [MINUTES]
#
# - `timepool demo`: web app, zone builder, three monitors ingesting every
#   5 s, a DNS node following the control plane;
# - `timepool dns` on a signed pool-sized snapshot (3000 servers,
#   `timepool bench-snapshot`) replaced every 10 s and the GeoLite2
#   database replaced every minute, capped at 25% of a core (cgroup quota
#   1 ms per 4 ms: a short period, so the cap adds at most 3 ms of waiting
#   to an answer instead of the 75 ms of the usual 100-ms period) and loaded
#   at 80% of the capacity measured under the cap;
# - 200 web requests/s over the public pages.
#
# Only loopback; every process is stopped by its PID; needs root for the
# cgroup, and the cgroup v1 cpu hierarchy (see below). The release build is used, as in production.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-60}"
case $minutes in
  '' | *[!0-9]* | 0) echo "usage: scripts/soak.sh [MINUTES] (a whole number, at least 1)" >&2; exit 2 ;;
esac

# The cap applies to the UDP worker threads only (the v1 cpu hierarchy's
# `tasks`). Under cgroup v2 that takes a threaded subtree, not built yet:
# say so before building anything.
if [ ! -d /sys/fs/cgroup/cpu ] || [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  echo "soak.sh: needs the cgroup v1 cpu hierarchy (/sys/fs/cgroup/cpu) to cap the UDP workers; this machine has cgroup v2 only (boot with systemd.unified_cgroup_hierarchy=0 for a hybrid layout)" >&2
  exit 1
fi

. scripts/packages.sh
need python3 command -v python3
need python3-pip python3 -m pip --version
install_needed
cargo build --release --quiet --bin timepool --example soak
timepool=target/release/timepool
geoip=$(scripts/geoip.sh)

work=$(mktemp -d)
cgroup=""
cleanup() {
  # The soak program has stopped its processes; the cgroup is empty.
  [ -n "$cgroup" ] && [ -d "$cgroup" ] && rmdir "$cgroup" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Two draws of the same pool (the snapshot swaps alternate them) and the
# query mix of bench-dns.sh over the first.
"$timepool" bench-snapshot --geoip "$geoip" --servers 3000 --seed 1 \
  --out "$work/pool-1.json" --clients "$work/clients.txt" >/dev/null
"$timepool" bench-snapshot --geoip "$geoip" --servers 3000 --seed 2 \
  --out "$work/pool-2.json" --clients /dev/null >/dev/null
python3 scripts/bench-queries.py "$work/pool-1.json" "$work/clients.txt" \
  "$work/queries.raw" "$work/pool.ntp.org.zone" 20000

. scripts/cgroup.sh
make_cpu_cgroup "timepool-soak-$$" 1000 4000

echo "== $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
target/release/examples/soak "$timepool" "$geoip" "$work/queries.raw" "$minutes" "$work" "$cgroup"
