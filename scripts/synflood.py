#!/usr/bin/env python3
"""Spoofed SYN flooder for the real-peer tests (run inside the test's own network namespace).

Usage: synflood.py DST_IP DST_PORT COUNT [--martians N]

Sends COUNT SYNs to DST_IP:DST_PORT from random sources in 10.0.0.0/8 through a raw socket
(IP_HDRINCL), TTL 7 so that a capture tells them from the target's packets (TTL 64). With
--martians N, also N segments from or to addresses that must never be answered (broadcast,
the /24's directed broadcast, multicast, loopback, 0.0.0.0) or from/to port 0. Prints the
number sent.
"""
import random
import socket
import struct
import sys


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def segment(src: str, dst: str, sport: int, dport: int, seq: int, flags: int) -> bytes:
    opts = struct.pack("!BBH", 2, 4, 1460)  # MSS
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(opts) // 4) << 4, flags, 64240, 0, 0) + opts
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 7, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp


def main() -> None:
    dst, dport, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    martians = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--martians" else 0
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    rnd = random.Random(1)
    sent = 0
    net = dst.rsplit(".", 1)[0]
    # (0.0.0.0 is not here: the kernel fills a zero source in.)
    bad_src = ["255.255.255.255", net + ".255", net + ".0", "224.0.0.5", "239.1.2.3", "127.0.0.1"]
    bad_dst = ["255.255.255.255", net + ".255", net + ".0", "224.0.0.1"]
    for i in range(count + martians):
        src = "10.%d.%d.%d" % (rnd.randrange(256), rnd.randrange(256), rnd.randrange(1, 255))
        sport, to, port, flags = rnd.randrange(1024, 65535), dst, dport, 0x02
        if i >= count:
            k = i - count
            flags = (0x02, 0x10)[k % 2]  # SYN, then a bare ACK
            kind = k % 4
            if kind == 0:
                src = bad_src[(k // 4) % len(bad_src)]
            elif kind == 1:
                to = bad_dst[(k // 4) % len(bad_dst)]
            elif kind == 2:
                sport = 0
            else:
                port = 0
        try:
            # Routed towards the target whatever the header's destination says.
            s.sendto(segment(src, to, sport, port, rnd.getrandbits(32), flags), (dst, 0))
            sent += 1
        except OSError as e:
            print("send to %s failed: %s" % (to, e), file=sys.stderr)
    print("SENT", sent)


main()
