package receipt

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"modelops.io/dataplane/internal/serve"
)

// Field is the response header that carries a prediction's receipt, and the request header a
// label may carry it in instead of the body's "receipt".
const Field = "X-Modelops-Receipt"

// Checker verifies the receipts fed back to one deployment's proxies: the sidecar that scores
// a label and the router that sends it to the arm and replica the receipt names.
type Checker struct {
	Keys       *RingFile
	MaxAge     time.Duration // spec.monitoring.feedback.maxDelay
	Deployment string
}

// Check verifies token at now against the ring in force.
func (c *Checker) Check(token string, now time.Time) (Verified, Failure) {
	return Verify(c.Keys.Current(now), token, now, c.MaxAge, c.Deployment)
}

// Refuse answers a label refused for failure: its status, and {"outcome": "refused", "reason",
// "error"}, the same from the router and the sidecar. The caller counts it.
func (c *Checker) Refuse(w http.ResponseWriter, failure Failure) {
	serve.JSON(w, failure.Status(), map[string]string{"outcome": "refused",
		"reason": string(failure), "error": failure.Message(c.MaxAge)})
}

// TokenOf is the receipt a label presents: the body's "receipt", else the X-Modelops-Receipt
// header. present is false when it has none; a "receipt" that is not a string is present but
// empty, so that it is refused as malformed rather than taken for a label without one.
func TokenOf(body map[string]any, header http.Header) (token string, present bool) {
	if value, found := body["receipt"]; found {
		text, _ := value.(string)
		return text, true
	}
	if values := header.Values(Field); len(values) > 0 {
		return values[0], true
	}
	return "", false
}

// Status is the HTTP status a refused receipt is answered with.
func (f Failure) Status() int {
	switch f {
	case Expired:
		return http.StatusGone
	case UnknownKey, BadSignature, OtherDeployment:
		return http.StatusForbidden
	case Duplicate, OtherVersion:
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// Message says what was wrong, for the client.
func (f Failure) Message(maxAge time.Duration) string {
	switch f {
	case UnknownKey:
		return "receipt: signed with a key this deployment does not have (forged, or older than its keys)"
	case BadSignature:
		return "receipt: the signature does not match (altered or forged)"
	case Expired:
		return "receipt: older than spec.monitoring.feedback.maxDelay (" + maxAge.String() + "); the label is not counted"
	case FromTheFuture:
		return "receipt: issued in the future"
	case OtherDeployment:
		return "receipt: issued by another ModelDeployment"
	case Missing:
		return "receipt: missing; send the answer's X-Modelops-Receipt with the label " +
			"(body \"receipt\" or the same header)"
	case Duplicate:
		return "receipt: this prediction's label was counted already; each prediction counts once"
	case OtherVersion:
		return "receipt: issued by more other model versions than this sidecar counts labels for"
	}
	return "receipt: not a receipt of this data plane (send the X-Modelops-Receipt value of the answer unchanged)"
}

// Values is the receipt's prediction as the scorer reads it (numbers kept as written).
func (r Receipt) Values() []any {
	values := make([]any, 0, len(r.Prediction))
	for _, raw := range r.Prediction {
		var value any
		decoder := json.NewDecoder(bytes.NewReader(raw))
		decoder.UseNumber()
		if decoder.Decode(&value) != nil {
			value = nil
		}
		values = append(values, value)
	}
	return values
}

// Refusals the proxies find beyond the token itself.
const (
	Missing      Failure = "missing"       // a label without a receipt, where receipts are required
	Duplicate    Failure = "duplicate"     // this replica scored that receipt already
	OtherVersion Failure = "other_version" // one version too many to count labels for here
)

// Failures are every reason a label is refused for, each a series of the refusal counters.
var Failures = []Failure{Missing, Malformed, UnknownKey, BadSignature, Expired, FromTheFuture,
	OtherDeployment, Duplicate, OtherVersion}
