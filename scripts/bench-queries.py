#!/usr/bin/env python3
"""Query mix and static zone for scripts/bench-dns.sh.

  bench-queries.py SNAPSHOT CLIENTS OUT_QUERIES OUT_ZONE [COUNT]

OUT_QUERIES: dnsperf -B input (each message preceded by its 2-byte length).
The mix: geo names (pool.ntp.org, N.pool.ntp.org, vendor zones) with and
without ECS from every country in CLIENTS, country and numbered country
names, AAAA, and names that do not exist.
OUT_ZONE: the same names as a static zone for Knot and NSD, 4 A (or AAAA)
records per name, taken from the snapshot's servers of that label.
"""
import ipaddress
import json
import random
import struct
import sys

snapshot_path, clients_path, queries_path, zone_path = sys.argv[1:5]
count = int(sys.argv[5]) if len(sys.argv) > 5 else 20000
rng = random.Random(7)
snapshot = json.load(open(snapshot_path))
addresses = {s["id"]: s["address"] for s in snapshot["servers"]}
zones = snapshot["zones"]
clients = []
for line in open(clients_path):
    country, v4, v6 = line.split()
    clients.append((country, v4, v6))
countries = [c for c in zones if len(c) == 2]


def wire_name(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"


def ecs_option(network, family_v6):
    net = ipaddress.ip_network(network, strict=False)
    prefix = min(net.prefixlen if net.prefixlen > (48 if family_v6 else 24) else (48 if family_v6 else 24), 56 if family_v6 else 24)
    # Any address inside the network, truncated to the source prefix.
    host = net.network_address + rng.randrange(0, min(net.num_addresses, 1 << 20))
    sub = ipaddress.ip_network(f"{host}/{prefix}", strict=False)
    raw = sub.network_address.packed[: (prefix + 7) // 8]
    data = struct.pack(">HBB", 2 if family_v6 else 1, prefix, 0) + raw
    return struct.pack(">HH", 8, len(data)) + data


def query(name, qtype, ecs=None):
    additional = b""
    arcount = 0
    if ecs is not None:
        options = ecs
        additional = b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(options)) + options
        arcount = 1
    header = struct.pack(">HHHHHH", rng.randrange(65536), 0x0100, 1, 0, 0, arcount)
    return header + wire_name(name) + struct.pack(">HH", qtype, 1) + additional


A, AAAA = 1, 28
messages = []
static = set()  # (name, qtype) served by the static zone
for _ in range(count):
    roll = rng.random()
    country, v4, v6 = rng.choice(clients)
    if roll < 0.30:  # geo name, A, ECS
        name = rng.choice(["pool.ntp.org", "0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org", "3.pool.ntp.org"])
        messages.append(query(name, A, ecs_option(v4, False)))
        static.add((name, A))
    elif roll < 0.40:  # geo AAAA with IPv6 ECS
        if v6 == "-":
            continue
        name = rng.choice(["pool.ntp.org", "2.pool.ntp.org"])
        messages.append(query(name, AAAA, ecs_option(v6, True)))
        static.add((name, AAAA))
    elif roll < 0.50:  # geo name without ECS (located by the source address)
        name = rng.choice(["pool.ntp.org", "1.pool.ntp.org", "2.debian.pool.ntp.org"])
        messages.append(query(name, A))
        static.add((name, A))
    elif roll < 0.60:  # vendor zone with ECS
        name = f"{rng.randrange(4)}.{rng.choice(['debian', 'ubuntu', 'android'])}.pool.ntp.org"
        messages.append(query(name, A, ecs_option(v4, False)))
        static.add((name, A))
    elif roll < 0.75:  # country names
        zone = rng.choice(countries)
        name = f"{zone}.pool.ntp.org"
        messages.append(query(name, A))
        static.add((name, A))
    elif roll < 0.85:  # numbered country names
        zone = rng.choice(countries)
        name = f"{rng.randrange(4)}.{zone}.pool.ntp.org"
        messages.append(query(name, A))
        static.add((name, A))
    elif roll < 0.92:  # continent AAAA
        name = f"2.{rng.choice(['europe', 'asia', 'north-america'])}.pool.ntp.org"
        messages.append(query(name, AAAA))
        static.add((name, AAAA))
    else:  # NXDOMAIN
        messages.append(query(f"nope{rng.randrange(1000)}.pool.ntp.org", A))

with open(queries_path, "wb") as out:
    for message in messages:
        out.write(struct.pack(">H", len(message)) + message)


def label_servers(name, qtype):
    labels = name[: -len(".pool.ntp.org")] if name != "pool.ntp.org" else ""
    parts = labels.split(".") if labels else []
    number = None
    if parts and parts[0].isdigit():
        number = int(parts[0])
        parts = parts[1:]
    zone = parts[0] if parts else "@"
    zone = {"debian": "@", "ubuntu": "@", "android": "@", "gb": "uk"}.get(zone, zone)
    entry = zones.get(zone) or zones["@"]
    ids = entry["numbered"][number] if number is not None else entry["servers"]
    want_v6 = qtype == AAAA
    chosen = [addresses[i] for i in ids if (":" in addresses[i]) == want_v6][:4]
    if len(chosen) < 4:
        chosen += [addresses[i] for i in zones["@"]["servers"] if (":" in addresses[i]) == want_v6 and addresses[i] not in chosen][: 4 - len(chosen)]
    return chosen


with open(zone_path, "w") as zone_file:
    zone_file.write("$ORIGIN pool.ntp.org.\n$TTL 150\n")
    zone_file.write("@ 3600 IN SOA ns1.pool.ntp.org. hostmaster.pool.ntp.org. 1 5400 5400 1209600 3600\n")
    for ns in "abcd":
        zone_file.write(f"@ 86400 IN NS {ns}.ntpns.org.\n")
    for name, qtype in sorted(static):
        for address in label_servers(name, qtype):
            zone_file.write(f"{name}. 150 IN {'AAAA' if qtype == AAAA else 'A'} {address}\n")
print(f"{len(messages)} queries, {len(static)} static names")
