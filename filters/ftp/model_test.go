package ftp_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/ftp"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// The FTP session model: nothing is opened or rewritten for a connection
// that does not look like FTP from its first byte, or before the login.

var activePORT = "PORT " + ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001))

// untouched reads what the server received until a line starting with
// PORT, and checks that it is the client's line, not rewritten.
func untouched(t *testing.T, srv *server, want string) {
	t.Helper()
	for {
		got := srv.received(t)
		if strings.HasPrefix(got, "PORT") {
			if got != want {
				t.Fatalf("server got %q, want %q untouched", got, want)
			}
			return
		}
	}
}

func notFTPRecord(t *testing.T, l *fwxlab.Lab, reason string) {
	t.Helper()
	rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-refused", "cause": "not-ftp"})[0]
	if r, _ := rec["reason"].(string); !strings.Contains(r, reason) {
		t.Errorf("not-ftp record gives %q, want it to mention %q", r, reason)
	}
	if rec["client"] != fwxlab.ClientAddr.String() || rec["server"] != fwxlab.ServerAddr.String() || rec["rule"] != "ftp-out" {
		t.Errorf("record %v: want the client, the server and the rule", rec)
	}
}

// TestClientWritesFirst: a client that writes before the server's greeting
// is not an FTP client, even if what it wrote, completed after the
// greeting, reads as FTP: its connection is relayed untouched, even once
// it logs in and sends PORT.
func TestClientWritesFirst(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	greet := make(chan struct{})
	srv.hold["greeting"] = greet
	c := dialNoLogin(t, l.Client, ftpServer)
	c.send("USER anonymous")
	notFTPRecord(t, l, "before the server's greeting")
	close(greet)
	c.send("\r\nPASS guest\r\n" + activePORT + "\r\n")
	for _, code := range []string{"220", "331", "230", "200"} {
		c.expect(code)
	}
	untouched(t, srv, activePORT)
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes opened", n)
	}
}

// TestMultiLineGreeting: the server has spoken with the first line of a
// multi-line 220; a client that writes before its last line is FTP, and
// the greeting's last line answers none of its commands.
func TestMultiLineGreeting(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	srv.greeting = "220-Welcome\r\n220-to the lab"
	hold := make(chan struct{})
	srv.hold["greeting-end"] = hold
	c := dialNoLogin(t, l.Client, ftpServer)
	c.expect("220-Welcome")
	c.expect("220-to the lab")
	c.send("USER anonymous\r\nPASS guest\r\n")
	close(hold)
	c.expect("220 ")
	c.expect("331")
	c.expect("230")
	c.cmd(activePORT, "200")
	if got := srv.received(t); !strings.HasPrefix(got, "PORT 198,51,100,1,") {
		t.Errorf("server got %q, want PORT rewritten", got)
	}
}

// TestNotFTPPreamble: a first line that is not an FTP command (an HTTP
// request, binary junk with NULs) makes the connection not FTP: it is
// relayed untouched, never reset, and nothing is opened or rewritten.
func TestNotFTPPreamble(t *testing.T) {
	for _, tt := range []struct{ name, preamble, reason string }{
		{"HTTP POST", "POST /upload HTTP/1.1\r\nHost: 198.51.100.2:21\r\nContent-Length: 64\r\n\r\n", "POST /upload"},
		{"HTTP GET", "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1"},
		{"fetch with an FTP method", "USER /x HTTP/1.1\r\nHost: 198.51.100.2:21\r\n\r\n", "Host:"},
		{"binary", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n", `\x16\x03`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			c := dialNoLogin(t, l.Client, ftpServer)
			c.expect("220")
			c.send(tt.preamble + "USER anonymous\r\nPASS guest\r\n" + activePORT + "\r\n")
			untouched(t, srv, activePORT)
			notFTPRecord(t, l, tt.reason)
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes opened", n)
			}
		})
	}
}

// TestNotFTPNULRelayed: binary bytes with NULs from a connection that is
// not FTP pass untouched instead of ending it.
func TestNotFTPNULRelayed(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	c := dialNoLogin(t, l.Client, ftpServer)
	c.expect("220")
	c.send("\x16\x03\x01\x00\x05\x00\x00\x00\x00\x00\r\nNOOP\r\n")
	notFTPRecord(t, l, `\x16`)
	if got := srv.received(t); got != "\x16\x03\x01\x00\x05\x00\x00\x00\x00\x00" {
		t.Errorf("server got %q", got)
	}
	if got := srv.received(t); got != "NOOP" {
		t.Errorf("server got %q, want NOOP after the binary line", got)
	}
}

// TestServerNotFTP: a server whose first line is not an FTP greeting (an
// SSH banner) makes the connection not FTP.
func TestServerNotFTP(t *testing.T) {
	for _, greeting := range []string{"SSH-2.0-OpenSSH_9.2p1", "421 Too many connections"} {
		t.Run(greeting[:3], func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			srv.greeting = greeting
			c := dialNoLogin(t, l.Client, ftpServer)
			c.expect(greeting[:3])
			c.send("USER anonymous\r\nPASS guest\r\n" + activePORT + "\r\n")
			untouched(t, srv, activePORT)
			notFTPRecord(t, l, "server")
		})
	}
}

