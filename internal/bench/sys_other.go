//go:build !unix

package bench

import (
	"os"
	"time"
)

func openFileLimit() (int, bool) { return 0, false }

// terminate stops a child server; without SIGTERM it cannot drain.
func terminate(p *os.Process) error { return p.Kill() }

func processCPU() (time.Duration, bool) { return 0, false }
