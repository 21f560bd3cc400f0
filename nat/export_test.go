package nat

// HeldAddrs6 returns how many IPv6 addresses t's dictionary holds.
func HeldAddrs6(t *Table) int { return t.dict.len() }
