package ftp_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/ftp"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// The filter must never open a path the client and server did not
// negotiate. One test per rule (ALG-NOTES.md section 4).

// refused checks that a command is answered by fwx with code, never
// reaches the server, and that the control connection still works.
func refused(t *testing.T, c *client, srv *server, line, code string) {
	t.Helper()
	c.cmd(line, code)
	srv.receivedNothing(t)
	c.cmd("NOOP", "200") // the session goes on
	if got := srv.received(t); got != "NOOP" {
		t.Errorf("server got %q, want NOOP", got)
	}
}

func TestPORTMustNameTheClient(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	c := dial(t, l.Client, ftpServer)
	for _, target := range []netip.AddrPort{
		netip.AddrPortFrom(fwxlab.Client2Prefix.Addr(), 5001), // another inside host
		netip.AddrPortFrom(fwxlab.Server2, 5001),              // a third party outside (FTP bounce)
		netip.AddrPortFrom(fwxlab.FWInside, 5001),             // fwx itself
	} {
		refused(t, c, srv, "PORT "+ftp.FormatPORT(target), "500")
		refused(t, c, srv, "EPRT "+ftp.FormatEPRT(target), "500")
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes opened", n)
	}
}

func TestPrivilegedPortsRefused(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	c := dial(t, l.Client, ftpServer)
	for _, port := range []uint16{0, 22, 1023} {
		refused(t, c, srv, "PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, port)), "50")
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes opened", n)
	}
}

func TestMalformedArgumentsRefused(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	c := dial(t, l.Client, ftpServer)
	for _, line := range []string{
		"PORT 10,0,0,2,19,257",   // octet over 255 (netfilter folds it into the next byte)
		"PORT 10,0,0,258,19,137", // an address octet over 255
		"PORT 10,0,0,2,19",       // five fields
		"PORT 10,0,0,2,19,137,1", // seven fields
		"PORT 10,0,0,2,+19,137",  // a sign
		"PORT 10,0,0,2, 19,137",  // a space
		"PORT 10,0,0,2,19,137x",  // trailing junk
		"EPRT |3|10.0.0.2|5001|", // unknown family
		"EPRT |2|10.0.0.2|5001|", // family and address disagree
		"EPRT |1|10.0.0.2!5001|", // inconsistent delimiter
		"EPRT |1|10.0.0.2|0|",    // port 0
	} {
		refused(t, c, srv, line, "50")
	}
}

// TestSplitCommand: a command split across TCP segments, with pauses, is
// reassembled and handled like any other.
func TestSplitCommand(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	data := listenData(t, l.Client, 5002)
	c := dial(t, l.Client, ftpServer)
	cmd := "PORT " + ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5002)) + "\r\n"
	for _, part := range []string{cmd[:3], cmd[3:9], cmd[9 : len(cmd)-1], cmd[len(cmd)-1:]} {
		c.send(part)
		time.Sleep(20 * time.Millisecond)
	}
	c.expect("200")
	if got := srv.received(t); !strings.HasPrefix(got, "PORT 198,51,100,1,") {
		t.Fatalf("server got %q, want the reassembled command rewritten", got)
	}
	c.cmd("RETR f", "150")
	recvData(t, data)
}

// TestCommandMustStartTheLine: PORT in the middle of a line, or a verb that
// merely begins with PORT, opens nothing.
func TestCommandMustStartTheLine(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	c := dial(t, l.Client, ftpServer)
	port := ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5003))
	for _, line := range []string{"NOOP PORT " + port, " PORT " + port, "XPORT " + port} {
		c.send(line + "\r\n")
		c.expect("200")
		if got := srv.received(t); got != line {
			t.Errorf("server got %q, want the line unchanged", got)
		}
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes opened", n)
	}
}

// TestReplyOnlyWhileOutstanding: a 227 with no PASV before it opens
// nothing.
func TestReplyOnlyWhileOutstanding(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	srv.reply["NOOP"] = "227 " + ftp.Format227(netip.AddrPortFrom(fwxlab.ServerAddr, 31000))
	c := dial(t, l.Client, ftpServer)
	c.cmd("NOOP", "227")
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("an unsolicited 227 opened %d pinholes", n)
	}
}

// TestReplyMayNameOnlyTheServer: a 227 naming another host opens nothing.
func TestReplyMayNameOnlyTheServer(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	third := netip.AddrPortFrom(fwxlab.Server2, 31000)
	srv.reply["PASV"] = "227 " + ftp.Format227(third)
	echo := listenTCP(t, l.Server2, 31000)
	c := dial(t, l.Client, ftpServer)
	c.cmd("PASV", "227")
	if _, err := l.Client.DialTCP(lab.Context(t, time.Second), third); err == nil {
		t.Error("the client reached the third party named in the 227")
	}
	select {
	case <-echo:
		t.Error("the third party accepted a connection")
	default:
	}
}

