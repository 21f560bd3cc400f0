package nat

// denied reports a refused flow to the observer. Every packet that would
// have opened the flow is reported, retries included: the observer counts
// the attempts and decides what to write (fwx's firewall log writes one
// record per denied flow with its count of attempts).
func (t *Table) denied(d Denial, now int64) {
	if d.Count == 0 {
		d.Count = 1
	}
	if o := t.cfg.Observer; o != nil {
		o.FlowDenied(d)
	}
}
