package session

import (
	"fmt"

	"github.com/fwx-dev/fwx/nat"
)

// listenUserMode makes a bound connection accept on the user-mode path.
func (m *Manager) listenUserMode(c *Connection, e *nat.Expectation) error {
	return fmt.Errorf("user-mode bind of %v: %w", c.addr, ErrNotSupported)
}
