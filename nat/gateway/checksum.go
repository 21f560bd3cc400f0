package gateway

import "github.com/fwx-dev/fwx/netstack/vnettun"

// The netstacks trust the checksums of what fwx delivers to them (their
// link claims RX checksum offload, netstack.Stack.Deliver): a packet the
// local kernel sent into a vnettun device with a partial checksum
// (NEEDS_CSUM) or a checksum it already verified (DATA_VALID) is taken as
// it is, and a TCP superpacket becomes one segment without a pass over
// its 64 KiB to compute a checksum the stack would then verify with
// another. Any other packet bound for a netstack is checked once, with
// nat.Packet.ChecksumValid.
// The IPv4 header checksum was checked by nat.Parse.

// trusted reports whether the kernel vouches for a packet's transport
// checksum: it left it partial, to be completed by hardware, or verified it.
func trusted(h vnettun.Hdr) bool {
	return h.NeedsCsum() || h.Flags&vnettun.FlagDataValid != 0
}
