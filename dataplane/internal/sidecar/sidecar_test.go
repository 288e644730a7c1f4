package sidecar

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"modelops.io/dataplane/internal/feedback"
)

type clock struct{ now time.Time }

func (c *clock) read() time.Time { return c.now }

func newSidecar(c *clock, maturing *feedback.Maturing) *Sidecar {
	memory := feedback.NewStore(100, time.Hour, c.read)
	return &Sidecar{Memory: memory, Maturing: maturing, Task: "auto", FeedbackOn: true,
		RetryWindow: time.Minute,
		Metrics: NewMetrics(Identity{"d", "m", "v", "champion"}, DefaultPredictionBuckets,
			DefaultLatencyBuckets, memory)}
}

var answer = parseObject([]byte(`{"id":"x","outputs":[{"name":"label","datatype":"INT64",` +
	`"shape":[1],"data":[1]}]}`))

func TestARetryIsRememberedForFeedbackButCountedApart(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	s := newSidecar(c, nil)
	s.account("a", 503, nil, 0, 1, true)     // the first attempt failed
	s.account("a", 200, answer, 0, 2, true)  // the router's retry
	s.account("e", 200, answer, 0, 3, false) // Envoy's, no id of the client's
	if got := testutil.ToFloat64(s.Metrics.requests); got != 1 {
		t.Errorf("requests %v, want 1 (the 503)", got)
	}
	if got := testutil.ToFloat64(s.Metrics.retries); got != 2 {
		t.Errorf("retries %v, want 2", got)
	}
	if _, ok := s.Memory.Age("a"); !ok {
		t.Error("the retry's prediction is not remembered")
	}
}

func TestARepeatedClientIDIsARetryWithinTheWindowOnly(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	s := newSidecar(c, nil)
	s.account("a", 200, answer, 0, 1, true)
	c.now = c.now.Add(30 * time.Second)
	s.account("a", 200, answer, 0, 1, true) // the client timed out and retried
	c.now = c.now.Add(31 * time.Second)     // from the first answer: the window did not restart
	s.account("a", 200, answer, 0, 1, true)
	s.account("x", 200, answer, 0, 1, false) // ids the sidecar made up are never a retry
	s.account("x", 200, answer, 0, 1, false)
	if got := testutil.ToFloat64(s.Metrics.requests); got != 4 {
		t.Errorf("requests %v, want 4", got)
	}
	if got := testutil.ToFloat64(s.Metrics.retries); got != 1 {
		t.Errorf("retries %v, want 1", got)
	}
}

func label(t *testing.T, s *Sidecar, body string) (int, map[string]any) {
	t.Helper()
	recorder := httptest.NewRecorder()
	s.feedback(recorder, httptest.NewRequest(http.MethodPost, "/v2/feedback", nil), []byte(body))
	var out map[string]any
	_ = json.Unmarshal(recorder.Body.Bytes(), &out)
	return recorder.Code, out
}

func TestASecondLabelForOneIDIsNotCounted(t *testing.T) {
	for _, window := range []time.Duration{0, 30 * time.Second} {
		c := &clock{time.Unix(0, 0)}
		var maturing *feedback.Maturing
		if window > 0 {
			maturing = feedback.NewMaturing(window, c.read)
		}
		s := newSidecar(c, maturing)
		s.account("a", 200, answer, 0, 1, true)
		if _, out := label(t, s, `{"id": "a", "truth": 1}`); out["correct"] != 1.0 {
			t.Errorf("first label: %v", out)
		}
		if code, out := label(t, s, `{"id": "a", "truth": 0}`); code != 404 || out["outcome"] != "unmatched" {
			t.Errorf("second label: %d %v", code, out)
		}
		c.now = c.now.Add(31 * time.Second)
		s.CountMatured()
		if got := testutil.ToFloat64(s.Metrics.Feedback["correct"]); got != 1 {
			t.Errorf("window %v: correct %v, want 1", window, got)
		}
	}
}

func TestLabelsAreValidatedAndScored(t *testing.T) {
	c := &clock{time.Unix(0, 0)}
	s := newSidecar(c, nil)
	s.remember("r", parseObject([]byte(`{"outputs":[{"datatype":"FP64","data":[2.5, 1]}]}`)), false)
	code, out := label(t, s, `{"id": "r", "truth": [3, 3]}`)
	if code != 200 || out["scored"] != 2.0 {
		t.Fatalf("%d %v", code, out)
	}
	if got := testutil.ToFloat64(s.Metrics.AbsoluteError); got != 2.5 {
		t.Errorf("absolute error %v", got)
	}
	for body, field := range map[string]string{
		`{"id": "x"}`: "truth", `{"truth": 1}`: "id", `[1]`: "object", `nope`: "JSON",
		`{"id": "x", "truth": []}`: "truth", `{"id": "x", "truth": [[1]]}`: "truth",
		`{"id": "` + strings.Repeat("i", 257) + `", "truth": 1}`: "id",
	} {
		if code, out := label(t, s, body); code != 400 || !strings.Contains(out["error"].(string), field) {
			t.Errorf("%s: %d %v", body, code, out)
		}
	}
}
