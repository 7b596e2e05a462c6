#!/usr/bin/env bash
# The project's test command (README): every unit, integration, property and doc test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
