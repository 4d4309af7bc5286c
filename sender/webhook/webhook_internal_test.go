package webhook

import (
	"net"
	"net/url"
	"syscall"
	"testing"
)

// A request whose write to the socket failed cannot be whole at the
// gateway, though net/http reported it written (into its buffer); one that
// failed afterwards, reading the answer, may be.
func TestFailedWritingTellsWritesFromReads(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&url.Error{Op: "Post", URL: "http://gw", Err: &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}}, true},
		{&url.Error{Op: "Post", URL: "http://gw", Err: &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}}, true},
		{&url.Error{Op: "Post", URL: "http://gw", Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, false},
		{&url.Error{Op: "Post", URL: "http://gw", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, false},
		{&url.Error{Op: "Post", URL: "http://gw", Err: syscall.ETIMEDOUT}, false},
	} {
		if got := failedWriting(tc.err); got != tc.want {
			t.Errorf("failedWriting(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
