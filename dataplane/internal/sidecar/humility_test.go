package sidecar

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/humility"
	"modelops.io/dataplane/internal/inputs"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/upstream"
)

// twoRows is the model server's answer to every request: classes and their probabilities.
const twoRows = `{"model_name":"m","id":"upstream-id","outputs":[` +
	`{"name":"label","datatype":"INT64","shape":[2],"data":[1,1]},` +
	`{"name":"predict_proba","datatype":"FP32","shape":[2,2],"data":[0.45,0.55,0.1,0.9]}]}`

// humbleSidecar proxies to a model server answering answer, counts inputs against a
// one-feature profile (x in -1..1), signs receipts, and checks rules.
func humbleSidecar(t *testing.T, answer, rules string) *Sidecar {
	t.Helper()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept-Encoding") != "" {
			t.Error("the rules read the answer, yet the model server was offered compression")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(humility.Field, "forged-by-upstream")
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(server.Close)
	target, _ := url.Parse(server.URL)
	profile, err := inputs.Parse([]byte(`{"kind":"TrainingProfile","features":[` +
		`{"name":"x","type":"numeric","edges":[0],"min":-1,"max":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := receipt.OpenRingFile(ringFile(t, "a secret of 32 bytes, for tests!"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	memory := feedback.NewStore(100, time.Hour, nil)
	id := Identity{"d", "m", "v1", "champion"}
	s := &Sidecar{Upstream: target, Timeout: 5 * time.Second, Memory: memory, Task: "auto",
		FeedbackOn: true, RetryWindow: time.Minute, MaxAnswerBytes: 1 << 20, Identity: id,
		Metrics:  NewMetrics(id, []float64{-0.5, 0.5, 1.5}, DefaultLatencyBuckets, memory),
		Receipts: &receipt.Checker{Keys: keys, MaxAge: time.Hour, Deployment: "d"},
		Seen:     receipt.NewSeen(100)}
	s.Inputs = inputs.NewCounter(profile, prometheus.Labels{"deployment": "d", "model": "m",
		"version": "v1", "role": "champion"}, s.Metrics.Registry)
	parsed, err := humility.Parse(rules, profile)
	if err != nil {
		t.Fatal(err)
	}
	s.SetHumility(parsed)
	s.Init(upstream.New(time.Second))
	return s
}

// ask sends an inference request with body, the client's id and the router's attempt.
func ask(s *Sidecar, body, requestID, attempt string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/v2/models/m/infer", strings.NewReader(body))
	r.Header.Set("Accept-Encoding", "gzip")
	if requestID != "" {
		r.Header.Set("X-Request-Id", requestID)
	}
	if attempt != "" {
		r.Header.Set("X-Modelops-Attempt", attempt)
	}
	w := httptest.NewRecorder()
	s.Handle(w, r, []byte(body))
	return w
}

const inRange = `{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP64","data":[0.5,-0.5]}]}`
const secondOutlying = `{"inputs":[{"name":"x","shape":[2,1],"datatype":"FP64","data":[0.5,7]}]}`

// series is the value of name's series whose labels include want (a histogram's sum; 0 when
// there is none).
func series(t *testing.T, s *Sidecar, name string, want map[string]string) float64 {
	t.Helper()
	families, err := s.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
	next:
		for _, metric := range family.GetMetric() {
			labels := map[string]string{}
			for _, pair := range metric.GetLabel() {
				labels[pair.GetName()] = pair.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			if labels["deployment"] != "d" || labels["version"] != "v1" || labels["role"] != "champion" {
				t.Errorf("%s: labels %v lack the sidecar's identity", name, labels)
			}
			if metric.GetCounter() != nil {
				return metric.GetCounter().GetValue()
			}
			return metric.GetHistogram().GetSampleSum()
		}
	}
	return 0
}

func TestAFlagRuleSetsTheHeaderAndLeavesTheAnswer(t *testing.T) {
	s := humbleSidecar(t, twoRows, `{"rules":[
	 {"name":"outlying-input","when":{"outlyingInput":{"features":["x"]}},"action":"flag"},
	 {"name":"unsure","when":{"confidenceBelow":0.6},"action":"flag"},
	 {"name":"never","when":{"confidenceBelow":0.01},"action":"flag"}]}`)
	w := ask(s, secondOutlying, "a", "")
	if w.Code != 200 || w.Body.String() != twoRows {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
	if got := w.Header().Get(humility.Field); got != "outlying-input,unsure" {
		t.Errorf("header %q", got)
	}
	if w.Header().Get(receipt.Field) == "" {
		t.Error("no receipt")
	}
	w = ask(s, inRange, "b", "")
	if got := w.Header().Values(humility.Field); len(got) != 1 || got[0] != "unsure" {
		t.Errorf("header %q, want the rule that fired only (the model server's removed)", got)
	}
	for rule, want := range map[string]float64{"outlying-input": 1, "unsure": 2, "never": 0} {
		if got := series(t, s, "modelops_humility_rows_total", map[string]string{"rule": rule,
			"action": "flag"}); got != want {
			t.Errorf("rows_total{rule=%s} %v, want %v", rule, got, want)
		}
	}
	if got := series(t, s, "modelops_humility_checked_rows_total", nil); got != 4 {
		t.Errorf("checked rows %v, want 4", got)
	}
	if got := rowsCounted(t, s.Metrics.Registry); got != 4 {
		t.Errorf("input rows %v, want 4", got)
	}
}

func TestAnOverrideIsWhatTheClientTheReceiptAndTheHistogramGet(t *testing.T) {
	s := humbleSidecar(t, twoRows, `{"rules":[{"name":"unsure","when":{"confidenceBelow":0.6},`+
		`"action":"override","overrideValue":0}]}`)
	w := ask(s, inRange, "a", "")
	if w.Code != 200 || w.Header().Get(humility.Field) != "unsure" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	var got struct {
		ID      string `json:"id"`
		Outputs []struct {
			Name string `json:"name"`
			Data []any  `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "upstream-id" || len(got.Outputs) != 2 || got.Outputs[0].Name != "label" ||
		len(got.Outputs[0].Data) != 2 || got.Outputs[0].Data[0] != 0.0 || got.Outputs[0].Data[1] != 1.0 {
		t.Errorf("answer %s", w.Body.String())
	}
	if w.Header().Get("Content-Length") != "" && w.Header().Get("Content-Length") != itoa(w.Body.Len()) {
		t.Errorf("Content-Length %s for %d bytes", w.Header().Get("Content-Length"), w.Body.Len())
	}
	verified, failure := s.Receipts.Check(w.Header().Get(receipt.Field), time.Now())
	if failure != "" || string(verified.Prediction[0]) != "0" || string(verified.Prediction[1]) != "1" {
		t.Errorf("receipt %v %s", verified.Prediction, failure)
	}
	// The histogram saw 0 and 1, not the model server's 1 and 1.
	if got := series(t, s, "modelops_prediction_value", nil); got != 1 {
		t.Errorf("sum of predictions observed %v, want 1", got)
	}
	if prediction, _, ok := s.Memory.Take("a"); !ok || prediction.Values[0] != json.Number("0") {
		t.Errorf("remembered %v", prediction)
	}
	if got := series(t, s, "modelops_humility_rows_total", map[string]string{"action": "override"}); got != 1 {
		t.Errorf("rows_total %v", got)
	}
}

func TestARefusalIsA422WithNothingRecorded(t *testing.T) {
	s := humbleSidecar(t, twoRows, `{"rules":[
	 {"name":"flagged","when":{"confidenceBelow":0.6},"action":"flag"},
	 {"name":"far-out","when":{"outlyingInput":{}},"action":"refuse"}]}`)
	w := ask(s, secondOutlying, "a", "")
	if w.Code != http.StatusUnprocessableEntity {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body) != 1 ||
		body["error"] != "humility rule 'far-out' refused row 1: feature x: 7 is outside the training profile's range" {
		t.Errorf("body %s", w.Body.String())
	}
	if w.Header().Get(humility.Field) != "flagged,far-out" || w.Header().Get(receipt.Field) != "" ||
		w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("header %v", w.Header())
	}
	if _, _, ok := s.Memory.Take("a"); ok {
		t.Error("the refused answer's prediction is remembered")
	}
	if got := testutil.ToFloat64(s.Metrics.requests.WithLabelValues("422")); got != 1 {
		t.Errorf("requests{code=422} %v", got)
	}
	if got := rowsCounted(t, s.Metrics.Registry); got != 0 {
		t.Errorf("input rows %v, want 0: the request was not answered", got)
	}
	if got := series(t, s, "modelops_humility_rows_total", map[string]string{"rule": "far-out",
		"action": "refuse"}); got != 1 {
		t.Errorf("rows_total{far-out} %v", got)
	}
	if got := series(t, s, "modelops_humility_checked_rows_total", nil); got != 2 {
		t.Errorf("checked rows %v, want 2", got)
	}
	// Its retry is refused alike, and not counted again.
	if w := ask(s, secondOutlying, "a", "2"); w.Code != http.StatusUnprocessableEntity {
		t.Errorf("retry answered %d", w.Code)
	}
	if got := series(t, s, "modelops_humility_rows_total", map[string]string{"rule": "far-out"}); got != 1 {
		t.Errorf("rows_total{far-out} %v after the retry", got)
	}
}

func TestAMissingConfidenceOutputIsUnavailableAndTheAnswerUnchanged(t *testing.T) {
	answer := `{"outputs":[{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]}]}`
	s := humbleSidecar(t, answer, `{"rules":[{"name":"unsure","when":{"confidenceBelow":0.6},`+
		`"action":"refuse"}]}`)
	w := ask(s, inRange, "a", "")
	if w.Code != 200 || w.Body.String() != answer || w.Header().Values(humility.Field) != nil {
		t.Errorf("%d %s %v", w.Code, w.Body.String(), w.Header())
	}
	if got := series(t, s, "modelops_humility_unavailable_total", map[string]string{"rule": "unsure"}); got != 1 {
		t.Errorf("unavailable %v", got)
	}
	if got := series(t, s, "modelops_humility_rows_total", map[string]string{"rule": "unsure"}); got != 0 {
		t.Errorf("rows_total %v", got)
	}
}

func TestRetriesAreCheckedButCountedOnce(t *testing.T) {
	s := humbleSidecar(t, twoRows, `{"rules":[{"name":"unsure","when":{"confidenceBelow":0.6},`+
		`"action":"override","overrideValue":0}]}`)
	first := ask(s, inRange, "a", "")
	router := ask(s, inRange, "a", "2") // the router's retry
	client := ask(s, inRange, "a", "")  // the client's, same id within the window
	for _, w := range []*httptest.ResponseRecorder{router, client} {
		if w.Code != 200 || w.Body.String() != first.Body.String() || w.Header().Get(humility.Field) != "unsure" {
			t.Errorf("retry answered %d %s %v", w.Code, w.Body.String(), w.Header())
		}
	}
	if got := series(t, s, "modelops_humility_rows_total", map[string]string{"rule": "unsure"}); got != 1 {
		t.Errorf("rows_total %v, want 1", got)
	}
	if got := series(t, s, "modelops_humility_checked_rows_total", nil); got != 2 {
		t.Errorf("checked rows %v, want 2", got)
	}
	if got := testutil.ToFloat64(s.Metrics.retries); got != 2 {
		t.Errorf("retries %v, want 2", got)
	}
}

func TestHostileRequestsNeverGetA5xxFromTheRules(t *testing.T) {
	s := humbleSidecar(t, twoRows, `{"rules":[
	 {"name":"far-out","when":{"outlyingInput":{}},"action":"refuse"},
	 {"name":"unsure","when":{"confidenceBelow":0.6},"action":"override","overrideValue":"?"}]}`)
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	for _, body := range []string{``, `nope`, `{"inputs":"x"}`, `{"inputs":[{"name":"x","shape":` +
		`[99999999999999999999,1],"data":[1]}]}`, `{"inputs":[{"name":"x","shape":[1,1],"data":` + deep + `}]}`,
		`{"inputs":[{"name":"x","shape":[2,1],"datatype":"BYTES","data":["a",{"b":[]}]}]}`,
		`{"inputs":[{"name":"x","shape":[1,1],"data":[1e999]}]}`} {
		w := ask(s, body, "", "")
		if w.Code != 200 || w.Header().Get(humility.Field) != "unsure" {
			t.Errorf("%.60s: %d %s", body, w.Code, w.Body.String())
		}
	}
	if got := series(t, s, "modelops_humility_unavailable_total", map[string]string{"rule": "far-out"}); got < 5 {
		t.Errorf("far-out unavailable %v, want one per unreadable request", got)
	}
}

func TestHostileAnswersNeverGetA5xxFromTheRules(t *testing.T) {
	rules := `{"rules":[{"name":"unsure","when":{"confidenceBelow":0.6},"action":"override","overrideValue":0}]}`
	for _, answer := range []string{`[]`, `{"outputs":7}`, `{"outputs":[{"name":"label","data":{}}]}`,
		`{"outputs":[{"name":"label","shape":[1e20],"data":[1]},{"name":"predict_proba",` +
			`"datatype":"FP64","shape":[3],"data":[0.5,"x",null]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP64","shape":[2,99999999999999999],"data":[0.5]}]}`} {
		s := humbleSidecar(t, answer, rules)
		w := ask(s, inRange, "", "")
		if w.Code != 200 {
			t.Errorf("%s: %d %s", answer, w.Code, w.Body.String())
		}
	}
}

func TestTheSidecarRefusesToStartWithRulesItCannotCheck(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(profile, []byte(`{"kind":"TrainingProfile","features":[`+
		`{"name":"x","type":"numeric","edges":[0],"min":-1,"max":1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--model", "m", "--version", "v1", "--role", "champion", "--port", "0",
		"--metrics-port", "0"}
	for _, extra := range [][]string{
		{"--humility-rules", `{"rules":[{"name":"far-out","when":{"outlyingInput":{}},"action":"refuse"}]}`},
		{"--profile-file", profile, "--humility-rules",
			`{"rules":[{"name":"far-out","when":{"outlyingInput":{"features":["y"]}},"action":"refuse"}]}`},
		{"--humility-rules", `{"rules":[{"name":"unsure","when":{"confidenceBelow":2},"action":"flag"}]}`},
	} {
		if status := Main(append(slices.Clone(base), extra...)); status != 2 {
			t.Errorf("%v: exit status %d, want 2", extra, status)
		}
	}
}
