package stream

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
)

// Chain runs a connection through data filters: stages[0] is nearest the
// client and sees internal as its internal socket, the last stage sees
// external as its external socket, and neighbouring stages are joined by a
// [Pipe] of pipeSize bytes each way (0 means [DefaultBufferSize]):
//
//	internal ⇄ stages[0] ⇄ pipe ⇄ stages[1] ⇄ … ⇄ stages[n-1] ⇄ external
//
// With no stages, Chain relays internal and external ([Relay]). external
// may be nil when the last stage emulates the server; it then gets a nil
// external socket (and with no stages, Chain closes internal and returns
// [ErrNoExternal]). internal must not be nil.
//
// Each stage runs in its own goroutine and owns its two sockets. When a
// stage returns, Chain closes both of them (errors ignored): a stage
// closes, half-closes or aborts them as the protocol requires, and
// whatever it left open is closed so that its neighbours read io.EOF and
// their writes toward it fail, and nothing stays open. A stage that panics
// has its sockets aborted instead, and its error wraps [ErrStagePanic].
// One stage's end does not stop the others; each ends when its sockets do.
//
// Chain returns when every stage has returned, with the stages' errors
// joined (each prefixed with its index), or nil. When ctx is done, Chain
// aborts every socket, internal and external included, waits for the
// stages, and returns ctx.Err(). internal and external must allow Abort
// and Close while other calls are blocked (see [Socket]).
func Chain(ctx context.Context, internal, external Socket, stages []Stage, pipeSize int) error {
	if len(stages) == 0 {
		if external == nil {
			internal.Close()
			return ErrNoExternal
		}
		_, _, err := Relay(ctx, internal, external, 0)
		return err
	}

	// socks[2i] and socks[2i+1] are stage i's internal and external.
	n := len(stages)
	socks := make([]Socket, 2*n)
	socks[0], socks[2*n-1] = internal, external
	for i := range n - 1 {
		a, b := Pipe(pipeSize)
		socks[2*i+1], socks[2*i+2] = a, b
	}

	stop := context.AfterFunc(ctx, func() {
		for _, s := range socks {
			if s != nil {
				s.Abort()
			}
		}
	})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, stage := range stages {
		wg.Go(func() {
			errs[i] = runStage(ctx, i, stage, socks[2*i], socks[2*i+1])
		})
	}
	wg.Wait()
	if !stop() {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

// runStage runs stage i on its sockets and closes them when it returns, or
// aborts them when it panics.
func runStage(ctx context.Context, i int, stage Stage, internal, external Socket) (err error) {
	ownedDo := func(f func(Socket) error) {
		for _, s := range [2]Socket{internal, external} {
			if s != nil {
				f(s)
			}
		}
	}
	defer func() {
		if v := recover(); v != nil {
			ownedDo(Socket.Abort)
			err = fmt.Errorf("stream: stage %d: %w: %v\n%s", i, ErrStagePanic, v, debug.Stack())
		}
		ownedDo(Socket.Close)
	}()
	if err := stage(ctx, internal, external); err != nil {
		return fmt.Errorf("stream: stage %d: %w", i, err)
	}
	return nil
}
