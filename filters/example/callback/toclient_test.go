package callback

import (
	"io"
	"testing"

	"github.com/fwx-dev/fwx/session/stream"
)

// TestToClientReplyBetweenLines: a reply made while the server is in the
// middle of a line follows the end of that line; one made between lines
// goes out at once.
func TestToClientReplyBetweenLines(t *testing.T) {
	for _, tt := range []struct {
		name string
		run  func(tc *toClient) error
		want string
	}{
		{"between lines", func(tc *toClient) error {
			return firstErr(tc.pass([]byte("A1\r\n")), tc.reply([]byte("R\r\n")), tc.pass([]byte("B1\r\n")))
		}, "A1\r\nR\r\nB1\r\n"},
		{"mid line", func(tc *toClient) error {
			return firstErr(tc.pass([]byte("A1 pa")), tc.reply([]byte("R\r\n")), tc.pass([]byte("rt\r\nB1\r\n")))
		}, "A1 part\r\nR\r\nB1\r\n"},
		{"mid line, still mid line", func(tc *toClient) error {
			return firstErr(tc.pass([]byte("A1 ")), tc.reply([]byte("R\r\n")), tc.pass([]byte("pa")), tc.pass([]byte("rt\r\nB1")))
		}, "A1 part\r\nR\r\nB1"},
		{"two replies", func(tc *toClient) error {
			return firstErr(tc.pass([]byte("A1")), tc.reply([]byte("R1\r\n")), tc.reply([]byte("R2\r\n")), tc.pass([]byte("\r\n")))
		}, "A1\r\nR1\r\nR2\r\n"},
		{"server ends mid line", func(tc *toClient) error {
			return firstErr(tc.pass([]byte("A1")), tc.reply([]byte("R\r\n")), tc.closeWrite(), tc.reply([]byte("S\r\n")))
		}, "A1R\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			filterSide, clientSide := stream.Pipe(0)
			tc := newToClient(filterSide)
			if err := tt.run(tc); err != nil {
				t.Fatal(err)
			}
			filterSide.Close()
			got, _ := io.ReadAll(clientSide)
			if string(got) != tt.want {
				t.Errorf("client read %q, want %q", got, tt.want)
			}
		})
	}
}

// TestToClientPendingBounded: replies cannot pile up without bound while
// the server never ends its line.
func TestToClientPendingBounded(t *testing.T) {
	filterSide, clientSide := stream.Pipe(0)
	defer clientSide.Close()
	tc := newToClient(filterSide)
	if err := tc.pass([]byte("never ends")); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < maxPending && err == nil; i++ {
		err = tc.reply(replyBadPort)
	}
	if err != errTooManyReplies {
		t.Errorf("after many replies: %v, want errTooManyReplies", err)
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
