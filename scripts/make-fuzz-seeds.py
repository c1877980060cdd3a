#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (fuzz/corpus/NAME).

    scripts/make-fuzz-seeds.py [CORPUS_DIR]     default fuzz/corpus

What each target's input is, is said in its check (fuzz/checks/NAME.rs).
Deterministic but for the signatures' randomness-free Ed25519 (also
deterministic); rerun after changing it and commit the files. Needs
python3-cryptography for the signature seeds.
"""
import copy
import hashlib
import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


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


def answer_queries():
    """Queries for the DNS targets: names of the example zone, EDNS, ECS,
    CHAOS, odd flags and broken packets."""
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
    seeds.append(query("pool.ntp.org", 1, additional=opt(options=cookie(b"clientck")), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(options=cookie(b"clientck", b"S" * 16)), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(options=ecs(1, 24, bytes([85, 10, 1])) + cookie(b"clientck") + b"\x00\x03\x00\x00"), arcount=1))
    seeds.append(query("pool.ntp.org", 1, additional=opt(size=100), arcount=1))
    seeds.append(query("id.server", 16, qclass=3))
    seeds.append(query("version.bind", 16, qclass=3))
    seeds.append(query("pool.ntp.org", 1, flags=0x2900))
    seeds.append(query("pool.ntp.org", 1, qdcount=2))
    seeds.append(query("pool.ntp.org", 1)[:20])
    seeds.append(struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01")
    return seeds


def cookie(client, server=b""):
    return struct.pack(">HH", 10, len(client) + len(server)) + client + server


def answer_seeds():
    for seed in answer_queries():
        for selector in (0, 3):
            yield bytes([selector]) + seed


def query_diff_seeds():
    yield from answer_queries()


def tcp_seeds():
    queries = answer_queries()
    frame = lambda q: struct.pack(">H", len(q)) + q
    yield frame(queries[0])
    yield frame(queries[1]) + frame(queries[13])
    yield b"".join(frame(q) for q in queries[:10])  # past the limit of 8
    yield frame(queries[0])[:7]  # cut short
    yield struct.pack(">H", 0)  # an empty frame
    yield struct.pack(">H", 65535) + queries[0]  # a length past the bytes
    response = bytearray(queries[0])
    response[2] |= 0x80  # a response: the connection closes
    yield frame(bytes(response)) + frame(queries[0])
    yield frame(queries[-2]) + frame(queries[2])


def ntp_packet(leap=0, version=4, mode=4, stratum=2, refid=b"\xc0\x00\x02\x01",
               origin=0x1122334455667788, receive=0x1122334455667788 + (1 << 28),
               transmit=0x1122334455667788 + (1 << 29)):
    first = (leap << 6) | (version << 3) | mode
    return struct.pack(">BBbbII4sQQQQ", first, stratum, 6, -20, 0x100, 0x200, refid,
                       max(origin - (1 << 32), 0), origin, receive, transmit)


def ntp_seeds():
    # The check takes the datagram's own origin as t1 and its first 8 bytes
    # as t4.
    yield ntp_packet()
    yield ntp_packet(stratum=0, refid=b"RATE")
    yield ntp_packet(stratum=0, refid=b"DENY")
    yield ntp_packet(stratum=11)
    yield ntp_packet(stratum=16, leap=3)
    yield ntp_packet(mode=3, stratum=0, origin=0, receive=0)
    yield ntp_packet(version=3, refid=b"GPS\x00")
    yield ntp_packet(version=5)
    yield ntp_packet()[:47]
    yield ntp_packet() + struct.pack(">HH", 0x0104, 20) + b"\x00" * 16  # an extension field
    yield ntp_packet(transmit=0, receive=0xffffffffffffffff)


def ingest_seeds():
    ok = {"server": "192.0.2.10", "ts": 1700000000, "offset": 0.0012, "rtt": 0.021,
          "stratum": 2, "leap": 0, "error": None}
    documents = [
        {"batch_id": 7, "results": [ok]},
        {"batch_id": 7, "results": [ok, {"server": "2001:db8::1", "ts": 1700000001, "error": "timeout"}]},
        {"batch_id": 7, "results": [{"server": "192.0.2.11", "ts": 1700000001, "error": "kod:RATE"}]},
        {"batch_id": 7, "results": []},
        {"batch_id": 7, "results": [ok, ok]},
        {"batch_id": 7, "results": [dict(ok, server="2001:DB8:0::1")]},
        {"batch_id": 7, "results": [dict(ok, stratum=11)]},
        {"batch_id": 7, "results": [dict(ok, rtt=61)]},
        {"batch_id": 7, "results": [dict(ok, ts=0)]},
        {"batch_id": 7, "results": [dict(ok, error="")]},
        {"batch_id": 7, "results": [dict(ok, extra=1)]},
        {"batch_id": 7, "results": [{k: v for k, v in ok.items() if k != "leap"}]},
    ]
    for document in documents:
        yield b"\x00" + json.dumps(document).encode()
    yield b"\x00" + b'{"batch_id": 7, "results": [{"server": "192.0.2.1", "ts": 1e400}]}'
    yield b"\x00" + b'{"batch_id": 7, "results": [' + b"[" * 200
    reference = {"server": "ntp1.example.net:123", "offset": 0.0004, "error": None}
    reports = [
        {"ok": True, "offset": 0.0004, "max_offset": 0.01, "references": [reference]},
        {"ok": False, "offset": 0.05, "max_offset": 0.01,
         "references": [dict(reference, offset=0.05), {"server": "192.0.2.5", "error": "timeout"}]},
        {"ok": False, "offset": None, "max_offset": 0.01, "references": [{"server": "192.0.2.5", "error": "timeout"}]},
        {"ok": True, "offset": 0.0, "max_offset": 0.01, "references": []},
        {"ok": True, "offset": 0.0, "max_offset": 0.01, "references": [{"server": "x\u0007", "offset": 0.0}]},
        {"ok": True, "offset": 0.0, "max_offset": 1e300, "references": [reference] * 17},
    ]
    for report in reports:
        yield b"\x01" + json.dumps(report).encode()


def snapshot_seeds():
    with open(os.path.join(ROOT, "zones", "example.json"), "rb") as f:
        raw = f.read()
    yield raw
    yield raw[: len(raw) // 2]
    yield b"{}"
    yield b"[]"
    yield b'{"version": 1' + b"[" * 100
    example = json.loads(raw)
    variants = []
    for key in list(example.keys()):
        v = copy.deepcopy(example)
        del v[key]
        variants.append(v)
    if isinstance(example.get("servers"), list) and example["servers"]:
        v = copy.deepcopy(example)
        v["servers"].append(copy.deepcopy(v["servers"][0]))
        variants.append(v)
        v = copy.deepcopy(example)
        first = v["servers"][0]
        for field in list(first.keys()):
            if isinstance(first[field], str):
                first[field] = "not an address"
        variants.append(v)
    if isinstance(example.get("zones"), list) and example["zones"]:
        v = copy.deepcopy(example)
        v["zones"] = v["zones"][:1]
        variants.append(v)
    for v in variants:
        yield json.dumps(v).encode()


SIGNATURE_PRIVATE_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIB6PK4QXlU1TURKbfj5UTZfdBxE7i6475sBDcwtHpaCf
-----END PRIVATE KEY-----
"""


