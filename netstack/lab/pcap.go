package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// The pcap file format (https://www.tcpdump.org/manpages/pcap-savefile.5.html):
// a 24-byte file header, then per packet a 16-byte record header and the
// packet. LINKTYPE_RAW: each packet is a bare IPv4 or IPv6 packet, as on
// the segment's device.
const (
	pcapMagic      = 0xa1b2c3d4 // microsecond timestamps
	pcapLinkRaw    = 101
	pcapSnapLen    = 262144 // more than any packet, superpackets included
	pcapFileHeader = 24
	pcapRecHeader  = 16
)

// errPcapOn is returned by Pcap when the segment is already recording.
var errPcapOn = errors.New("lab: segment already records a pcap")

// pcap writes a segment's packets to a pcap file. Its methods are safe for
// concurrent use; records are written whole, in the order they come.
type pcap struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
	hdr [pcapRecHeader]byte
	err error // the first write error; nothing is written after it
}

// Pcap starts recording every packet that crosses the segment, in both
// directions, to w as a pcap file that tcpdump -r and Wireshark read: the
// hosts' packets as they are handed to the device, and the device's
// packets as they reach a host or the capture queue. Each record is
// stamped with [Options.Clock] if the network has one, else with the real
// time. Recording goes on until stop is called or the network is closed;
// stop returns the first error writing to w. A segment records to one w
// at a time.
func (s *Segment) Pcap(w io.Writer) (stop func() error, err error) {
	now := time.Now
	if c := s.net.opts.Clock; c != nil {
		now = c.Now
	}
	p := &pcap{w: w, now: now}
	var hdr [pcapFileHeader]byte
	binary.LittleEndian.PutUint32(hdr[0:], pcapMagic)
	binary.LittleEndian.PutUint16(hdr[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], pcapSnapLen)
	binary.LittleEndian.PutUint32(hdr[20:], pcapLinkRaw)
	if _, err := w.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("lab: segment %s: pcap: %w", s.name, err)
	}
	if !s.pcap.CompareAndSwap(nil, p) {
		return nil, fmt.Errorf("lab: segment %s: %w", s.name, errPcapOn)
	}
	return func() error {
		s.pcap.CompareAndSwap(p, nil)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.err != nil {
			return fmt.Errorf("lab: segment %s: pcap: %w", s.name, p.err)
		}
		return nil
	}, nil
}

// record appends pkt to the file.
func (p *pcap) record(pkt []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	t := p.now()
	binary.LittleEndian.PutUint32(p.hdr[0:], uint32(t.Unix()))
	binary.LittleEndian.PutUint32(p.hdr[4:], uint32(t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(p.hdr[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(p.hdr[12:], uint32(len(pkt)))
	if _, p.err = p.w.Write(p.hdr[:]); p.err == nil {
		_, p.err = p.w.Write(pkt)
	}
}
