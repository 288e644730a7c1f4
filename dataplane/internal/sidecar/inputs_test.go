package sidecar

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/inputs"
	"modelops.io/dataplane/internal/upstream"
)

// profiledSidecar proxies to a model server that answers status, and counts inputs against a
// one-feature profile.
func profiledSidecar(t *testing.T, status int) (*Sidecar, *prometheus.Registry) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}`))
	}))
	t.Cleanup(server.Close)
	target, _ := url.Parse(server.URL)
	profile, err := inputs.Parse([]byte(`{"kind":"TrainingProfile","features":[` +
		`{"name":"x","type":"numeric","edges":[0],"min":-1,"max":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	memory := feedback.NewStore(100, time.Hour, nil)
	id := Identity{"d", "m", "v1", "champion"}
	s := &Sidecar{Upstream: target, Timeout: 5 * time.Second, Memory: memory, Task: "auto",
		RetryWindow: time.Minute, MaxAnswerBytes: 1 << 20, Identity: id,
		Metrics: NewMetrics(id, DefaultPredictionBuckets, DefaultLatencyBuckets, memory)}
	s.Inputs = inputs.NewCounter(profile, prometheus.Labels{"deployment": "d"}, s.Metrics.Registry)
	s.Init(upstream.New(time.Second))
	return s, s.Metrics.Registry
}

func send(s *Sidecar, attempt string) int {
	body := []byte(`{"inputs":[{"name":"input-0","shape":[2,1],"datatype":"FP64","data":[-0.5,0.5]}]}`)
	r := httptest.NewRequest(http.MethodPost, "/v2/models/m/infer", strings.NewReader(string(body)))
	if attempt != "" {
		r.Header.Set("X-Modelops-Attempt", attempt)
	}
	w := httptest.NewRecorder()
	s.Handle(w, r, body)
	return w.Code
}

func rowsCounted(t *testing.T, registry *prometheus.Registry) float64 {
	count, err := testutil.GatherAndCount(registry, "modelops_input_rows_total")
	if err != nil || count != 1 {
		t.Fatalf("modelops_input_rows_total: %d series, %v", count, err)
	}
	families, _ := registry.Gather()
	for _, family := range families {
		if family.GetName() == "modelops_input_rows_total" {
			return family.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func TestInputsOfAnsweredFirstAttemptsAreCountedOnly(t *testing.T) {
	ok, okRegistry := profiledSidecar(t, http.StatusOK)
	if code := send(ok, ""); code != http.StatusOK {
		t.Fatalf("answered %d", code)
	}
	send(ok, "2") // the router's retry: its inputs were counted with the first attempt
	if got := rowsCounted(t, okRegistry); got != 2 {
		t.Errorf("rows %v, want 2 (one request of two rows, the retry not counted)", got)
	}
	refused, refusedRegistry := profiledSidecar(t, http.StatusBadRequest)
	send(refused, "")
	if got := rowsCounted(t, refusedRegistry); got != 0 {
		t.Errorf("rows %v after a 400, want 0", got)
	}
}
