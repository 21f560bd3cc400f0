package session

import (
	"net/netip"
	"slices"
)

// IPFilter is a set of addresses allowed to use a connection (ISA's
// IFWXIpFilter). A nil *IPFilter means no restriction; an empty one blocks
// every address. The zero value is empty.
//
// It is safe for concurrent reads; build it before handing it to fwx.
type IPFilter struct {
	include []addrRange
	exclude []addrRange
}

type addrRange struct{ lo, hi netip.Addr }

func (r addrRange) contains(a netip.Addr) bool { return r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0 }

// NewIPFilter returns a filter that allows exactly addrs.
func NewIPFilter(addrs ...netip.Addr) *IPFilter {
	f := &IPFilter{}
	for _, a := range addrs {
		f.IncludeRange(a, a)
	}
	return f
}

// IncludeRange allows the addresses from lo to hi, inclusive.
func (f *IPFilter) IncludeRange(lo, hi netip.Addr) {
	f.include = append(f.include, addrRange{lo.Unmap(), hi.Unmap()})
}

// ExcludeRange blocks the addresses from lo to hi, inclusive, even if a
// range includes them.
func (f *IPFilter) ExcludeRange(lo, hi netip.Addr) {
	f.exclude = append(f.exclude, addrRange{lo.Unmap(), hi.Unmap()})
}

// Contains reports whether the filter allows a. A nil filter allows every
// address.
func (f *IPFilter) Contains(a netip.Addr) bool {
	if f == nil {
		return true
	}
	a = a.Unmap()
	for _, r := range f.exclude {
		if r.contains(a) {
			return false
		}
	}
	for _, r := range f.include {
		if r.contains(a) {
			return true
		}
	}
	return false
}

// Clone returns a copy of the filter; nil stays nil.
func (f *IPFilter) Clone() *IPFilter {
	if f == nil {
		return nil
	}
	return &IPFilter{include: slices.Clone(f.include), exclude: slices.Clone(f.exclude)}
}
