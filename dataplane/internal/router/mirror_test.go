package router

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A job that makes a worker panic is recovered: the panic is counted, the worker restarted,
// and the next copy is sent.
func TestAPanickingMirrorWorkerIsRestartedAndCounted(t *testing.T) {
	var answered atomic.Int64
	challenger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answered.Add(1)
		_, _ = w.Write([]byte(`{"outputs":[{"data":[1]}]}`))
	}))
	defer challenger.Close()
	base, _ := url.Parse(challenger.URL)
	mirror := NewMirror(10, 1<<20)
	mirror.Metrics = NewMetrics("d", mirror.Depth)
	mirror.Memory = NewMemory(10, time.Hour, time.Minute, nil)
	mirror.Transport, mirror.Timeout = http.DefaultTransport, 5*time.Second
	mirror.beforeSend = func(job *MirrorJob) {
		if job.RequestID == "\xff\xfe" {
			panic("a hostile id")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mirror.Start(ctx, 1)
	job := func(id string) *MirrorJob {
		return &MirrorJob{Base: base, Target: "/v2/models/m/infer", Body: []byte("{}"),
			Header: http.Header{}, PrimaryStatus: 200,
			PrimaryPayload: []byte(`{"outputs":[{"data":[1]}]}`), RequestID: id}
	}
	mirror.Enqueue(job("\xff\xfe"))
	mirror.Enqueue(job("fine"))
	deadline := time.Now().Add(5 * time.Second)
	for answered.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := testutil.ToFloat64(mirror.Metrics.WorkerRestarts); got != 1 {
		t.Errorf("restarts %v, want 1", got)
	}
	if got := testutil.ToFloat64(mirror.Metrics.Agreement["agree"]); got != 1 {
		t.Errorf("agreements %v, want 1 (the copy after the panic)", got)
	}
}

func TestAFullQueueDropsInsteadOfWaiting(t *testing.T) {
	mirror := NewMirror(1, 10)
	mirror.Metrics = NewMetrics("d", mirror.Depth)
	mirror.Enqueue(&MirrorJob{Body: []byte("12345")})
	mirror.Enqueue(&MirrorJob{Body: []byte("1")})            // over the entries
	mirror.Enqueue(&MirrorJob{Body: []byte("123456789012")}) // over the bytes
	if got := testutil.ToFloat64(mirror.Metrics.Mirror["dropped"]); got != 2 {
		t.Errorf("dropped %v, want 2", got)
	}
}
