#!/usr/bin/env bash
# The project's test command (README): every unit, integration, property and doc test.
#
# As root: installs what the real-peer tests need (scripts/test-deps.sh: apt-get, or it says
# exactly what to install and stops), then runs everything. A real-peer test whose tool is
# missing fails; none passes silently.
# As non-root: the real-peer tests (TUN devices in network namespaces need root) are skipped
# by name, and the run lists them as SKIPPED before and after.
# Extra arguments go to `cargo test` (before its `--`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  bash scripts/test-deps.sh
  cargo test --workspace --all-targets "$@"
else
  cargo build -q --workspace --tests
  if ! list=$(cargo test -q -p chimney-cli --test real_peers -- --list); then
    echo "test.sh: listing the real-peer tests failed (see above)" >&2
    exit 1
  fi
  skipped=$(printf '%s\n' "$list" | sed -n 's/: test$//p')
  n=$(printf '%s\n' "$skipped" | grep -c . || true)
  banner() {
    echo "SKIPPED: $n real-peer tests need root (network namespaces, TUN devices); run as root to include them:"
    printf '  %s\n' $skipped
  }
  banner
  # --skip goes to libtest; the criterion benchmarks (run once in test mode) take no filter.
  cargo test --workspace --lib --bins --tests --examples "$@" -- --skip needs_root::
  cargo test --workspace --benches "$@"
  banner
fi
cargo test --workspace --doc
