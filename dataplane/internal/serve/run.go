package serve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/netutil"
)

// Program is one data-plane process: a traffic port behind the guard, a /metrics port, and
// background work that runs for as long as the process does.
type Program struct {
	Host, Name        string
	Port, MetricsPort int
	Limits            Limits
	Traffic           Handler
	Metrics           http.Handler
	Background        func(ctx context.Context) // started before the traffic port listens
}

// Run serves until SIGTERM or SIGINT, then drains: for Limits.DrainPeriod every answer carries
// Connection: close (kube-proxy keeps sending established connections to a terminating pod,
// and new ones until its endpoints update), then Shutdown lets requests in flight finish.
func (p *Program) Run() error {
	var draining atomic.Bool
	budget := NewBudget(p.Limits.MaxInflightBytes)
	traffic := &http.Server{
		Handler:           &Guard{Limits: p.Limits, Budget: budget, Draining: &draining, Next: p.Traffic},
		MaxHeaderBytes:    p.Limits.MaxHeaderBytes,
		ReadHeaderTimeout: p.Limits.ReadHeaderTimeout,
		IdleTimeout:       p.Limits.IdleTimeout,
		ConnContext:       CountRequests,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	metrics := &http.Server{Handler: onlyMetrics(p.Metrics), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 75 * time.Second}
	metricsListener, err := net.Listen("tcp", net.JoinHostPort(p.Host, strconv.Itoa(p.MetricsPort)))
	if err != nil {
		return err
	}
	ctx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	if p.Background != nil {
		p.Background(ctx)
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(p.Host, strconv.Itoa(p.Port)))
	if err != nil {
		return err
	}
	listener = netutil.LimitListener(listener, p.Limits.MaxConnections)
	failed := make(chan error, 2)
	go func() { failed <- serveUntilClosed(metrics, metricsListener) }()
	go func() { failed <- serveUntilClosed(traffic, listener) }()
	slog.Info("listening", "program", p.Name, "traffic", listener.Addr().String(),
		"metrics", metricsListener.Addr().String(), "procs", runtime.GOMAXPROCS(0))

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-failed:
		return err
	case sig := <-signals:
		slog.Info("signal received: draining", "signal", sig.String(), "seconds",
			p.Limits.DrainPeriod.Seconds())
	}
	draining.Store(true)
	time.Sleep(p.Limits.DrainPeriod)
	traffic.SetKeepAlivesEnabled(false)
	grace, cancel := context.WithTimeout(context.Background(), p.Limits.ShutdownGrace)
	defer cancel()
	if err := traffic.Shutdown(grace); err != nil {
		slog.Warn("requests still in flight at the end of the grace period", "error", err)
	}
	stopBackground()
	_ = metrics.Shutdown(grace)
	return nil
}

func serveUntilClosed(server *http.Server, listener net.Listener) error {
	if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// onlyMetrics serves GET (and HEAD) /metrics; anything else is 404 or 405.
func onlyMetrics(page http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", page)
	return mux
}
