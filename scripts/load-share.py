#!/usr/bin/env python3
"""Measure how a running timepool DNS daemon shares out its servers.

Sends N queries for one pool name (with an EDNS Client Subnet, so they are
located like clients of one country) and prints, per server that can be
in the answer: its weight share, the share of all addresses it should get
(inclusion probability proportional to weight, zones/README.md "Answers"),
and what it got: its share of first positions and of all addresses.

    scripts/load-share.py --snapshot zones/example.json --server 127.0.0.1:5353 \
        --name pool.ntp.org --subnet 85.214.1.0/24 --queries 20000

Only the standard library; only the given server is sent anything.
"""

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys


def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def make_query(qid, name, qtype, subnet):
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1)
    question = wire_name(name) + struct.pack(">HH", qtype, 1)
    options = b""
    if subnet is not None:
        family = 1 if subnet.version == 4 else 2
        prefix = subnet.prefixlen
        address = subnet.network_address.packed[: (prefix + 7) // 8]
        data = struct.pack(">HBB", family, prefix, 0) + address
        options = struct.pack(">HH", 8, len(data)) + data
    opt = b"\x00" + struct.pack(">HHIH", 41, 1232, 0, len(options)) + options
    return header + question + opt


def skip_name(packet, at):
    while True:
        length = packet[at]
        if length == 0:
            return at + 1
        if length & 0xC0 == 0xC0:
            return at + 2
        at += 1 + length


def parse_answers(packet, qid):
    """The A/AAAA addresses and TXT strings of the answer section, in order."""
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", packet[:12])
    if rid != qid:
        raise ValueError("wrong id")
    if flags & 0x000F:
        raise ValueError(f"rcode {flags & 0xF}")
    at = 12
    for _ in range(qd):
        at = skip_name(packet, at) + 4
    addresses, texts = [], []
    for _ in range(an):
        at = skip_name(packet, at)
        rtype, _, _, length = struct.unpack(">HHIH", packet[at : at + 10])
        data = packet[at + 10 : at + 10 + length]
        at += 10 + length
        if rtype in (1, 28):
            addresses.append(str(ipaddress.ip_address(data)))
        elif rtype == 16:
            i = 0
            while i < len(data):
                texts.append(data[i + 1 : i + 1 + data[i]].decode())
                i += 1 + data[i]
    return addresses, texts


def ask(sock, server, qid, name, qtype, subnet):
    sock.sendto(make_query(qid, name, qtype, subnet), server)
    while True:
        packet, _ = sock.recvfrom(4096)
        try:
            return parse_answers(packet, qid)
        except ValueError:
            if struct.unpack(">H", packet[:2])[0] == qid:
                raise


def inclusion(weights, k):
    """Inclusion probabilities min(1, k*w/W), the capped weighed again."""
    probability = {}
    rest = dict(weights)
    k = min(k, len(rest))
    while True:
        total = sum(rest.values())
        left = k - len(probability)
        capped = [s for s, w in rest.items() if left * w >= total]
        if not capped or left == 0:
            break
        for s in capped:
            probability[s] = 1.0
            del rest[s]
    total = sum(rest.values())
    left = k - len(probability)
    for s, w in rest.items():
        probability[s] = left * w / total if total else 0.0
    return probability


def expected(snapshot, chain, label, family, k):
    """Each server's inclusion probability: the first zone's label, topped
    up from the parents' without the servers already in (zones/README.md)."""
    servers = {s["id"]: s for s in snapshot["servers"]}
    probability, taken = {}, set()
    for zone in chain:
        spec = snapshot["zones"].get(zone)
        if spec is None:
            continue
        if label == 0:
            ids = spec["servers"]
        else:
            numbered = spec.get("numbered", [])
            if label - 1 >= len(numbered):
                continue  # no list of its own for the label: the parents answer
            ids = numbered[label - 1]
        need = k - len(taken)
        if need <= 0:
            break
        weights = {}
        for sid in ids:
            is_v6 = ":" in servers[sid]["address"]
            if (family == 28) == is_v6 and sid not in taken:
                weights[sid] = servers[sid]["weight"]
        if len(weights) <= need:
            for sid in weights:
                probability[sid] = 1.0
                taken.add(sid)
            continue
        probability.update(inclusion(weights, need))
        break
    return {servers[sid]["address"]: (servers[sid]["weight"], p) for sid, p in probability.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", required=True, help="the snapshot the daemon serves")
    parser.add_argument("--server", default="127.0.0.1:5353", help="HOST:PORT of the daemon")
    parser.add_argument("--name", default="pool.ntp.org", help="the pool name to ask for")
    parser.add_argument("--type", default="A", choices=["A", "AAAA"])
    parser.add_argument("--subnet", help="ECS subnet, e.g. 85.214.1.0/24 (a client in Germany)")
    parser.add_argument("--queries", type=int, default=20000)
    args = parser.parse_args()

    snapshot = json.load(open(args.snapshot))
    host, _, port = args.server.rpartition(":")
    server = (host.strip("[]"), int(port))
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(2)
    subnet = ipaddress.ip_network(args.subnet) if args.subnet else None
    qtype = 1 if args.type == "A" else 28

    origins = [o["name"].rstrip(".").lower() for o in snapshot["origins"]]
    name = args.name.rstrip(".").lower()
    origin = next((o for o in origins if name == o or name.endswith("." + o)), None)
    if origin is None:
        sys.exit(f"{name} is under none of the snapshot's origins {origins}")
    k = next(o["max_hosts"] for o in snapshot["origins"] if o["name"].rstrip(".").lower() == origin)
    labels = name[: -len(origin)].rstrip(".").split(".") if name != origin else []
    label = 0
    if labels and labels[0].isdigit():
        label = int(labels.pop(0)) + 1
    zone = labels[0] if labels else "@"
    zone = snapshot.get("aliases", {}).get(zone, zone)
    if zone == "@":
        # Geo-targeted: the daemon says which zones it tried.
        _, texts = ask(sock, server, 1, "_country." + origin, 16, subnet)
        targets = next((t for t in texts if t.startswith("targets ")), "targets @")
        chain = targets.split()[1:]
    else:
        chain = [zone]
        while snapshot["zones"].get(chain[-1], {}).get("parent"):
            chain.append(snapshot["zones"][chain[-1]]["parent"])
    shares = expected(snapshot, chain, label, qtype, k)

    first, every, answers = {}, {}, 0
    for i in range(args.queries):
        qid = random.randrange(65536)
        try:
            addresses, _ = ask(sock, server, qid, name, qtype, subnet)
        except (socket.timeout, ValueError):
            continue
        if not addresses:
            continue
        answers += 1
        first[addresses[0]] = first.get(addresses[0], 0) + 1
        for address in addresses:
            every[address] = every.get(address, 0) + 1
    if answers == 0:
        sys.exit("no answers")
    handed = sum(every.values())
    total_weight = sum(w for w, _ in shares.values())
    print(f"{args.name} {args.type} via {' > '.join(chain)}, {answers} answers, "
          f"{handed / answers:.2f} addresses each")
    print(f"{'server':<40} {'weight':>9} {'weight %':>9} {'due %':>7} {'first %':>8} {'all %':>7} {'all/due':>8}")
    worst = 1.0
    for address, (weight, p) in sorted(shares.items(), key=lambda item: -item[1][0]):
        due = 100 * p / k
        got_first = 100 * first.get(address, 0) / answers
        got_all = 100 * every.get(address, 0) / handed
        ratio = got_all / due if due else 0.0
        worst = max(worst, abs(ratio - 1) + 1)
        print(f"{address:<40} {weight:>9} {100 * weight / total_weight:>8.2f}% {due:>6.2f}% "
              f"{got_first:>7.2f}% {got_all:>6.2f}% {ratio:>8.3f}")
    strays = set(every) - set(shares)
    if strays:
        print(f"addresses not expected: {sorted(strays)}")
    print("'due' is a server's inclusion probability / addresses per answer: "
          "its weight share unless it is capped (in every answer) or topped up.")


if __name__ == "__main__":
    main()
