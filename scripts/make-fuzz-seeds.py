#!/usr/bin/env python3
"""Write the seed corpus of the `answer` fuzz target (fuzz/corpus/answer).

Each file: one selector byte (bit 0: TCP, bit 1: IPv6 client) then a DNS
query. Deterministic; rerun after changing it and commit the files.
"""
import hashlib
import os
import struct
import sys


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def opt(size=1232, version=0, options=b""):
    return b"\x00" + struct.pack(">HHBBHH", 41, size, 0, version, 0, len(options)) + options


def ecs(family, prefix, address):
    data = struct.pack(">HBB", family, prefix, 0) + address
    return struct.pack(">HH", 8, len(data)) + data


def query(qname, qtype, qclass=1, additional=b"", arcount=0, flags=0x0100, qdcount=1):
    header = struct.pack(">HHHHHH", 0x4242, flags, qdcount, 0, 0, arcount)
    return header + name(qname) + struct.pack(">HH", qtype, qclass) + additional


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/answer"
    os.makedirs(out, exist_ok=True)
    seeds = []
    for qname in ["pool.ntp.org", "0.pool.ntp.org", "2.pool.ntp.org", "de.pool.ntp.org",
                  "2.de.pool.ntp.org", "gb.pool.ntp.org", "3.debian.pool.ntp.org",
                  "nz.pool.ntp.org", "_country.pool.ntp.org", "nope.pool.ntp.org",
                  "example.com", "PoOl.NtP.OrG"]:
        for qtype in (1, 28, 6, 2, 15, 16, 255, 252):
            seeds.append(query(qname, qtype))
    seeds.append(query("pool.ntp.org", 1, additional=opt(), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(version=1), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(options=b"\x00\x03\x00\x00"), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(options=ecs(1, 24, bytes([85, 10, 1]))), arcount=1))
    seeds.append(query("2.pool.ntp.org", 28, additional=opt(options=ecs(2, 48, bytes([0x2a, 0x01, 4, 0xf8, 0, 1]))), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(options=ecs(1, 23, bytes([85, 10, 1]))), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(size=100), arcount=1))
    seeds.append(query("id.server", 16, qclass=3))
    seeds.append(query("version.bind", 16, qclass=3))
    seeds.append(query("pool.ntp.org", 1, flags=0x2900))
    seeds.append(query("pool.ntp.org", 1, qdcount=2))
    seeds.append(query("pool.ntp.org", 1)[:20])
    seeds.append(struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01")
    count = 0
    for i, seed in enumerate(seeds):
        for selector in (0, 3):
            data = bytes([selector]) + seed
            digest = hashlib.sha1(data).hexdigest()[:16]
            with open(os.path.join(out, f"seed-{digest}"), "wb") as f:
                f.write(data)
            count += 1
    print(f"{count} seeds in {out}")


if __name__ == "__main__":
    main()
