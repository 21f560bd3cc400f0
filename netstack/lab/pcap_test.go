package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scenario runs the same exchanges through a topology: a ping, a UDP
// request and its answer, and a TCP connection with two requests and
// answers, closed by the client. Each step waits for the one before, so
// the packets on each link follow one another in one possible order.
func scenario(tb testing.TB, tp *topo) {
	tb.Helper()
	ctx := Context(tb, 10*time.Second)
	if _, err := tp.client.Ping(ctx, tp.server.Addr(), 7, 1, []byte("ping")); err != nil {
		tb.Fatal(err)
	}

	pc, err := tp.server.ListenUDP(53)
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Close()
	u, err := tp.client.DialUDP(netip.AddrPort{}, netip.AddrPortFrom(tp.server.Addr(), 53))
	if err != nil {
		tb.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("question")); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 100)
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := pc.WriteTo(append([]byte("answer to "), buf[:n]...), from); err != nil {
		tb.Fatal(err)
	}
	if _, err := u.Read(buf); err != nil {
		tb.Fatal(err)
	}

	ln, err := tp.server.ListenTCP(80)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF {
				served <- nil
				return
			} else if err != nil {
				served <- err
				return
			}
			if _, err := c.Write([]byte("ok " + line)); err != nil {
				served <- err
				return
			}
		}
	}()
	c, err := tp.client.DialTCP(ctx, netip.AddrPortFrom(tp.server.Addr(), 80))
	if err != nil {
		tb.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, req := range []string{"GET /a\n", "GET /b\n"} {
		if _, err := c.Write([]byte(req)); err != nil {
			tb.Fatal(err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != "ok "+req {
			tb.Fatalf("answer %q, %v; want %q", got, err, "ok "+req)
		}
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	if err := <-served; err != nil {
		tb.Fatal(err)
	}
	// The server's FIN reaches the client: the last packet of the run.
	if _, err := r.ReadByte(); err != io.EOF {
		tb.Fatalf("after the server closed: %v, want EOF", err)
	}
	c.Close()
	settle(tb, tp.client, tp.server)
}

// settle waits until every packet a and b sent has reached the other, so
// that the last packets of a run (the ACK of a FIN, say, which a host
// sends after its socket has seen the end) are on the links too.
func settle(tb testing.TB, a, b *Host) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sa, sb := a.Stats(), b.Stats()
		if sa.Sent == sb.Received && sb.Sent == sa.Received {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("packets still in flight after 10 s: %+v, %+v", sa, sb)
		}
		time.Sleep(time.Millisecond)
	}
}

// trace runs scenario in a new topology with seed and returns the pcap
// of each segment.
func trace(tb testing.TB, seed int64) (in, out []byte) {
	tb.Helper()
	tp := newTopo(tb, Options{Seed: seed, Clock: NewManualClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))})
	var bin, bout bytes.Buffer
	stopIn, err := tp.in.Pcap(&bin)
	if err != nil {
		tb.Fatal(err)
	}
	stopOut, err := tp.out.Pcap(&bout)
	if err != nil {
		tb.Fatal(err)
	}
	scenario(tb, tp)
	if err := errors.Join(stopIn(), stopOut()); err != nil {
		tb.Fatal(err)
	}
	return bin.Bytes(), bout.Bytes()
}

// TestTraceDeterministic runs one scenario twice with one seed: the two
// runs put the same bytes on each link, in the same order, timestamps
// included. Another seed changes them.
func TestTraceDeterministic(t *testing.T) {
	in1, out1 := trace(t, 42)
	in2, out2 := trace(t, 42)
	for _, link := range []struct {
		name string
		a, b []byte
	}{{"inside", in1, in2}, {"outside", out1, out2}} {
		if !bytes.Equal(link.a, link.b) {
			t.Errorf("seed 42, %s link: the two runs differ:\nrun 1:\n%s\nrun 2:\n%s", link.name, pcapString(t, link.a), pcapString(t, link.b))
		}
	}
	if n := len(pcapPackets(t, in1)); n < 15 {
		t.Errorf("the inside trace holds %d packets; the scenario sends more", n)
	}
	in3, _ := trace(t, 43)
	if bytes.Equal(in1, in3) {
		t.Error("seeds 42 and 43 gave the same inside trace")
	}
}

