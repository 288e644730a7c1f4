package sidecar

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/serve"
)

// receiptFor signs what an answer predicted, for its label to be scored by any replica later;
// "" when there is nothing to sign (no receipts, no prediction, more rows than a receipt
// carries, or no key active yet).
func (s *Sidecar) receiptFor(requestID, servedBy string, prediction feedback.Prediction,
	now time.Time) string {
	if len(prediction.Values) > receipt.MaxPredictionValues {
		return ""
	}
	key, ok := s.Receipts.Keys.Current(now).Signing(now)
	if !ok {
		return ""
	}
	values := make([]json.RawMessage, len(prediction.Values))
	for i, value := range prediction.Values {
		encoded, err := json.Marshal(value)
		if err != nil {
			return ""
		}
		values[i] = encoded
	}
	token, err := receipt.Sign(key, receipt.Receipt{
		Deployment: s.Identity.Deployment, Version: s.Identity.Version, Role: s.Identity.Role,
		RequestID: requestID, Issued: now.Unix(), Prediction: values,
		Classification: prediction.Classification, ServedBy: servedBy,
	})
	if err != nil {
		return ""
	}
	return token
}

// feedbackWithReceipt scores a label against the prediction its receipt carries: no stored
// state, so any replica scores it, after restarts, until the receipt is maxDelay old. A label
// without a valid receipt is refused and counted; it never consumes anything.
func (s *Sidecar) feedbackWithReceipt(w http.ResponseWriter, r *http.Request, body map[string]any) {
	token, present := receipt.TokenOf(body, r.Header)
	if !present {
		s.refuse(w, receipt.Missing)
		return
	}
	now := time.Now()
	verified, failure := s.Receipts.Check(token, now)
	if failure != "" {
		s.refuse(w, failure)
		return
	}
	if id, named := body["id"]; named && id != verified.RequestID {
		s.Metrics.Feedback["invalid"].Inc()
		serve.Error(w, http.StatusBadRequest, "id: not the request id of the receipt (leave it out, "+
			"or send the id the answer had)")
		return
	}
	truth, problem := parseTruth(body)
	if problem != "" {
		s.Metrics.Feedback["invalid"].Inc()
		serve.Error(w, http.StatusBadRequest, problem)
		return
	}
	prediction := feedback.Prediction{Values: verified.Values(), Classification: verified.Classification}
	madeAt := time.Unix(verified.Issued, 0)
	var owner *Scored // nil: this sidecar's own counters
	if verified.Version != s.Identity.Version {
		if own, at, ok := s.Memory.Take(verified.RequestID); ok {
			// Shadow mode: the router sends the champion's receipt to the challenger's replica
			// that answered the copy; the receipt proves the request and carries the label's
			// time, this arm's own answer to the same request is what it is scored against.
			prediction, madeAt = own, at
		} else {
			// A prediction of another version (a label that comes after a promotion or a
			// rollback, or that a Gateway's split sent to the other arm): scored against the
			// receipt, counted for the version and arm that made it.
			made := Identity{verified.Deployment, s.Identity.Model, verified.Version, verified.Role}
			var room bool
			if owner, room = s.Metrics.ScoredFor(made); !room {
				s.refuse(w, receipt.OtherVersion)
				return
			}
		}
	}
	score, err := feedback.ScoreLabel(prediction, truth, s.LossBound)
	if owner != nil {
		score.Owner = owner
	}
	if err != nil {
		s.Metrics.Feedback["invalid"].Inc()
		serve.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	first, evicted := s.Seen.FirstTime(verified, s.Receipts.MaxAge, now)
	s.Metrics.ReceiptsForgotten.Add(float64(evicted))
	if !first {
		s.refuse(w, receipt.Duplicate)
		return
	}
	s.CountMatured()
	if s.Maturing == nil {
		s.countScore(score)
	} else if !s.Maturing.Add(madeAt, score) {
		s.Metrics.Feedback["late"].Inc()
		serve.JSON(w, http.StatusOK, map[string]string{"id": verified.RequestID, "outcome": "late",
			"error": "the label came after the maturity window of " +
				strconv.FormatFloat(s.Maturing.Window.Seconds(), 'g', -1, 64) + " s; it is not counted"})
		return
	}
	writeScore(w, verified.RequestID, score)
}

func (s *Sidecar) refuse(w http.ResponseWriter, failure receipt.Failure) {
	s.Metrics.Refused[failure].Inc()
	s.Receipts.Refuse(w, failure)
}

func writeScore(w http.ResponseWriter, id string, score feedback.Score) {
	serve.JSON(w, http.StatusOK, struct {
		ID        string `json:"id"`
		Correct   int    `json:"correct"`
		Incorrect int    `json:"incorrect"`
		Scored    int    `json:"scored"`
	}{id, score.Correct, score.Incorrect, score.Scored})
}
