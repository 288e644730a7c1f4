// Package humility is modelops-sidecar's per-prediction humility rules: on a row whose input
// lies outside the training profile, or whose answer is not confident enough, an action —
// flag the answer (a header), override the row's prediction, or refuse the request.
//
// Rules come from --humility-rules (JSON, see Parse); Evaluate is pure: the sidecar gives it
// the request's rows and the decoded answer and applies what it returns.
package humility

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"modelops.io/dataplane/internal/inputs"
)

// Field is the answer header naming the rules that fired.
const Field = "X-Modelops-Humility"

const (
	MaxRules = 16
	// MaxRows per answer are checked, as many as the input counters read
	// (inputs.MaxRowsPerRequest): rows beyond it are neither checked nor counted, so no rule
	// fires on them.
	MaxRows = inputs.MaxRowsPerRequest
	// DefaultConfidenceOutput is the output a confidence rule reads unless it names another.
	DefaultConfidenceOutput = "predict_proba"
	// maxClasses bounds a confidence tensor's second dimension (a larger one is unavailable).
	maxClasses = 1 << 16
	// maxReasonValue bounds how much of a client's value a refusal quotes.
	maxReasonValue = 64
)

// Action is what a rule does when it fires.
type Action string

const (
	Flag     Action = "flag"
	Override Action = "override"
	Refuse   Action = "refuse"
)

// Actions in the order of their metric series.
var Actions = []Action{Flag, Override, Refuse}

// Rule is one checked rule.
type Rule struct {
	Name   string
	Action Action
	// OverrideValue replaces a fired row's prediction (Override only): a JSON scalar, numbers
	// as json.Number.
	OverrideValue any
	// Outlying: an outlying-input rule over Features (indices into the profile's features).
	Outlying bool
	Features []int
	// ConfidenceBelow > 0: a confidence rule on the output ConfidenceOutput.
	ConfidenceBelow  float64
	ConfidenceOutput string
}

// Rules is a validated rule list and the profile its outlying-input rules read.
type Rules struct {
	List    []Rule
	profile *inputs.Profile
}

// NeedsInputs: some rule reads the request's rows (the request body must be parsed).
func (rs *Rules) NeedsInputs() bool {
	for _, rule := range rs.List {
		if rule.Outlying {
			return true
		}
	}
	return false
}

// Profile is the training profile the request's rows are read against (nil without
// outlying-input rules).
func (rs *Rules) Profile() *inputs.Profile { return rs.profile }

type document struct {
	Rules []struct {
		Name string `json:"name"`
		When struct {
			OutlyingInput *struct {
				Features []string `json:"features"`
			} `json:"outlyingInput"`
			ConfidenceBelow  *float64 `json:"confidenceBelow"`
			ConfidenceOutput *string  `json:"confidenceOutput"`
		} `json:"when"`
		Action        string          `json:"action"`
		OverrideValue json.RawMessage `json:"overrideValue"`
	} `json:"rules"`
}

