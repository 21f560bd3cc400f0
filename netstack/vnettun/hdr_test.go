package vnettun

import (
	"bytes"
	"fmt"
	"testing"
)

func TestHdrEncodeParse(t *testing.T) {
	tests := []struct {
		name string
		h    Hdr
		wire []byte // little-endian, per the virtio spec
	}{
		{"zero", Hdr{}, make([]byte, VirtioHdrLen)},
		{
			"tcpv4 gso",
			Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16},
			[]byte{1, 1, 52, 0, 0xa8, 0x05, 20, 0, 16, 0},
		},
		{
			"udp_l4 over ipv6",
			Hdr{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, HdrLen: 48, GSOSize: 1232, CsumStart: 40, CsumOffset: 6},
			[]byte{1, 5, 48, 0, 0xd0, 0x04, 40, 0, 6, 0},
		},
		{
			"tcpv6 ecn, big values",
			Hdr{Flags: FlagNeedsCsum | FlagDataValid, GSOType: GSOTCPv6 | GSOECN, HdrLen: 0x1234, GSOSize: 0xfffe, CsumStart: 0x0102, CsumOffset: 0xff00},
			[]byte{3, 0x84, 0x34, 0x12, 0xfe, 0xff, 0x02, 0x01, 0x00, 0xff},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Repeat([]byte{0xee}, VirtioHdrLen+2)
			tt.h.Encode(b)
			if !bytes.Equal(b[:VirtioHdrLen], tt.wire) {
				t.Errorf("Encode = % x, want % x", b[:VirtioHdrLen], tt.wire)
			}
			if b[VirtioHdrLen] != 0xee {
				t.Errorf("Encode wrote past the header")
			}
			if got := ParseHdr(tt.wire); got != tt.h {
				t.Errorf("ParseHdr = %+v, want %+v", got, tt.h)
			}
		})
	}
}

func TestHdrPredicates(t *testing.T) {
	tests := []struct {
		h         Hdr
		needs, is bool
	}{
		{Hdr{}, false, false},
		{Hdr{Flags: FlagNeedsCsum}, true, false},
		{Hdr{Flags: FlagDataValid}, false, false},
		{Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4}, true, true},
		{Hdr{GSOType: GSOECN}, false, false}, // ECN bit alone is not a GSO type
		{Hdr{GSOType: GSOTCPv6 | GSOECN}, false, true},
		{Hdr{GSOType: GSOUDPL4}, false, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("flags%d/%v", tt.h.Flags, tt.h.GSOType), func(t *testing.T) {
			if got := tt.h.NeedsCsum(); got != tt.needs {
				t.Errorf("%+v NeedsCsum = %v, want %v", tt.h, got, tt.needs)
			}
			if got := tt.h.IsGSO(); got != tt.is {
				t.Errorf("%+v IsGSO = %v, want %v", tt.h, got, tt.is)
			}
		})
	}
}

func TestGSOTypeString(t *testing.T) {
	for typ, want := range map[GSOType]string{
		GSONone: "none", GSOTCPv4: "tcpv4", GSOTCPv6 | GSOECN: "tcpv6|ecn",
		GSOUDPL4: "udp_l4", GSOUDP: "udp", 9: "GSOType(9)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("GSOType(%#x).String() = %q, want %q", uint8(typ), got, want)
		}
	}
}

func TestOffloadsString(t *testing.T) {
	for o, want := range map[Offloads]string{
		0:                                       "none",
		OffloadCsum | OffloadTSO4 | OffloadTSO6: "csum|tso4|tso6",
		offloadLadder[0]:                        "csum|tso4|tso6|tso_ecn|uso4|uso6",
		OffloadCsum | 0x100:                     "csum|0x100",
	} {
		if got := o.String(); got != want {
			t.Errorf("Offloads(%#x).String() = %q, want %q", uint32(o), got, want)
		}
	}
}

// FuzzHdr checks that Encode(ParseHdr(b)) reproduces every header.
func FuzzHdr(f *testing.F) {
	f.Add(make([]byte, VirtioHdrLen))                    // GSO_NONE
	f.Add([]byte{1, 1, 52, 0, 0xa8, 0x05, 20, 0, 16, 0}) // TSO4
	f.Add([]byte{1, 5, 48, 0, 0xd0, 0x04, 40, 0, 6, 0})  // USO over IPv6
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < VirtioHdrLen {
			return
		}
		out := make([]byte, VirtioHdrLen)
		ParseHdr(b).Encode(out)
		if !bytes.Equal(out, b[:VirtioHdrLen]) {
			t.Fatalf("round trip % x -> % x", b[:VirtioHdrLen], out)
		}
	})
}
