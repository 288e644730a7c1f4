// Package marks reads what a request says about itself: its X-Request-Id and whether it is a
// retry (our router's X-Modelops-Attempt, Envoy's x-envoy-attempt-count, gRPC's
// grpc-previous-rpc-attempts). Why retries are told apart: docs/gating.md and the
// retries section of docs/serving.md.
package marks

import (
	"net/http"
	"strings"
)

const (
	RequestIDField = "X-Request-Id"
	AttemptField   = "X-Modelops-Attempt"
	envoyAttempts  = "X-Envoy-Attempt-Count"
	grpcPrevious   = "Grpc-Previous-Rpc-Attempts"
	MaxAttempt     = 1000 // a marker is a count; a larger number says nothing more
	MaxIDLength    = 256
)

// Marks of one request.
type Marks struct {
	RequestID string // the last X-Request-Id ("" when none)
	Standard  int    // the attempt the standard markers state; 1 when none says retry
	Ours      int    // X-Modelops-Attempt's attempt; 0 when absent, 1 when unreadable
}

// Attempt is the attempt the sidecar takes the request for (it trusts ours: the router wrote it).
func (m Marks) Attempt() int { return max(m.Standard, m.Ours) }

// Read the marks of a request's headers.
func Read(header http.Header) Marks {
	m := Marks{Standard: 1}
	if ids := header.Values(RequestIDField); len(ids) > 0 {
		m.RequestID = strings.Trim(ids[len(ids)-1], " \t")
	}
	for _, value := range header.Values(AttemptField) {
		number, ok := count(value)
		if !ok {
			number = 1
		}
		m.Ours = max(m.Ours, max(number, 1))
	}
	for _, value := range header.Values(envoyAttempts) {
		if number, ok := count(value); ok {
			m.Standard = max(m.Standard, number)
		}
	}
	for _, value := range header.Values(grpcPrevious) { // counts the attempts before this one
		if number, ok := count(value); ok {
			m.Standard = max(m.Standard, number+1)
		}
	}
	return m
}

// count is a marker's number (ASCII digits only, any number of them), at most MaxAttempt.
func count(value string) (int, bool) {
	value = strings.Trim(value, " \t")
	if value == "" {
		return 0, false
	}
	number := 0
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		number = min(number*10+int(c-'0'), MaxAttempt)
	}
	return number, true
}

// CheckRequestIDs refuses ids a header cannot carry back safely or memory should not hold:
// at most 256 printable ASCII characters. "" when every X-Request-Id is acceptable.
func CheckRequestIDs(header http.Header) string {
	for _, value := range header.Values(RequestIDField) {
		value = strings.Trim(value, " \t")
		if len(value) > MaxIDLength {
			return "X-Request-Id: at most 256 printable ASCII characters"
		}
		for i := 0; i < len(value); i++ {
			if value[i] < 0x20 || value[i] > 0x7e {
				return "X-Request-Id: at most 256 printable ASCII characters"
			}
		}
	}
	return ""
}

// HeaderValue is an id as an X-Request-Id value: control characters (CR/LF injection) become
// spaces. An id from a model server's JSON can be any string.
func HeaderValue(id string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, id)
}
