package caddymodule

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/dustin/go-humanize"
)

// maxMemoryUnknownMachine bounds `memory` where the machine's memory
// cannot be read (no /proc/meminfo: not Linux).
const maxMemoryUnknownMachine = 1 << 40

// machineMemory is the memory this process may use: the smaller of the
// machine's physical memory (/proc/meminfo MemTotal) and the cgroup limit
// of its container (cgroup v2 memory.max, v1 memory.limit_in_bytes), and
// where it was read from; 0 when none of them can be read.
var machineMemory = sync.OnceValues(func() (int64, string) {
	var n int64
	var from string
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && kb > 0 {
					n, from = kb<<10, "physical memory (/proc/meminfo)"
				}
			}
		}
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// "max" (v2) or a huge number (v1) mean no limit.
		if l, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && l > 0 && (n == 0 || l < n) {
			n, from = l, "container memory limit ("+p+")"
		}
	}
	return n, from
})

// checkMemoryBound refuses a memory tier bound the machine cannot hold:
// more than its memory (or container limit), or more than 1 TiB where that
// cannot be read. The memory tier allocates as it fills, so an impossible
// bound is not caught at load but as an out-of-memory kill.
func checkMemoryBound(n int64) error {
	limit, from := machineMemory()
	if limit == 0 {
		limit, from = maxMemoryUnknownMachine, "the limit where the machine's memory cannot be read"
	}
	if n > limit {
		return fmt.Errorf("memory %s is more than this machine can hold: %s is %s",
			humanize.IBytes(uint64(n)), from, humanize.IBytes(uint64(limit)))
	}
	return nil
}
