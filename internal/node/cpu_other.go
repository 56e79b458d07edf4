//go:build !unix

package node

import (
	"runtime"
	"time"
)

// processCPUTime is unknown here: load reports carry no CPU utilization.
func processCPUTime() time.Duration { return 0 }

// cpuCapacity is how many CPUs the process may use at once.
func cpuCapacity() int { return runtime.GOMAXPROCS(0) }
