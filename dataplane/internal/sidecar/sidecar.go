// Package sidecar is modelops-sidecar: a reverse proxy in front of any V2 model server that
// counts and times inference calls, records their predictions and scores labels against them.
package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/humility"
	"modelops.io/dataplane/internal/inputs"
	"modelops.io/dataplane/internal/marks"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/serve"
	"modelops.io/dataplane/internal/upstream"
)

// Sidecar holds the proxy and its bookkeeping.
type Sidecar struct {
	Upstream         *url.URL
	Timeout          time.Duration
	Metrics          *Metrics
	Memory           feedback.Memory
	Maturing         *feedback.Maturing // nil: labels count at arrival
	Task             string             // auto | classification | regression
	PredictionOutput string             // "" : the first output
	FeedbackOn       bool
	LossBound        float64 // 0: unbounded
	RetryWindow      time.Duration
	MaxAnswerBytes   int64 // an inference answer is read whole; larger ones are a 502
	Identity         Identity
	Receipts         *receipt.Checker // nil: labels name a request id this replica remembers
	Seen             *receipt.Seen    // receipts already scored (with Receipts)
	Inputs           *inputs.Counter  // nil: no training profile, inputs are not counted
	Humility         *humility.Rules  // nil: no humility rules (set with SetHumility)
	humility         *humilityCounters
	proxy            *httputil.ReverseProxy
	servedBy         marks.ServedByMemo
}

// exchange is one proxied request's state, carried in its context.
type exchange struct {
	inference bool
	answered  bool // a 200 to a first attempt: its inputs are counted
	started   time.Time
	marks     marks.Marks
	servedBy  string
	body      []byte // the request's
	// The request's rows against the profile, when the humility rules read them (rowsParsed).
	rows                 inputs.Rows
	rowsRead, rowsParsed bool
}

type exchangeKey struct{}

// Init builds the reverse proxy; call once before serving.
func (s *Sidecar) Init(transport http.RoundTripper) {
	s.proxy = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      transport,
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.failed,
		ErrorLog:       slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
		BufferPool:     &upstream.Buffers{},
	}
}

// Handle every request on the traffic port: feedback is answered here, the rest proxied.
func (s *Sidecar) Handle(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method == http.MethodPost && r.URL.Path == "/v2/feedback" {
		s.feedback(w, r, body)
		return
	}
	// Classified on the decoded path, as Go's mux routes: /v2/models/m/inf%65r is an
	// inference call (forwarded as sent; the model server decodes it alike).
	ex := &exchange{
		inference: r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/infer"),
		started:   time.Now(),
		marks:     marks.Read(r.Header),
		body:      body,
	}
	if local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		ex.servedBy = s.servedBy.Of(local)
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), exchangeKey{}, ex), s.Timeout)
	defer cancel()
	s.proxy.ServeHTTP(w, r.WithContext(ctx))
	if s.Inputs != nil && ex.answered {
		// The answer goes out first; counting the inputs is not the client's wait.
		_ = http.NewResponseController(w).Flush()
		if ex.rowsParsed {
			s.Inputs.Count(ex.rows, ex.rowsRead)
		} else {
			s.Inputs.Observe(body)
		}
	}
}

func (s *Sidecar) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(s.Upstream)
	// Forwarded unchanged: ReverseProxy's Rewrite mode drops these, the Python sidecar kept them.
	for _, name := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if values, ok := pr.In.Header[name]; ok {
			pr.Out.Header[name] = values
		}
	}
	// The body is read whole before forwarding and 100-continue answered here; forwarded,
	// Expect makes the upstream send an interim 100 that nobody waits for.
	pr.Out.Header.Del("Expect")
	pr.Out.Header.Del(marks.AttemptField) // the router's, for this sidecar only
	ex, _ := pr.In.Context().Value(exchangeKey{}).(*exchange)
	if ex != nil {
		upstream.SendWhole(pr.Out, ex.body)
	}
	if s.Humility != nil && ex != nil && ex.inference {
		// The rules read the answer: a compressed one could not be checked.
		pr.Out.Header.Del("Accept-Encoding")
	}
}

