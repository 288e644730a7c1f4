package router

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync/atomic"
	"time"

	"modelops.io/dataplane/internal/marks"
)

// MirrorJob is one shadow copy: the request as the champion got it, and the champion's answer.
type MirrorJob struct {
	Base           *url.URL
	Target         string
	Body           []byte
	Header         http.Header
	PrimaryStatus  int
	PrimaryPayload []byte
	RequestID      string
}

func (j *MirrorJob) size() int64 { return int64(len(j.Body) + len(j.PrimaryPayload)) }

// Mirror is the bounded queue of shadow copies and its workers. A copy is queued only after
// the champion's answer is ready and never waited for: when the challenger is slow the queue
// fills and further copies are dropped (and counted). A worker that panics is recovered,
// counted and goes on: no input can stop the mirroring.
type Mirror struct {
	queue      chan *MirrorJob
	queued     atomic.Int64 // bytes of the queued jobs
	maxBytes   int64
	Timeout    time.Duration
	Transport  http.RoundTripper
	Metrics    *Metrics
	Memory     *Memory
	beforeSend func(*MirrorJob) // tests: a hook that may panic
}

func NewMirror(capacity int, maxBytes int64) *Mirror {
	return &Mirror{queue: make(chan *MirrorJob, capacity), maxBytes: maxBytes}
}

func (m *Mirror) Depth() float64 { return float64(len(m.queue)) }

// Enqueue a copy, or drop it when the queue is full in entries or bytes.
func (m *Mirror) Enqueue(job *MirrorJob) {
	size := job.size()
	if m.queued.Add(size) > m.maxBytes {
		m.queued.Add(-size)
		m.Metrics.Mirror["dropped"].Inc()
		return
	}
	select {
	case m.queue <- job:
	default:
		m.queued.Add(-size)
		m.Metrics.Mirror["dropped"].Inc()
	}
}

// Start n workers that run until ctx ends.
func (m *Mirror) Start(ctx context.Context, n int) {
	for range n {
		go m.worker(ctx)
	}
}

func (m *Mirror) worker(ctx context.Context) {
	for !m.serve(ctx) {
		m.Metrics.WorkerRestarts.Inc()
	}
}

// serve sends jobs until ctx ends (true) or a job panics (false: recovered, to be restarted).
func (m *Mirror) serve(ctx context.Context) (stopped bool) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("shadow mirror worker panicked; restarting it", "panic", fmt.Sprint(r),
				"stack", string(debug.Stack()))
			stopped = false
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return true
		case job := <-m.queue:
			m.queued.Add(-job.size())
			m.send(ctx, job)
		}
	}
}

func (m *Mirror) send(ctx context.Context, job *MirrorJob) {
	if m.beforeSend != nil {
		m.beforeSend(job)
	}
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	request, err := http.NewRequestWithContext(ctx, http.MethodPost,
		job.Base.String()+job.Target, bytes.NewReader(job.Body))
	if err != nil {
		m.Metrics.Mirror["failed"].Inc()
		m.Metrics.Agreement["error"].Inc()
		return
	}
	body := job.Body
	request.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	request.Header = job.Header
	response, err := m.Transport.RoundTrip(request)
	var payload []byte
	if err == nil {
		payload, err = io.ReadAll(io.LimitReader(response.Body, maxAnswerBytes))
		_ = response.Body.Close()
	}
	if err != nil {
		m.Metrics.Mirror["failed"].Inc()
		m.Metrics.Agreement["error"].Inc()
		return
	}
	m.Metrics.Mirror["sent"].Inc()
	if served := response.Header.Values(marks.ServedByField); len(served) == 1 &&
		job.RequestID != "" && job.Base.Scheme == "http" {
		if replica := marks.ReplicaAddress(served[0]); replica != "" {
			m.Memory.NoteShadowReplica(job.RequestID, URLString(job.Base), replica)
		}
	}
	primary, primaryOK := firstOutput(job.PrimaryStatus, job.PrimaryPayload)
	shadow, shadowOK := firstOutput(response.StatusCode, payload)
	m.Metrics.Agreement[Agreement(primary, shadow, primaryOK, shadowOK)].Inc()
}
