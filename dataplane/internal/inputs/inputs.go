// Package inputs counts what a model is asked, feature by feature, in the bins of its training
// profile (`modelops profile`, docs/monitoring.md), so that the operator's drift monitors can
// compare live inputs with training ones from Prometheus.
//
// Series are bounded by the profile: at most MaxFeatures features of at most MaxBins bins, all
// created at start (a bin with no rows yet is a 0, so increase() works from the first scrape).
// A request's rows are counted up to MaxRowsPerRequest, so a huge batch costs bounded time.
package inputs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	MaxFeatures       = 50
	MaxBins           = 20
	MaxRowsPerRequest = 256
	// MaxProfileBytes: a profile of MaxFeatures x MaxBins is about 60 KB.
	MaxProfileBytes = 1 << 20
)

// Feature is one profiled input column: numeric (bins between Edges, a value goes to the first
// edge at or above it) or categorical (Categories, then one "other" bin).
type Feature struct {
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Edges      []float64 `json:"edges"`
	Categories []string  `json:"categories"`
	Shares     []float64 `json:"frequencies"`
	Min        *float64  `json:"min"`
	Max        *float64  `json:"max"`
	index      map[string]int
}

// Bins is how many bins the feature has.
func (f *Feature) Bins() int {
	if f.Type == "categorical" {
		return len(f.Categories) + 1
	}
	return len(f.Edges) + 1
}

// Profile is the part of a training profile the sidecar needs.
type Profile struct {
	Kind     string    `json:"kind"`
	Rows     float64   `json:"rows"`
	Features []Feature `json:"features"`
	Holdout  *Holdout  `json:"holdout"`
}

// Holdout is how the model did on the profile's labelled rows (accuracy or meanAbsoluteError).
type Holdout struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Rows   float64 `json:"rows"`
}