def signature_seeds():
    """A line signed by the fixture key of fuzz/checks/signature.rs."""
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(SIGNATURE_PRIVATE_PEM, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = hashlib.sha256(public).digest()[:8].hex()
    for body in (b'{"serial": 1}', b"", b"\x00" * 64):
        line = f"ed25519 {key_id} {key.sign(body).hex()}".encode()
        yield b"\x00" + line + b"\n" + body
    yield b"\x00" + f"ed25519 {key_id} {'00' * 64}".encode() + b"\nbytes"
    yield b"\x00" + b"ed25519 0000000000000000 " + b"ab" * 64 + b"\nbytes"
    yield b"\x01" + b"rsa one two three\nbytes"
    yield b"\x02" + SIGNATURE_PRIVATE_PEM
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    yield b"\x03" + public_pem
    yield b"\x03" + public_pem.replace(b"MCow", b"MCox")


def geoip_seeds():
    with open(os.path.join(ROOT, "tests", "data", "geo-test.mmdb"), "rb") as f:
        raw = f.read()
    yield raw
    marker = raw.rfind(b"\xab\xcd\xefMaxMind.com")
    yield raw[marker:]  # the metadata alone
    yield raw[: len(raw) // 2] + raw[marker:]  # half the tree, the metadata kept
    yield raw[:-1]
    for at in (0, 7, 100, len(raw) // 3, marker - 1, marker + 20):
        flipped = bytearray(raw)
        flipped[at % len(raw)] ^= 0xFF
        yield bytes(flipped)
    yield b""


def xdp_frame_seeds():
    """Ethernet frames as an AF_XDP worker receives them: UDP queries over
    IPv4 and IPv6, padded, and the frames it must refuse (wrong lengths,
    fragments, IPv4 options, TCP, a VLAN tag, a short payload, ARP)."""
    macs = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1])
    dns = query("pool.ntp.org", 1, additional=opt(), arcount=1)

    def v4(payload, udp_delta=0, first=0x45, protocol=17, fragment=0x4000, total_delta=0):
        udp = struct.pack("!HHHH", 40000, 53, 8 + len(payload) + udp_delta, 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", first, 0, 20 + len(udp) + total_delta, 0, fragment, 64,
                         protocol, 0, bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1]))
        return macs + b"\x08\x00" + ip + udp

    def v6(payload):
        udp = struct.pack("!HHHH", 40000, 53, 8 + len(payload), 0) + payload
        client = bytes.fromhex("20010002" + "0" * 22 + "02")
        server = bytes.fromhex("20010002" + "0" * 22 + "01")
        return macs + b"\x86\xdd" + struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 64, client, server) + udp

    return [
        v4(dns),
        v6(dns),
        v4(dns[:12]) + bytes(20),
        v4(dns, udp_delta=3),
        v4(dns, total_delta=40),
        v4(dns, fragment=0x2000),
        v4(dns, first=0x46),
        v4(dns, protocol=6),
        macs + b"\x81\x00\x00\x05" + v4(dns)[12:],
        v6(b"\x01\x02\x03"),
        bytes([255] * 6 + [2, 0, 0, 0, 0, 1]) + b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(20),
    ]


TARGETS = {
    "answer": answer_seeds,
    "geoip": geoip_seeds,
    "ingest": ingest_seeds,
    "ntp": ntp_seeds,
    "query_diff": query_diff_seeds,
    "signature": signature_seeds,
    "snapshot": snapshot_seeds,
    "tcp": tcp_seeds,
    "xdp_frame": xdp_frame_seeds,
}


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")
    for target, seeds in TARGETS.items():
        out = os.path.join(corpus, target)
        os.makedirs(out, exist_ok=True)
        count = 0
        for data in seeds():
            digest = hashlib.sha1(data).hexdigest()[:16]
            with open(os.path.join(out, f"seed-{digest}"), "wb") as f:
                f.write(data)
            count += 1
        print(f"{target}: {count} seeds in {out}")


if __name__ == "__main__":
    main()
