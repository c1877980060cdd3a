# Sourced by scripts/bench-dns.sh and scripts/bench-dns-xdp.sh: what both
# benchmarks do the same way. Needs $work (the run's directory).

# Knot's configuration for the benchmark's static zone
# ($work/pool.ntp.org.zone), one UDP worker, in $work/knot.conf:
#   knot_conf LISTEN [XDP_LISTEN]     e.g. 127.0.0.1@5300, tpbs@53
knot_conf() {
  mkdir -p "$work/knot"
  {
    printf 'server:\n    rundir: "%s"\n    listen: %s\n' "$work/knot" "$1"
    printf '    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n'
    if [ -n "${2:-}" ]; then
      printf 'xdp:\n    listen: %s\n    udp: on\n' "$2"
    fi
    cat <<CONF
database:
    storage: "$work/knot"
log:
  - target: stderr
    any: error
zone:
  - domain: pool.ntp.org
    file: "$work/pool.ntp.org.zone"
    journal-content: none
    zonefile-load: whole
CONF
  } > "$work/knot.conf"
}

# dnsperf's "Response codes:" line as "RCODE=PERCENT ..." (sorted).
rcode_mix() {
  awk '/Response codes:/ { sub(/.*Response codes: */, ""); n = split($0, f, /, */);
       for (i = 1; i <= n; i++) { split(f[i], p, / /); gsub(/[()%]/, "", p[3]); print p[1] "=" p[3] } }' \
    | sort | paste -sd' '
}

# Whether two rcode mixes ("NOERROR=80 NXDOMAIN=20") agree within 1 point.
same_mix() { # reference, mix
  awk -v a="$1" -v b="$2" 'BEGIN {
      n = split(a, x, " "); m = split(b, y, " "); if (n != m) exit 1;
      for (i = 1; i <= n; i++) { split(x[i], p, "="); split(y[i], q, "=");
        if (p[1] != q[1] || p[2] - q[2] > 1 || q[2] - p[2] > 1) exit 1 } }'
}

# The median of the numbers on standard input (the lower middle for an
# even count).
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
