#!/usr/bin/env bash
# Runs the delivery benchmark and prints delivery vs memcpy medians measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p chimney --bench delivery -- "$@" >/dev/null
python3 - <<'PY'
import json
base = "target/criterion/deliver_64k_into_256k/%s/64KiB/new/estimates.json"
m = {k: json.load(open(base % k))["median"]["point_estimate"] for k in ("memcpy", "delivery")}
mib = 64 * 64 * 1024 / 2**20
for k, ns in m.items():
    print(f"{k:9} median {ns/1000:8.1f} us per {mib:.0f} MiB = {mib/1024/(ns/1e9):6.2f} GiB/s")
print(f"delivery / memcpy throughput ratio: {m['memcpy']/m['delivery']:.2f}x (goal >= 0.90x)")
PY
