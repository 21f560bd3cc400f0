package fwx_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/session"
	"github.com/fwx-dev/fwx/session/stream"
)

// benchPolicy sends TCP 5201 through the "pass" filter (user-mode path)
// and everything else on the fast path.
const benchPolicy = `
protocols:
  - {name: bench, transport: tcp, ports: [5201], filter: pass}
rules:
  - {name: bench, action: allow, from: [internal], to: [external], protocols: [bench]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`

// passFilter attaches a pass-through data filter to every connection of its
// protocol: the cost of the user-mode path itself.
type passFilter struct{}

func (passFilter) Init() (session.Hooks, error) {
	return session.Hooks{Events: session.EventConnectTCP}, nil
}
func (passFilter) AttachToSession(*session.Session) (session.SessionFilter, error) {
	return passFilter{}, nil
}
func (passFilter) Shutdown() {}
func (passFilter) Detach()   {}
func (passFilter) HandleEvent(ev *session.Event) error {
	return ev.Conn.AttachDataFilter(session.DataFilterFunc(func(ctx context.Context, c *session.Connection, in, out session.Socket) error {
		_, _, err := stream.Relay(ctx, in, out, 0)
		return err
	}), session.PriorityMiddle)
}

// BenchmarkLabThroughput measures TCP throughput from a lab client to a lab
// server through fwx, on the fast path and on the user-mode path with a
// pass-through data filter, in the same run. The lab's hosts are gVisor
// stacks on the same two cores, so the absolute figures are the lab's; the
// ratio between the two paths is the point.
func BenchmarkLabThroughput(b *testing.B) {
	for _, path := range []struct {
		name string
		port uint16
	}{{"fast", 5202}, {"user-mode", 5201}} {
		b.Run(path.name, func(b *testing.B) {
			tb := newTestbed(b, benchPolicy, withFilter("pass", passFilter{}))
			ln, err := tb.Server.ListenTCP(path.port)
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func(c net.Conn) {
						defer c.Close()
						io.Copy(io.Discard, c)
					}(c)
				}
			}()
			c, err := tb.Client.DialTCP(lab.Context(b, 5*time.Second), netip.AddrPortFrom(serverIP.Addr(), path.port))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			chunk := make([]byte, 64<<10)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
