#!/usr/bin/env python3
"""syslog-sink: receive syslog datagrams on a Unix socket and append them to a file.

  syslog-sink.py SOCKET FILE

pure-ftpd logs only through syslog(3), i.e. to /dev/log; scripts/ftp/serve
mounts SOCKET there in pure-ftpd's private mount namespace, so the server's
log ends up in FILE instead of the machine's syslog (if it has one). SOCKET
exists once the sink listens. Runs until killed.
"""

import os
import re
import signal
import socket
import sys

# "<PRI>" at the start of a syslog datagram; the rest is kept as sent.
PRI = re.compile(rb"^<\d+>")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: syslog-sink.py SOCKET FILE")
    path, out = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    with open(out, "ab", buffering=0) as f:
        while True:
            data = sock.recv(65536)
            f.write(PRI.sub(b"", data).rstrip(b"\0\n") + b"\n")


if __name__ == "__main__":
    main()
