package netstack

import (
	"errors"
	"syscall"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
)

func TestGoError(t *testing.T) {
	for _, tc := range []struct {
		terr tcpip.Error
		want syscall.Errno // 0: no errno
	}{
		{&tcpip.ErrConnectionRefused{}, syscall.ECONNREFUSED},
		{&tcpip.ErrConnectionReset{}, syscall.ECONNRESET},
		{&tcpip.ErrConnectionAborted{}, syscall.ECONNABORTED},
		{&tcpip.ErrAborted{}, syscall.ECONNABORTED},
		{&tcpip.ErrTimeout{}, syscall.ETIMEDOUT},
		{&tcpip.ErrHostUnreachable{}, syscall.EHOSTUNREACH},
		{&tcpip.ErrNetworkUnreachable{}, syscall.ENETUNREACH},
		{&tcpip.ErrPortInUse{}, syscall.EADDRINUSE},
		{&tcpip.ErrBadLocalAddress{}, syscall.EADDRNOTAVAIL},
		{&tcpip.ErrClosedForSend{}, syscall.EPIPE},
		{&tcpip.ErrNotConnected{}, syscall.ENOTCONN},
		{&tcpip.ErrMessageTooLong{}, syscall.EMSGSIZE},
		{&tcpip.ErrNoBufferSpace{}, syscall.ENOBUFS},
		{&tcpip.ErrUnknownProtocol{}, 0},
		{&tcpip.ErrDuplicateNICID{}, 0},
	} {
		t.Run(tc.terr.String(), func(t *testing.T) {
			err := goError(tc.terr)
			if err == nil {
				t.Fatal("nil error")
			}
			var errno syscall.Errno
			got := errors.As(err, &errno)
			switch {
			case tc.want == 0 && got:
				t.Errorf("goError = %v, an errno; want none", err)
			case tc.want != 0 && !errors.Is(err, tc.want):
				t.Errorf("goError = %v, want %v", err, tc.want)
			}
		})
	}
	if goError(nil) != nil {
		t.Error("goError(nil) != nil")
	}
}
