// Package fwx is the embedding entry point of fwx, a firewall and NAT gateway
// that runs in user space. A program hands it the TUN device its clients are
// routed into (the inside), a device for the outside (or the host's own
// network stack), and a policy; fwx forwards what the policy allows,
// translating addresses and ports (SecureNAT), runs the application filters
// the policy names, and writes a firewall log.
//
//	fw, err := fwx.New(fwx.Config{
//		Inside:      insideDev,
//		Outside:     outsideDev,
//		InsideAddr:  netip.MustParsePrefix("10.0.0.1/24"),
//		OutsideAddr: netip.MustParsePrefix("198.51.100.1/24"),
//		Policy:      policy.Default(),
//	})
//	...
//	err = fw.Run(ctx) // until ctx is done
//
// This package is the API only; the datapath it runs is package
// [github.com/fwx-dev/fwx/nat/gateway]. The examples show router mode on
// in-memory devices, host mode, a custom filter and reading the flow log;
// docs/EMBED.md walks through cmd/fwx-wireguard, a WireGuard server with
// fwx inside (wireguard-go's device joined to fwx by
// [github.com/fwx-dev/fwx/netstack/memtun.NewPair]).
//
// # Ownership
//
// [New] does not touch the devices: if it fails, they are still the
// caller's to close. [Firewall.Run] owns them from the moment it is
// called: it reads each device queue from one goroutine of its own, writes
// to each from several (the forwarding goroutines, the user-mode path's
// netstacks and datagram senders), drains each device's Events channel,
// and closes every device before it returns, whatever ended it: every
// queue of a multi-queue one, and in host mode the host
// ([github.com/fwx-dev/fwx/netstack/hostnet.Host]). So a device given to
// fwx must allow concurrent Writes, and nothing else may read it or its
// events. Run is called once: a Firewall cannot run again
// (its devices are closed). Before Run returns it ends every flow (or
// saves it, with [Config.StateFile]) and writes every pending record, so
// the firewall log is complete once it has returned; close the log's
// writer (a [LogQueue]) after that, not before.
//
// # Concurrency
//
// While Run runs, every exported method of [Firewall] is safe to call from
// any goroutine: [Firewall.Session] (the filter SDK's session of a client;
// nil once Run has returned), [Firewall.Reload] (reloads are serialized;
// the policy switch is one atomic swap), [Firewall.Status],
// [Firewall.Totals], [Firewall.Stats], [Firewall.Flows] (they read the flow
// table shard by shard, as a lookup does: forwarding never waits for
// them) and [Firewall.Expire] (what the periodic sweep does; a test with a
// manual clock calls it after advancing the clock). What fwx calls back
// runs on its goroutines, concurrently: [Config.FirewallLog] and
// [Config.Log] are written on the packet path (their writers must be safe
// for concurrent use and must not block: put a [LogQueue] under them),
// [Config.Clock] is read everywhere, and filters are called as package
// [github.com/fwx-dev/fwx/session] documents.
//
// The in-process lab in package [github.com/fwx-dev/fwx/netstack/lab]
// provides in-memory devices and virtual hosts to test fwx, and filters
// written for it, without root; it records any link as a pcap, and with a
// manual clock one seed gives the same packets run after run.
package fwx
