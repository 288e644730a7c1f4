package router

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"modelops.io/dataplane/internal/receipt"
)

var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Metrics of the router (label deployment); names, labels and types as the Python router's.
type Metrics struct {
	Registry         *prometheus.Registry
	requests         *prometheus.CounterVec
	retries          map[string]prometheus.Counter
	Duration         map[string]prometheus.Observer
	Mirror           map[string]prometheus.Counter // sent | dropped | failed
	Agreement        map[string]prometheus.Counter // agree | disagree | error
	paired           *prometheus.CounterVec
	feedback         *prometheus.CounterVec
	FeedbackFallback prometheus.Counter
	Refused          map[receipt.Failure]prometheus.Counter
	reloads          *prometheus.CounterVec
	weight, mirror   prometheus.Gauge
	shadowMode       prometheus.Gauge
	configInfo       *prometheus.GaugeVec
	WorkerRestarts   prometheus.Counter
	mu               sync.Mutex
	revision         *string
}

func NewMetrics(deployment string, queueDepth func() float64) *Metrics {
	dep := prometheus.Labels{"deployment": deployment}
	r := prometheus.NewRegistry()
	m := &Metrics{Registry: r}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: dep}, labels)
		r.MustRegister(vec)
		return vec
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: dep})
		r.MustRegister(g)
		return g
	}
	byLabel := func(vec *prometheus.CounterVec, values ...string) map[string]prometheus.Counter {
		out := map[string]prometheus.Counter{}
		for _, v := range values {
			out[v] = vec.WithLabelValues(v)
		}
		return out
	}
	m.requests = counterVec("modelops_router_requests_total",
		"Inference requests routed, by arm and status code.", "arm", "code")
	m.retries = byLabel(counterVec("modelops_router_retries_total",
		"Retries recognised: sent to the arm of the first attempt, marked so that its sidecar "+
			"does not count them again. Also in modelops_router_requests.", "arm"), Champion, Challenger)
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelops_router_request_duration_seconds", Help: "Latency of routed inference requests.",
		ConstLabels: dep, Buckets: latencyBuckets}, []string{"arm"})
	r.MustRegister(duration)
	m.Duration = map[string]prometheus.Observer{Champion: duration.WithLabelValues(Champion),
		Challenger: duration.WithLabelValues(Challenger)}
	m.Mirror = byLabel(counterVec("modelops_router_mirror_requests_total",
		"Shadow copies by outcome (dropped: queue full, never delaying the primary).", "outcome"),
		"sent", "dropped", "failed")
	m.Agreement = byLabel(counterVec("modelops_shadow_agreement_total",
		"Shadow pairs: did both arms give the same answer.", "outcome"), "agree", "disagree", "error")
	m.paired = counterVec("modelops_shadow_paired_feedback_total",
		"Single-row shadow pairs with feedback: each arm's correctness on the same request.",
		"champion", "challenger")
	m.feedback = counterVec("modelops_router_feedback_total", "Feedback requests by outcome.", "outcome")
	m.Refused = map[receipt.Failure]prometheus.Counter{}
	refused := counterVec("modelops_router_feedback_refused_total", "Labels refused for their "+
		"receipt before any arm saw them, by reason.", "reason")
	for _, reason := range receipt.Failures {
		m.Refused[reason] = refused.WithLabelValues(string(reason))
	}
	m.FeedbackFallback = counterVec("modelops_router_feedback_fallbacks_total",
		"Feedback sent to an arm's URL because the replica that answered was gone.").WithLabelValues()
	m.reloads = counterVec("modelops_router_config_reloads_total", "Configuration reloads by result.", "result")
	m.weight = gauge("modelops_router_challenger_weight_percent", "Live challenger weight (split mode).")
	m.mirror = gauge("modelops_router_mirror_percent", "Live mirror percentage (shadow mode).")
	m.shadowMode = gauge("modelops_router_shadow_mode", "1 when the router mirrors, 0 when it splits.")
	// Which configuration is live: the operator waits for the revision it wrote before it
	// removes an arm, because a mounted ConfigMap reaches the pod only after a delay.
	m.configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "modelops_router_config_info",
		Help: "1 for the revision of the live configuration.", ConstLabels: dep}, []string{"revision"})
	r.MustRegister(m.configInfo)
	// The paired shadow counter's zero point, for the operator's reset and new-pod rules.
	gauge("modelops_process_start_time_seconds",
		"When this process's counters started from zero (unix seconds).").Set(float64(time.Now().UnixNano()) / 1e9)
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "modelops_router_mirror_queue_depth",
		Help: "Shadow copies waiting to be sent.", ConstLabels: dep}, queueDepth))
	m.WorkerRestarts = counterVec("modelops_router_mirror_worker_restarts_total",
		"Shadow mirror workers restarted after a panic (each is recovered and counted).").WithLabelValues()
	return m
}

func (m *Metrics) CountRequest(arm string, code, attempt int) {
	m.requests.WithLabelValues(arm, strconv.Itoa(code)).Inc()
	if attempt > 1 {
		m.retries[arm].Inc()
	}
}

func (m *Metrics) CountPaired(champion, challenger string) {
	m.paired.WithLabelValues(champion, challenger).Inc()
}

func (m *Metrics) CountFeedback(outcome string) { m.feedback.WithLabelValues(outcome).Inc() }

func (m *Metrics) CountReload(ok bool) {
	result := "failure"
	if ok {
		result = "success"
	}
	m.reloads.WithLabelValues(result).Inc()
}

// ShowConfig sets the live-settings gauges.
func (m *Metrics) ShowConfig(live *Live) {
	m.mu.Lock()
	defer m.mu.Unlock()
	weight, mirror, shadow := live.ChallengerWeight, 0.0, 0.0
	if live.Mode == "shadow" {
		weight, mirror, shadow = 0, live.MirrorPercent, 1
	}
	m.weight.Set(weight)
	m.mirror.Set(mirror)
	m.shadowMode.Set(shadow)
	if m.revision == nil || *m.revision != live.Revision {
		if m.revision != nil {
			m.configInfo.DeleteLabelValues(*m.revision)
		}
		m.configInfo.WithLabelValues(live.Revision).Set(1)
		revision := live.Revision
		m.revision = &revision
	}
}
