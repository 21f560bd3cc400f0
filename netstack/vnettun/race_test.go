//go:build race

package vnettun

const raceEnabled = true