// Load reads and checks a profile file.
func Load(path string) (*Profile, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Size() > MaxProfileBytes {
		return nil, fmt.Errorf("%s: %d bytes; a profile is at most %d", path, info.Size(), MaxProfileBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data)
}

// Parse checks a profile document: its kind, feature count, bin counts and sorted edges.
func Parse(data []byte) (*Profile, error) {
	var p Profile
	decoder := json.NewDecoder(bytes.NewReader(data))
	if err := decoder.Decode(&p); err != nil {
		return nil, fmt.Errorf("not a profile: %w", err)
	}
	if p.Kind != "TrainingProfile" {
		return nil, fmt.Errorf("kind is %q, not TrainingProfile", p.Kind)
	}
	if len(p.Features) == 0 || len(p.Features) > MaxFeatures {
		return nil, fmt.Errorf("features: %d; a profile has 1 to %d", len(p.Features), MaxFeatures)
	}
	for i := range p.Features {
		f := &p.Features[i]
		switch f.Type {
		case "numeric":
			if !sort.Float64sAreSorted(f.Edges) {
				return nil, fmt.Errorf("features[%d] (%s): edges must increase", i, f.Name)
			}
		case "categorical":
			f.index = make(map[string]int, len(f.Categories))
			for j, c := range f.Categories {
				f.index[c] = j
			}
		default:
			return nil, fmt.Errorf("features[%d] (%s): type %q is neither numeric nor categorical", i, f.Name, f.Type)
		}
		if f.Bins() > MaxBins {
			return nil, fmt.Errorf("features[%d] (%s): %d bins; at most %d", i, f.Name, f.Bins(), MaxBins)
		}
		if f.Shares != nil && len(f.Shares) != f.Bins() {
			return nil, fmt.Errorf("features[%d] (%s): %d frequencies for %d bins", i, f.Name,
				len(f.Shares), f.Bins())
		}
	}
	return &p, nil
}

// Bin is the bin of a value; ok false for a missing one (null, empty, NaN) or one that does not
// fit the feature's type. outside is true for a numeric value beyond the profile's min..max.
func (f *Feature) Bin(value any) (bin int, outside bool, ok bool) {
	if f.Type == "categorical" {
		var text string
		switch v := value.(type) {
		case string:
			text = v
		case json.Number:
			text = v.String()
		case bool:
			text = strconv.FormatBool(v)
		default:
			return 0, false, false
		}
		if text == "" {
			return 0, false, false
		}
		if j, found := f.index[text]; found {
			return j, false, true
		}
		return len(f.Categories), false, true
	}
	var x float64
	switch v := value.(type) {
	case json.Number:
		parsed, err := v.Float64()
		if err != nil {
			return 0, false, false
		}
		x = parsed
	case float64:
		x = v
	case bool:
		if v {
			x = 1
		}
	default:
		return 0, false, false
	}
	if math.IsNaN(x) {
		return 0, false, false
	}
	outside = (f.Min != nil && x < *f.Min) || (f.Max != nil && x > *f.Max)
	return sort.SearchFloat64s(f.Edges, x), outside, true
}

// Counter is the input series of one sidecar.
type Counter struct {
	profile    *Profile
	bins       [][]prometheus.Counter
	outside    []prometheus.Counter
	missing    []prometheus.Counter
	rows       prometheus.Counter
	unreadable prometheus.Counter
}

// NewCounter registers the profile's series (labels: the sidecar's identity, feature, bin),
// and the profile itself as gauges (modelops_profile_*): the operator's monitors read the
// reference from the same verified file the sidecar counts against.
func NewCounter(p *Profile, labels prometheus.Labels, registry prometheus.Registerer) *Counter {
	binVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_input_bin_total", Help: "Input values per feature in the training " +
			"profile's bins (bin: 0-based index; categorical: the profile's categories, then other).",
		ConstLabels: labels}, []string{"feature", "bin"})
	outsideVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_input_out_of_range_total", Help: "Numeric input values outside the " +
			"training profile's min..max, per feature.", ConstLabels: labels}, []string{"feature"})
	missingVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelops_input_missing_total", Help: "Input values missing (null, NaN) or of the " +
			"wrong type, per feature.", ConstLabels: labels}, []string{"feature"})
	c := &Counter{profile: p}
	c.rows = prometheus.NewCounter(prometheus.CounterOpts{Name: "modelops_input_rows_total",
		Help: "Input rows counted against the training profile.", ConstLabels: labels})
	c.unreadable = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelops_input_unreadable_total", Help: "Answered inference requests whose " +
			"inputs did not match the profile's features (not counted in the bins).",
		ConstLabels: labels})
	for _, f := range p.Features {
		row := make([]prometheus.Counter, f.Bins())
		for b := range row {
			row[b] = binVec.WithLabelValues(f.Name, strconv.Itoa(b))
		}
		c.bins = append(c.bins, row)
		c.outside = append(c.outside, outsideVec.WithLabelValues(f.Name))
		c.missing = append(c.missing, missingVec.WithLabelValues(f.Name))
	}
	shareVec := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "modelops_profile_bin_share", Help: "Each bin's share of rows in the training " +
			"profile, per feature (the reference the drift monitor compares with).",
		ConstLabels: labels}, []string{"feature", "bin"})
	rows := prometheus.NewGauge(prometheus.GaugeOpts{Name: "modelops_profile_rows",
		Help: "Rows the training profile was built from.", ConstLabels: labels})
	rows.Set(p.Rows)
	for _, f := range p.Features {
		for b, share := range f.Shares {
			shareVec.WithLabelValues(f.Name, strconv.Itoa(b)).Set(share)
		}
	}
	registry.MustRegister(binVec, outsideVec, missingVec, c.rows, c.unreadable, shareVec, rows)
	if p.Holdout != nil && p.Holdout.Metric != "" {
		holdout := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "modelops_profile_holdout",
			Help: "The model's figure on the profile's labelled rows (metric: accuracy or " +
				"meanAbsoluteError), the accuracy monitor's reference.", ConstLabels: labels},
			[]string{"metric"})
		holdoutRows := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelops_profile_holdout_rows", Help: "Labelled rows behind modelops_profile_holdout.",
			ConstLabels: labels})
		holdout.WithLabelValues(p.Holdout.Metric).Set(p.Holdout.Value)
		holdoutRows.Set(p.Holdout.Rows)
		registry.MustRegister(holdout, holdoutRows)
	}
	return c
}

