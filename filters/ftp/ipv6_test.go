package ftp_test

import (
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/ftp"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
	"github.com/fwx-dev/fwx/session"
)

// FTP over IPv6 (RFC 2428): EPRT |2| and EPSV through fwx, PORT and PASV
// refused on an IPv6 control connection.

// ftpPolicy6 is ftpPolicy with an IPv6 published server too.
const ftpPolicy6 = ftpPolicy + `  - {name: ftpd6, protocol: ftp-server, listen: "[2001:db8:100::1]:21", server: "[fd00::2]:21"}
`

func newLab6(t *testing.T) *fwxlab.Lab {
	reg := &filters.Registry{}
	reg.Register(ftp.Name, func() session.Filter { return ftp.New(ftp.Config{}) })
	reg.Register(ftp.NameReadOnly, func() session.Filter { return ftp.New(ftp.Config{ReadOnly: true}) })
	return fwxlab.New(t, fwxlab.Options{Policy: ftpPolicy6, Filters: reg, IPv6: true})
}

var (
	any6       = netip.IPv6Unspecified()
	ftpServer6 = netip.AddrPortFrom(fwxlab.ServerAddr6, 21)
)

// TestIPv6ActiveMode: EPRT |2| naming the client is rewritten to fwx's
// IPv6 outside address and a bound port; the server's data connection
// reaches the client.
func TestIPv6ActiveMode(t *testing.T) {
	l := newLab6(t)
	srv := serveOn(t, l.Server, netip.AddrPortFrom(any6, 21))
	data := listenDataOn(t, l.Client, netip.AddrPortFrom(any6, 5001))
	c := dial(t, l.Client, ftpServer6)
	c.cmd("EPRT "+ftp.FormatEPRT(netip.AddrPortFrom(fwxlab.ClientAddr6, 5001)), "200")
	got := srv.received(t)
	ap, err := ftp.ParseEPRT(strings.TrimPrefix(got, "EPRT "))
	if err != nil || ap.Addr() != fwxlab.FWOutside6 || !strings.HasPrefix(got, "EPRT |2|") {
		t.Fatalf("server got %q: want EPRT |2| rewritten to fwx's IPv6 outside address", got)
	}
	c.cmd("RETR file", "150")
	if got := recvData(t, data); got != fwxlab.ServerAddr6.String()+" contents of file" {
		t.Errorf("data connection: %q", got)
	}
	c.expect("226")
}

// TestIPv6PassiveMode: a 229 reply on an IPv6 control connection lets the
// client connect to the server's data port.
func TestIPv6PassiveMode(t *testing.T) {
	l := newLab6(t)
	serveOn(t, l.Server, netip.AddrPortFrom(any6, 21))
	c := dial(t, l.Client, ftpServer6)
	line := c.cmd("EPSV", "229")
	port, err := ftp.Parse229(line[4:])
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Client.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwxlab.ServerAddr6, port))
	if err != nil {
		t.Fatalf("data connection refused: %v", err)
	}
	defer d.Close()
	c.cmd("RETR f", "150")
	if b, _ := io.ReadAll(d); string(b) != "contents of f" {
		t.Errorf("data %q", b)
	}
}

// TestIPv6PortPasvRefused: PORT and PASV carry IPv4 only; on an IPv6
// control connection fwx answers them itself, and an EPRT naming IPv4 is
// a foreign address.
func TestIPv6PortPasvRefused(t *testing.T) {
	l := newLab6(t)
	srv := serveOn(t, l.Server, netip.AddrPortFrom(any6, 21))
	c := dial(t, l.Client, ftpServer6)
	c.cmd("PORT "+ftp.FormatPORT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001)), "502")
	c.cmd("PASV", "502")
	c.cmd("EPRT "+ftp.FormatEPRT(netip.AddrPortFrom(fwxlab.ClientAddr, 5001)), "500")
	srv.receivedNothing(t)
	c.cmd("NOOP", "200")
	if got := srv.received(t); got != "NOOP" {
		t.Errorf("server got %q, want NOOP", got)
	}
	if len(l.Log.Records(t, map[string]string{"event": "pinhole-refused", "cause": "ipv4-only"})) != 2 {
		t.Errorf("want two pinhole-refused records with cause ipv4-only:\n%s", l.Log.String())
	}
}

// TestIPv6PublishedPassive: a published IPv6 server's 229 is rewritten to
// a port fwx binds on its IPv6 outside address for the outside client.
func TestIPv6PublishedPassive(t *testing.T) {
	l := newLab6(t)
	serveOn(t, l.Client, netip.AddrPortFrom(any6, 21))
	c := dial(t, l.Server, netip.AddrPortFrom(fwxlab.FWOutside6, 21))
	line := c.cmd("EPSV", "229")
	port, err := ftp.Parse229(line[4:])
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Server.DialTCP(lab.Context(t, 5*time.Second), netip.AddrPortFrom(fwxlab.FWOutside6, port))
	if err != nil {
		t.Fatalf("data connection: %v", err)
	}
	defer d.Close()
	c.cmd("RETR f", "150")
	if b, _ := io.ReadAll(d); string(b) != "contents of f" {
		t.Errorf("data %q", b)
	}
}
