#!/usr/bin/env python3
"""ftpc: the Python ftplib client of scripts/e2e-ftp.

  ftpc.py HOST MODE OP ARGS...

MODE is "pasv" (passive, PASV: ftplib sends EPSV only on IPv6) or "port"
(active via set_pasv(False), PORT: EPRT only on IPv6). Logs in anonymously
on port 21. OP is one of:

  get REMOTE LOCAL    RETR REMOTE into LOCAL
  put LOCAL REMOTE    STOR LOCAL as REMOTE
  list PATH           LIST PATH, printed to stdout

ftplib normally ignores the address of a 227 reply and connects to the
control connection's peer instead (trust_server_pasv_ipv4_address is
False); this client trusts it, so that the address a gateway put into the
reply is really used, like curl's --no-ftp-skip-pasv-ip. Exits 0 on success
and 1 with the error on stderr otherwise.
"""

import ftplib
import sys

TIMEOUT = 20


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    host, mode, op, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    if mode not in ("pasv", "port"):
        sys.exit(f"ftpc: unknown mode {mode}")
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.trust_server_pasv_ipv4_address = True
    try:
        ftp.connect(host, 21)
        ftp.login()
        ftp.set_pasv(mode == "pasv")
        if op == "get" and len(args) == 2:
            with open(args[1], "wb") as f:
                ftp.retrbinary(f"RETR {args[0]}", f.write)
        elif op == "put" and len(args) == 2:
            with open(args[0], "rb") as f:
                ftp.storbinary(f"STOR {args[1]}", f)
        elif op == "list" and len(args) == 1:
            ftp.retrlines(f"LIST {args[0]}")
        else:
            sys.exit(f"ftpc: bad operation {op} {args}")
        ftp.quit()
    except (OSError, EOFError, ftplib.Error) as e:
        print(f"ftpc: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
