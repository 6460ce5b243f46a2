// Package boltsafe runs code that reads a bbolt file so that a damaged file
// cannot kill the process: bbolt panics on pages it cannot make sense of,
// and reading a page past the end of a truncated, memory-mapped file is a
// fault that Go turns into a fatal error unless the goroutine asked for a
// panic instead (runtime/debug.SetPanicOnFault). The storage tiers sharing
// one file (snapshot, jobs) and the Caddy glue use this one implementation.
package boltsafe

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// PanicError is a panic (or memory fault) caught by Run.
type PanicError struct {
	// Value is what was passed to panic (a runtime.Error for a fault).
	Value any
	// Storage is true when the panic is the file's: raised in bbolt's own
	// code (a page it cannot make sense of), or a memory fault at an
	// address (the mapped file unreadable or cut short). It is false for
	// a panic of the code fn ran around bbolt's calls (a bug there, a nil
	// pointer), which says nothing of the file.
	Storage bool
	// Stack is the panicking goroutine's stack where Run recovered the
	// panic, with the frames that raised it: whoever raises the
	// PanicError again (in another goroutine, or after Run returned) and
	// logs it can say where the panic came from.
	Stack []byte
}

func (p *PanicError) Error() string { return fmt.Sprintf("bbolt panicked: %v", p.Value) }

// Run calls fn in the current goroutine with memory faults turned into
// panics, and returns a *PanicError for a panic, else fn's error. A panic
// whose value is a *PanicError (one Run caught in another goroutine, raised
// again in this one) is returned as it is, keeping its Storage.
func Run(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if p, ok := r.(*PanicError); ok {
				err = p // caught by Run in another goroutine, raised again here
				return
			}
			err = &PanicError{Value: r, Storage: storagePanic(r), Stack: debug.Stack()}
		}
	}()
	return fn()
}

// storagePanic reports whether the panic being recovered, r, is a memory
// fault at an address or was raised in bbolt's code. It must be called
// from the deferred function that recovered r: the frames that panicked
// are still on the stack below runtime.gopanic.
func storagePanic(r any) bool {
	if _, fault := r.(interface{ Addr() uintptr }); fault {
		return true
	}
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			panicking = true
		case panicking && !strings.HasPrefix(f.Function, "runtime."):
			// The first frame past the runtime's panic machinery raised it.
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt.") || strings.HasPrefix(f.Function, "go.etcd.io/bbolt/")
		}
		if !more {
			return false
		}
	}
}
