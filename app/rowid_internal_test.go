package app

import (
	"slices"
	"testing"

	"github.com/google/uuid"
)

// TestRowIDsAreTimeOrderedUUIDs: user and PIN ids are UUIDv7s, issued in
// ascending order, so that the stores' id indexes grow at their end.
func TestRowIDsAreTimeOrderedUUIDs(t *testing.T) {
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = newRowID()
	}
	for _, id := range ids[:3] {
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("newRowID() = %q (version %d, %v); want an RFC 9562 UUIDv7", id, u.Version(), err)
		}
	}
	if !slices.IsSorted(ids) {
		t.Fatal("ids issued one after another do not sort in the order they were issued")
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatal("newRowID repeated an id")
	}
}