// TestNothingBeforeLogin: PORT, EPRT, PASV and EPSV before the login
// completed are refused by fwx (530) and never reach the server.
func TestNothingBeforeLogin(t *testing.T) {
	eprt := "EPRT " + ftp.FormatEPRT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001))
	for _, tt := range []struct {
		name  string
		reply map[string]string // the server's replies
		steps []string          // commands before, with the code expected
	}{
		{"no login", nil, nil},
		{"USER only", nil, []string{"USER anonymous", "331"}},
		{"wrong password", map[string]string{"PASS": "530 Login incorrect."}, []string{"USER anonymous", "331", "PASS x", "530"}},
		{"230 to another command", map[string]string{"STAT": "230 sure"}, []string{"STAT", "230"}},
		{"after REIN", map[string]string{"REIN": "220 ready for a new user"},
			[]string{"USER anonymous", "331", "PASS guest", "230", "REIN", "220"}},
		{"a new USER after the login", nil,
			[]string{"USER anonymous", "331", "PASS guest", "230", "USER other", "331"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			for k, v := range tt.reply {
				srv.reply[k] = v
			}
			c := dialNoLogin(t, l.Client, ftpServer)
			c.expect("220")
			for i := 0; i < len(tt.steps); i += 2 {
				c.cmd(tt.steps[i], tt.steps[i+1])
			}
			for len(srv.got) > 0 {
				<-srv.got
			}
			for _, line := range []string{activePORT, eprt, "PASV", "EPSV"} {
				refused(t, c, srv, line, "530")
			}
			recs := l.Log.WaitRecords(t, 4, map[string]string{"event": "pinhole-refused", "cause": "before-login"})
			if recs[0]["kind"] != "PORT" || recs[3]["kind"] != "EPSV" {
				t.Errorf("records %v: want the kind of each command", recs)
			}
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes opened", n)
			}
		})
	}
}

// TestLoginCompletes: 230 to PASS or to USER, and 232 (RFC 2228), log in.
func TestLoginCompletes(t *testing.T) {
	for _, tt := range []struct {
		name  string
		reply map[string]string
		steps []string
	}{
		{"230 to PASS", nil, []string{"USER anonymous", "331", "PASS guest", "230"}},
		{"230 to USER", map[string]string{"USER": "230 no password needed"}, []string{"USER anonymous", "230"}},
		{"232", map[string]string{"USER": "232 logged in, authorized by security data exchange"}, []string{"USER anonymous", "232"}},
		{"multi-line 230", map[string]string{"PASS": "230-Welcome\r\n230-to the server\r\n230 Login successful."},
			[]string{"USER anonymous", "331", "PASS guest", "230-", "", "230-", "", "230 "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			for k, v := range tt.reply {
				srv.reply[k] = v
			}
			c := dialNoLogin(t, l.Client, ftpServer)
			c.expect("220")
			for i := 0; i < len(tt.steps); i += 2 {
				if tt.steps[i] == "" {
					c.expect(tt.steps[i+1])
				} else {
					c.cmd(tt.steps[i], tt.steps[i+1])
				}
			}
			c.cmd(activePORT, "200")
			if got := srv.received(t); !strings.HasPrefix(got, "PORT 198,51,100,1,") {
				t.Errorf("server got %q, want PORT rewritten", got)
			}
		})
	}
}

// TestLongLines: a command or reply longer than the line buffer that opens
// nothing passes whole, in both directions; the session goes on.
func TestLongLines(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	path := "/" + strings.Repeat("d", 250) + "/" + strings.Repeat("e", 5000)
	srv.reply["PWD"] = `257 "` + path + `" is the current directory`
	c := dial(t, l.Client, ftpServer)
	c.cmd("CWD "+path, "200")
	if got := srv.received(t); got != "CWD "+path {
		t.Errorf("server got %d bytes, want the %d of the CWD line", len(got), len("CWD "+path))
	}
	if got := c.cmd("PWD", "257"); got != srv.reply["PWD"] {
		t.Errorf("client got %d bytes, want the %d of the 257 reply", len(got), len(srv.reply["PWD"]))
	}
	// A transfer of a long name, in active mode.
	data := listenData(t, l.Client, 5001)
	c.cmd(activePORT, "200")
	srv.received(t)
	c.cmd("RETR "+path, "150")
	if got := recvData(t, data); got != fwxlab.ServerAddr.String()+" contents of "+path {
		t.Errorf("data connection: %d bytes", len(got))
	}
	c.expect("226")
}

// TestLongLineRefused: a long command refused in read-only mode is
// swallowed whole and answered once.
func TestLongLineRefused(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 2121)
	c := dial(t, l.Client, netip.AddrPortFrom(fwxlab.ServerAddr, 2121))
	refused(t, c, srv, "STOR "+strings.Repeat("f", 9000), "550")
}

// TestOpeningLinesBounded: the lines that can open a pinhole keep the
// strict MaxLine bound: a longer PORT, PASV or 227 ends the connection.
func TestOpeningLinesBounded(t *testing.T) {
	for _, tt := range []struct{ name, send, reply string }{
		{"PORT", "PORT " + strings.Repeat("1,", 300), ""},
		{"PASV", "PASV " + strings.Repeat("x", ftp.PieceSize+10), ""},
		{"227", "PASV", "227 " + ftp.Format227(netip.AddrPortFrom(fwxlab.ServerAddr, 31000)) + strings.Repeat(" ", ftp.MaxLine)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			if tt.reply != "" {
				srv.reply["PASV"] = tt.reply
			}
			c := dial(t, l.Client, ftpServer)
			c.send(tt.send + "\r\n")
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := c.r.ReadString('\n'); err == nil {
				t.Errorf("control connection still open, read %q", b)
			}
			l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-refused", "cause": "too-long"})
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes opened", n)
			}
		})
	}
}
