//go:build unix

package node

import (
	"runtime"
	"syscall"
	"time"
)

// processCPUTime is the CPU time, user and system, the process has used.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuCapacity is how many CPUs the process may use at once.
func cpuCapacity() int { return runtime.GOMAXPROCS(0) }