// listenTCP signals each connection accepted on h:port.
func listenTCP(t *testing.T, h *lab.Host, port uint16) <-chan struct{} {
	ln, err := h.ListenTCP(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			ch <- struct{}{}
		}
	}()
	return ch
}

// TestOverlongAndNULLines: an overlong line or a NUL ends the control
// connection; nothing is opened and fwx goes on.
func TestOverlongAndNULLines(t *testing.T) {
	for _, tt := range []struct{ name, line string }{
		{"overlong", "PORT " + strings.Repeat("1,", 400) + "\r\n"},
		{"NUL", "PORT 10,0,0,2,19\x00,137\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t)
			serve(t, l.Server, 21)
			c := dial(t, l.Client, ftpServer)
			c.send(tt.line)
			c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := c.r.ReadString('\n'); err == nil {
				t.Errorf("control connection still open, read %q", b)
			}
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes opened", n)
			}
			dial(t, l.Client, ftpServer).cmd("NOOP", "200") // fwx serves the next one
		})
	}
}

// TestPinholesSingleUse: the server may connect to a bound port once.
func TestPinholesSingleUse(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	listenData(t, l.Client, 5004)
	c := dial(t, l.Client, ftpServer)
	c.cmd("PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5004)), "200")
	bound, _ := ftp.ParsePORT(strings.TrimPrefix(srv.received(t), "PORT "))
	first, err := l.Server.DialTCP(lab.Context(t, 5*time.Second), bound)
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	first.Close()
	if c2, err := l.Server.DialTCP(lab.Context(t, 300*time.Millisecond), bound); err == nil {
		c2.Close()
		t.Error("second connection to a single-use pinhole accepted")
	}
}

// TestPinholesShortLived: an unused pinhole is gone right after the pinhole
// timeout on the lab clock, and not before.
func TestPinholesShortLived(t *testing.T) {
	for _, tt := range []struct {
		after time.Duration
		want  bool
	}{{59 * time.Second, true}, {61 * time.Second, false}} {
		t.Run(tt.after.String(), func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			listenData(t, l.Client, 5005)
			c := dial(t, l.Client, ftpServer)
			c.cmd("PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5005)), "200")
			bound, _ := ftp.ParsePORT(strings.TrimPrefix(srv.received(t), "PORT "))
			l.Clock.Advance(tt.after)
			if got := reaches(t, l.Server, bound, tt.want); got != tt.want {
				t.Errorf("after %v: connected=%v, want %v", tt.after, got, tt.want)
			}
		})
	}
}

// TestPinholesRevokedWithControl: when the control connection ends, its
// unused pinholes are revoked.
func TestPinholesRevokedWithControl(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	listenData(t, l.Client, 5006)
	c := dial(t, l.Client, ftpServer)
	c.cmd("PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5006)), "200")
	bound, _ := ftp.ParsePORT(strings.TrimPrefix(srv.received(t), "PORT "))
	c.cmd("QUIT", "221")
	c.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for l.Session(t).Pinholes() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d, err := l.Server.DialTCP(lab.Context(t, 300*time.Millisecond), bound); err == nil {
		d.Close()
		t.Error("pinhole still open after the control connection ended")
	}
}

// TestTLSStopsParsing: after AUTH TLS is accepted, a PORT in the
// (supposedly encrypted) stream opens nothing.
func TestTLSStopsParsing(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	c := dial(t, l.Client, ftpServer)
	c.cmd("AUTH TLS", "234")
	srv.received(t)
	line := "PORT " + ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5007))
	c.cmd(line, "200")
	if got := srv.received(t); got != line {
		t.Errorf("server got %q, want the line untouched", got)
	}
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("%d pinholes opened after AUTH TLS", n)
	}
}

// TestReadOnly: the read-only filter refuses uploads and changes with 550
// and passes downloads.
func TestReadOnly(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 2121)
	c := dial(t, l.Client, netip.AddrPortFrom(fwxlab.ServerAddr, 2121))
	for _, cmd := range []string{"STOR f", "APPE f", "DELE f", "RNFR f", "MKD d", "RMD d", "stor lower-case"} {
		refused(t, c, srv, cmd, "550")
	}
	c.cmd("SIZE f", "200")
}

// TestReplyInsideMultiLine: a line that looks like a 227 inside another
// multi-line reply is text, even with a PASV outstanding.
func TestReplyInsideMultiLine(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	trap := "227 " + ftp.Format227(netip.AddrPortFrom(fwxlab.ServerAddr, 31001))
	srv.reply["PASV"] = "211-status\r\n" + trap + "\r\n211 end"
	c := dial(t, l.Client, ftpServer)
	c.cmd("PASV", "211-")
	c.expect("227")
	c.expect("211 ")
	if n := l.Session(t).Pinholes(); n != 0 {
		t.Errorf("a 227 inside a multi-line reply opened %d pinholes", n)
	}
}
