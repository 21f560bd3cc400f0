//go:build race

package memtun

// raceEnabled is true under -race, where sync.Pool drops items at random
// and allocation counts are meaningless.
const raceEnabled = true
