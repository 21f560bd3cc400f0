package ftp_test

import (
	"bufio"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters/ftp"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// A pinhole exists only for the transfer the two ends are negotiating:
// armed by the server's consent, one per control connection, capped per
// client, each step in the firewall log.

// boundPort reads the rewritten PORT or EPRT the server received and
// returns the port fwx bound.
func boundPort(t *testing.T, srv *server) netip.AddrPort {
	t.Helper()
	got := srv.received(t)
	verb, arg, _ := strings.Cut(got, " ")
	var ap netip.AddrPort
	var err error
	if verb == "PORT" {
		ap, err = ftp.ParsePORT(arg)
	} else {
		ap, err = ftp.ParseEPRT(arg)
	}
	if err != nil || ap.Addr() != fwxlab.FWOutside {
		t.Fatalf("server got %q, want a PORT or EPRT rewritten to fwx's outside address", got)
	}
	return ap
}

// reaches reports whether h connects to ap. A connection expected to
// succeed gets time to (a loaded machine slows the lab down); one that
// should not is given up soon, since a pinhole that wrongly let it through
// would answer within milliseconds.
func reaches(t *testing.T, h *lab.Host, ap netip.AddrPort, expect bool) bool {
	t.Helper()
	wait := 300 * time.Millisecond
	if expect {
		wait = 5 * time.Second
	}
	c, err := h.DialTCP(lab.Context(t, wait), ap)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestActiveArmedByServer: the pinhole of a PORT or EPRT admits nothing
// until the server answers 200; a connection that races the 200 waits for
// it and goes through.
func TestActiveArmedByServer(t *testing.T) {
	for _, verb := range []string{"PORT", "EPRT"} {
		t.Run(verb, func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			hold := make(chan struct{})
			srv.hold[verb] = hold
			data := listenData(t, l.Client, 5001)
			c := dial(t, l.Client, ftpServer)
			arg := ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001))
			if verb == "EPRT" {
				arg = ftp.FormatEPRT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001))
			}
			c.send(verb + " " + arg + "\r\n")
			bound := boundPort(t, srv)
			if reaches(t, l.Server, bound, false) {
				t.Fatal("the server connected before it answered 200")
			}
			if len(l.Log.Records(t, map[string]string{"event": "pinhole-opened"})) != 0 {
				t.Error("pinhole-opened logged before the 200")
			}
			early := make(chan error, 1)
			go func() {
				d, err := l.Server.DialTCP(lab.Context(t, 5*time.Second), bound)
				if err == nil {
					io.WriteString(d, "early")
					d.Close()
				}
				early <- err
			}()
			time.Sleep(100 * time.Millisecond)
			close(hold)
			c.expect("200")
			if err := <-early; err != nil {
				t.Fatalf("the connection that raced the 200: %v", err)
			}
			if got := recvData(t, data); got != fwxlab.ServerAddr.String()+" early" {
				t.Errorf("data connection: %q", got)
			}
			rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-opened", "kind": verb})[0]
			if rec["client"] != "10.0.0.2:5001" || rec["server"] != "198.51.100.2" || rec["external"] != bound.String() {
				t.Errorf("pinhole-opened %v: want client 10.0.0.2:5001, server 198.51.100.2, external %v", rec, bound)
			}
		})
	}
}

// TestRepliesPaired: each final reply is paired with the command it
// answers, so pipelined commands, and an empty line (which vsftpd and
// pure-ftpd do not answer), arm nothing early and delay nothing.
func TestRepliesPaired(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	hold := make(chan struct{})
	srv.hold["PORT"] = hold
	data := listenData(t, l.Client, 5001)
	c := dial(t, l.Client, ftpServer)
	c.send("\r\nNOOP\r\nTYPE I\r\n" + activePORT + "\r\nRETR f\r\n")
	c.expect("200 NOOP")
	c.expect("200 TYPE")
	srv.received(t) // NOOP
	srv.received(t) // TYPE I
	bound := boundPort(t, srv)
	// The replies to NOOP and TYPE did not arm the PORT's pinhole, and
	// the pipelined RETR waits for the PORT's reply.
	if reaches(t, l.Server, bound, false) {
		t.Fatal("the replies to the commands before the PORT armed its pinhole")
	}
	srv.receivedNothing(t)
	close(hold)
	c.expect("200 ok")
	c.expect("150")
	if got := recvData(t, data); got != fwxlab.ServerAddr.String()+" contents of f" {
		t.Errorf("data connection: %q", got)
	}
	c.expect("226")
}

