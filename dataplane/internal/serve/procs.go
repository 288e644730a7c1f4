package serve

import (
	"fmt"
	"os"
	"runtime"

	"modelops.io/dataplane/internal/cli"
)

// AddProcsFlag declares --procs: how many threads run Go code at once (GOMAXPROCS). Its default
// is fallback unless GOMAXPROCS is set in the environment, which the Go runtime has applied
// already; 0 keeps the runtime's own choice (the CPUs of the cgroup's CPU limit, at least 2).
//
// Both programs default to 1. A proxy in front of one model server needs well under a core, and
// with a second processor the runtime wakes an idle thread to look for work at every network
// event: measured behind the model server at c=1, that cost 40 % more CPU per request and a
// quarter of the latency the sidecar adds (docs/serving.md, "Threads").
func AddProcsFlag(f *cli.Flags, fallback int64) func() error {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		fallback = 0
	}
	procs := f.Int("procs", fallback, "threads running Go code at once (GOMAXPROCS; 0: the Go "+
		"runtime's default, from the CPU limit)")
	return func() error {
		if *procs < 0 || *procs > 1024 {
			return fmt.Errorf("--procs must be between 0 and 1024, got %d", *procs)
		}
		if *procs > 0 {
			runtime.GOMAXPROCS(int(*procs))
		}
		return nil
	}
}
