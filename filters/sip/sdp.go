package sip

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SDP is a session description (RFC 4566) as the filter needs it: its
// lines, and where the addresses and ports of its media are, so that they
// can be checked and rewritten in place. Other lines pass untouched.
type SDP struct {
	Lines []string
	// Conn is the index of the session-level "c=" line, or -1.
	Conn int
	// Origin is the index of the "o=" line, or -1.
	Origin int
	Media  []Media
}

// Media is one "m=" section.
type Media struct {
	Line  int    // index of the m= line
	Kind  string // audio, video, image, ...
	Port  uint16 // 0: the stream is disabled or rejected
	Proto string // RTP/AVP, udptl, TCP/MSRP, ...
	Conn  int    // index of the section's "c=" line, or -1
	RTCP  int    // index of an "a=rtcp:" line (RFC 3605), or -1
	// RTCPPort is the a=rtcp port; 0 without one (RTP's port + 1).
	RTCPPort uint16
}

// ParseSDP parses a session description. A media section with a port
// count ("m=video 49170/2 ...") is an error: the filter would have to
// open a range it cannot pair.
func ParseSDP(b []byte) (*SDP, error) {
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	text = strings.TrimSuffix(text, "\n")
	s := &SDP{Lines: strings.Split(text, "\n"), Conn: -1, Origin: -1}
	for i, l := range s.Lines {
		if len(l) < 2 || l[1] != '=' {
			return nil, fmt.Errorf("%w: SDP line %q", ErrMalformed, clip(l))
		}
		cur := len(s.Media) - 1
		switch l[0] {
		case 'o':
			s.Origin = i
		case 'c':
			if cur < 0 {
				s.Conn = i
			} else {
				s.Media[cur].Conn = i
			}
		case 'm':
			f := strings.Fields(l[2:])
			if len(f) < 3 {
				return nil, fmt.Errorf("%w: SDP line %q", ErrMalformed, clip(l))
			}
			port, err := strconv.Atoi(f[1])
			if err != nil || port < 0 || port > 65535 {
				return nil, fmt.Errorf("%w: SDP media port %q", ErrMalformed, f[1])
			}
			s.Media = append(s.Media, Media{Line: i, Kind: f[0], Port: uint16(port), Proto: f[2], Conn: -1, RTCP: -1})
		case 'a':
			if v, ok := strings.CutPrefix(l[2:], "rtcp:"); ok && cur >= 0 {
				f := strings.Fields(v)
				port, err := strconv.Atoi(strings.Join(f[:min(len(f), 1)], ""))
				if err != nil || port < 1 || port > 65535 || (len(f) != 1 && len(f) != 4) {
					return nil, fmt.Errorf("%w: SDP line %q", ErrMalformed, clip(l))
				}
				s.Media[cur].RTCP, s.Media[cur].RTCPPort = i, uint16(port)
			}
		}
	}
	return s, nil
}

// IsUDP reports whether a medium travels in UDP datagrams: RTP and its
// profiles over UDP, and T.38's udptl.
func (m *Media) IsUDP() bool {
	p := strings.ToUpper(m.Proto)
	return p == "UDPTL" || p == "UDP" || (strings.HasPrefix(p, "RTP/") && !strings.Contains(p, "TCP")) ||
		(strings.HasPrefix(p, "UDP/") && !strings.Contains(p, "DTLS/SCTP"))
}

// ConnAddr returns the address of a "c=IN IP4 addr" (or IP6) line; ok
// is false when the line is not one or names no address (a name, a
// multicast range).
func (s *SDP) ConnAddr(line int) (netip.Addr, bool) {
	f := strings.Fields(s.Lines[line][2:])
	if len(f) != 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
		return netip.Addr{}, false
	}
	return sdpAddr(f[1], f[2])
}

// sdpAddr returns the address addr of a line of address type addrType
// (IP4 or IP6); ok is false when it is not an address (a name, a
// multicast range). RFC 4566 writes IPv6 bare; sipp writes it in brackets
// ([local_ip], [media_ip]), and so is it read, in every line that names an
// address.
func sdpAddr(addrType, addr string) (netip.Addr, bool) {
	if addrType == "IP6" && len(addr) > 2 && addr[0] == '[' && addr[len(addr)-1] == ']' {
		addr = addr[1 : len(addr)-1]
	}
	a, err := netip.ParseAddr(addr)
	return a.Unmap(), err == nil
}

// MediaAddr returns the address media of m go to: its own c= line's, or
// the session's.
func (s *SDP) MediaAddr(m *Media) (netip.Addr, bool) {
	switch {
	case m.Conn >= 0:
		return s.ConnAddr(m.Conn)
	case s.Conn >= 0:
		return s.ConnAddr(s.Conn)
	}
	return netip.Addr{}, false
}

// RTCPAddr returns the address of a medium's a=rtcp line, if it names
// one (RFC 3605: "a=rtcp:port IN IP4 addr").
func (s *SDP) RTCPAddr(m *Media) (netip.Addr, bool) {
	if m.RTCP < 0 {
		return netip.Addr{}, false
	}
	f := strings.Fields(strings.TrimPrefix(s.Lines[m.RTCP], "a=rtcp:"))
	if len(f) != 4 {
		return netip.Addr{}, false
	}
	return sdpAddr(f[2], f[3])
}

// OriginAddr returns the address of the o= line, if it names one.
func (s *SDP) OriginAddr() (netip.Addr, bool) {
	if s.Origin < 0 {
		return netip.Addr{}, false
	}
	f := strings.Fields(s.Lines[s.Origin][2:])
	if len(f) != 6 || f[3] != "IN" {
		return netip.Addr{}, false
	}
	return sdpAddr(f[4], f[5])
}

// SetConn sets the address of a c= line.
func (s *SDP) SetConn(line int, a netip.Addr) {
	s.Lines[line] = "c=IN " + family(a) + " " + a.String()
}

// SetOrigin sets the address of the o= line.
func (s *SDP) SetOrigin(a netip.Addr) {
	f := strings.Fields(s.Lines[s.Origin][2:])
	f[4], f[5] = family(a), a.String()
	s.Lines[s.Origin] = "o=" + strings.Join(f, " ")
}

// SetPorts sets a medium's RTP port and, if it has an a=rtcp line, that
// line's port (and address, if it names one).
func (s *SDP) SetPorts(m *Media, rtp, rtcp uint16, a netip.Addr) {
	f := strings.Fields(s.Lines[m.Line][2:])
	f[1] = strconv.Itoa(int(rtp))
	s.Lines[m.Line] = "m=" + strings.Join(f, " ")
	m.Port = rtp
	if m.RTCP >= 0 {
		f := strings.Fields(strings.TrimPrefix(s.Lines[m.RTCP], "a=rtcp:"))
		f[0] = strconv.Itoa(int(rtcp))
		if len(f) == 4 {
			f[2], f[3] = family(a), a.String()
		}
		s.Lines[m.RTCP] = "a=rtcp:" + strings.Join(f, " ")
		m.RTCPPort = rtcp
	}
}

// Bytes returns the description in wire form, lines ended by CRLF.
func (s *SDP) Bytes() []byte { return []byte(strings.Join(s.Lines, "\r\n") + "\r\n") }

func family(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}