type tensor struct {
	Name  string          `json:"name"`
	Shape []int64         `json:"shape"`
	Data  json.RawMessage `json:"data"`
}

// Rows is a V2 inference request's values, feature by feature in the profile's order, for at
// most MaxRowsPerRequest rows (the rest of a larger batch is not read).
type Rows struct {
	N     int // rows read
	value func(feature, row int) any
}

// Value is feature's value (an index into the profile's features) in row (< N).
func (r Rows) Value(feature, row int) any { return r.value(feature, row) }

// Read reads a V2 inference request body against the profile: one tensor of shape
// [rows, features] whose columns are the profile's features in order, or one tensor per feature
// named as it. ok is false when the body is not such a request.
func (p *Profile) Read(body []byte) (Rows, bool) {
	var request struct {
		Inputs []tensor `json:"inputs"`
	}
	if json.Unmarshal(body, &request) != nil || len(request.Inputs) == 0 {
		return Rows{}, false
	}
	columns, rows, ok := p.columns(request.Inputs)
	if !ok {
		return Rows{}, false
	}
	return Rows{N: min(rows, MaxRowsPerRequest), value: columns}, true
}

// Observe counts the rows of a V2 inference request body (see Read).
func (c *Counter) Observe(body []byte) {
	rows, ok := c.profile.Read(body)
	c.Count(rows, ok)
}

// Count counts rows read by Read from this counter's profile (ok false: an unreadable request).
func (c *Counter) Count(rows Rows, ok bool) {
	if !ok {
		c.unreadable.Inc()
		return
	}
	for i := range c.profile.Features {
		feature := &c.profile.Features[i]
		for r := 0; r < rows.N; r++ {
			bin, outside, valid := feature.Bin(rows.Value(i, r))
			if !valid {
				c.missing[i].Inc()
				continue
			}
			c.bins[i][bin].Inc()
			if outside {
				c.outside[i].Inc()
			}
		}
	}
	c.rows.Add(float64(rows.N))
}

// columns maps (feature, row) to the request's value; ok false when the shapes do not fit.
func (p *Profile) columns(inputs []tensor) (func(feature, row int) any, int, bool) {
	features := len(p.Features)
	if len(inputs) == 1 {
		values, ok := flat(inputs[0].Data, MaxRowsPerRequest*features)
		if !ok || len(values) == 0 || len(values)%features != 0 {
			return nil, 0, false
		}
		if shape := inputs[0].Shape; len(shape) == 2 && shape[1] != int64(features) {
			return nil, 0, false
		}
		return func(f, r int) any { return values[r*features+f] }, len(values) / features, true
	}
	byName := make(map[string][]any, len(inputs))
	for _, in := range inputs {
		values, ok := flat(in.Data, MaxRowsPerRequest)
		if !ok {
			return nil, 0, false
		}
		byName[in.Name] = values
	}
	rows := -1
	ordered := make([][]any, features)
	for i, f := range p.Features {
		values, found := byName[f.Name]
		if !found || (rows >= 0 && len(values) != rows) {
			return nil, 0, false
		}
		rows, ordered[i] = len(values), values
	}
	return func(f, r int) any { return ordered[f][r] }, rows, true
}

// flat is a tensor's data, nested lists flattened, at most limit values (the rest ignored).
func flat(raw json.RawMessage, limit int) ([]any, bool) {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.UseNumber()
	var data any
	if decoder.Decode(&data) != nil {
		return nil, false
	}
	out := make([]any, 0, 16)
	var walk func(v any, depth int) bool
	walk = func(v any, depth int) bool {
		if depth > 8 {
			return false
		}
		list, isList := v.([]any)
		if !isList {
			if len(out) < limit {
				out = append(out, v)
			}
			return true
		}
		for _, item := range list {
			if len(out) >= limit {
				return true
			}
			if !walk(item, depth+1) {
				return false
			}
		}
		return true
	}
	return out, walk(data, 0)
}
