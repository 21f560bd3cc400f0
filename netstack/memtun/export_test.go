package memtun

// MaxPacket is maxPacket, for the tests in package memtun_test.
const MaxPacket = maxPacket

// Queued returns how many packets wait for e's Read.
func (e *End) Queued() int { return e.in.len() }
