#!/usr/bin/env python3
"""attack.py: the NAT Slipstreaming-style cases of scripts/e2e-sip, and the
probes that check they opened nothing.

  attack.py sink ADDR FILE PORT...
      Listens on ADDR, UDP and TCP, on each PORT, and appends a line
      "udp|tcp PORT FROM" to FILE for each datagram or connection (FILE is
      created empty once listening). Runs until killed.
  attack.py record ADDR PORT FILE
      Accepts one TCP connection on ADDR:PORT and writes what it receives,
      until the client stops sending for a second, to FILE.
  attack.py post SERVER PORT
      Sends an HTTP POST whose body is SIP (a REGISTER whose Contact names
      this host's port 5061 over TCP, an INVITE whose session description
      names its port 6000), in two writes so that a segment starts with the
      REGISTER, as NAT Slipstreaming's browser does.
  attack.py invite SERVER MEDIA_ADDR LINGER
      Sends, from port 5062, an INVITE whose session description names
      MEDIA_ADDR port 6000, and prints the status line of the answer (or
      "timeout"); then, for LINGER seconds, a line "stray FROM ..." for
      anything else that reaches port 5062.
  attack.py uas ADDR FILE
      A UAS on ADDR:5060 that answers each INVITE 200 with a session
      description naming a third party (198.51.100.3 port 7000), and writes
      the media port the INVITE announced to FILE. Runs until killed.
  attack.py probe ADDR PORT... [--from SRC]
      From this host (from its address SRC), sends a UDP datagram to
      ADDR:PORT from a new port and opens a TCP connection to it (0.5 s),
      for each PORT; prints what happened.
"""

import socket
import sys
import threading
import time


def sink(addr, path, ports):
    out = open(path, "a", buffering=1)
    lock = threading.Lock()

    def note(line):
        with lock:
            out.write(line + "\n")

    def udp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        while True:
            _, frm = s.recvfrom(65536)
            note(f"udp {port} {frm[0]}:{frm[1]}")

    def tcp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(8)
        while True:
            c, frm = s.accept()
            note(f"tcp {port} {frm[0]}:{frm[1]}")
            c.close()

    for p in ports:
        threading.Thread(target=udp, args=(p,), daemon=True).start()
        threading.Thread(target=tcp, args=(p,), daemon=True).start()
    time.sleep(0.2)
    open(path + ".ready", "w").close()
    threading.Event().wait()


def record(addr, port, path):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    open(path + ".ready", "w").close()
    c, _ = s.accept()
    c.settimeout(1)
    data = b""
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
    except socket.timeout:
        pass
    open(path, "wb").write(data)


def sip(start, fields, body=""):
    head = start + "\r\n" + "".join(f + "\r\n" for f in fields)
    if body:
        head += "Content-Type: application/sdp\r\n"
    return head + f"Content-Length: {len(body)}\r\n\r\n" + body


def sdp(addr, port):
    return (f"v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def request(method, me, server, callid, contact, body="", transport="UDP", port=5062):
    return sip(f"{method} sip:bob@{server} SIP/2.0", [
        f"Via: SIP/2.0/{transport} {me}:{port};branch=z9hG4bK-{callid}",
        "Max-Forwards: 70",
        f"From: <sip:alice@{me}>;tag=a1",
        f"To: <sip:bob@{server}>",
        f"Call-ID: {callid}",
        f"CSeq: 1 {method}",
        f"Contact: {contact}",
    ], body)


def local_addr(server):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, 9))
    return s.getsockname()[0]


def post(server, port):
    me = local_addr(server)
    body = (request("REGISTER", me, server, "slip-1", f"<sip:alice@{me}:5061;transport=tcp>", transport="TCP", port=5061)
            + request("INVITE", me, server, "slip-2", f"<sip:alice@{me}:5061;transport=tcp>", sdp(me, 6000), "TCP", 5061))
    head = f"POST /upload HTTP/1.1\r\nHost: {server}:{port}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    c = socket.create_connection((server, port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(head.encode())
    time.sleep(0.2)
    c.sendall(body.encode())
    time.sleep(0.5)
    c.close()
    sys.stdout.write(head + body)


def invite(server, media_addr, linger):
    me = local_addr(server)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((me, 5062))
    s.settimeout(3)
    s.sendto(request("INVITE", me, server, "other-host", f"<sip:alice@{me}:5062>", sdp(media_addr, 6000)).encode(), (server, 5060))
    try:
        data, _ = s.recvfrom(65536)
        print(data.decode(errors="replace").split("\r\n")[0], flush=True)
    except socket.timeout:
        print("timeout", flush=True)
    # Whatever else reaches the UA's port came in through a hole.
    end = time.monotonic() + linger
    while time.monotonic() < end:
        s.settimeout(max(end - time.monotonic(), 0.01))
        try:
            data, frm = s.recvfrom(65536)
            print(f"stray {frm[0]}:{frm[1]} {data[:40]!r}", flush=True)
        except socket.timeout:
            break


def uas(addr, path):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 5060))
    while True:
        data, frm = s.recvfrom(65536)
        text = data.decode(errors="replace")
        if not text.startswith("INVITE "):
            continue
        head, _, body = text.partition("\r\n\r\n")
        for line in body.split("\r\n"):
            if line.startswith("m=audio "):
                open(path, "a").write(line.split()[1] + "\n")
        fields = [l for l in head.split("\r\n")[1:] if l.split(":")[0].lower() in ("via", "from", "call-id", "cseq")]
        fields += [l + ";tag=b1" for l in head.split("\r\n")[1:] if l.lower().startswith("to:")]
        fields.append(f"Contact: <sip:bob@{addr}:5060>")
        s.sendto(sip("SIP/2.0 200 OK", fields, sdp("198.51.100.3", 7000)).encode(), frm)


def probe(addr, ports, src=""):
    for p in ports:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((src, 0))
        u.sendto(b"fwx-e2e probe", (addr, p))
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((src, 0))
        t.settimeout(0.5)
        try:
            t.connect((addr, p))
            result = "connected"
        except OSError as e:
            result = type(e).__name__
        print(f"port {p} from {src or 'default'}: udp sent, tcp {result}")
        u.close()
        t.close()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sink":
        sink(args[0], args[1], [int(p) for p in args[2:]])
    elif cmd == "record":
        record(args[0], int(args[1]), args[2])
    elif cmd == "post":
        post(args[0], int(args[1]))
    elif cmd == "invite":
        invite(args[0], args[1], float(args[2]))
    elif cmd == "uas":
        uas(args[0], args[1])
    elif cmd == "probe":
        src = ""
        if "--from" in args:
            i = args.index("--from")
            src, args = args[i + 1], args[:i] + args[i + 2:]
        probe(args[0], [int(p) for p in args[1:]], src)
    else:
        sys.exit(f"attack.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
