package pagecache

import (
	"runtime/debug"
	"testing"
)

func TestMemoryLimitFollowsOpenTiers(t *testing.T) {
	if userMemoryLimit() {
		t.Skip("GOMEMLIMIT is set in the environment")
	}
	before := debug.SetMemoryLimit(-1)
	a, err := New(Options{MaxBytes: 32 << 20, MaxEntryBytes: 1 << 20, SetMemoryLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := debug.SetMemoryLimit(-1), MemoryLimitFor(32<<20); got != want {
		t.Fatalf("limit with a 32 MiB tier: %d, want %d", got, want)
	}
	b, err := New(Options{MaxBytes: 16 << 20, MaxEntryBytes: 1 << 20, SetMemoryLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := debug.SetMemoryLimit(-1), MemoryLimitFor(48<<20); got != want {
		t.Fatalf("limit with 32+16 MiB tiers: %d, want %d", got, want)
	}
	// A tier without the option does not count.
	c, err := New(Options{MaxBytes: 64 << 20, MaxEntryBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if got, want := debug.SetMemoryLimit(-1), MemoryLimitFor(48<<20); got != want {
		t.Fatalf("a tier without SetMemoryLimit changed the limit to %d, want %d", got, want)
	}
	_ = a.Close()
	_ = a.Close() // closing twice releases once
	if got, want := debug.SetMemoryLimit(-1), MemoryLimitFor(16<<20); got != want {
		t.Fatalf("limit after closing the 32 MiB tier: %d, want %d", got, want)
	}
	_ = b.Close()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("limit after closing every tier: %d, want the previous %d", got, before)
	}
}

func TestMemoryLimitLeftToGOMEMLIMIT(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "off")
	before := debug.SetMemoryLimit(-1)
	c, err := New(Options{MaxBytes: 32 << 20, MaxEntryBytes: 1 << 20, SetMemoryLimit: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("with GOMEMLIMIT set the tier changed the limit from %d to %d", before, got)
	}
}
