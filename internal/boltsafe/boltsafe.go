// Package boltsafe runs code that reads a bbolt file so that a damaged file
// cannot kill the process: bbolt panics on pages it cannot make sense of,
// and reading a page past the end of a truncated, memory-mapped file is a
// fault that Go turns into a fatal error unless the goroutine asked for a
// panic instead (runtime/debug.SetPanicOnFault). The storage tiers sharing
// one file (snapshot, jobs) and the Caddy glue use this one implementation.
package boltsafe

import (
	"fmt"
	"runtime/debug"
)

// PanicError is a panic (or memory fault) caught by Run.
type PanicError struct {
	// Value is what was passed to panic (a runtime.Error for a fault).
	Value any
}

func (p *PanicError) Error() string { return fmt.Sprintf("bbolt panicked: %v", p.Value) }

// Run calls fn in the current goroutine with memory faults turned into
// panics, and returns a *PanicError for a panic, else fn's error.
func Run(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r}
		}
	}()
	return fn()
}
