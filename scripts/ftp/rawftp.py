#!/usr/bin/env python3
"""rawftp: the raw FTP client of scripts/e2e-ftp's attack cases.

  rawftp.py HOST SCENARIO DATAPORT HOLDFILE [N]

It plays one scenario on a control connection to HOST:21, naming its own
address and DATAPORT in every PORT, and listens on DATAPORT meanwhile, so
that a data connection fwx should not have let through is seen. Then it
prints "ready" and keeps the control connection open (fwx revokes a
control connection's pinholes when it ends) until HOLDFILE exists, while
scripts/e2e-ftp tries, from the outside, every port fwx announced. Last it
prints "data N", the connections that reached DATAPORT.

Scenarios:

  login-less-port  PORT before USER/PASS (fwx refuses it: 530), then login
  http-preamble    what a browser sends when a page makes it POST a form to
                   port 21 (NAT Slipstreaming): an HTTP request written at
                   once, without waiting for a greeting, whose body holds
                   USER, PASS and PORT lines
  refused-port     login, EPSV ALL, then PORT, which the server refuses
                   (RFC 2428: no PORT after EPSV ALL)
  port-flood       login, then N PORTs (default 20), each accepted

Output lines: "control ADDR:PORT" (the control connection's local end),
"send LINE", "reply LINE" (each reply line read), "ready", "data N".
Exits 1 with the error on stderr if the control connection fails.
"""

import os
import socket
import sys
import threading
import time

TIMEOUT = 10


def out(*words):
    print(*words, flush=True)


class Control:
    def __init__(self, host):
        self.s = socket.create_connection((host, 21), timeout=TIMEOUT)
        self.f = self.s.makefile("rb")
        a = self.s.getsockname()
        out("control", f"{a[0]}:{a[1]}")

    def send(self, line):
        out("send", line[:120])
        self.s.sendall(line.encode() + b"\r\n")

    def reply(self):
        """Reads one whole reply (all lines of a multi-line one) and returns
        its last line."""
        first = None
        while True:
            raw = self.f.readline()
            if not raw:
                raise EOFError("control connection closed")
            line = raw.decode("latin-1").rstrip("\r\n")
            out("reply", line[:200])
            if first is None and len(line) >= 4 and line[:3].isdigit() and line[3] == "-":
                first = line[:3]
                continue
            if len(line) >= 4 and line[:3].isdigit() and line[3] == " " and (first is None or line[:3] == first):
                return line

    def cmd(self, line):
        self.send(line)
        return self.reply()

    def login(self):
        r = self.cmd("USER anonymous")
        if r.startswith("331"):
            r = self.cmd("PASS rawftp@example.com")
        if not r.startswith("230"):
            raise RuntimeError(f"login failed: {r}")


def port_arg(addr, port):
    return ",".join(addr.split(".") + [str(port >> 8), str(port & 0xFF)])


def listen(port, counter):
    ln = socket.socket()
    ln.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ln.bind(("0.0.0.0", port))
    ln.listen(16)

    def accept():
        while True:
            try:
                c, _ = ln.accept()
            except OSError:
                return
            counter.append(1)
            c.close()

    threading.Thread(target=accept, daemon=True).start()
    return ln


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    host, scenario, dataport, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    n = int(sys.argv[5]) if len(sys.argv) == 6 else 20
    connections = []
    ln = listen(dataport, connections)
    try:
        if scenario == "http-preamble":
            s = socket.create_connection((host, 21), timeout=TIMEOUT)
            a = s.getsockname()
            out("control", f"{a[0]}:{a[1]}")
            body = f"USER anonymous\r\nPASS x\r\nPORT {port_arg(a[0], dataport)}\r\n"
            req = (f"POST / HTTP/1.1\r\nHost: {host}:21\r\nContent-Type: text/plain\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n{body}")
            out("send", repr(req))
            s.sendall(req.encode())
            # Read what comes back (the server's greeting and its replies
            # to each line) for a moment.
            s.settimeout(2)
            buf = b""
            try:
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    buf += b
            except socket.timeout:
                pass
            for line in buf.decode("latin-1").splitlines():
                out("reply", line[:200])
        else:
            c = Control(host)
            own = c.s.getsockname()[0]
            c.reply()  # the greeting
            port = "PORT " + port_arg(own, dataport)
            if scenario == "login-less-port":
                c.cmd(port)
                c.login()
            elif scenario == "refused-port":
                c.login()
                c.cmd("EPSV ALL")
                c.cmd(port)
            elif scenario == "port-flood":
                c.login()
                for _ in range(n):
                    c.cmd(port)
            else:
                sys.exit(f"rawftp: unknown scenario {scenario}")
            s = c.s
        out("ready")
        deadline = time.monotonic() + 60
        while not os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # a connection just made is counted
        s.close()
        ln.close()
        out("data", len(connections))
    except (OSError, EOFError, RuntimeError) as e:
        print(f"rawftp: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
