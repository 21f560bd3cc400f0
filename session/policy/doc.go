// Package policy loads fwx's policy file and decides, for each new flow,
// whether the gateway lets it through.
//
// The model is ISA Server's firewall policy: named networks, protocol
// definitions, access rules evaluated in order with the first match
// winning, server-publishing rules for inbound traffic, and a default deny
// for everything else.
//
// # File format
//
// A policy file is YAML. Every section is optional; an empty file is a valid
// policy that denies everything.
//
//	networks:               # named address sets (CIDR prefixes or single addresses)
//	  lab: [10.0.0.0/24, 10.0.1.5]
//	protocols:              # protocol definitions
//	  - name: web
//	    transport: tcp      # tcp | udp | icmp (icmp = echo queries; no ports)
//	    ports: [80, 443, "8000-8080"]   # ints or "lo-hi" strings; required for tcp/udp
//	    direction: outbound # outbound (default) | inbound | both
//	    filter: ""          # optional application filter name
//	  - name: web-in
//	    transport: tcp
//	    ports: [80]
//	    direction: inbound
//	  - {name: ftp, transport: tcp, ports: [21], filter: ftp}
//	rules:                  # access rules for outbound flows; first match wins; no match = deny
//	  - name: no-lab-web
//	    action: deny        # allow | deny
//	    from: [lab]         # network names; built-ins: internal, external, any
//	    to: [external]
//	    protocols: [web]    # protocol names; built-ins: any, any-tcp, any-udp, ping
//	  - name: allow-web
//	    action: allow
//	    from: [internal]
//	    to: [external]
//	    protocols: [web, ping]
//	  - name: ftp-out
//	    action: allow
//	    from: [internal]
//	    to: [external]
//	    protocols: [ftp]
//	    filter_settings: {read_only: true}   # optional: for the filter of the rule's protocols
//	publish:                # server publishing: an outside address:port forwarded to an inside server
//	  - name: www
//	    protocol: web-in    # must name a protocol with direction inbound or both; gives the transport
//	    listen: ":8080"     # [ADDR]:PORT on fwx's outside; ADDR omitted = any outside address;
//	                        # PORT (or listen) omitted = the protocol's single port
//	    server: 10.0.0.2:80 # inside server; port omitted = the listen port
//	    from: [external]    # optional, default [any]: which outside sources may use it
//	options:
//	  reject: reply         # reply (default: TCP RST / ICMP admin-prohibited) | drop
//	  reload: keep          # keep (default: a reload lets established flows and grants live on) |
//	                        # strict (a reload ends those the new policy does not allow)
//	  filtering: address-dependent   # endpoint-independent | address-dependent (default) |
//	                                 # address-and-port-dependent (RFC 4787 filtering)
//	  timeouts:             # Go durations; each optional; absent = built-in default
//	    udp: 5m
//	    tcp-syn-sent: 2m    # a SYN without an answer
//	    tcp-syn-recv: 60s   # an answered SYN whose opener has not acknowledged the answer
//	    tcp-established: 2h4m
//	    tcp-transitory: 4m
//	    tcp-rst: 4m
//	    icmp: 60s
//	  limits:               # fair shares; positive integers or off; absent = default
//	    max-flows: 1048576  # flows of the whole gateway (about 300 bytes each)
//	    client-flows: 4096  # concurrent flows per client (the address that starts them)
//	    client-half-open: 512 # TCP handshakes in progress per client
//	    client-rate: 1000   # new flows per second per client
//	    client-dials: 128   # user-mode connections per client waiting for their server
//	  inside-networks: [10.1.0.0/16]      # inside networks besides the one of fwx's inside
//	                                      # address; other inside sources are dropped (BCP 38)
//	  special-destinations: [239.0.0.0/8] # loopback/multicast/broadcast destinations that may
//	                                      # be forwarded (default: none)
//	  nptv6:                # IPv6 prefix translation (RFC 6296) instead of masquerading,
//	                        # for fast-path flows (filtered flows and pinholes keep the pool):
//	    - {inside: fd01:203:405::/48, outside: 2001:db8:1::/48} # same length, at most /64
//
// Networks, rules and publications take IPv6 prefixes and addresses as
// IPv4 ones ("[2001:db8::1]:8080" for a listen or server endpoint); a
// publication without a listen address listens on fwx's outside address of
// its server's family. fwx translates within a family (NAT44, NAT66 or
// NPTv6), never between them.
//
// A list of one may be written as a single value (from: internal). Names
// are 1 to 64 letters, digits, '-', '_' or '.'. YAML anchors and aliases are
// not accepted: reuse things by naming them. testdata/example.yaml is a
// commented example, and [DefaultYAML] is the built-in default policy.
//
// # Networks
//
// The built-in networks are sides of the gateway, like ISA Server's Internal
// and External networks: "internal" holds every address on the inside (the
// TUN side), "external" every address on the outside, and "any" every
// address. A user network holds the addresses it lists and matches by
// address, whichever side the address is on. A user network may not take a
// built-in's name.
//
// # Flows and access rules
//
// A flow is outbound when a client on the inside starts it and inbound when
// it is started from the outside. Access rules apply to outbound flows only
// ([Policy.Decide]): a rule matches when the flow's source is in one of its
// "from" networks ("internal" holds every source, "external" none), its
// destination is in one of its "to" networks ("external" holds every
// destination, "internal" none), and one of its protocols matches. A
// protocol matches when the transport is equal and the destination port is
// in one of its ranges (an icmp protocol matches every echo request). Only a
// rule's protocols with direction outbound or both count; one with direction
// inbound is allowed in a rule but never matches there. The first matching
// rule decides; when none matches, the flow is denied ([DefaultDeny]).
//
// The built-in protocols "any" (every transport and port), "any-tcp",
// "any-udp" and "ping" (icmp echo) have direction both.
//
// # Server publishing
//
// Inbound flows never match access rules: only a publish rule lets one in
// ([Policy.Published]). Its protocol must have direction inbound or both
// and a single transport, tcp or udp. Its server must be a specific unicast
// address. Two publish rules conflict, and the file is refused, when they
// have the same transport and listen port and their listen addresses
// overlap (equal, or either one omitted).
//
// # Filter settings
//
// A rule or a publish rule may carry filter_settings, a mapping of names to
// single values for the application filter of the protocols it allows
// (ISA Server 2004's per-rule "Configure FTP"); the filter gets them with
// the connections the rule decides. The rule's protocols must name
// exactly one filter between them. Which keys a filter takes, and their
// types, is the filter's schema, declared when it registers:
// [Policy.CheckSettings] reports an unknown key or a value of the wrong
// type with its line, and fwx (and "fwx policy") refuse such a file.
//
// # Errors
//
// [Parse] and [Load] check the whole file before a policy is used and report
// every problem, each on its own line as FILE:LINE: FIELD: MESSAGE:
//
//	policy.yaml:12: rules[1].from[0]: unknown network "lan"
//	policy.yaml:14: rules[1].acton: unknown field (did you mean "action"?); want one of name, action, from, to, protocols
//
// See [Error].
package policy