var namePattern = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// Parse reads and validates the --humility-rules text against profile (nil: no
// --profile-file). Empty text is no rules (nil, nil).
func Parse(text string, profile *inputs.Profile) (*Rules, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	var doc document
	decoder := json.NewDecoder(strings.NewReader(text))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&doc); err != nil {
		return nil, fmt.Errorf(`not a rule document {"rules": [...]}: %v`, err)
	}
	if decoder.More() {
		return nil, errors.New(`not a rule document {"rules": [...]}: text after it`)
	}
	if len(doc.Rules) > MaxRules {
		return nil, fmt.Errorf("%d rules; at most %d", len(doc.Rules), MaxRules)
	}
	rules := &Rules{}
	seen := map[string]bool{}
	for i, raw := range doc.Rules {
		where := fmt.Sprintf("rules[%d] (%s)", i, raw.Name)
		if !namePattern.MatchString(raw.Name) {
			return nil, fmt.Errorf("rules[%d]: name %q must be 1 to 63 characters of a-z, 0-9 and -",
				i, raw.Name)
		}
		if seen[raw.Name] {
			return nil, fmt.Errorf("%s: name used by an earlier rule; names must be unique", where)
		}
		seen[raw.Name] = true
		rule := Rule{Name: raw.Name, Action: Action(raw.Action)}
		when := raw.When
		conditions := 0
		if when.OutlyingInput != nil {
			conditions++
		}
		if when.ConfidenceBelow != nil {
			conditions++
		}
		if conditions != 1 {
			return nil, fmt.Errorf("%s: when: needs exactly one condition, outlyingInput or "+
				"confidenceBelow; it has %d", where, conditions)
		}
		if when.ConfidenceOutput != nil && when.ConfidenceBelow == nil {
			return nil, fmt.Errorf("%s: when.confidenceOutput: only with confidenceBelow", where)
		}
		if when.OutlyingInput != nil {
			if profile == nil {
				return nil, fmt.Errorf("%s: when.outlyingInput needs --profile-file (the training "+
					"profile that says what is outlying)", where)
			}
			rule.Outlying = true
			rule.Features = make([]int, 0, len(profile.Features))
			if len(when.OutlyingInput.Features) == 0 {
				for f := range profile.Features {
					rule.Features = append(rule.Features, f)
				}
			}
			named := map[string]bool{}
			for _, name := range when.OutlyingInput.Features {
				index := featureIndex(profile, name)
				if index < 0 {
					return nil, fmt.Errorf("%s: when.outlyingInput.features: %q is not a feature "+
						"of the profile", where, name)
				}
				if named[name] {
					return nil, fmt.Errorf("%s: when.outlyingInput.features: %q named twice", where, name)
				}
				named[name] = true
				rule.Features = append(rule.Features, index)
			}
			rules.profile = profile
		} else {
			below := *when.ConfidenceBelow
			if !(below > 0 && below <= 1) {
				return nil, fmt.Errorf("%s: when.confidenceBelow (%g) must be > 0 and <= 1", where, below)
			}
			rule.ConfidenceBelow = below
			rule.ConfidenceOutput = DefaultConfidenceOutput
			if when.ConfidenceOutput != nil {
				if *when.ConfidenceOutput == "" {
					return nil, fmt.Errorf("%s: when.confidenceOutput: empty", where)
				}
				rule.ConfidenceOutput = *when.ConfidenceOutput
			}
		}
		present := len(raw.OverrideValue) > 0 && string(raw.OverrideValue) != "null"
		switch rule.Action {
		case Override:
			if !present {
				return nil, fmt.Errorf("%s: action override needs overrideValue", where)
			}
			value, ok := scalar(raw.OverrideValue)
			if !ok {
				return nil, fmt.Errorf("%s: overrideValue must be a JSON number, string or boolean", where)
			}
			rule.OverrideValue = value
		case Flag, Refuse:
			if len(raw.OverrideValue) > 0 {
				return nil, fmt.Errorf("%s: overrideValue is only for action override", where)
			}
		default:
			return nil, fmt.Errorf("%s: action %q is not flag, override or refuse", where, raw.Action)
		}
		rules.List = append(rules.List, rule)
	}
	if len(rules.List) == 0 {
		return nil, nil
	}
	return rules, nil
}

func featureIndex(profile *inputs.Profile, name string) int {
	for i := range profile.Features {
		if profile.Features[i].Name == name {
			return i
		}
	}
	return -1
}

func scalar(raw json.RawMessage) (any, bool) {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.UseNumber()
	var value any
	if decoder.Decode(&value) != nil {
		return nil, false
	}
	switch value.(type) {
	case json.Number, string, bool:
		return value, true
	}
	return nil, false
}

// Request is what Evaluate knows of the request: its rows against the profile (Read false when
// the body did not fit it; only looked at with outlying-input rules).
type Request struct {
	Rows inputs.Rows
	Read bool
}

// Outcome is what the rules made of one answer.
type Outcome struct {
	Checked     int   // rows checked (at most MaxRows)
	Fired       []int // per rule: rows it fired on
	Unavailable []bool
	// Header is the names of the rules that fired, in rule order, comma-separated ("" if none).
	Header string
	// Refusal is the message of the first refused row ("" when no refuse rule fired).
	Refusal string
	// Overrides: row -> the value its prediction is replaced with (when not refused).
	Overrides map[int]any
}

