#!/usr/bin/env python3
"""probe: the small network tools scripts/e2e needs that no Debian tool gives.

  probe.py tcp-connect ADDR PORT SECONDS
      One TCP connect; prints "connected", "refused", "timeout" or the errno
      name, then the elapsed seconds. Always exits 0: the caller judges.
  probe.py udp-send ADDR PORT SECONDS
      A connected UDP socket sends a datagram every 0.2 s and reads; an ICMP
      error for the flow surfaces as an errno on a later recv (EHOSTUNREACH
      for "administratively prohibited", ECONNREFUSED for "port
      unreachable"). Prints "reply", "timeout" or the errno name.
  probe.py sink tcp|udp ADDR PORT FILE
      Listens on ADDR:PORT and appends one line per accepted connection or
      received datagram to FILE (created empty once listening, so an empty FILE
      means nothing arrived). Runs until killed.
  probe.py udp-echo ADDR PORT
      Echoes every UDP datagram received on ADDR:PORT back to its sender,
      whole (up to 65507 bytes). Runs until killed.
  probe.py udp-big ADDR PORT SIZE SECONDS
      Sends one UDP datagram of SIZE bytes to a udp-echo at ADDR:PORT, every
      second until the same SIZE bytes come back or SECONDS pass; larger
      than the MTU, it crosses fragmented both ways. Prints "echoed SIZE",
      "differs", "timeout" or the errno name.
  probe.py notify-sink SOCKET FILE
      Plays systemd's side of sd_notify: binds the datagram unix socket
      SOCKET (to hand a service as NOTIFY_SOCKET) and appends each message
      to FILE on one line, its newlines turned into spaces. Runs until
      killed.

Addresses may be IPv4 or IPv6.
"""

import errno
import socket
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_connect(addr, port, secs):
    start = time.monotonic()
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(secs)
    try:
        s.connect((addr, port))
        result = "connected"
    except socket.timeout:
        result = "timeout"
    except ConnectionRefusedError:
        result = "refused"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
    print(f"{result} {time.monotonic() - start:.2f}")


def udp_send(addr, port, secs):
    start = time.monotonic()
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.connect((addr, port))
    s.settimeout(0.2)
    result = "timeout"
    while time.monotonic() - start < secs:
        try:
            s.send(b"fwx-e2e probe\n")
            s.recv(2048)
            result = "reply"
            break
        except socket.timeout:
            continue
        except OSError as e:
            result = errno.errorcode.get(e.errno, str(e))
            break
    s.close()
    print(f"{result} {time.monotonic() - start:.2f}")


def sink(proto, addr, port, path):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family(addr), kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if proto == "tcp":
        s.listen(16)
    # Created only once listening, so the caller can wait for it.
    with open(path, "w", encoding="ascii"):
        pass
    while True:
        if proto == "tcp":
            conn, peer = s.accept()
            conn.close()
        else:
            _, peer = s.recvfrom(65535)
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{proto} {peer[0]}:{peer[1]} -> {addr}:{port}\n")


def udp_echo(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def udp_big(addr, port, size, secs):
    payload = bytes((i * 7 + i // 251) & 0xFF for i in range(size))
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.connect((addr, port))
    s.settimeout(1.0)
    start = time.monotonic()
    result = "timeout"
    while time.monotonic() - start < secs:
        try:
            s.send(payload)
            got = s.recv(65535)
            result = f"echoed {len(got)}" if got == payload else "differs"
            break
        except socket.timeout:
            continue
        except OSError as e:
            result = errno.errorcode.get(e.errno, str(e))
            break
    s.close()
    print(result)


def notify_sink(sock_path, path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    with open(path, "w", encoding="utf-8"):
        pass
    while True:
        msg = s.recv(4096).decode("utf-8", "replace")
        with open(path, "a", encoding="utf-8") as f:
            f.write(msg.replace("\n", " ").strip() + "\n")


def main(argv):
    if len(argv) == 4 and argv[0] == "tcp-connect":
        tcp_connect(argv[1], int(argv[2]), float(argv[3]))
    elif len(argv) == 4 and argv[0] == "udp-send":
        udp_send(argv[1], int(argv[2]), float(argv[3]))
    elif len(argv) == 5 and argv[0] == "sink" and argv[1] in ("tcp", "udp"):
        sink(argv[1], argv[2], int(argv[3]), argv[4])
    elif len(argv) == 3 and argv[0] == "udp-echo":
        udp_echo(argv[1], int(argv[2]))
    elif len(argv) == 5 and argv[0] == "udp-big":
        udp_big(argv[1], int(argv[2]), int(argv[3]), float(argv[4]))
    elif len(argv) == 3 and argv[0] == "notify-sink":
        notify_sink(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