func (s *Sidecar) modifyResponse(resp *http.Response) error {
	ex, _ := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if ex == nil || !ex.inference {
		return nil
	}
	payload, err := upstream.ReadAnswer(resp, s.MaxAnswerBytes)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	if int64(len(payload)) > s.MaxAnswerBytes {
		return errAnswerTooLarge
	}
	var response map[string]any
	if resp.StatusCode == http.StatusOK {
		response = parseObject(payload)
	}
	key := responseKey(ex.marks.RequestID, response)
	header := resp.Header
	header.Del(humility.Field)
	var outcome humility.Outcome
	checked := s.Humility != nil && response != nil
	if checked {
		payload, response, outcome = s.applyHumility(ex, resp, payload, response)
	}
	header.Del(marks.RequestIDField)
	header.Del(marks.ServedByField)
	header.Set(marks.RequestIDField, marks.HeaderValue(key))
	if ex.servedBy != "" {
		header.Set(marks.ServedByField, ex.servedBy)
	}
	header.Del(receipt.Field)
	if s.Receipts != nil && response != nil {
		if prediction, ok := s.predictionOf(response); ok {
			if token := s.receiptFor(key, ex.servedBy, prediction, time.Now()); token != "" {
				header.Set(receipt.Field, token)
			}
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(payload))
	resp.ContentLength = int64(len(payload))
	resp.TransferEncoding = nil
	header.Del("Transfer-Encoding")
	header.Set("Content-Length", itoa(len(payload)))
	retry := s.account(key, resp.StatusCode, response, time.Since(ex.started), ex.marks.Attempt(),
		ex.marks.RequestID != "")
	ex.answered = resp.StatusCode == http.StatusOK && !retry
	if checked && !retry {
		s.humility.count(outcome)
	}
	return nil
}

var errAnswerTooLarge = errors.New("the model server's answer is larger than the sidecar reads")

// failed answers a request the model server did not answer: 504 when it was too slow.
func (s *Sidecar) failed(w http.ResponseWriter, r *http.Request, err error) {
	ex, _ := r.Context().Value(exchangeKey{}).(*exchange)
	status, message := http.StatusBadGateway, "the model server is unavailable: "+upstream.Reason(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		status, message = http.StatusGatewayTimeout, "the model server timed out"
	case errors.Is(err, errAnswerTooLarge):
		message = err.Error()
	}
	if ex != nil && ex.inference {
		if s.isRetry(ex.marks.Attempt(), ex.marks.RequestID) {
			s.Metrics.CountRetry(status)
		} else {
			s.Metrics.CountRequest(status)
			s.Metrics.Duration.Observe(time.Since(ex.started).Seconds())
		}
	}
	serve.Error(w, status, message)
}

// isRetry: a marker calls the attempt a retry, or this sidecar answered the client's id less
// than RetryWindow before (an answer that failed is not remembered, so only the router or a
// marker recognises the retry of a failure).
func (s *Sidecar) isRetry(attempt int, clientID string) bool {
	if attempt > 1 {
		return true
	}
	if clientID == "" {
		return false
	}
	age, ok := s.Memory.Age(clientID)
	return ok && age <= s.RetryWindow
}

// account is the metrics and feedback memory of one answered inference. A retry is
// remembered for its feedback as any answer, but counted only in modelops_retries_total
// (returned true).
func (s *Sidecar) account(key string, status int, response map[string]any, elapsed time.Duration,
	attempt int, clientNamed bool) bool {
	clientID := ""
	if clientNamed {
		clientID = key
	}
	retry := s.isRetry(attempt, clientID)
	if status == http.StatusOK && response != nil {
		s.remember(key, response, retry)
	}
	if retry {
		s.Metrics.CountRetry(status)
		return true
	}
	s.Metrics.CountRequest(status)
	s.Metrics.Duration.Observe(elapsed.Seconds())
	return false
}

func (s *Sidecar) remember(key string, response map[string]any, retry bool) {
	prediction, ok := s.predictionOf(response)
	if !ok {
		return
	}
	if !retry { // a retry's input was counted once already
		s.Metrics.ObservePredictions(prediction.Values)
	}
	s.Memory.Remember(key, prediction, retry)
	if id, ok := response["id"].(string); ok && id != key {
		s.Memory.Remember(id, prediction, retry)
	}
}

// predictionOf is the values of the first output (or PredictionOutput) and whether they are
// classes: with Task auto, integer, boolean and string outputs are classes.
func (s *Sidecar) predictionOf(response map[string]any) (feedback.Prediction, bool) {
	chosen := s.predictionOutput(response)
	values, ok := chosen["data"].([]any)
	if !ok {
		return feedback.Prediction{}, false
	}
	classification := s.Task == "classification"
	if s.Task == "auto" {
		datatype := pythonStr(chosen["datatype"])
		classification = datatype == "BOOL" || datatype == "BYTES" ||
			strings.HasPrefix(datatype, "INT") || strings.HasPrefix(datatype, "UIN")
	}
	return feedback.Prediction{Values: values, Classification: classification}, true
}

// predictionOutput is the output whose values are the prediction: the first, or the one named
// PredictionOutput; nil if none.
func (s *Sidecar) predictionOutput(response map[string]any) map[string]any {
	outputs, ok := response["outputs"].([]any)
	if !ok || len(outputs) == 0 {
		return nil
	}
	chosen, _ := outputs[0].(map[string]any)
	if s.PredictionOutput != "" {
		chosen = nil
		for _, output := range outputs {
			if o, ok := output.(map[string]any); ok && o["name"] == s.PredictionOutput {
				chosen = o
				break
			}
		}
	}
	return chosen
}

func pythonStr(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// parseObject is a JSON object with numbers kept as written; nil when it is not one.
func parseObject(payload []byte) map[string]any {
	decoder := json.NewDecoder(bytes.NewReader(payload))
	decoder.UseNumber()
	var object map[string]any
	if decoder.Decode(&object) != nil {
		return nil
	}
	return object
}

// responseKey is the id feedback names: the client's X-Request-Id, else the answer's id,
// else a new one.
func responseKey(clientID string, response map[string]any) string {
	if clientID != "" {
		return clientID
	}
	if id, ok := response["id"].(string); ok && id != "" {
		return id
	}
	return newUUID()
}
