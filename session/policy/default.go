package policy

// DefaultYAML is the built-in default policy as a policy file: what
// [Default] returns, written out so that it can be shown, copied and edited.
// Clients on the inside may open any flow to the outside; nothing may come
// in; everything else is denied.
const DefaultYAML = `# fwx default policy.
rules:
  # Clients on the inside may reach anything on the outside, over any
  # transport and port.
  - name: default-outbound
    action: allow
    from: [internal]
    to: [external]
    protocols: [any]
# Nothing is published: no flow from the outside gets in.
# Flows no rule allows are refused with a TCP RST or an ICMP error.
options:
  reject: reply
`

// Default returns the built-in default policy, the one [DefaultYAML]
// describes: a single access rule "default-outbound" that allows every
// outbound flow from internal to external over the built-in protocol "any",
// no publish rules, and default options.
func Default() *Policy {
	anyProto, _ := builtinProtocol("any")
	return &Policy{
		rules: []rule{{
			name:   "default-outbound",
			action: Allow,
			from:   addrSet{all: true},
			to:     addrSet{all: true},
			protos: []protoMatch{anyProto.match()},
		}},
	}
}
