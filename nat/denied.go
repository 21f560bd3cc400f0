package nat

import (
	"sync"
	"time"
)

// deniedTTL is how long a denied flow is remembered, so that the
// retransmissions of one refused connection are reported once.
const deniedTTL = 30 * time.Second

// deniedCache remembers recently denied flows in a fixed array of slots
// indexed by hash: bounded memory whatever a scan or flood sends, at the cost
// of reporting a flow again when another evicts it.
type deniedCache struct {
	mu    sync.Mutex
	slots [1024]struct {
		key   flowKey
		until int64
	}
}

// fresh records k as denied at now and reports whether it was not already
// recorded within deniedTTL.
func (c *deniedCache) fresh(k flowKey, now int64) bool {
	s := &c.slots[k.hash()%uint32(len(c.slots))]
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.key == k && now < s.until {
		return false
	}
	s.key, s.until = k, now+int64(deniedTTL)
	return true
}

// denied reports a refused flow to the observer, once per flow within
// deniedTTL.
func (t *Table) denied(d Denial, now int64) {
	o := t.cfg.Observer
	if o == nil || !t.deniedSeen.fresh(flowKey{d.Proto, d.Src, d.Dst}, now) {
		return
	}
	o.FlowDenied(d)
}
