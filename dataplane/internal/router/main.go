package router

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"modelops.io/dataplane/internal/cli"
	"modelops.io/dataplane/internal/promtext"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/serve"
	"modelops.io/dataplane/internal/upstream"
)

const mirrorQueueBytes = 64 << 20

// Main runs modelops-router with args (without the program name); the exit status.
func Main(args []string) int {
	f := cli.New("modelops-router")
	config := f.Required("config", "router configuration file (JSON or YAML)")
	host := f.String("host", "0.0.0.0", "address to listen on")
	port := f.Int("port", 8000, "traffic port")
	metricsPort := f.Int("metrics-port", 9090, "port of /metrics")
	deployment := f.String("deployment", "", "ModelDeployment name (metric label)")
	reload := f.Float("reload-interval", 1, "seconds between checks of the configuration file")
	queue := f.Int("mirror-queue", 1000, "shadow copies waiting at most; more are dropped")
	workers := f.Int("mirror-workers", 16, "concurrent shadow copies")
	mirrorTimeout := f.Float("mirror-timeout", 10, "seconds per shadow copy")
	capacity := f.Int("feedback-capacity", 100_000, "request ids remembered to route feedback")
	ttl := f.Float("feedback-ttl", 3600, "seconds a request id is remembered")
	window := f.Float("retry-window", 60, "seconds after a request's first attempt in which "+
		"another with its X-Request-Id is a retry: sent to the same arm, not counted again")
	keyFile := f.String("sticky-key-file", "", "file holding the secret that keys the sticky "+
		"hash (16-64 bytes); without it the hash is unkeyed and clients can choose their arm")
	receiptKeys := f.String("receipt-keys-file", "", "the deployment's receipt key ring (JSON): "+
		"a label must carry a valid receipt, which names the arm and replica it goes to")
	maxDelay := f.Float("feedback-max-delay", 7*86400, "seconds after its prediction a receipt "+
		"is accepted (spec.monitoring.feedback.maxDelay)")
	_ = f.String("log-level", "INFO", "logging level")
	limits := serve.AddLimitFlags(f)
	setProcs := serve.AddProcsFlag(f, 1)
	if err := f.Parse(args); err != nil {
		return cli.ParseFailed(err)
	}
	if err := setProcs(); err != nil {
		return cli.Fail(err)
	}
	if *capacity < 1 || *ttl <= 0 || *queue < 1 || *workers < 1 || *reload <= 0 {
		return cli.Fail(fmt.Errorf("--feedback-capacity, --mirror-queue, --mirror-workers must be " +
			">= 1, --feedback-ttl and --reload-interval > 0"))
	}
	key, err := readKey(*keyFile)
	if err != nil {
		return cli.Fail(err)
	}
	sticky, err := NewSticky(key)
	if err != nil {
		return cli.Fail(err)
	}
	watcher := &Watcher{Path: *config}
	if err := watcher.LoadInitial(); err != nil {
		return cli.Fail(fmt.Errorf("%s: %w", *config, err))
	}
	mirror := NewMirror(int(*queue), mirrorQueueBytes)
	metrics := NewMetrics(*deployment, mirror.Depth)
	metrics.ShowConfig(watcher.Live.Load())
	watcher.OnReload = func(live *Live, ok bool) {
		if ok {
			metrics.ShowConfig(live)
		}
		metrics.CountReload(ok)
	}
	transport := upstream.New(10 * time.Second)
	memory := NewMemory(int(*capacity), cli.Seconds(*ttl), cli.Seconds(*window), nil)
	mirror.Timeout, mirror.Transport, mirror.Metrics, mirror.Memory =
		cli.Seconds(*mirrorTimeout), transport, metrics, memory
	rt := &Router{Watcher: watcher, Metrics: metrics, Memory: memory, Sticky: sticky, Mirror: mirror,
		Replicas: upstream.New(2 * time.Second)} // a replica slower than that to accept is gone
	if *receiptKeys != "" {
		if *maxDelay <= 0 {
			return cli.Fail(fmt.Errorf("--feedback-max-delay must be > 0"))
		}
		ring, err := receipt.OpenRingFile(*receiptKeys, 10*time.Second)
		if err != nil {
			return cli.Fail(fmt.Errorf("--receipt-keys-file: %w", err))
		}
		rt.Receipts = &receipt.Checker{Keys: ring, MaxAge: cli.Seconds(*maxDelay), Deployment: *deployment}
	}
	rt.Init(transport)
	program := &serve.Program{
		Name: "modelops-router", Host: *host, Port: int(*port), MetricsPort: int(*metricsPort),
		Limits: limits(), Traffic: rt.Handle, Metrics: promtext.Handler(metrics.Registry, nil),
		Background: func(ctx context.Context) {
			go watcher.Run(ctx, cli.Seconds(*reload))
			mirror.Start(ctx, int(*workers))
		},
	}
	if err := program.Run(); err != nil {
		return cli.Fail(err)
	}
	return 0
}

// readKey is the sticky key: the file's bytes without trailing line ends (a Secret written
// by hand often has one); none without a file.
func readKey(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--sticky-key-file: %w", err)
	}
	key := []byte(strings.TrimRight(string(raw), "\r\n"))
	if len(key) < 16 || len(key) > 64 {
		return nil, fmt.Errorf("--sticky-key-file: the key must be 16 to 64 bytes, not %d", len(key))
	}
	return key, nil
}
