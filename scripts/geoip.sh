#!/usr/bin/env bash
# Puts a real GeoIP database in data/geoip/GeoLite2-City.mmdb for demos and
# benchmarks: the GeoLite2-City of 2018-07-03 that the PyPI package
# maxminddb-geolite2==2018.703 ships. GeoLite2 data is created by MaxMind
# (https://www.maxmind.com) and licensed CC BY-SA 4.0.
#
# It is old: for production use a current database installed by MaxMind's
# geoipupdate (GeoLite2-Country.mmdb or GeoLite2-City.mmdb) and pass it with
# `timepool dns --geoip FILE`.
#
# Idempotent: does nothing when the file is already there. Prints its path.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="$repo_root/data/geoip"
target="$target_dir/GeoLite2-City.mmdb"
package="maxminddb-geolite2==2018.703"

if [[ -s "$target" ]]; then
    echo "$target"
    exit 0
fi

python=""
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [[ -z "$python" ]]; then
    echo "geoip.sh: error: python3 is needed (for pip and to unpack the archive)" >&2
    exit 1
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "geoip.sh: error: pip is not installed for $python (try: apt-get install python3-pip)" >&2
    exit 1
fi

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

# The package is published as a source archive; take a wheel if one exists.
if ! "$python" -m pip download --quiet --no-deps --no-binary :all: \
        --dest "$work_dir" "$package" >&2; then
    echo "geoip.sh: no source archive of $package, trying a wheel" >&2
    if ! "$python" -m pip download --quiet --no-deps --only-binary :all: \
            --dest "$work_dir" "$package" >&2; then
        echo "geoip.sh: error: pip could not download $package" >&2
        exit 1
    fi
fi

archive="$(find "$work_dir" -maxdepth 1 -type f \( -name '*.tar.gz' -o -name '*.zip' -o -name '*.whl' \) | head -n 1)"
if [[ -z "$archive" ]]; then
    echo "geoip.sh: error: pip downloaded no archive of $package into $work_dir" >&2
    exit 1
fi

# Extract the one .mmdb member (tar.gz, zip and wheel are all handled by
# Python's standard library, so no unzip is needed).
mkdir -p "$target_dir"
"$python" - "$archive" "$target.partial" <<'PY'
import shutil, sys, tarfile, zipfile

archive, destination = sys.argv[1], sys.argv[2]

def copy(source):
    with open(destination, "wb") as out:
        shutil.copyfileobj(source, out)

if archive.endswith(".tar.gz"):
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".mmdb")]
        if not members:
            sys.exit(f"geoip.sh: error: no .mmdb file in {archive}")
        copy(tar.extractfile(members[0]))
else:
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.endswith(".mmdb")]
        if not names:
            sys.exit(f"geoip.sh: error: no .mmdb file in {archive}")
        with zf.open(names[0]) as member:
            copy(member)
PY

if [[ ! -s "$target.partial" ]]; then
    echo "geoip.sh: error: the extracted database is empty" >&2
    rm -f "$target.partial"
    exit 1
fi
# Rename last so an interrupted run never leaves a half-written database.
mv "$target.partial" "$target"
echo "$target"
