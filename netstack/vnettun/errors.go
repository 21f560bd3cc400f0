package vnettun

import (
	"errors"
	"fmt"
	"os"

	"golang.zx2c4.com/wireguard/tun"
)

// Errors a caller may test for with errors.Is.
var (
	// ErrClosed is returned by Read and Write on a closed [Device]. It
	// wraps os.ErrClosed, as wireguard-go's devices do, so fwx's forward
	// loop stops on it.
	ErrClosed = fmt.Errorf("vnettun: %w", os.ErrClosed)

	// ErrHeadroom is returned by Read and Write when offset is smaller
	// than [VirtioHdrLen]: the virtio header lives in the headroom.
	ErrHeadroom = errors.New("vnettun: offset smaller than the virtio header")

	// ErrShortBuffer is returned by Read when the first buffer cannot
	// hold a maximal superpacket after offset, and by [Split] when an
	// output buffer cannot hold a segment.
	ErrShortBuffer = errors.New("vnettun: buffer too short")

	// ErrTooManySegments is returned by [Split] when out has fewer
	// buffers than the superpacket has segments. It wraps
	// tun.ErrTooManySegments, which fwx's forward loop already handles.
	ErrTooManySegments = fmt.Errorf("vnettun: %w", tun.ErrTooManySegments)

	// ErrGSO is returned by [Finish] for a superpacket: its checksums can
	// only be completed per segment, by [Split].
	ErrGSO = errors.New("vnettun: packet is a GSO superpacket")

	// ErrMalformed is returned when a packet and its virtio header do not
	// agree (offsets outside the packet, wrong IP version for the GSO
	// type, bad header lengths, an unsupported GSO type).
	ErrMalformed = errors.New("vnettun: malformed packet or virtio header")
)
