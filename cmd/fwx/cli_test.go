package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs fwx's command line in process. fwx run stops once it has
// checked its command line and policy (parseRun): a check that let a bad
// input through must fail the test, not start a firewall on the host.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{strings.NewReader(stdin), &out, &errb}
	if len(args) > 0 && args[0] == "run" {
		_, err := parseRun(args[1:], e)
		code = exitCode(err, e)
	} else {
		code = cli(args, e)
	}
	return code, out.String(), errb.String()
}

// TestCLIRejects: every bad input is refused before anything starts, with
// exit code 2 for a wrong command line (1 for a bad policy file) and a
// message that says what to pass instead.
func TestCLIRejects(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty.yaml", "# nothing here yet\n\n")
	unregistered := write("filter.yaml", "protocols:\n  - {name: ftp, transport: tcp, ports: [21], filter: ftpp}\nrules:\n  - {name: out, action: allow, from: internal, to: external, protocols: [ftp]}\n")
	badSetting := write("setting.yaml", "protocols:\n  - {name: ftp, transport: tcp, ports: [21], filter: ftp}\nrules:\n  - {name: out, action: allow, from: internal, to: external, protocols: [ftp], filter_settings: {read_onyl: true}}\n")
	broken := write("broken.yaml", "rules:\n  - {name: out, action: alow, from: internal, to: external, protocols: [any]}\n")

	router := func(extra ...string) []string {
		return append([]string{"run", "--in-tun", "fwxi", "--in-addr", "10.0.0.1/24", "--out-tun", "fwxo", "--out-addr", "198.51.100.1/24"}, extra...)
	}
	host := func(extra ...string) []string {
		return append([]string{"run", "--in-tun", "fwxi", "--in-addr", "10.0.0.1/24", "--out", "host"}, extra...)
	}
	set := func(args []string, flag, value string) []string {
		out := append([]string(nil), args...)
		for i := range out {
			if out[i] == flag {
				out[i+1] = value
			}
		}
		return out
	}
	drop := func(args []string, flag string) []string {
		var out []string
		for i := 0; i < len(args); i++ {
			if args[i] == flag {
				i++
				continue
			}
			out = append(out, args[i])
		}
		return out
	}
	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of standard error
	}{
		{"no command", nil, 2, []string{"usage: fwx COMMAND"}},
		{"unknown command", []string{"start"}, 2, []string{`unknown command "start"`}},
		{"unknown flag", router("--bogus"), 2, []string{"--bogus", "fwx run"}},
		{"flag without value", []string{"run", "--in-tun"}, 2, []string{"flag needs an argument: --in-tun"}},
		{"stray argument", router("extra"), 2, []string{`unexpected argument "extra"`}},
		{"no in-tun", drop(router(), "--in-tun"), 2, []string{"--in-tun is required"}},
		{"no in-addr", drop(router(), "--in-addr"), 2, []string{"--in-addr is required", "10.0.0.1/24"}},
		{"no out-tun", drop(router(), "--out-tun"), 2, []string{"--out-tun NAME is required", "--out host"}},
		{"no out-addr", drop(router(), "--out-addr"), 2, []string{"--out-addr is required"}},
		{"out not host", set(host(), "--out", "hots"), 2, []string{`--out "hots"`, "only value is host"}},
		{"host with out-tun", host("--out-tun", "x"), 2, []string{"exclude each other"}},
		{"out-dev in router mode", router("--out-dev", "eth0"), 2, []string{"for host mode"}},
		{"tun name too long", set(router(), "--in-tun", "fwx-inside-tun-01"), 2, []string{`--in-tun "fwx-inside-tun-01" is 17 bytes`, "at most 15"}},
		{"tun name with slash", set(router(), "--out-tun", "a/b"), 2, []string{`--out-tun "a/b": not a valid interface name`}},
		{"same tun twice", set(router(), "--out-tun", "fwxi"), 2, []string{"need a device each"}},
		{"in-addr without length", set(router(), "--in-addr", "10.0.0.1"), 2, []string{"give the network's prefix length too, such as 10.0.0.1/24"}},
		{"in-addr garbage", set(router(), "--in-addr", "ten"), 2, []string{`--in-addr "ten": not an address with a prefix length`}},
		{"in-addr ipv6 subnet-router anycast", router("--in-addr", "fd00::/64"), 2, []string{"fd00:: is the subnet-router anycast address of fd00::/64", "such as fd00::1/64"}},
		{"in-addr ipv6 twice", router("--in-addr", "fd00::1/64,fd00::1/64"), 2, []string{"--in-addr fd00::1 given twice"}},
		{"in-addr ipv4-mapped", router("--in-addr", "::ffff:10.0.1.1/120"), 2, []string{"write IPv4 as IPv4"}},
		{"overlapping ipv6 networks", router("--in-addr", "fd00::1/64", "--out-addr", "fd00::9/48"), 2, []string{"overlap"}},
		{"host mode, two out-addrs", host("--out-addr", "192.0.2.1,192.0.2.2"), 2, []string{"host mode binds to one host address"}},
		{"in-addr network address", set(router(), "--in-addr", "10.0.0.0/24"), 2, []string{"10.0.0.0 is the network address of 10.0.0.0/24", "such as 10.0.0.1/24"}},
		{"in-addr broadcast", set(router(), "--in-addr", "10.0.0.255/24"), 2, []string{"10.0.0.255 is the broadcast address of 10.0.0.0/24"}},
		{"out-addr network address", set(router(), "--out-addr", "198.51.100.0/24"), 2, []string{"--out-addr 198.51.100.0/24: 198.51.100.0 is the network address"}},
		{"out-addr multicast", set(router(), "--out-addr", "224.0.0.1/24"), 2, []string{"not a unicast address"}},
		{"identical addresses", set(router(), "--out-addr", "10.0.0.1/24"), 2, []string{"--in-addr and --out-addr are both 10.0.0.1"}},
		{"same network", set(router(), "--out-addr", "10.0.0.2/24"), 2, []string{"same network 10.0.0.0/24", "different networks"}},
		{"overlapping networks", set(router(), "--out-addr", "10.0.5.1/16"), 2, []string{"10.0.0.0/24", "10.0.0.0/16", "overlap"}},
		{"host out-addr inside", host("--out-addr", "10.0.0.7"), 2, []string{"--out-addr 10.0.0.7 is in the inside network 10.0.0.0/24"}},
		{"host out-addr garbage", host("--out-addr", "uplink"), 2, []string{`--out-addr "uplink": not an address`}},
		{"mtu too small", router("--mtu", "100"), 2, []string{"--mtu 100: out of range; pass 576 to 65535"}},
		{"mtu too large", router("--mtu", "70000"), 2, []string{"--mtu 70000: out of range"}},
		{"negative busy-poll", router("--busy-poll", "-1us"), 2, []string{"--busy-poll -1µs: out of range; pass 0 (off) to 1ms"}},
		{"busy-poll too long", router("--busy-poll", "2ms"), 2, []string{"--busy-poll 2ms: out of range"}},
		{"mtu not a number", router("--mtu", "big"), 2, []string{`invalid value "big" for flag --mtu`}},
		{"out-mark not a number", host("--out-mark", "x"), 2, []string{`--out-mark "x": want a 32-bit number`}},
		{"log format", router("--log-format", "xml"), 2, []string{`--log-format "xml": pass json or console`}},
		{"rotation without file", router("--fwlog-max-size", "10M"), 2, []string{"pass --fwlog FILE too"}},
		{"bad size", router("--fwlog", filepath.Join(dir, "fw.log"), "--fwlog-max-size", "ten"), 2, []string{`--fwlog-max-size "ten"`, "100M"}},
		{"keep none", router("--fwlog-keep", "0"), 2, []string{"keep at least 1"}},
		{"negative rate", router("--fwlog-rate", "-1"), 2, []string{"0 for no limit"}},
		{"metrics without port", router("--metrics", "localhost"), 2, []string{`--metrics "localhost": want HOST:PORT`}},
		{"denied wait zero", router("--fwlog-denied-wait", "0s"), 2, []string{"positive duration"}},
		{"missing policy file", router("--policy", filepath.Join(dir, "nope.yaml")), 1, []string{"nope.yaml: no such file"}},
		{"empty policy file", router("--policy", empty), 1, []string{"empty.yaml is empty: fwx would deny every flow", "Leave --policy out", "rules: []"}},
		{"unregistered filter", router("--policy", unregistered), 1, []string{"filter.yaml:2: protocols[0].filter: filter \"ftpp\" is not registered", `did you mean "ftp"?`}},
		{"policy error", router("--policy", broken), 1, []string{"broken.yaml:2: rules[0].action:"}},
		{"unknown filter setting", router("--policy", badSetting), 1, []string{"setting.yaml:4:", "read_onyl"}},
		{"policy command, empty", []string{"policy", empty}, 1, []string{"is empty"}},
		{"policy command, no file", []string{"policy"}, 2, []string{"want one policy file"}},
		{"policy command, unregistered filter", []string{"policy", unregistered}, 1, []string{"filter.yaml:2:"}},
		{"version with argument", []string{"version", "x"}, 2, []string{`unexpected argument "x"`}},
		{"status bad port", []string{"status", "--port", "0"}, 2, []string{`--port "0": want a port from 1 to 65535`}},
		{"status bad addr", []string{"status", "--addr", "gateway"}, 2, []string{`--addr "gateway": not an IP address`}},
		{"status bad interval", []string{"status", "--watch", "--interval", "0s"}, 2, []string{"--interval 0s"}},
		{"status, no fwx", []string{"status", "--control", filepath.Join(dir, "none.sock")}, 1, []string{"none.sock: is it running?"}},
		{"reload, no fwx", []string{"reload", "--control", filepath.Join(dir, "none.sock")}, 1, []string{"no fwx answers on"}},
		{"reload with argument", []string{"reload", "now"}, 2, []string{`unexpected argument "now"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tt.code == 2 && stdout != "" {
				t.Errorf("a usage error wrote to standard output: %q", stdout)
			}
		})
	}
}

// TestCLIHelp: --help prints usage to standard output, exits 0, and names
// flags as the README writes them.
func TestCLIHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"run", "--help"}, {"run", "-h"}, {"policy", "--help"}, {"version", "--help"}, {"status", "--help"}, {"reload", "--help"}} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "usage: fwx") {
			t.Errorf("fwx %v: exit %d, stderr %q, stdout %q", args, code, stderr, stdout)
		}
	}
	_, stdout, _ := runCLI(t, "", "run", "--help")
	for _, flag := range []string{"--in-tun NAME", "--in-addr CIDR", "--out-tun NAME", "--out-addr CIDR", "--out host", "--policy FILE", "--fwlog FILE", "--mtu N", "-v\n"} {
		if !strings.Contains(stdout, "  "+flag) {
			t.Errorf("run --help lacks %q:\n%s", flag, stdout)
		}
	}
	if strings.Contains(stdout, "  -in-tun") {
		t.Errorf("run --help writes -in-tun:\n%s", stdout)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, _ := runCLI(t, "", args...)
		if code != 0 || !strings.HasPrefix(stdout, "fwx ") || !strings.Contains(stdout, " go1.") {
			t.Errorf("fwx %v: exit %d, %q", args, code, stdout)
		}
	}
}

// TestPolicyCommand: the shipped example passes every check fwx run makes;
// - reads standard input; a shadowed filter is a warning, not a failure.
func TestPolicyCommand(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "policy", "../../session/policy/testdata/example.yaml")
	if code != 0 || stdout != "../../session/policy/testdata/example.yaml: ok\n" {
		t.Errorf("example.yaml: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	shadowed := `protocols:
  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
rules:
  - {name: all, action: allow, from: internal, to: external, protocols: [any]}
  - {name: ftp-out, action: allow, from: internal, to: external, protocols: [ftp]}
`
	code, stdout, stderr = runCLI(t, shadowed, "policy", "-")
	if code != 0 || stdout != "stdin: ok (1 warning)\n" ||
		!strings.HasPrefix(stderr, `warning: stdin:5: rules[1].protocols[0]: connections of protocol "ftp" bypass its filter "ftp": rule "all" (line 4)`) {
		t.Errorf("shadowed filter: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
