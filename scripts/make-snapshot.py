#!/usr/bin/env python3
"""Write zones/example.json, a snapshot (format v1) of made-up servers.

  scripts/make-snapshot.py > zones/example.json

Deterministic; documentation addresses only (RFC 5737, RFC 3849). The
pool-sized snapshot of the benchmarks comes from `timepool bench-snapshot`
(src/bench.rs), which uses the zone builder's own rules.

Numbered labels are dealt as zones/README.md ("Zone building") says (N < 8: every label
gets all; else one shuffle deals k = max(2, N // 4) to each of 0..3, the
leftovers dealt round-robin too).
"""
import argparse
import ipaddress
import json
import random

NETSPEEDS = [512, 1500, 3000, 6000, 12000, 25000, 50000, 100000, 250000,
             500000, 1000000, 1500000, 2000000, 3000000]

CONTINENTS = ["africa", "antarctica", "asia", "europe", "north-america",
              "oceania", "south-america"]

EXAMPLE_COUNTRIES = [
    # zone, continent, IPv4 servers, IPv6 servers
    ("de", "europe", 9, 4), ("fr", "europe", 5, 2), ("uk", "europe", 6, 2),
    ("nl", "europe", 4, 1), ("us", "north-america", 9, 4),
    ("ca", "north-america", 3, 1), ("jp", "asia", 4, 2), ("sg", "asia", 2, 1),
    ("br", "south-america", 3, 1), ("za", "africa", 2, 0),
    ("au", "oceania", 3, 1), ("nz", "oceania", 1, 0),
]


def deal_numbered(servers, rng):
    """The pool's rule for the numbered labels 0..3, leftovers dealt too."""
    n = len(servers)
    if n < 8:
        return [sorted(servers) for _ in range(4)]
    k = max(2, n // 4)
    shuffled = list(servers)
    rng.shuffle(shuffled)
    labels = [shuffled[i * k:(i + 1) * k] for i in range(4)]
    for i, server in enumerate(shuffled[4 * k:]):
        labels[i % 4].append(server)
    return [sorted(label) for label in labels]


def origin(name, ipv6_everywhere):
    return {
        "name": name,
        "soa": {"mname": f"ns1.{name}", "rname": f"hostmaster.{name}",
                "refresh": 5400, "retry": 5400, "expire": 1209600,
                "minimum": 3600, "ttl": 3600},
        "ns": ["a.ntpns.org", "b.ntpns.org", "c.ntpns.org", "d.ntpns.org"],
        "ns_ttl": 86400,
        "answer_ttl": 150,
        "max_hosts": 4,
        "ipv6_everywhere": ipv6_everywhere,
    }


def build(countries, v4_pool, v6_prefix, rng, serial, vendor_aliases):
    servers = []
    members = {}  # zone -> server ids
    v4 = iter(v4_pool)
    next_id = 1
    for zone, continent, n4, n6 in countries:
        for family, count in (("v4", n4), ("v6", n6)):
            for i in range(count):
                if family == "v4":
                    address = str(next(v4))
                else:
                    address = str(v6_prefix[0] + (next_id << 16) + i + 1)
                servers.append({"id": next_id, "address": address,
                                "weight": rng.choice(NETSPEEDS)})
                for z in (zone, continent, "@"):
                    members.setdefault(z, []).append(next_id)
                next_id += 1
    zones = {}
    parents = {"@": None}
    for zone, continent, _, _ in countries:
        parents[zone] = continent
        parents.setdefault(continent, "@")
    for c in CONTINENTS:
        parents.setdefault(c, "@")
    for zone, parent in parents.items():
        ids = sorted(members.get(zone, []))
        entry = {"servers": ids, "numbered": deal_numbered(ids, rng)}
        if parent is not None:
            entry = {"parent": parent, **entry}
        zones[zone] = entry
    aliases = {"gb": "uk"}
    for vendor in vendor_aliases:
        aliases[vendor] = "@"
    return {
        "version": 1,
        "serial": serial,
        "generated": "2026-11-22T00:00:00Z",
        "origins": [origin("pool.ntp.org", False)],
        "servers": servers,
        "zones": dict(sorted(zones.items())),
        "aliases": aliases,
    }


def documentation_v4():
    for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"):
        yield from ipaddress.ip_network(net).hosts()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serial", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    snapshot = build(EXAMPLE_COUNTRIES, documentation_v4(),
                     [ipaddress.IPv6Address("2001:db8::")], rng,
                     args.serial, ["debian"])
    print(json.dumps(snapshot, indent=1))


if __name__ == "__main__":
    main()