// TestPcapTcpdump checks that tcpdump reads a segment's pcap and finds in
// it the packets that crossed, in both directions.
func TestPcapTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump is not installed (scripts/deps installs it)")
	}
	in, out := trace(t, 1)
	dir := t.TempDir()
	for _, f := range []struct {
		name string
		data []byte
		want []string
	}{
		{"inside.pcap", in, []string{
			"10.0.1.2 > 10.0.2.2: ICMP echo request, id 7, seq 1",
			"10.0.2.2 > 10.0.1.2: ICMP echo reply, id 7, seq 1",
			"> 10.0.2.2.53: ", "10.0.2.2.53 > 10.0.1.2.",
			"> 10.0.2.2.80: Flags [S]", "10.0.2.2.80 > 10.0.1.2.", "Flags [S.]",
			"HTTP: GET /a", "Flags [F.]",
		}},
		{"outside.pcap", out, []string{"ICMP echo request", "ICMP echo reply", "Flags [S]", "Flags [F.]"}},
	} {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(tcpdump, "-n", "-r", path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("tcpdump -r %s: %v: %s", f.name, err, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(string(got)), "\n")
		if want := len(pcapPackets(t, f.data)); len(lines) != want {
			t.Errorf("%s: tcpdump printed %d lines for %d packets:\n%s", f.name, len(lines), want, got)
		}
		for _, w := range f.want {
			if !strings.Contains(string(got), w) {
				t.Errorf("%s: tcpdump output lacks %q:\n%s", f.name, w, got)
			}
		}
	}
}

func TestPcapErrors(t *testing.T) {
	tp := newTopo(t, Options{})
	stop, err := tp.in.Pcap(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.in.Pcap(io.Discard); !errors.Is(err, errPcapOn) {
		t.Errorf("second Pcap on one segment = %v, want errPcapOn", err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop = %v", err)
	}
	// A writer that fails after the file header: stop reports it, and the
	// segment goes on carrying packets.
	w := &failingWriter{left: pcapFileHeader}
	stop, err = tp.in.Pcap(w)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.client.Ping(Context(t, 10*time.Second), tp.server.Addr(), 1, 1, nil); err != nil {
		t.Fatalf("ping while the pcap fails: %v", err)
	}
	if err := stop(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("stop = %v, want the write error", err)
	}
	if _, err := tp.out.Pcap(&failingWriter{}); err == nil {
		t.Error("Pcap on a writer that fails at once succeeded")
	}
}

type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, errors.New("disk full")
	}
	w.left -= len(p)
	return len(p), nil
}

// pcapPackets parses a pcap file into its packets.
func pcapPackets(tb testing.TB, file []byte) [][]byte {
	tb.Helper()
	if len(file) < pcapFileHeader {
		tb.Fatalf("pcap of %d bytes", len(file))
	}
	var pkts [][]byte
	for b := file[pcapFileHeader:]; len(b) > 0; {
		if len(b) < pcapRecHeader {
			tb.Fatalf("truncated record header")
		}
		n := int(uint32(b[8]) | uint32(b[9])<<8 | uint32(b[10])<<16 | uint32(b[11])<<24)
		if len(b) < pcapRecHeader+n {
			tb.Fatalf("truncated record")
		}
		pkts = append(pkts, b[pcapRecHeader:pcapRecHeader+n])
		b = b[pcapRecHeader+n:]
	}
	return pkts
}

// pcapString decodes a pcap file, one packet per line.
func pcapString(tb testing.TB, file []byte) string {
	var sb strings.Builder
	for i, p := range pcapPackets(tb, file) {
		fmt.Fprintf(&sb, "%3d %s\n", i, PacketString(p))
	}
	return sb.String()
}