// TestTransferReplyAfterData: the final reply to a transfer in active mode
// reaches the client only once the data connection has. Here the server
// reports 226 before it connects; so does, in effect, fwx's host mode,
// where the host accepts the server's data connection and fwx relays it
// on: a client that reads the 226 first fails the transfer (curl does).
func TestTransferReplyAfterData(t *testing.T) {
	l := newLab(t)
	ln, err := l.Server.ListenTCP(21)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	connect := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "220 ready\r\n")
		r := bufio.NewReader(c)
		var active netip.AddrPort
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch verb {
			case "USER":
				io.WriteString(c, "331 password\r\n")
			case "PASS":
				io.WriteString(c, "230 in\r\n")
			case "PORT":
				active, _ = ftp.ParsePORT(arg)
				io.WriteString(c, "200 ok\r\n")
			case "LIST":
				io.WriteString(c, "150 here it comes\r\n226 sent\r\n")
				<-connect
				if d, err := l.Server.DialTCP(lab.Context(t, 5*time.Second), active); err == nil {
					io.WriteString(d, "listing")
					d.Close()
				}
			}
		}
	}()
	data := listenData(t, l.Client, 5001)
	c := dial(t, l.Client, ftpServer)
	c.cmd(activePORT, "200")
	c.cmd("LIST", "150")
	c.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if line, err := c.r.ReadString('\n'); err == nil {
		t.Fatalf("the client read %q before the data connection was made", line)
	}
	close(connect)
	c.expect("226")
	if got := recvData(t, data); got != fwxlab.ServerAddr.String()+" listing" {
		t.Errorf("data connection: %q", got)
	}
}

// TestActiveRefusedByServer: a 4xx or 5xx to PORT or EPRT releases the
// reserved port at once.
func TestActiveRefusedByServer(t *testing.T) {
	for _, reply := range []string{"500 Illegal PORT command.", "425 Can't do that now."} {
		t.Run(reply[:3], func(t *testing.T) {
			l := newLab(t)
			srv := serve(t, l.Server, 21)
			srv.reply["PORT"] = reply
			c := dial(t, l.Client, ftpServer)
			c.cmd(activePORT, reply[:3])
			bound := boundPort(t, srv)
			if reaches(t, l.Server, bound, false) {
				t.Error("the server connected through a PORT it refused")
			}
			if n := l.Session(t).Pinholes(); n != 0 {
				t.Errorf("%d pinholes held after the refusal", n)
			}
			rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-refused", "cause": "server-refused"})[0]
			if rec["external"] != bound.String() || rec["kind"] != "PORT" {
				t.Errorf("record %v: want the released port %v", rec, bound)
			}
		})
	}
}

// TestPublishedActiveArmedByServer: PORT from the outside client of a
// published server lets the server connect out only after its own 200.
func TestPublishedActiveArmedByServer(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Client, 21)
	srv.reply["PORT"] = "500 no"
	listenData(t, l.Server, 5010)
	c := dial(t, l.Server, publishedFTP)
	c.cmd("PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ServerAddr, 5010)), "500")
	if reaches(t, l.Client, netip.AddrPortFrom(fwxlab.ServerAddr, 5010), false) {
		t.Error("the published server connected out after refusing the PORT")
	}
	l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-refused", "cause": "server-refused"})
}

// TestOneDataChannel: each PORT, EPRT, PASV or EPSV supersedes the unused
// pinhole of the command before it.
func TestOneDataChannel(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	listenTCP(t, l.Client, 5001)
	c := dial(t, l.Client, ftpServer)
	c.cmd(activePORT, "200")
	first := boundPort(t, srv)
	pasv, _ := ftp.Parse227(c.cmd("PASV", "227")[4:])
	srv.received(t)
	if reaches(t, l.Server, first, false) {
		t.Error("the PORT's pinhole outlived the PASV after it")
	}
	port, _ := ftp.Parse229(c.cmd("EPSV", "229")[4:])
	srv.received(t)
	if reaches(t, l.Client, pasv, false) {
		t.Error("the PASV's pinhole outlived the EPSV after it")
	}
	c.cmd(activePORT, "200")
	last := boundPort(t, srv)
	if reaches(t, l.Client, netip.AddrPortFrom(fwxlab.ServerAddr, port), false) {
		t.Error("the EPSV's pinhole outlived the PORT after it")
	}
	if n := l.Session(t).Pinholes(); n != 1 {
		t.Errorf("%d pinholes, want 1", n)
	}
	if !reaches(t, l.Server, last, true) {
		t.Error("the last PORT's pinhole does not admit the server")
	}
	recs := l.Log.WaitRecords(t, 3, map[string]string{"event": "pinhole-superseded", "cause": "superseded"})
	for i, kind := range []string{"PORT", "PASV", "EPSV"} {
		if recs[i]["kind"] != kind {
			t.Errorf("superseded record %d: %v, want kind %s", i, recs[i], kind)
		}
	}
}

