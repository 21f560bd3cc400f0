package fwxlab_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

// trace runs a scenario through fwx in a deterministic lab with seed and
// returns the pcap of each link: a ping, a UDP question and its answer, a
// TCP connection with a request and its answer, closed by the client. Each
// step waits for the one before.
func trace(t *testing.T, seed int64) (inside, outside []byte) {
	l := fwxlab.New(t, fwxlab.Options{Seed: seed, Deterministic: true})
	var in, out bytes.Buffer
	stopIn, err := l.Inside.Pcap(&in)
	if err != nil {
		t.Fatal(err)
	}
	stopOut, err := l.Outside.Pcap(&out)
	if err != nil {
		t.Fatal(err)
	}
	ctx := lab.Context(t, 10*time.Second)

	if _, err := l.Client.Ping(ctx, fwxlab.ServerAddr, 9, 1, []byte("ping")); err != nil {
		t.Fatal(err)
	}

	pc, err := l.Server.ListenUDP(53)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	u, err := l.Client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(fwxlab.ServerAddr, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	buf := make([]byte, 64)
	u.Write([]byte("question"))
	_, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	pc.WriteTo([]byte("answer"), from)
	if _, err := u.Read(buf); err != nil {
		t.Fatal(err)
	}

	ln, err := l.Server.ListenTCP(80)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// Answer, then close only after the client has: each
			// packet follows from the one before.
			defer c.Close()
			r := bufio.NewReader(c)
			var line string
			if line, err = r.ReadString('\n'); err == nil {
				if _, err = io.WriteString(c, "ok "+line); err == nil {
					_, err = io.ReadAll(r)
				}
			}
		}
		served <- err
	}()
	c, err := l.Client.DialTCP(ctx, netip.AddrPortFrom(fwxlab.ServerAddr, 80))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /\n")
	r := bufio.NewReader(c)
	if got, err := r.ReadString('\n'); got != "ok GET /\n" || err != nil {
		t.Fatalf("answer %q, %v", got, err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after the server closed: %v, want EOF", err)
	}
	c.Close()
	// The client's last ACK is sent as it sees the server's FIN: wait
	// until the server has every packet the client sent, and the other
	// way round, before the recording stops.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		cs, ss := l.Client.Stats(), l.Server.Stats()
		if cs.Sent == ss.Received && ss.Sent == cs.Received && cs.Sent > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("packets in flight after 10 s: client %+v, server %+v", cs, ss)
		}
	}
	if err := errors.Join(stopIn(), stopOut()); err != nil {
		t.Fatal(err)
	}
	return in.Bytes(), out.Bytes()
}

// TestTraceDeterministic runs a scenario through fwx twice with one seed:
// both links carry the same bytes in the same order each time,
// timestamps and the ports fwx chose included. Another seed changes them.
func TestTraceDeterministic(t *testing.T) {
	in1, out1 := trace(t, 7)
	in2, out2 := trace(t, 7)
	if !bytes.Equal(in1, in2) {
		t.Errorf("inside link differs between two runs of seed 7:\n%s\n---\n%s", decode(t, in1), decode(t, in2))
	}
	if !bytes.Equal(out1, out2) {
		t.Errorf("outside link differs between two runs of seed 7:\n%s\n---\n%s", decode(t, out1), decode(t, out2))
	}
	if bytes.Equal(in1, out1) {
		t.Error("the two links carry the same bytes: fwx translated nothing")
	}
	if _, out3 := trace(t, 8); bytes.Equal(out1, out3) {
		t.Error("seeds 7 and 8 gave the same outside trace")
	}
}

// decode lists a pcap's packets, one per line.
func decode(t *testing.T, file []byte) string {
	var sb bytes.Buffer
	for b := file[24:]; len(b) >= 16; {
		n := int(b[8]) | int(b[9])<<8 | int(b[10])<<16 | int(b[11])<<24
		if len(b) < 16+n {
			t.Fatal("truncated pcap")
		}
		sb.WriteString(lab.PacketString(b[16:16+n]) + "\n")
		b = b[16+n:]
	}
	return sb.String()
}
