package callback_test

import (
	"context"
	"log"
	"net/netip"
	"os"
	"os/signal"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/filters"
	"github.com/fwx-dev/fwx/filters/example/callback"
	"github.com/fwx-dev/fwx/session/policy"
)

// A program that embeds fwx registers the filter in its own registry and
// turns it on with a policy protocol. (It needs two TUN devices, so the
// example is compiled but not run.)
func Example_embed() {
	reg := &filters.Registry{}
	callback.Register(reg)

	pol, err := policy.Parse("policy.yaml", []byte(`
protocols:
  - {name: callback, transport: tcp, ports: [7000], filter: callback}
rules:
  - {name: callback-out, action: allow, from: [internal], to: [external], protocols: [callback]}
`))
	if err != nil {
		log.Fatal(err)
	}
	in, err := tun.CreateTUN("fwx-in", 1500)
	if err != nil {
		log.Fatal(err)
	}
	out, err := tun.CreateTUN("fwx-out", 1500)
	if err != nil {
		log.Fatal(err)
	}
	fw, err := fwx.New(fwx.Config{
		Inside:      in,
		Outside:     out,
		InsideAddr:  netip.MustParsePrefix("10.0.0.1/24"),
		OutsideAddr: netip.MustParsePrefix("198.51.100.1/24"),
		Policy:      pol,
		Filters:     reg,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := fw.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
