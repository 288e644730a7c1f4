package sidecar

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/receipt"
)

// The names, labels and types the operator's gates and promsource read; identical to the
// Python sidecar's (serving/modelops_serving/metrics.py, which tests compare with).
var (
	DefaultLatencyBuckets    = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	DefaultPredictionBuckets = []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}
	FeedbackOutcomes         = []string{"correct", "incorrect", "scored", "unmatched", "invalid", "late"}
)

// MaxObservedValues per response, so that a huge batch costs bounded time.
const MaxObservedValues = 1024

// Identity labels every series carries.
type Identity struct{ Deployment, Model, Version, Role string }

// labels are the constant labels of every series about this identity.
func (id Identity) labels() prometheus.Labels {
	return prometheus.Labels{"deployment": id.Deployment, "model": id.Model,
		"version": id.Version, "role": id.Role}
}

type Metrics struct {
	Registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	retries       *prometheus.CounterVec
	Duration      prometheus.Observer
	Prediction    prometheus.Observer
	Feedback      map[string]prometheus.Counter
	AbsoluteError prometheus.Counter
	SquaredError  prometheus.Counter
	// Labels refused for their receipt, by reason; receipts forgotten by a full duplicate check.
	Refused           map[receipt.Failure]prometheus.Counter
	ReceiptsForgotten prometheus.Counter
	byCode, retry     sync.Map // status code -> prometheus.Counter
	identity          Identity
	mu                sync.Mutex
	foreign           map[Identity]*Scored // labels of other versions' predictions, by their identity
}

// Scored is where the labels of one identity's predictions are counted.
type Scored struct {
	Outcomes      map[string]prometheus.Counter
	AbsoluteError prometheus.Counter
	SquaredError  prometheus.Counter
}

// MaxForeignIdentities bounds the other versions and roles a sidecar counts labels for (each is
// a few series; receipts are signed, so only versions of this deployment can appear).
const MaxForeignIdentities = 8

func newScored(labels prometheus.Labels) (*Scored, []prometheus.Collector) {
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_feedback_total", Help: "Feedback rows by outcome (correct/incorrect for " +
			"classifiers, scored for regressors, unmatched, invalid).", ConstLabels: labels},
		[]string{"outcome"})
	scored := &Scored{Outcomes: map[string]prometheus.Counter{}}
	for _, outcome := range FeedbackOutcomes {
		scored.Outcomes[outcome] = outcomes.WithLabelValues(outcome)
	}
	scored.AbsoluteError = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelops_feedback_absolute_error_total",
		Help: "Sum of |truth - prediction| over scored regression feedback rows.", ConstLabels: labels})
	scored.SquaredError = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelops_feedback_squared_error_total",
		Help: "Sum of (truth - prediction)^2 over scored regression feedback rows.", ConstLabels: labels})
	return scored, []prometheus.Collector{outcomes, scored.AbsoluteError, scored.SquaredError}
}

// startGauge says when counters with these labels started from zero: the operator tells a
// restart (a reset) from a lagging Prometheus answer, and a new pod from one whose history was
// lost.
func startGauge(labels prometheus.Labels) prometheus.Gauge {
	start := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelops_process_start_time_seconds",
		Help: "When this process's counters started from zero (unix seconds).", ConstLabels: labels})
	start.Set(float64(time.Now().UnixNano()) / 1e9)
	return start
}

// ScoredFor is where labels of predictions made by id are counted: nil for this sidecar's own
// counters, else series labelled with id (with their own start time, so that the operator
// counts them from their first label), created at the first such label. ok is false beyond
// MaxForeignIdentities.
func (m *Metrics) ScoredFor(id Identity) (*Scored, bool) {
	if id == m.identity {
		return nil, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if found, ok := m.foreign[id]; ok {
		return found, true
	}
	if len(m.foreign) >= MaxForeignIdentities {
		return nil, false
	}
	labels := id.labels()
	scored, collectors := newScored(labels)
	m.Registry.MustRegister(append(collectors, startGauge(labels))...)
	m.foreign[id] = scored
	return scored, true
}

func NewMetrics(id Identity, predictionBuckets, latencyBuckets []float64, memory feedback.Memory) *Metrics {
	labels := id.labels()
	registry := prometheus.NewRegistry()
	m := &Metrics{Registry: registry}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_requests_total", Help: "Inference requests answered, by HTTP status code.",
		ConstLabels: labels}, []string{"code"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "modelops_request_duration_seconds", Help: "Inference request latency seen by the sidecar.",
		ConstLabels: labels, Buckets: latencyBuckets})
	prediction := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "modelops_prediction_value",
		Help:        "Predicted values (class label or score) of successful inference responses.",
		ConstLabels: labels, Buckets: predictionBuckets})
	own, scoredCollectors := newScored(labels)
	m.Feedback, m.AbsoluteError, m.SquaredError = own.Outcomes, own.AbsoluteError, own.SquaredError
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "modelops_feedback_store_entries", Help: "Predictions remembered for feedback.",
		ConstLabels: labels}, func() float64 { return float64(memory.Len()) })
	evictions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "modelops_feedback_store_evictions_total",
		Help:        "Predictions dropped from the full store before their feedback arrived.",
		ConstLabels: labels}, func() float64 { return float64(memory.Evicted()) })
	start := startGauge(labels)
	// Retries are counted here, not in the series above: the gates read those as independent
	// requests, which a retry of one is not.
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_retries_total", Help: "Retried inference requests answered (marked by the " +
			"router or a standard attempt header, or a repeated X-Request-Id), by HTTP status " +
			"code; not in modelops_requests, its latency or its predictions.", ConstLabels: labels},
		[]string{"code"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_feedback_refused_total", Help: "Labels refused for their receipt " +
			"(missing, malformed, forged, unknown_key, expired, future, other_deployment, " +
			"duplicate, other_version); none of them was counted.", ConstLabels: labels},
		[]string{"reason"})
	m.Refused = map[receipt.Failure]prometheus.Counter{}
	for _, reason := range receipt.Failures {
		m.Refused[reason] = refused.WithLabelValues(string(reason))
	}
	m.ReceiptsForgotten = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelops_feedback_receipts_forgotten_total", Help: "Scored receipts the " +
			"duplicate check forgot before they expired, to stay within its capacity (a replay " +
			"of one of them would count again).", ConstLabels: labels})
	registry.MustRegister(m.requests, duration, prediction, entries, evictions, start, m.retries,
		refused, m.ReceiptsForgotten)
	registry.MustRegister(scoredCollectors...)
	m.identity, m.foreign = id, map[Identity]*Scored{}
	m.Duration, m.Prediction = duration, prediction
	return m
}

func child(cache *sync.Map, vec *prometheus.CounterVec, code int) prometheus.Counter {
	if found, ok := cache.Load(code); ok {
		return found.(prometheus.Counter)
	}
	counter := vec.WithLabelValues(strconv.Itoa(code))
	cache.Store(code, counter)
	return counter
}

func (m *Metrics) CountRequest(code int) { child(&m.byCode, m.requests, code).Inc() }
func (m *Metrics) CountRetry(code int)   { child(&m.retry, m.retries, code).Inc() }

// ObservePredictions puts the first MaxObservedValues numeric values in the histogram.
func (m *Metrics) ObservePredictions(values []any) {
	for _, value := range values[:min(len(values), MaxObservedValues)] {
		if number, ok := feedback.Observable(value); ok {
			m.Prediction.Observe(number)
		}
	}
}