// Evaluate checks the rows of one answer (response: the decoded V2 answer, numbers as
// json.Number; prediction: its output whose values the sidecar records, nil if none). The
// rows are those of the request or of the answer's outputs, whichever has more, at most
// MaxRows; a rule that cannot read its data for the answer fires on no row and is Unavailable.
func (rs *Rules) Evaluate(request Request, response, prediction map[string]any) Outcome {
	out := Outcome{Fired: make([]int, len(rs.List)), Unavailable: make([]bool, len(rs.List))}
	rows := 0
	if rs.NeedsInputs() && request.Read {
		rows = request.Rows.N
	}
	if prediction != nil {
		rows = max(rows, outputRows(prediction))
	}
	confidences := map[string][]float64{} // output name -> confidence per row (NaN: unknown)
	for i, rule := range rs.List {
		switch {
		case rule.Outlying && !request.Read:
			out.Unavailable[i] = true
		case !rule.Outlying:
			if _, done := confidences[rule.ConfidenceOutput]; !done {
				confidences[rule.ConfidenceOutput] = confidenceOf(response, rule.ConfidenceOutput)
			}
			values := confidences[rule.ConfidenceOutput]
			if values == nil {
				out.Unavailable[i] = true
			}
			rows = max(rows, len(values))
		}
	}
	out.Checked = min(rows, MaxRows)
	fired := make([]bool, len(rs.List))
	refusedRow := -1
	for r := 0; r < out.Checked; r++ {
		overridden := false
		for i, rule := range rs.List {
			if out.Unavailable[i] {
				continue
			}
			var reason string
			if rule.Outlying {
				reason = rs.outlying(rule, request.Rows, r)
			} else {
				reason = belowConfidence(rule, confidences[rule.ConfidenceOutput], r)
			}
			if reason == "" {
				continue
			}
			out.Fired[i]++
			fired[i] = true
			switch rule.Action {
			case Refuse:
				if refusedRow < 0 {
					refusedRow = r
					out.Refusal = fmt.Sprintf("humility rule '%s' refused row %d: %s", rule.Name, r, reason)
				}
			case Override:
				if !overridden {
					overridden = true
					if out.Overrides == nil {
						out.Overrides = map[int]any{}
					}
					out.Overrides[r] = rule.OverrideValue
				}
			}
		}
	}
	if out.Refusal != "" {
		out.Overrides = nil
	}
	var names []string
	for i, rule := range rs.List {
		if fired[i] {
			names = append(names, rule.Name)
		}
	}
	out.Header = strings.Join(names, ",")
	return out
}

// outlying is why row r of the request is outlying for rule ("" when it is not): a numeric
// value outside the profile's min..max (as inputs.Feature.Bin says), or a category the profile
// does not know. A row shorter than r, or a missing or mistyped value, is not outlying.
func (rs *Rules) outlying(rule Rule, rows inputs.Rows, r int) string {
	if r >= rows.N {
		return ""
	}
	for _, f := range rule.Features {
		feature := &rs.profile.Features[f]
		value := rows.Value(f, r)
		bin, outside, ok := feature.Bin(value)
		if !ok {
			continue
		}
		if feature.Type == "categorical" && bin == len(feature.Categories) {
			return fmt.Sprintf("feature %s: %s is not a category of the training profile",
				feature.Name, quote(value))
		}
		if outside {
			return fmt.Sprintf("feature %s: %s is outside the training profile's range",
				feature.Name, quote(value))
		}
	}
	return ""
}

func belowConfidence(rule Rule, confidences []float64, r int) string {
	if r >= len(confidences) || math.IsNaN(confidences[r]) || !(confidences[r] < rule.ConfidenceBelow) {
		return ""
	}
	return fmt.Sprintf("confidence %s in %s is below %s",
		strconv.FormatFloat(confidences[r], 'g', 4, 64), rule.ConfidenceOutput,
		strconv.FormatFloat(rule.ConfidenceBelow, 'g', -1, 64))
}

func quote(value any) string {
	encoded, err := json.Marshal(value)
	if err != nil {
		return "a value"
	}
	if len(encoded) > maxReasonValue {
		return string(encoded[:maxReasonValue]) + "…"
	}
	return string(encoded)
}

// output is the answer's output named name (nil if none).
func output(response map[string]any, name string) map[string]any {
	outputs, _ := response["outputs"].([]any)
	for _, o := range outputs {
		if object, ok := o.(map[string]any); ok && object["name"] == name {
			return object
		}
	}
	return nil
}

// shapeOf is an output's shape (nil when it is not a list of non-negative integers).
func shapeOf(o map[string]any) []int {
	list, ok := o["shape"].([]any)
	if !ok || len(list) > 8 {
		return nil
	}
	shape := make([]int, len(list))
	for i, item := range list {
		n, ok := integer(item)
		if !ok || n < 0 {
			return nil
		}
		shape[i] = n
	}
	return shape
}

