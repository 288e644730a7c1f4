// Package serve is what the sidecar and the router share on their traffic port: the limits
// that keep a hostile or broken client from taking the process down, the request guard that
// applies them, and the lifecycle (listen, drain on SIGTERM, shut down).
package serve

import (
	"os"
	"strconv"
	"strings"
	"time"

	"modelops.io/dataplane/internal/cli"
)

// Limits of the traffic port; every one is a flag (docs/serving.md, "Limits").
type Limits struct {
	MaxHeaderBytes    int           // request line + header block; Go answers 431 beyond
	MaxURIBytes       int           // request target; 414 beyond
	MaxBodyBytes      int64         // one request body; 413 beyond
	MaxInflightBytes  int64         // request bodies held at once by the process; 503 beyond
	ReadHeaderTimeout time.Duration // from the connection's first byte to the end of the head
	BodyTimeout       time.Duration // to read one body once its head is in
	IdleTimeout       time.Duration // a keep-alive connection waiting for its next request
	MaxConnRequests   int64         // requests on one connection before it is closed (0: any)
	MaxConnections    int           // open connections at once; more wait in the backlog
	DrainPeriod       time.Duration // after SIGTERM: served, every answer with Connection: close
	ShutdownGrace     time.Duration // then: requests in flight get this long to finish
}

const (
	fallbackInflightBytes = 1 << 30 // without a cgroup memory limit
	minInflightBytes      = 64 << 20
)

// AddLimitFlags declares the limit flags with their documented defaults.
func AddLimitFlags(f *cli.Flags) func() Limits {
	header := f.Int("max-header-bytes", 32<<10, "largest request line + header block (431 beyond)")
	uri := f.Int("max-uri-bytes", 8<<10, "largest request target (414 beyond)")
	// modelops-serve's own limit: a larger body would be forwarded only to be refused there.
	body := f.Int("max-body-bytes", 16<<20, "largest request body forwarded (413 beyond)")
	inflight := f.Int("max-inflight-bytes", 0, "request bytes held at once across the process "+
		"(503 beyond; 0: a quarter of the cgroup memory limit, else 1 GiB)")
	headerTimeout := f.Float("header-timeout", 10, "seconds to receive a request's head")
	bodyTimeout := f.Float("body-timeout", 60, "seconds to receive a request's body")
	idle := f.Float("idle-timeout", 75, "seconds a keep-alive connection may wait idle")
	perConn := f.Int("max-connection-requests", 10000,
		"requests on one connection before it is closed (0: unlimited)")
	conns := f.Int("max-connections", 4096, "open traffic connections at once")
	drain := f.Float("drain-seconds", 5, "after SIGTERM, seconds to keep serving with "+
		"Connection: close before shutting down")
	grace := f.Float("shutdown-grace", 10, "then, seconds requests in flight get to finish")
	return func() Limits {
		limits := Limits{
			MaxHeaderBytes: int(*header), MaxURIBytes: int(*uri), MaxBodyBytes: *body,
			MaxInflightBytes: *inflight, ReadHeaderTimeout: cli.Seconds(*headerTimeout),
			BodyTimeout: cli.Seconds(*bodyTimeout), IdleTimeout: cli.Seconds(*idle),
			MaxConnRequests: *perConn, MaxConnections: int(*conns),
			DrainPeriod: cli.Seconds(*drain), ShutdownGrace: cli.Seconds(*grace),
		}
		if limits.MaxInflightBytes <= 0 {
			limits.MaxInflightBytes = DefaultInflightBytes("/sys/fs/cgroup/memory.max")
		}
		return limits
	}
}

// DefaultInflightBytes is a quarter of the cgroup v2 memory limit at path (bodies are copied
// once or twice while forwarded, and the feedback memory needs room too), at least 64 MiB;
// 1 GiB when there is no limit.
func DefaultInflightBytes(path string) int64 {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fallbackInflightBytes
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil || limit <= 0 { // "max": unlimited
		return fallbackInflightBytes
	}
	return max(limit/4, minInflightBytes)
}
