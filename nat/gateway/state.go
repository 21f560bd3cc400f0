package gateway

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"time"
)

// A restart keeps connections: the flow table is saved when fwx stops and
// restored when it starts (Config.StateFile); after a start without it,
// the connections still sending from the inside are picked up.

// Restore reads the table saved by the previous run, if any, and removes
// it (New's caller calls it once, with the publications in effect): a later crash must not bring back flows that have moved on. Without
// one (the previous run crashed), the connections it lost are picked up
// for as long as an established one may idle.
func (g *Gateway) Restore() {
	now := g.clock.Now()
	log := g.log.With().Str("state", g.stateFile).Logger()
	pickup := func() { g.table.SetPickup(now.Add(g.table.Timeouts().TCPEstablished)) }
	if g.stateFile == "" {
		return // restarts are not meant to keep connections
	}
	f, err := os.Open(g.stateFile)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info().Msg("no saved flow table: starting empty, picking up connections that go on")
		pickup()
		return
	}
	if err != nil {
		log.Error().Err(err).Msg("saved flow table unreadable: starting empty")
		pickup()
		return
	}
	restored, skipped, err := g.table.Restore(bufio.NewReader(f), now)
	f.Close()
	if err != nil {
		bad := g.stateFile + ".bad"
		log.Error().Err(err).Str("moved_to", bad).Msg("saved flow table refused: starting empty")
		if rerr := os.Rename(g.stateFile, bad); rerr != nil {
			log.Error().Err(rerr).Msg("could not set the saved flow table aside")
		}
		pickup()
		return
	}
	if err := os.Remove(g.stateFile); err != nil {
		log.Error().Err(err).Msg("could not remove the restored flow table: a crash would restore it again")
	}
	log.Info().Int("restored", restored).Int("skipped", skipped).Msg("flow table restored")
}

// save writes the flow table for the next run, atomically: to a temporary
// file renamed over StateFile once complete.
func (g *Gateway) save(now time.Time) {
	if g.stateFile == "" {
		return
	}
	log := g.log.With().Str("state", g.stateFile).Logger()
	tmp := g.stateFile + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		log.Error().Err(err).Msg("flow table not saved: its flows end")
		return
	}
	w := bufio.NewWriterSize(f, 1<<20)
	n, handover, err := g.table.Save(w, now)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, g.stateFile)
	}
	if err != nil {
		os.Remove(tmp)
		log.Error().Err(err).Int("flows", n).Msg("flow table not saved: its flows end")
		return
	}
	handover()
	log.Info().Int("flows", n).Msg("flow table saved for the next run")
}
