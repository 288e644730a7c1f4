package sidecar

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"modelops.io/dataplane/internal/cli"
	"modelops.io/dataplane/internal/feedback"
	"modelops.io/dataplane/internal/humility"
	"modelops.io/dataplane/internal/inputs"
	"modelops.io/dataplane/internal/promtext"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/serve"
	"modelops.io/dataplane/internal/upstream"
)

// Main runs modelops-sidecar with args (without the program name); the exit status.
func Main(args []string) int {
	f := cli.New("modelops-sidecar")
	upstreamURL := f.String("upstream", "http://127.0.0.1:8080", "model server URL (http://, normally in the same pod)")
	upstreamTimeout := f.Float("upstream-timeout", 120, "seconds to wait for the model server's answer")
	host := f.String("host", "0.0.0.0", "address to listen on")
	port := f.Int("port", 8000, "traffic port")
	metricsPort := f.Int("metrics-port", 9090, "port of /metrics")
	deployment := f.String("deployment", "", "ModelDeployment name (metric label)")
	model := f.Required("model", "model name (metric label)")
	version := f.Required("version", "model version (metric label)")
	role := f.Choice("role", "", "role of this model (metric label)", "champion", "challenger", "shadow")
	predictionBuckets := f.String("prediction-buckets", "", "comma list of histogram buckets")
	latencyBuckets := f.String("latency-buckets", "", "comma list of latency buckets in seconds")
	predictionOutput := f.String("prediction-output", "", "output whose values are recorded (default: first)")
	task := f.Choice("task", "auto", "how feedback is scored (auto: integer/string outputs are classes)",
		"auto", "classification", "regression")
	feedbackOn := f.Choice("feedback", "on", "off: POST /v2/feedback is refused (404)", "on", "off")
	capacity := f.Int("feedback-capacity", 50_000, "predictions remembered for feedback")
	ttl := f.Float("feedback-ttl", 3600, "seconds a prediction waits for its feedback")
	maturity := f.Float("label-maturity", 0, "count a label when its prediction is this many "+
		"seconds old, and drop later ones (0: count at arrival); at most --feedback-ttl")
	lossBound := f.String("loss-bound", "", "regression: the largest absolute error one label counts for")
	retryWindow := f.Float("retry-window", 60, "seconds after this sidecar answered an X-Request-Id "+
		"in which another request with it is a retry (counted in modelops_retries_total only)")
	receiptKeys := f.String("receipt-keys-file", "", "the deployment's receipt key ring "+
		"(JSON, re-read when it changes): answers carry a signed X-Modelops-Receipt and a label "+
		"counts only with a valid one; without it labels name a request id this replica remembers")
	maxDelay := f.Float("feedback-max-delay", 7*86400, "seconds after its prediction a receipt "+
		"is accepted (spec.monitoring.feedback.maxDelay)")
	seenCapacity := f.Int("receipt-seen-capacity", 200_000, "scored receipts remembered so "+
		"that a label sent twice counts once")
	profileFile := f.String("profile-file", "", "the model version's training profile (JSON from "+
		"`modelops profile`): inputs are counted in its bins (modelops_input_* series)")
	humilityRules := f.String("humility-rules", "", "per-prediction humility rules (JSON "+
		`{"rules": [{"name", "when": {"outlyingInput": {"features": [...]}} or `+
		`{"confidenceBelow", "confidenceOutput"}, "action": flag|override|refuse, "overrideValue"}]}`+
		"; empty: none); outlyingInput needs --profile-file")
	_ = f.String("log-level", "INFO", "logging level")
	limits := serve.AddLimitFlags(f)
	setProcs := serve.AddProcsFlag(f, 1)
	if err := f.Parse(args); err != nil {
		return cli.ParseFailed(err)
	}
	if err := setProcs(); err != nil {
		return cli.Fail(err)
	}
	target, err := parseUpstream(*upstreamURL)
	if err != nil {
		return cli.Fail(err)
	}
	predictionBounds, err := ParseBuckets(*predictionBuckets, DefaultPredictionBuckets, "--prediction-buckets")
	if err != nil {
		return cli.Fail(err)
	}
	latencyBounds, err := ParseBuckets(*latencyBuckets, DefaultLatencyBuckets, "--latency-buckets")
	if err != nil {
		return cli.Fail(err)
	}
	if *capacity < 1 || *ttl <= 0 {
		return cli.Fail(fmt.Errorf("--feedback-capacity must be >= 1 and --feedback-ttl > 0"))
	}
	if *maturity > *ttl {
		return cli.Fail(fmt.Errorf("--label-maturity (%g s) must not exceed --feedback-ttl (%g s): "+
			"a prediction would be forgotten before its label counts", *maturity, *ttl))
	}
	bound := 0.0
	if *lossBound != "" {
		bound, err = strconv.ParseFloat(*lossBound, 64)
		if err != nil || !(bound > 0 && !math.IsInf(bound, 1)) {
			return cli.Fail(fmt.Errorf("--loss-bound (%s) must be a positive finite number", *lossBound))
		}
	}
	memory := feedback.NewStore(int(*capacity), cli.Seconds(*ttl), nil)
	lim := limits()
	s := &Sidecar{
		Upstream: target, Timeout: cli.Seconds(*upstreamTimeout), Memory: memory,
		Metrics: NewMetrics(Identity{*deployment, *model, *version, *role}, predictionBounds,
			latencyBounds, memory),
		Task: *task, PredictionOutput: *predictionOutput, FeedbackOn: *feedbackOn == "on",
		LossBound: bound, Identity: Identity{*deployment, *model, *version, *role}, RetryWindow: cli.Seconds(*retryWindow), MaxAnswerBytes: 4 * lim.MaxBodyBytes,
	}
	if *receiptKeys != "" {
		if *maxDelay <= 0 || *seenCapacity < 1 {
			return cli.Fail(fmt.Errorf("--feedback-max-delay must be > 0 and --receipt-seen-capacity >= 1"))
		}
		ring, err := receipt.OpenRingFile(*receiptKeys, ringRecheck)
		if err != nil {
			return cli.Fail(fmt.Errorf("--receipt-keys-file: %w", err))
		}
		s.Receipts = &receipt.Checker{Keys: ring, MaxAge: cli.Seconds(*maxDelay), Deployment: *deployment}
		s.Seen = receipt.NewSeen(int(*seenCapacity))
	}
	var profile *inputs.Profile
	if *profileFile != "" {
		profile, err = inputs.Load(*profileFile)
		if err != nil {
			return cli.Fail(fmt.Errorf("--profile-file: %w", err))
		}
		s.Inputs = inputs.NewCounter(profile, s.Metrics.identity.labels(), s.Metrics.Registry)
	}
	rules, err := humility.Parse(*humilityRules, profile)
	if err != nil {
		return cli.Fail(fmt.Errorf("--humility-rules: %w", err))
	}
	s.SetHumility(rules)
	if *maturity > 0 {
		s.Maturing = feedback.NewMaturing(cli.Seconds(*maturity), nil)
	}
	s.Init(upstream.New(10 * time.Second))
	program := &serve.Program{
		Name: "modelops-sidecar", Host: *host, Port: int(*port), MetricsPort: int(*metricsPort),
		Limits: lim, Traffic: s.Handle,
		Metrics: promtext.Handler(s.Metrics.Registry, s.CountMatured),
	}
	if err := program.Run(); err != nil {
		return cli.Fail(err)
	}
	return 0
}

// ringRecheck: how often the key ring's file is looked at (a stat; read only when it changed).
const ringRecheck = 10 * time.Second

func parseUpstream(raw string) (*url.URL, error) {
	target, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" ||
		target.RawQuery != "" || target.Fragment != "" {
		return nil, fmt.Errorf("--upstream: expected an http:// URL with a host, got %q", raw)
	}
	return target, nil
}

// ParseBuckets reads a comma list of distinct increasing numbers; fallback when empty.
func ParseBuckets(text string, fallback []float64, flag string) ([]float64, error) {
	if strings.TrimSpace(text) == "" {
		return fallback, nil
	}
	var values []float64
	for _, part := range strings.Split(text, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		value, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: expected comma-separated numbers, got '%s'", flag, text)
		}
		values = append(values, value)
	}
	if len(values) == 0 || !slices.IsSorted(values) || slices.ContainsFunc(values, math.IsNaN) ||
		len(slices.Compact(slices.Clone(values))) != len(values) {
		return nil, fmt.Errorf("%s: buckets must be distinct numbers in increasing order", flag)
	}
	return values, nil
}
