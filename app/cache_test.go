package app

import (
	"strconv"
	"testing"
	"time"
)

func TestTTLCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTTLCache[int](5*time.Second, 3)
	c.now = func() time.Time { return now }

	c.put("a", 1)
	if v, ok := c.get("a"); !ok || v != 1 {
		t.Fatalf("get(a) = %v, %v; want 1, true", v, ok)
	}
	now = now.Add(5 * time.Second)
	if _, ok := c.get("a"); ok {
		t.Fatal("an entry was served at its expiry")
	}
	c.put("b", 2)
	c.forget("b")
	if _, ok := c.get("b"); ok {
		t.Fatal("a forgotten entry was served")
	}
	for i := range 100 {
		c.put(strconv.Itoa(i), i)
		if len(c.entries) > 3 {
			t.Fatalf("cache holds %d entries, want at most 3", len(c.entries))
		}
	}
	if v, ok := c.get("99"); !ok || v != 99 {
		t.Fatalf("the newest entry is missing after evictions: %v, %v", v, ok)
	}
}