// TestPipelinedPassive: PASV and EPSV pipelined ahead of their replies
// hold one pinhole too, the last reply's: each 227/229 supersedes the
// unused pinhole of the reply before it.
func TestPipelinedPassive(t *testing.T) {
	l := newLab(t)
	serve(t, l.Server, 21)
	c := dial(t, l.Client, ftpServer)
	c.send("PASV\r\nPASV\r\nEPSV\r\n")
	first, _ := ftp.Parse227(c.expect("227")[4:])
	second, _ := ftp.Parse227(c.expect("227")[4:])
	port, _ := ftp.Parse229(c.expect("229")[4:])
	if n := l.Session(t).Pinholes(); n != 1 {
		t.Errorf("%d pinholes after three pipelined passive commands, want 1", n)
	}
	for _, ap := range []netip.AddrPort{first, second} {
		if reaches(t, l.Client, ap, false) {
			t.Errorf("the pinhole of an earlier reply, to %v, is open", ap)
		}
	}
	if !reaches(t, l.Client, netip.AddrPortFrom(fwxlab.ServerAddr, port), true) {
		t.Error("the last reply's pinhole does not admit the client")
	}
	l.Log.WaitRecords(t, 2, map[string]string{"event": "pinhole-superseded", "cause": "superseded"})
}

// TestPORTFlood: PORT after PORT holds one pinhole, the last.
func TestPORTFlood(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	listenTCP(t, l.Client, 5001)
	c := dial(t, l.Client, ftpServer)
	var ports []netip.AddrPort
	for range 200 {
		c.cmd(activePORT, "200")
		ports = append(ports, boundPort(t, srv))
	}
	if n := l.Session(t).Pinholes(); n != 1 {
		t.Errorf("%d pinholes after 200 PORTs, want 1", n)
	}
	for _, p := range ports[:3] {
		if reaches(t, l.Server, p, false) {
			t.Errorf("superseded port %v admits the server", p)
		}
	}
	if !reaches(t, l.Server, ports[len(ports)-1], true) {
		t.Error("the last PORT's pinhole does not admit the server")
	}
	l.Log.WaitRecords(t, 199, map[string]string{"event": "pinhole-superseded"})
}

