package app

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// TestKeyedMACLeavesNothingOfTheMessage: a pooled MAC instance holds a
// typed code or an API credential while it hashes; afterwards not one byte
// of it stays anywhere the instance reaches (its scratch space, the hash's
// own block buffers), from its very first use on, and a message longer
// than maxPooledMessage does not stay pooled at all.
func TestKeyedMACLeavesNothingOfTheMessage(t *testing.T) {
	k := newKeyedMAC(bytes.Repeat([]byte{9}, 32))
	s := k.pool.New().(*macState)
	const secret = "SECRET-424242"
	first := s.sum(nil, "user-1", secret)
	if held := reachableBytes(s); bytes.Contains(held, []byte(secret)) {
		t.Fatalf("after its first MAC, the instance still holds the message's %q", secret)
	}
	if scratch := s.msg[:cap(s.msg)]; !bytes.Equal(scratch, make([]byte, len(scratch))) {
		t.Fatalf("the scratch space keeps %q after a MAC", scratch)
	}
	// The instance is back in its keyed state: the same message, the same MAC.
	if again := s.sum(nil, "user-1", secret); !bytes.Equal(again, first) {
		t.Fatalf("a reused instance computed %x, then %x", first, again)
	}
	if held := reachableBytes(s); bytes.Contains(held, []byte(secret)) {
		t.Fatalf("after a later MAC, the instance still holds the message's %q", secret)
	}
	long := secret + strings.Repeat("9", maxPooledMessage)
	s.sum(nil, "user-1", long)
	if cap(s.msg) > maxPooledMessage {
		t.Fatalf("an instance keeps %d bytes of scratch space after a long message, want at most %d", cap(s.msg), maxPooledMessage)
	}
	if held := reachableBytes(s); bytes.Contains(held, []byte(secret)) || bytes.Contains(held, []byte("user-1")) {
		t.Fatalf("after a long message, the instance still holds part of it")
	}
}

// reachableBytes returns every byte of memory that v reaches through
// pointers, interfaces, slices, arrays, strings and struct fields, exported
// or not: what a pooled value keeps, whatever the hash's layout.
func reachableBytes(v any) []byte {
	var out []byte
	seen := map[uintptr]bool{}
	var walk func(rv reflect.Value)
	walk = func(rv reflect.Value) {
		switch rv.Kind() {
		case reflect.Pointer:
			if rv.IsNil() || seen[rv.Pointer()] {
				return
			}
			seen[rv.Pointer()] = true
			walk(rv.Elem())
		case reflect.Interface:
			if !rv.IsNil() {
				walk(rv.Elem())
			}
		case reflect.Struct:
			for i := range rv.NumField() {
				f := rv.Field(i)
				if !f.CanInterface() && f.CanAddr() {
					f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
				}
				walk(f)
			}
		case reflect.Slice:
			if rv.Type().Elem().Kind() == reflect.Uint8 {
				out = append(out, rv.Slice(0, rv.Cap()).Bytes()...)
				return
			}
			for i := range rv.Len() {
				walk(rv.Index(i))
			}
		case reflect.Array:
			if rv.Type().Elem().Kind() == reflect.Uint8 && rv.CanAddr() {
				out = append(out, unsafe.Slice((*byte)(unsafe.Pointer(rv.UnsafeAddr())), rv.Len())...)
				return
			}
			for i := range rv.Len() {
				walk(rv.Index(i))
			}
		case reflect.String:
			out = append(out, rv.String()...)
		}
	}
	walk(reflect.ValueOf(v))
	return out
}
