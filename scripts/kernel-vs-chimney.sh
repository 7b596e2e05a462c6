#!/usr/bin/env bash
# Speed, side by side in one run: one Linux TCP connection of BYTES (default 1 GiB)
#   (a) kernel → kernel over a veth pair between two network namespaces (MTU 1500), and
#   (b) kernel → chimney through the TUN (chimney demo, MTU 1500),
# printing both Gbit/s and the ratio. Needs root. Namespaces get unique names and are removed
# on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${1:-1073741824}
MTU=${MTU:-1500}
A="chimney-cmp-$$-a"; B="chimney-cmp-$$-b"
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip link add "cmpa$$" netns "$A" type veth peer name "cmpb$$" netns "$B"
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip -n "$A" addr add 198.19.0.1/24 dev "cmpa$$"; ip -n "$B" addr add 198.19.0.2/24 dev "cmpb$$"
ip -n "$A" link set "cmpa$$" mtu "$MTU" up; ip -n "$B" link set "cmpb$$" mtu "$MTU" up
cargo build --release -q -p chimney-cli
ip netns exec "$B" python3 - "$BYTES" > /tmp/cmp-$$.out <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.19.0.2", 5001)); s.listen(1)
c, _ = s.accept(); buf = bytearray(1 << 20); n = 0; t0 = None
while True:
    k = c.recv_into(buf)
    if t0 is None: t0 = time.perf_counter()
    if k == 0: break
    n += k
dt = time.perf_counter() - t0
print(n, dt)
PY
sleep 0.5
ip netns exec "$A" python3 - "$BYTES" <<'PY'
import socket, sys
n = int(sys.argv[1]); s = socket.create_connection(("198.19.0.2", 5001))
chunk = memoryview(bytes(1 << 20)); sent = 0
while sent < n:
    k = min(len(chunk), n - sent); s.sendall(chunk[:k]); sent += k
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
PY
wait
read -r kn kt < /tmp/cmp-$$.out; rm -f /tmp/cmp-$$.out
kernel=$(python3 -c "print(f'{$kn*8/$kt/1e9:.2f}')")
chim=$(./target/release/chimney demo --json --connections 1 --bytes "$BYTES" --mtu "$MTU" | python3 -c "import json,sys; v=json.load(sys.stdin); c=v['connections'][0]; print(f\"{c['gbps']:.2f}\" if v['ok'] else 'FAILED')")
echo "kernel → kernel (veth, MTU $MTU): $kernel Gbit/s"
echo "kernel → chimney (TUN, MTU $MTU): $chim Gbit/s"
python3 -c "print(f'ratio chimney/kernel: {float(\"$chim\")/float(\"$kernel\"):.2f}x')" 2>/dev/null || true
