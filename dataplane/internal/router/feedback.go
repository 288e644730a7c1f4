package router

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"modelops.io/dataplane/internal/marks"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/serve"
	"modelops.io/dataplane/internal/upstream"
)

type answer struct {
	status  int
	header  http.Header
	payload []byte
	err     error
}

// target is where a label goes: the replica that answered (when known) and its arm's URL.
type target struct{ replica, armURL string }

// feedback sends POST /v2/feedback to the arm that answered (to the replica, when it said
// which), in shadow mode to both arms, and counts the pair's verdicts. With receipts the arm
// and replica are the receipt's, checked before anything is sent; without, this router's
// memory of the request id.
func (rt *Router) feedback(w http.ResponseWriter, r *http.Request, body []byte) {
	object, _ := parseJSON(body).(map[string]any)
	var arm string
	var targets []target
	if rt.Receipts != nil {
		arm, targets = rt.receiptTargets(w, r, object)
	} else {
		arm, targets = rt.rememberedTargets(w, r, object)
	}
	if targets == nil {
		return // answered
	}
	header := endToEnd(r.Header)
	rt.forwardFeedback(w, r, body, header, arm, targets)
}

// rememberedTargets: where this router sent the request id the label names.
func (rt *Router) rememberedTargets(w http.ResponseWriter, r *http.Request,
	object map[string]any) (string, []target) {
	requestID := ""
	if id, ok := object["id"].(string); ok {
		requestID = id
	} else if truthy(object["id"]) {
		requestID = "\x00not a string" // an id that is no string: refused below
	}
	if requestID == "" {
		requestID = r.Header.Get(marks.RequestIDField)
	}
	if requestID == "" || requestID == "\x00not a string" {
		rt.Metrics.CountFeedback("invalid")
		serve.Error(w, http.StatusBadRequest, `feedback body must be JSON {"id": ..., "truth": `+
			`...} (or send the id in X-Request-Id)`)
		return "", nil
	}
	answered, ok := rt.Memory.Take(requestID)
	if !ok {
		rt.Metrics.CountFeedback("unmatched")
		serve.JSON(w, http.StatusNotFound, map[string]string{"id": requestID, "outcome": "unmatched",
			"error": "this router has no record of the request id"})
		return "", nil
	}
	r.Header.Set(marks.RequestIDField, marks.HeaderValue(requestID))
	targets := []target{{answered.Replica, answered.URL}}
	if answered.ShadowURL != "" {
		targets = append(targets, target{answered.ShadowReplica, answered.ShadowURL})
	}
	return answered.Arm, targets
}

// receiptTargets: the arm and replica a valid receipt names (its signature vouches for the
// replica's address, so no client picks where the router sends a request), and in shadow mode
// the copy's arm and replica as this router remembers them.
func (rt *Router) receiptTargets(w http.ResponseWriter, r *http.Request,
	object map[string]any) (string, []target) {
	if object == nil {
		rt.Metrics.CountFeedback("invalid")
		serve.Error(w, http.StatusBadRequest, `feedback body must be a JSON object: {"receipt": ..., "truth": ...}`)
		return "", nil
	}
	token, present := receipt.TokenOf(object, r.Header)
	failure := receipt.Missing
	var verified receipt.Verified
	if present {
		verified, failure = rt.Receipts.Check(token, time.Now())
	}
	if failure != "" {
		rt.Metrics.Refused[failure].Inc()
		rt.Receipts.Refuse(w, failure)
		return "", nil
	}
	live := rt.Watcher.Live.Load()
	arm, base := Champion, live.Champion
	if verified.Role == Challenger && live.Challenger != nil {
		arm, base = Challenger, live.Challenger
	}
	// After a promotion or a rollback the receipt's arm may be gone: the champion takes the
	// label, and its sidecar refuses it if it does not serve the receipt's version.
	replica := ""
	if base.Scheme == "http" && verified.ServedBy != "" && verified.Role == arm {
		replica = marks.ReplicaAddress(verified.ServedBy)
	}
	r.Header.Set(marks.RequestIDField, marks.HeaderValue(verified.RequestID))
	targets := []target{{replica, URLString(base)}}
	if answered, ok := rt.Memory.Take(verified.RequestID); ok && answered.ShadowURL != "" {
		targets = append(targets, target{answered.ShadowReplica, answered.ShadowURL})
	}
	return arm, targets
}

func (rt *Router) forwardFeedback(w http.ResponseWriter, r *http.Request, body []byte,
	header http.Header, arm string, targets []target) {
	answers := make([]answer, len(targets))
	var wg sync.WaitGroup
	for i, to := range targets {
		wg.Go(func() {
			answers[i] = rt.sendFeedback(r.Context(), to.replica, to.armURL, body, header)
		})
	}
	wg.Wait()
	primary := answers[0]
	if primary.err != nil {
		rt.Metrics.CountFeedback("failed")
		serve.Error(w, http.StatusBadGateway, "the "+arm+" did not take the feedback")
		return
	}
	rt.Metrics.CountFeedback("forwarded")
	if len(answers) == 2 && answers[1].err == nil {
		a, b := verdict(primary), verdict(answers[1])
		if a != "" && b != "" {
			rt.Metrics.CountPaired(a, b)
		}
	}
	out := w.Header()
	for name, values := range endToEnd(primary.header) {
		out[name] = values
	}
	out.Set("Content-Length", strconv.Itoa(len(primary.payload)))
	w.WriteHeader(primary.status)
	_, _ = w.Write(primary.payload)
}

// sendFeedback goes to the replica that answered, the one that remembers the prediction; to
// the arm's URL (any replica, which finds nothing to score) when that replica is gone.
func (rt *Router) sendFeedback(ctx context.Context, replica, armURL string, body []byte,
	header http.Header) answer {
	if replica != "" {
		got := post(ctx, rt.Replicas, "http://"+replica+"/v2/feedback", body, header)
		if got.err == nil || !upstream.Unreachable(got.err) {
			return got
		}
		rt.Metrics.FeedbackFallback.Inc()
		slog.Debug("the replica did not take feedback; sending it to the arm", "replica", replica,
			"arm", armURL, "error", got.err.Error())
	}
	return post(ctx, rt.transport, armURL+"/v2/feedback", body, header)
}

func post(ctx context.Context, transport http.RoundTripper, target string, body []byte,
	header http.Header) answer {
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	if _, err := url.Parse(target); err != nil {
		return answer{err: err}
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	request.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	request.Header = header.Clone()
	response, err := transport.RoundTrip(request)
	if err != nil {
		return answer{err: err}
	}
	defer response.Body.Close()
	payload, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	return answer{status: response.StatusCode, header: response.Header, payload: payload, err: err}
}

// verdict of a single-row label's answer: correct | incorrect; "" for anything else.
func verdict(a answer) string {
	if a.status != http.StatusOK {
		return ""
	}
	var result map[string]any
	if json.Unmarshal(a.payload, &result) != nil {
		return ""
	}
	correct, _ := result["correct"].(float64)
	incorrect, _ := result["incorrect"].(float64)
	if correct+incorrect != 1 {
		return ""
	}
	if correct == 1 {
		return "correct"
	}
	return "incorrect"
}

// truthy is Python's truth of a JSON value (an id of 0, "", false or null is no id).
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case json.Number:
		f, _ := x.Float64()
		return f != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

func itoa(n int) string { return strconv.Itoa(n) }
