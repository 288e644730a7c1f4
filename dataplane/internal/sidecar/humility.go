package sidecar

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"modelops.io/dataplane/internal/humility"
)

// humilityCounters are the humility rules' series (bounded by the rules: at most
// humility.MaxRules of each, all created at start).
type humilityCounters struct {
	fired       []prometheus.Counter // per rule, labelled with its action
	unavailable []prometheus.Counter // per rule
	checked     prometheus.Counter
}

// SetHumility turns on rules (nil: none) and registers their series.
func (s *Sidecar) SetHumility(rules *humility.Rules) {
	s.Humility, s.humility = rules, nil
	if rules == nil {
		return
	}
	labels := s.Metrics.identity.labels()
	fired := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_humility_rows_total", Help: "Rows of answered first attempts on which a " +
			"humility rule fired, by rule and its action (flag, override, refuse).",
		ConstLabels: labels}, []string{"rule", "action"})
	unavailable := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_humility_unavailable_total", Help: "Answered first attempts on which a " +
			"humility rule could not be evaluated (no confidence output, or a request that does " +
			"not fit the profile), by rule.", ConstLabels: labels}, []string{"rule"})
	c := &humilityCounters{checked: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelops_humility_checked_rows_total", Help: "Rows of answered first attempts " +
			"the humility rules checked (at most 256 per request).", ConstLabels: labels})}
	for _, rule := range rules.List {
		c.fired = append(c.fired, fired.WithLabelValues(rule.Name, string(rule.Action)))
		c.unavailable = append(c.unavailable, unavailable.WithLabelValues(rule.Name))
	}
	s.Metrics.Registry.MustRegister(fired, unavailable, c.checked)
	s.humility = c
}

func (c *humilityCounters) count(outcome humility.Outcome) {
	c.checked.Add(float64(outcome.Checked))
	for i, n := range outcome.Fired {
		if n > 0 {
			c.fired[i].Add(float64(n))
		}
		if outcome.Unavailable[i] {
			c.unavailable[i].Inc()
		}
	}
}

// applyHumility evaluates the rules on a 200 answer (response, decoded from payload) and
// applies their actions to resp: the header; a refusal (422, V2 error body: the response
// becomes nil, nothing of it is recorded); or overridden prediction values (in response, the
// payload re-encoded). It returns the payload and response the client gets.
func (s *Sidecar) applyHumility(ex *exchange, resp *http.Response, payload []byte,
	response map[string]any) ([]byte, map[string]any, humility.Outcome) {
	request := humility.Request{}
	if s.Humility.NeedsInputs() {
		// Parsed once: Handle counts the inputs from these rows too.
		ex.rows, ex.rowsRead = s.Humility.Profile().Read(ex.body)
		ex.rowsParsed = true
		request = humility.Request{Rows: ex.rows, Read: ex.rowsRead}
	}
	prediction := s.predictionOutput(response)
	outcome := s.Humility.Evaluate(request, response, prediction)
	if outcome.Header != "" {
		resp.Header.Set(humility.Field, outcome.Header)
	}
	switch {
	case outcome.Refusal != "":
		// The body serve.Error writes.
		body, _ := json.Marshal(map[string]string{"error": outcome.Refusal})
		resp.StatusCode, resp.Status = http.StatusUnprocessableEntity, "422 Unprocessable Entity"
		resp.Header.Set("Content-Type", "application/json")
		resp.Header.Del("Content-Encoding")
		return body, nil, outcome
	case outcome.Overrides != nil && prediction != nil && humility.Apply(prediction, outcome.Overrides):
		var buffer bytes.Buffer
		encoder := json.NewEncoder(&buffer)
		encoder.SetEscapeHTML(false)
		if encoder.Encode(response) == nil {
			return bytes.TrimSuffix(buffer.Bytes(), []byte("\n")), response, outcome
		}
	}
	return payload, response, outcome
}
