package sidecar

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/marks"
	"modelops.io/dataplane/internal/serve"
)

const maxFeedbackBody = 1 << 20

// feedback scores POST /v2/feedback {"id", "truth"} against the remembered prediction.
func (s *Sidecar) feedback(w http.ResponseWriter, r *http.Request, body []byte) {
	invalid := s.Metrics.Feedback["invalid"]
	if !s.FeedbackOn {
		invalid.Inc()
		serve.Error(w, http.StatusNotFound, "this model takes no feedback: its ModelDeployment's "+
			"spec.monitoring.feedback.enabled is false")
		return
	}
	if len(body) > maxFeedbackBody {
		invalid.Inc()
		serve.Error(w, http.StatusBadRequest,
			fmt.Sprintf("feedback body is larger than %d bytes", maxFeedbackBody))
		return
	}
	var document any
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.UseNumber()
	if decoder.Decode(&document) != nil || decoder.More() {
		invalid.Inc()
		serve.Error(w, http.StatusBadRequest, `feedback body must be JSON: {"id": ..., "truth": ...}`)
		return
	}
	if s.Receipts != nil {
		object, ok := document.(map[string]any)
		if !ok {
			invalid.Inc()
			serve.Error(w, http.StatusBadRequest, `feedback body must be a JSON object: {"receipt": ..., "truth": ...}`)
			return
		}
		s.feedbackWithReceipt(w, r, object)
		return
	}
	headerID, hasHeader := "", false
	if ids := r.Header.Values(marks.RequestIDField); len(ids) > 0 {
		headerID, hasHeader = ids[0], true
	}
	id, truth, problem := ParseFeedback(document, headerID, hasHeader)
	if problem != "" {
		invalid.Inc()
		serve.Error(w, http.StatusBadRequest, problem)
		return
	}
	s.CountMatured()
	prediction, madeAt, ok := s.Memory.Take(id)
	if !ok {
		s.Metrics.Feedback["unmatched"].Inc()
		serve.JSON(w, http.StatusNotFound, map[string]string{"id": id, "outcome": "unmatched",
			"error": "no remembered prediction for this id (unknown, already scored, or expired)"})
		return
	}
	score, err := feedback.ScoreLabel(prediction, truth, s.LossBound)
	if err != nil {
		invalid.Inc()
		serve.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.Maturing == nil {
		s.countScore(score)
	} else if !s.Maturing.Add(madeAt, score) {
		s.Metrics.Feedback["late"].Inc()
		serve.JSON(w, http.StatusOK, map[string]string{"id": id, "outcome": "late",
			"error": "the label came after the maturity window of " +
				strconv.FormatFloat(s.Maturing.Window.Seconds(), 'g', -1, 64) + " s; it is not counted"})
		return
	}
	writeScore(w, id, score)
}

func (s *Sidecar) countScore(score feedback.Score) {
	into, _ := score.Owner.(*Scored)
	if into == nil {
		into = &Scored{s.Metrics.Feedback, s.Metrics.AbsoluteError, s.Metrics.SquaredError}
	}
	into.Outcomes["correct"].Add(float64(score.Correct))
	into.Outcomes["incorrect"].Add(float64(score.Incorrect))
	into.Outcomes["scored"].Add(float64(score.Scored))
	into.AbsoluteError.Add(score.AbsoluteError)
	into.SquaredError.Add(score.SquaredError)
}

// CountMatured counts the held labels whose predictions reached the maturity window's age.
func (s *Sidecar) CountMatured() {
	if s.Maturing != nil {
		for _, score := range s.Maturing.Release() {
			s.countScore(score)
		}
	}
}

// ParseFeedback is the request id and true values of a feedback document, or an error message
// naming the field. The id comes from the body, else from X-Request-Id.
func ParseFeedback(document any, headerID string, hasHeader bool) (string, []any, string) {
	body, ok := document.(map[string]any)
	if !ok {
		return "", nil, `feedback body must be a JSON object: {"id": ..., "truth": ...}`
	}
	var rawID any = nil
	if value, present := body["id"]; present {
		rawID = value
	} else if hasHeader {
		rawID = headerID
	}
	id, ok := rawID.(string)
	if !ok || id == "" || utf8.RuneCountInString(id) > marks.MaxIDLength {
		return "", nil, "id: expected the request id (1-256 characters) from the response or X-Request-Id"
	}
	values, problem := parseTruth(body)
	if problem != "" {
		return "", nil, problem
	}
	return id, values, ""
}

// parseTruth is a label's true values: a scalar or a flat, non-empty list of scalars.
func parseTruth(body map[string]any) ([]any, string) {
	truth, present := body["truth"]
	if !present {
		return nil, "truth: missing; send the true value (or a list, one per row)"
	}
	values, isList := truth.([]any)
	if !isList {
		values = []any{truth}
	}
	if len(values) == 0 {
		return nil, "truth: expected a scalar or a flat, non-empty list of scalars"
	}
	for _, value := range values {
		switch value.(type) {
		case nil, []any, map[string]any:
			return nil, "truth: expected a scalar or a flat, non-empty list of scalars"
		}
	}
	return values, ""
}

func itoa(n int) string { return strconv.Itoa(n) }

// newUUID is a random (version 4) UUID, for answers that name no id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
