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

	"modelops.io/dataplane/internal/marks"
	"modelops.io/dataplane/internal/serve"
	"modelops.io/dataplane/internal/upstream"
)

type answer struct {
	status  int
	header  http.Header
	payload []byte
	err     error
}

// feedback sends POST /v2/feedback to the arm that answered that request id (to the replica,
// when it said which), in shadow mode to both arms, and counts the pair's verdicts.
func (rt *Router) feedback(w http.ResponseWriter, r *http.Request, body []byte) {
	requestID := ""
	if object, ok := parseJSON(body).(map[string]any); ok {
		if id, ok := object["id"].(string); ok {
			requestID = id
		} else if truthy(object["id"]) {
			requestID = "\x00not a string" // an id that is no string: refused below
		}
	}
	if requestID == "" {
		requestID = r.Header.Get(marks.RequestIDField)
	}
	if requestID == "" || requestID == "\x00not a string" {
		rt.Metrics.CountFeedback("invalid")
		serve.Error(w, http.StatusBadRequest, `feedback body must be JSON {"id": ..., "truth": `+
			`...} (or send the id in X-Request-Id)`)
		return
	}
	answered, ok := rt.Memory.Take(requestID)
	if !ok {
		rt.Metrics.CountFeedback("unmatched")
		serve.JSON(w, http.StatusNotFound, map[string]string{"id": requestID, "outcome": "unmatched",
			"error": "this router has no record of the request id"})
		return
	}
	header := endToEnd(r.Header)
	header.Set(marks.RequestIDField, marks.HeaderValue(requestID))
	targets := [][2]string{{answered.Replica, answered.URL}}
	if answered.ShadowURL != "" {
		targets = append(targets, [2]string{answered.ShadowReplica, answered.ShadowURL})
	}
	answers := make([]answer, len(targets))
	var wg sync.WaitGroup
	for i, target := range targets {
		wg.Go(func() {
			answers[i] = rt.sendFeedback(r.Context(), target[0], target[1], body, header)
		})
	}
	wg.Wait()
	primary := answers[0]
	if primary.err != nil {
		rt.Metrics.CountFeedback("failed")
		serve.Error(w, http.StatusBadGateway, "the "+answered.Arm+" did not take the feedback")
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
