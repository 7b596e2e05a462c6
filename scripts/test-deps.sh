#!/usr/bin/env bash
# What the real-peer tests need besides Rust, as Debian/Ubuntu packages: iproute2 (ip),
# util-linux (unshare, setpriv), netcat-openbsd (nc), iperf (version 2), python3, tshark,
# curl, wrk, apache2-utils (ab), gcc and valgrind (the C ABI tests),
# and the /dev/net/tun device node. As root it installs what is missing with apt-get; when
# it cannot, it prints exactly what to install and exits 1. Used by scripts/test.sh (as root)
# and .ci/run.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
{ command -v unshare && command -v setpriv; } >/dev/null || need+=(util-linux)
command -v nc >/dev/null || need+=(netcat-openbsd)
# iperf -v exits 1 even when it prints its version: read its output, not its status.
grep -q 'iperf version 2' <<<"$(iperf -v 2>&1 || true)" || need+=(iperf)
command -v python3 >/dev/null || need+=(python3)
command -v curl >/dev/null || need+=(curl)
command -v wrk >/dev/null || need+=(wrk)
command -v ab >/dev/null || need+=(apache2-utils)
command -v tshark >/dev/null || need+=(tshark)
command -v cc >/dev/null || need+=(gcc)            # builds the example C target (chimney check)
command -v valgrind >/dev/null || need+=(valgrind) # ABI misuse tests run chimney under it
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-deps: installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    if ! { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }; then
      echo "test-deps: apt-get could not install: ${need[*]}; install these packages and run again" >&2
      exit 1
    fi
  else
    echo "test-deps: the real-peer tests need these packages: ${need[*]}" >&2
    echo "test-deps: install them (e.g. apt-get install ${need[*]}) and run again" >&2
    exit 1
  fi
fi
if [ ! -e /dev/net/tun ]; then
  mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 666 /dev/net/tun || {
    echo "test-deps: /dev/net/tun is missing and could not be made (mknod /dev/net/tun c 10 200)" >&2
    exit 1
  }
fi
