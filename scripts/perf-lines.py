#!/usr/bin/env python3
"""Reads a `perf record -e cpu-clock -C N` file for scripts/profile-dns.sh.

  perf-lines.py --split PERF_DATA PID QPS NAME
      the process PID's samples in user space and in the kernel, as
      microseconds per query at QPS queries/s (samples / all samples of the
      CPU = share of its time)
  perf-lines.py --lines PERF_DATA BINARY [N]
      BINARY's user samples by source line (addr2line; for code inlined
      into a caller, the innermost line of the project's own source)
"""
import collections
import os
import re
import subprocess
import sys


def perf_script(data, fields):
    return subprocess.run(["perf", "script", "-i", data, "-F", fields],
                          capture_output=True, text=True, check=True).stdout


def split(data, pid, qps, name):
    total = user = kernel = 0
    for line in perf_script(data, "pid,ip,dso").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        total += 1
        if parts[0] != pid:
            continue
        if "kernel" in parts[-1]:
            kernel += 1
        else:
            user += 1
    per_query = lambda samples: samples / max(total, 1) * 1e6 / qps
    print(f"{name:9s} {qps:9.0f} q/s   user {per_query(user):.3f} us/q   "
          f"kernel {per_query(kernel):.3f} us/q   total {per_query(user + kernel):.3f} us/q")


def lines(data, binary, count):
    # Sample addresses are run-time addresses; the binary is position
    # independent: subtract where its code was mapped.
    mapping = None
    for line in subprocess.run(["perf", "script", "-i", data, "--show-mmap-events"],
                               capture_output=True, text=True).stdout.splitlines():
        if "MMAP" in line and line.rstrip().endswith(binary) and "r-xp" in line:
            found = re.search(r"\[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0x([0-9a-f]+)", line)
            if found:
                mapping = (int(found.group(1), 16), int(found.group(2), 16))
                break
    if mapping is None:
        sys.exit(f"{binary} is not mapped in {data}")
    headers = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True).stdout
    offset_to_address = 0
    for line in headers.splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD" and "E" in fields[6:-1]:
            offset_to_address = int(fields[2], 16) - int(fields[1], 16)
    samples = collections.Counter()
    total = 0
    for line in perf_script(data, "ip,dso").splitlines():
        parts = line.split()
        if len(parts) < 2 or binary not in parts[1]:
            continue
        address = int(parts[0], 16) - mapping[0] + mapping[1] + offset_to_address
        samples[address] += 1
        total += 1
    addresses = list(samples)
    # addr2line -i prints one or more function/line pairs per address; a
    # 0 after each address marks where the next one starts ("??", "??:0").
    arguments = []
    for address in addresses:
        arguments += [hex(address), "0x0"]
    output = subprocess.run(["addr2line", "-e", binary, "-f", "-i", "-C"] + arguments,
                            capture_output=True, text=True).stdout.splitlines()
    chunks, current = [], []
    for line in output:
        current.append(line)
        if line.startswith("??:") and len(current) >= 2 and current[-2] == "??":
            chunks.append(current[:-2])
            current = []
    by_line = collections.Counter()
    for address, chunk in zip(addresses, chunks):
        frames = [(chunk[i], chunk[i + 1]) for i in range(0, len(chunk) - 1, 2)]
        if not frames:
            continue
        root = os.getcwd() + "/"
        own = next((f for f in frames if f[1].startswith(root)), frames[0])
        path = own[1].split(" ")[0]
        where = path[len(root):] if path.startswith(root) else "/".join(path.split("/")[-2:])
        by_line[f"{where:32s} {own[0][:70]}"] += samples[address]
    for key, value in by_line.most_common(count):
        print(f"{100 * value / max(total, 1):6.2f}%  {key}")


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--split":
        split(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    elif len(sys.argv) >= 4 and sys.argv[1] == "--lines":
        lines(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 30)
    else:
        sys.exit(__doc__)
