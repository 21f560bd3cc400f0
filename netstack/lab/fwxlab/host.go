package fwxlab

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Host mode in the lab (Options.Host): the clients are the lab's, behind
// fwx's inside device; the outside is this process's own network stack.
// So that the servers have addresses of their own and nothing leaves the
// machine, such a test runs in a network namespace of its own
// ([InOwnNetns]: the test binary runs the test again in one), where the
// host addresses below are on lo, and its servers are ordinary sockets.
var (
	HostAddr    = netip.MustParseAddr("192.0.2.1") // fwx's sockets bind here
	HostServer  = netip.MustParseAddr("192.0.2.2")
	HostServer2 = netip.MustParseAddr("192.0.2.3")
	HostAddr6   = netip.MustParseAddr("2001:db8:1::1") // with Options.IPv6
	HostServer6 = netip.MustParseAddr("2001:db8:1::2")
)

// netnsEnv names the test the binary runs in a namespace of its own.
const netnsEnv = "FWX_TEST_NETNS"

// InOwnNetns reports whether the test runs in a network namespace of its
// own, with the host addresses on lo. If not, it runs the test in one
// (which needs root and ip(8); the test is skipped without them), reports
// its result, and returns false: the caller then returns.
//
//	func TestHostModeThing(t *testing.T) {
//		if !fwxlab.InOwnNetns(t) {
//			return
//		}
//		l := fwxlab.New(t, fwxlab.Options{Host: true})
//		...
func InOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"addr", "add", HostAddr.String() + "/32", "dev", "lo"},
			{"addr", "add", HostServer.String() + "/32", "dev", "lo"},
			{"addr", "add", HostServer2.String() + "/32", "dev", "lo"},
			{"addr", "add", HostAddr6.String() + "/128", "dev", "lo", "nodad"},
			{"addr", "add", HostServer6.String() + "/128", "dev", "lo", "nodad"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0); err != nil {
			t.Fatal(err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("host-mode lab tests run in a network namespace of their own, which needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("host-mode lab tests need ip(8) (iproute2; scripts/deps installs it)")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in its own network namespace: %v\n%s", err, out)
	}
	if testing.Verbose() {
		t.Logf("in its own network namespace:\n%s", out)
	}
	return false
}

// HostEcho serves a TCP echo on a host address (IPv4, any port) until the
// test ends: it returns where, and reports each client's address on the
// channel, as [ServeEcho] does.
func HostEcho(tb testing.TB, addr netip.Addr) (netip.AddrPort, <-chan netip.AddrPort) {
	tb.Helper()
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		tb.Fatal(err)
	}
	return ln.Addr().(*net.TCPAddr).AddrPort(), ServeEcho(tb, ln)
}
