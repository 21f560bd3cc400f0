package stream

import "context"

// Duplex runs the two directions of a data filter that reads each of its
// sockets on a goroutine of its own (the FTP, RTSP and SIP filters read
// the client's messages one way and the server's the other): aToB and
// bToA each run on a goroutine, and Duplex returns only once both have,
// so nothing of the filter outlives its Serve.
//
// The first direction to fail aborts both sockets, so that the other's
// blocked Read or Write returns and it ends too; ctx being done (the
// connection killed) does the same. Once both directions have returned,
// Duplex closes a and b. It returns the first error, or ctx.Err() when ctx
// was done before any; nil when both directions ended without one (each
// side closed, say).
func Duplex(ctx context.Context, a, b Socket, aToB, bToA func() error) error {
	errc := make(chan error, 2)
	go func() { errc <- aToB() }()
	go func() { errc <- bToA() }()
	abort := func() {
		a.Abort()
		b.Abort()
	}
	var err error
	done := ctx.Done()
	for running := 2; running > 0; {
		select {
		case e := <-errc:
			running--
			if e != nil && err == nil {
				err = e
				abort()
			}
		case <-done:
			done = nil // now wait for both
			if err == nil {
				err = ctx.Err()
			}
			abort()
		}
	}
	a.Close()
	b.Close()
	return err
}
