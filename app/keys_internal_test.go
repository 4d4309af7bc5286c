package app

import (
	"bytes"
	"strings"
	"testing"
)

// TestKeyedMACLeavesNothingOfTheMessage: the scratch space a pooled MAC
// instance frames its message in holds a typed code or an API credential
// while it hashes; afterwards not one byte of it stays, and a message
// longer than maxPooledMessage does not stay pooled at all.
func TestKeyedMACLeavesNothingOfTheMessage(t *testing.T) {
	k := newKeyedMAC(bytes.Repeat([]byte{9}, 32))
	s := k.pool.New().(*macState)
	first := s.sum(nil, "user-1", "424242")
	if scratch := s.msg[:cap(s.msg)]; bytes.ContainsAny(scratch, "user-1424242") || !bytes.Equal(scratch, make([]byte, len(scratch))) {
		t.Fatalf("the scratch space keeps %q after a MAC", scratch)
	}
	// The instance is back in its keyed state: the same message, the same MAC.
	if again := s.sum(nil, "user-1", "424242"); !bytes.Equal(again, first) {
		t.Fatalf("a reused instance computed %x, then %x", first, again)
	}
	s.sum(nil, "user-1", strings.Repeat("9", maxPooledMessage))
	if cap(s.msg) > maxPooledMessage {
		t.Fatalf("an instance keeps %d bytes of scratch space after a long message, want at most %d", cap(s.msg), maxPooledMessage)
	}
	if scratch := s.msg[:cap(s.msg)]; !bytes.Equal(scratch, make([]byte, len(scratch))) {
		t.Fatalf("the scratch space keeps %q after a long message", scratch)
	}
}
