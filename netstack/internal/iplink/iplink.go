// Package iplink is what every gVisor link endpoint of fwx's has alike:
// a point-to-point IP link (a TUN's, a lab host's) with no link-layer
// header or address and no offloads. fwx's netstacks and the lab's hosts
// embed an [Endpoint] and add how packets leave (stack.LinkWriter).
package iplink

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Endpoint implements stack.NetworkLinkEndpoint for an IP link: its MTU,
// the dispatcher the stack attached (inbound packets go to
// [Endpoint.Dispatcher]), and the methods of a link layer there is none
// of. Capabilities are none: the stack checks every checksum it receives
// and computes every one it sends (gVisor's TCP GSO leaves its own sums
// partial without a capability).
//
// Set the MTU with SetMTU before the stack uses it; the zero value is
// otherwise ready. An Endpoint is safe for concurrent use.
type Endpoint struct {
	mtu atomic.Uint32

	mu struct {
		sync.RWMutex
		dispatcher stack.NetworkDispatcher
		closed     bool
	}
}

// Dispatcher returns the stack's inbound dispatcher, or nil when the NIC
// is detached or closed.
func (e *Endpoint) Dispatcher() stack.NetworkDispatcher {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.mu.closed {
		return nil
	}
	return e.mu.dispatcher
}

// Attach implements stack.NetworkLinkEndpoint.
func (e *Endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.dispatcher = d
}

// IsAttached implements stack.NetworkLinkEndpoint.
func (e *Endpoint) IsAttached() bool { return e.Dispatcher() != nil }

// Close implements stack.NetworkLinkEndpoint: the stack calls it when the
// NIC is removed. Inbound packets find no dispatcher from then on; the
// embedder stops its own goroutines.
func (e *Endpoint) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.closed = true
}

// Closed reports whether the stack has closed the endpoint.
func (e *Endpoint) Closed() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.mu.closed
}

// MTU implements stack.NetworkLinkEndpoint.
func (e *Endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements stack.NetworkLinkEndpoint.
func (e *Endpoint) SetMTU(mtu uint32) { e.mtu.Store(mtu) }

// MaxHeaderLength implements stack.NetworkLinkEndpoint: there is no
// link-layer header.
func (*Endpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.NetworkLinkEndpoint: there is no link
// address.
func (*Endpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.NetworkLinkEndpoint. It does nothing.
func (*Endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.NetworkLinkEndpoint: none.
func (*Endpoint) Capabilities() stack.LinkEndpointCapabilities { return 0 }

// Wait implements stack.NetworkLinkEndpoint. The embedder joins its own
// goroutines.
func (*Endpoint) Wait() {}

// ARPHardwareType implements stack.NetworkLinkEndpoint.
func (*Endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.NetworkLinkEndpoint. There is no header.
func (*Endpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.NetworkLinkEndpoint. There is no header.
func (*Endpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// SetOnCloseAction implements stack.NetworkLinkEndpoint. Unused.
func (*Endpoint) SetOnCloseAction(func()) {}