// TestUsedChannelLives: a pinhole already used is not revoked by the next
// command: its data connection goes on.
func TestUsedChannelLives(t *testing.T) {
	l := newLab(t)
	srv := serve(t, l.Server, 21)
	data := listenData(t, l.Client, 5001)
	c := dial(t, l.Client, ftpServer)
	c.cmd(activePORT, "200")
	d, err := l.Server.DialTCP(lab.Context(t, 5*time.Second), boundPort(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-used"})[0]
	if peer, _ := rec["peer"].(string); !strings.HasPrefix(peer, fwxlab.ServerAddr.String()+":") {
		t.Errorf("pinhole-used %v: want the server as peer", rec)
	}
	c.cmd("PASV", "227")
	io.WriteString(d, "still here")
	d.Close()
	if got := recvData(t, data); got != fwxlab.ServerAddr.String()+" still here" {
		t.Errorf("data connection: %q", got)
	}
	if len(l.Log.Records(t, map[string]string{"event": "pinhole-superseded"})) != 0 {
		t.Error("a used pinhole was logged as superseded")
	}
}

// TestPinholesCapped: a client holds at most MaxPinholes unused pinholes
// over all its control connections; the command past the cap gets 425 and
// the cap is logged.
func TestPinholesCapped(t *testing.T) {
	l := newLab(t)
	serve(t, l.Server, 21)
	for i := range ftp.MaxPinholes + 2 {
		c := dial(t, l.Client, ftpServer)
		code := "200"
		if i >= ftp.MaxPinholes {
			code = "425"
		}
		c.cmd("PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, uint16(10000+i))), code)
	}
	if n := l.Session(t).Pinholes(); n != ftp.MaxPinholes {
		t.Errorf("%d pinholes, want %d", n, ftp.MaxPinholes)
	}
	l.Log.WaitRecords(t, 2, map[string]string{"event": "pinhole-refused", "cause": "cap", "kind": "PORT"})
}

// TestPinholeRecords: the story of a data connection in the firewall log,
// from the pinhole to the flow, which names the control connection's rule
// and the filter; and the end of pinholes never used.
func TestPinholeRecords(t *testing.T) {
	t.Run("passive used", func(t *testing.T) {
		l := newLab(t)
		serve(t, l.Server, 21)
		c := dial(t, l.Client, ftpServer)
		ap, _ := ftp.Parse227(c.cmd("PASV", "227")[4:])
		rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-opened", "kind": "PASV"})[0]
		want := map[string]any{"client": "10.0.0.2", "server": ap.String(), "filter": "ftp", "rule": "ftp-out", "message": "pinhole"}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("pinhole-opened %s = %v, want %v", k, rec[k], v)
			}
		}
		if ctl, _ := rec["control"].(string); !strings.HasSuffix(ctl, " 198.51.100.2:21") {
			t.Errorf("control = %q, want the control connection's endpoints", ctl)
		}
		d, err := l.Client.DialTCP(lab.Context(t, 5*time.Second), ap)
		if err != nil {
			t.Fatal(err)
		}
		d.Close()
		l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-used", "kind": "PASV"})
		flow := l.Log.WaitRecords(t, 1, map[string]string{"event": "allowed", "destination": ap.String()})[0]
		if flow["rule"] != "ftp-out" || flow["opened_by"] != "ftp" {
			t.Errorf("data flow record %v: want rule ftp-out (the control connection's) and opened_by ftp", flow)
		}
	})
	t.Run("expired", func(t *testing.T) {
		l := newLab(t)
		srv := serve(t, l.Server, 21)
		c := dial(t, l.Client, ftpServer)
		c.cmd(activePORT, "200")
		bound := boundPort(t, srv)
		deadline := l.Clock.Now().Add(time.Minute)
		l.Clock.Advance(61 * time.Second)
		l.FW.Expire()
		rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-expired"})[0]
		if rec["external"] != bound.String() || rec["time"] != deadline.Format(time.RFC3339) {
			t.Errorf("pinhole-expired %v: want external %v at %v", rec, bound, deadline)
		}
		c.cmd("QUIT", "221")
		c.c.Close()
		time.Sleep(200 * time.Millisecond) // the control connection ends
		if n := len(l.Log.Records(t, map[string]string{"event": "pinhole-closed"})); n != 0 {
			t.Errorf("an expired pinhole also logged as closed (%d records)", n)
		}
	})
	t.Run("closed", func(t *testing.T) {
		l := newLab(t)
		srv := serve(t, l.Server, 21)
		c := dial(t, l.Client, ftpServer)
		c.cmd(activePORT, "200")
		bound := boundPort(t, srv)
		c.cmd("QUIT", "221")
		rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-closed", "cause": "control-closed"})[0]
		if rec["external"] != bound.String() {
			t.Errorf("pinhole-closed %v: want external %v", rec, bound)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		l := newLab(t)
		srv := serve(t, l.Server, 21)
		c := dial(t, l.Client, ftpServer)
		for _, tt := range []struct{ line, cause string }{
			{"PORT " + ftp.FormatPORT(netip.AddrPortFrom(fwxlab.Server2, 5001)), "foreign-address"},
			{"PORT " + ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 25)), "privileged-port"},
			{"EPRT |1|10.0.0.2|x|", "malformed"},
		} {
			refused(t, c, srv, tt.line, "50")
			rec := l.Log.WaitRecords(t, 1, map[string]string{"event": "pinhole-refused", "cause": tt.cause})[0]
			if rec["client"] != "10.0.0.2" || rec["server"] != "198.51.100.2" || rec["reason"] == "" {
				t.Errorf("record %v: want the addresses and a reason", rec)
			}
		}
	})
}
