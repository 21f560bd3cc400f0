package memtun_test

import (
	"fmt"
	"log"

	"github.com/fwx-dev/fwx/netstack/memtun"
)

// A pair joins two programs' tun.Devices back to back: a VPN's tunnel on
// one end, fwx on the other.
func ExampleNewPair() {
	tunnel, firewall := memtun.NewPair("wg0", "fwx-in", 1420)
	defer tunnel.Close() // closes both ends

	// The tunnel decrypted two packets and writes them as one batch, each
	// behind 16 bytes of headroom, as wireguard-go does.
	const offset = 16
	pkts := [][]byte{
		append(make([]byte, offset), "first packet"...),
		append(make([]byte, offset), "second packet"...),
	}
	if _, err := tunnel.Write(pkts, offset); err != nil {
		log.Fatal(err)
	}

	// fwx reads them in one batch of its own.
	bufs := make([][]byte, firewall.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, offset+65535)
	}
	sizes := make([]int, len(bufs))
	n, err := firewall.Read(bufs, sizes, offset)
	if err != nil {
		log.Fatal(err)
	}
	for i := range n {
		fmt.Printf("%s\n", bufs[i][offset:offset+sizes[i]])
	}
	// Output:
	// first packet
	// second packet
}