func integer(value any) (int, bool) {
	var f float64
	switch v := value.(type) {
	case json.Number:
		parsed, err := v.Float64()
		if err != nil {
			return 0, false
		}
		f = parsed
	case float64:
		f = v
	default:
		return 0, false
	}
	if f != math.Trunc(f) || f < 0 || f > 1<<40 {
		return 0, false
	}
	return int(f), true
}

func number(value any) (float64, bool) {
	switch v := value.(type) {
	case json.Number:
		f, err := v.Float64()
		return f, err == nil && !math.IsInf(f, 0)
	case float64:
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	}
	return 0, false
}

// confidenceOf is the confidence of each row (at most MaxRows) of the output named name: the
// largest value of its row for a [rows, classes] tensor, max(p, 1-p) for a [rows] (or
// [rows, 1]) one, NaN for a row with a value that is not a number; nil when the answer has no
// such FP output or its data does not fit its shape.
func confidenceOf(response map[string]any, name string) []float64 {
	o := output(response, name)
	if o == nil {
		return nil
	}
	if datatype, _ := o["datatype"].(string); !strings.HasPrefix(datatype, "FP") {
		return nil
	}
	classes := 1
	if shape := shapeOf(o); len(shape) == 2 {
		classes = shape[1]
	} else if len(shape) != 1 {
		return nil
	}
	if classes < 1 || classes > maxClasses {
		return nil
	}
	data, ok := o["data"].([]any)
	if !ok {
		return nil
	}
	values, complete := flatten(data, MaxRows*classes)
	if len(values) == 0 || (complete && len(values)%classes != 0) {
		return nil
	}
	rows := len(values) / classes
	confidences := make([]float64, rows)
	for r := range rows {
		best := math.Inf(-1)
		for _, value := range values[r*classes : (r+1)*classes] {
			p, ok := number(value)
			if !ok {
				best = math.NaN()
				break
			}
			best = max(best, p)
		}
		if classes == 1 && !math.IsNaN(best) {
			best = max(best, 1-best)
		}
		confidences[r] = best
	}
	return confidences
}

// flatten is data's scalars in row-major order (nested lists allowed, at most 8 deep), at most
// limit of them; complete is false when there were more (or deeper ones).
func flatten(data []any, limit int) (values []any, complete bool) {
	complete = true
	var walk func(list []any, depth int)
	walk = func(list []any, depth int) {
		for _, item := range list {
			if len(values) >= limit {
				complete = false
				return
			}
			if nested, ok := item.([]any); ok {
				if depth >= 8 {
					complete = false
					return
				}
				walk(nested, depth+1)
				continue
			}
			values = append(values, item)
		}
	}
	walk(data, 0)
	return values, complete
}

// outputRows is how many rows an output has: the first dimension of its shape when its data
// divides into it, else one per data element.
func outputRows(o map[string]any) int {
	data, _ := o["data"].([]any)
	if len(data) == 0 {
		return 0
	}
	if _, nested := data[0].([]any); nested {
		return len(data)
	}
	if shape := shapeOf(o); len(shape) >= 1 && shape[0] >= 1 && len(data)%shape[0] == 0 {
		return shape[0]
	}
	return len(data)
}

// Apply replaces the values of the overridden rows of the prediction output in place (flat
// row-major data of shape [rows, ...], or one nested list per row); false when nothing changed.
func Apply(prediction map[string]any, overrides map[int]any) bool {
	data, _ := prediction["data"].([]any)
	rows := outputRows(prediction)
	if rows == 0 || len(overrides) == 0 {
		return false
	}
	changed := false
	if _, nested := data[0].([]any); nested {
		for r, value := range overrides {
			if r < len(data) {
				data[r] = fill(data[r], value)
				changed = true
			}
		}
		return changed
	}
	width := len(data) / rows
	for r, value := range overrides {
		if r >= rows {
			continue
		}
		for j := r * width; j < (r+1)*width; j++ {
			data[j] = value
		}
		changed = true
	}
	return changed
}

// fill is item with every scalar replaced by value (its list structure kept, at most 8 deep).
func fill(item any, value any) any {
	var walk func(v any, depth int) any
	walk = func(v any, depth int) any {
		list, ok := v.([]any)
		if !ok || depth > 8 {
			return value
		}
		for i := range list {
			list[i] = walk(list[i], depth+1)
		}
		return list
	}
	return walk(item, 0)
}
