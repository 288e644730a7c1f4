package sidecar

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/upstream"
)

// modelServer answers every inference call with class 1 of version v1.
func modelServer(t *testing.T) *url.URL {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"model_name":"m","model_version":"v1","outputs":[{"name":"label",` +
			`"datatype":"INT64","shape":[1],"data":[1]}]}`))
	}))
	t.Cleanup(server.Close)
	target, _ := url.Parse(server.URL)
	return target
}

func ringFile(t *testing.T, secret string) string {
	path := filepath.Join(t.TempDir(), "receipt-keys.json")
	document := fmt.Sprintf(`{"keys":[{"id":"k1","secret":%q,"activeFrom":0}]}`,
		base64.StdEncoding.EncodeToString([]byte(secret)))
	if err := os.WriteFile(path, []byte(document), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replica is one sidecar of deployment d, version v1, with the ring at path: a new replica
// (or a restarted one) remembers nothing.
func replica(t *testing.T, ringPath, deployment, version string) *Sidecar {
	keys, err := receipt.OpenRingFile(ringPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	memory := feedback.NewStore(100, time.Hour, nil)
	id := Identity{deployment, "m", version, "champion"}
	s := &Sidecar{Upstream: modelServer(t), Timeout: 5 * time.Second, Memory: memory, Task: "auto",
		FeedbackOn: true, RetryWindow: time.Minute, MaxAnswerBytes: 1 << 20, Identity: id,
		Metrics:  NewMetrics(id, DefaultPredictionBuckets, DefaultLatencyBuckets, memory),
		Receipts: &receipt.Checker{Keys: keys, MaxAge: time.Hour, Deployment: deployment},
		Seen:     receipt.NewSeen(100)}
	s.Init(upstream.New(time.Second))
	return s
}

func infer(t *testing.T, s *Sidecar, requestID string) string {
	r := httptest.NewRequest(http.MethodPost, "/v2/models/m/infer", strings.NewReader("{}"))
	r.Header.Set("X-Request-Id", requestID)
	w := httptest.NewRecorder()
	s.Handle(w, r, []byte("{}"))
	if w.Code != http.StatusOK {
		t.Fatalf("inference answered %d: %s", w.Code, w.Body.String())
	}
	return w.Header().Get(receipt.Field)
}

func labelWithReceipt(s *Sidecar, document map[string]any, header http.Header) (int, map[string]any) {
	body, _ := json.Marshal(document)
	r := httptest.NewRequest(http.MethodPost, "/v2/feedback", strings.NewReader(string(body)))
	for name, values := range header {
		r.Header[name] = values
	}
	w := httptest.NewRecorder()
	s.Handle(w, r, body)
	var answer map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &answer)
	return w.Code, answer
}

func TestAnotherReplicaScoresTheReceiptOnceAndRefusesWhatIsNotOne(t *testing.T) {
	path := ringFile(t, "0123456789abcdef0123456789abcdef")
	answering := replica(t, path, "d", "v1")
	token := infer(t, answering, "req-1")
	if token == "" {
		t.Fatal("the answer carries no receipt")
	}
	scoring := replica(t, path, "d", "v1") // another replica, or the same one restarted
	if code, answer := labelWithReceipt(scoring, map[string]any{"receipt": token, "truth": 1}, nil); code != 200 ||
		answer["correct"] != 1.0 || answer["id"] != "req-1" {
		t.Fatalf("a valid receipt was answered %d %v", code, answer)
	}
	if got := testutil.ToFloat64(scoring.Metrics.Feedback["correct"]); got != 1 {
		t.Errorf("correct %v, want 1", got)
	}
	altered := token[:len(token)-3] + "AAA"
	other := infer(t, replica(t, ringFile(t, "another deployment's key, 32 b!"), "d", "v1"), "req-2")
	otherDeployment := infer(t, replica(t, path, "e", "v1"), "req-3")
	header := http.Header{receipt.Field: {token}}
	for _, c := range []struct {
		document map[string]any
		header   http.Header
		status   int
		reason   receipt.Failure
	}{
		{map[string]any{"receipt": token, "truth": 0}, nil, 409, receipt.Duplicate},
		{map[string]any{"truth": 0}, header, 409, receipt.Duplicate}, // the header, as the body
		{map[string]any{"id": "req-1", "truth": 1}, nil, 400, receipt.Missing},
		{map[string]any{"receipt": altered, "truth": 1}, nil, 403, receipt.BadSignature},
		{map[string]any{"receipt": other, "truth": 1}, nil, 403, receipt.BadSignature},
		{map[string]any{"receipt": otherDeployment, "truth": 1}, nil, 403, receipt.OtherDeployment},
		{map[string]any{"receipt": "v1.k1.e30.AAAA", "truth": 1}, nil, 400, receipt.Malformed},
		{map[string]any{"receipt": 7, "truth": 1}, nil, 400, receipt.Malformed},
	} {
		code, answer := labelWithReceipt(scoring, c.document, c.header)
		if code != c.status || answer["reason"] != string(c.reason) {
			t.Errorf("%v: answered %d %v, want %d %s", c.document, code, answer, c.status, c.reason)
		}
		if got := testutil.ToFloat64(scoring.Metrics.Refused[c.reason]); got < 1 {
			t.Errorf("%s not counted", c.reason)
		}
	}
	if got := testutil.ToFloat64(scoring.Metrics.Feedback["correct"]) +
		testutil.ToFloat64(scoring.Metrics.Feedback["incorrect"]); got != 1 {
		t.Errorf("refused labels were scored: correct+incorrect %v, want 1", got)
	}
}

func TestABadLabelDoesNotUseUpItsReceipt(t *testing.T) {
	path := ringFile(t, "0123456789abcdef0123456789abcdef")
	s := replica(t, path, "d", "v1")
	token := infer(t, s, "req-1")
	for _, document := range []map[string]any{
		{"receipt": token},                            // no truth
		{"receipt": token, "truth": []any{1, 0}},      // two values for one row
		{"receipt": token, "id": "req-2", "truth": 1}, // another request's id
	} {
		if code, _ := labelWithReceipt(s, document, nil); code != 400 {
			t.Errorf("%v answered %d, want 400", document, code)
		}
	}
	if code, answer := labelWithReceipt(s, map[string]any{"receipt": token, "truth": 0}, nil); code != 200 ||
		answer["incorrect"] != 1.0 {
		t.Errorf("the receipt was used up by bad labels: %d %v", code, answer)
	}
}

func TestAReceiptOfAnotherVersionCountsForThatVersionOrInShadowModeForThisArmsOwnAnswer(t *testing.T) {
	path := ringFile(t, "0123456789abcdef0123456789abcdef")
	champion := replica(t, path, "d", "v1")
	other := replica(t, path, "d", "v2") // after a promotion, or the other arm of a Gateway split
	token := infer(t, champion, "req-1")
	if code, answer := labelWithReceipt(other, map[string]any{"receipt": token, "truth": 0}, nil); code != 200 ||
		answer["incorrect"] != 1.0 {
		t.Fatalf("a v1 receipt at a v2 sidecar: %d %v", code, answer)
	}
	if got := testutil.ToFloat64(other.Metrics.Feedback["incorrect"]); got != 0 {
		t.Errorf("v2's own counters moved: %v", got)
	}
	page, _ := testutil.CollectAndFormat(other.Metrics.Registry, expfmt.TypeTextPlain,
		"modelops_feedback_total", "modelops_process_start_time_seconds")
	for _, series := range []string{
		`modelops_feedback_total{deployment="d",model="m",outcome="incorrect",role="champion",version="v1"} 1`,
		`modelops_process_start_time_seconds{deployment="d",model="m",role="champion",version="v1"}`,
	} {
		if !strings.Contains(string(page), series) {
			t.Errorf("no %s in\n%s", series, page)
		}
	}
	infer(t, other, "req-2") // the router's shadow copy of req-2
	token = infer(t, champion, "req-2")
	before := testutil.ToFloat64(other.Metrics.Feedback["correct"])
	if code, answer := labelWithReceipt(other, map[string]any{"receipt": token, "truth": 1}, nil); code != 200 ||
		answer["correct"] != 1.0 {
		t.Fatalf("the shadow copy's label: %d %v", code, answer)
	}
	if got := testutil.ToFloat64(other.Metrics.Feedback["correct"]) - before; got != 1 {
		t.Errorf("the shadow copy's label went to %v of v2's own counters, want 1", got)
	}
}
