package feedback

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Score of one label (a row each).
type Score struct {
	Correct, Incorrect, Scored  int
	AbsoluteError, SquaredError float64
	// Whose counters it goes to when it is counted (nil: the scorer's own); a label held for
	// maturity keeps it.
	Owner any
}

// ScoreLabel compares true values with the remembered prediction, row by row. A regression
// row's absolute error counts at most lossBound (0: unbounded), its square at most lossBound²:
// bounded losses are what the accuracy gate's exact test needs. The error names the field.
func ScoreLabel(p Prediction, truth []any, lossBound float64) (Score, error) {
	if len(truth) != len(p.Values) {
		return Score{}, fmt.Errorf("truth: has %d values but the prediction had %d",
			len(truth), len(p.Values))
	}
	if p.Classification {
		correct := 0
		for i, predicted := range p.Values {
			if SameValue(predicted, truth[i]) {
				correct++
			}
		}
		return Score{Correct: correct, Incorrect: len(truth) - correct}, nil
	}
	var absolute, squared float64
	for i, predicted := range p.Values {
		t, ok := truth[i].(json.Number) // a bool is not a number here
		if !ok {
			return Score{}, errors.New("truth: regression feedback needs numbers")
		}
		tv, err1 := t.Float64()
		pv, ok2 := asFloat(predicted)
		if err1 != nil || !ok2 {
			return Score{}, errors.New("truth: values must be finite numbers")
		}
		e := tv - pv
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return Score{}, errors.New("truth: values must be finite numbers")
		}
		size := math.Abs(e)
		if lossBound > 0 {
			size = min(size, lossBound)
		}
		absolute += size
		squared += size * size
	}
	return Score{Scored: len(truth), AbsoluteError: absolute, SquaredError: squared}, nil
}

// SameValue: numbers (and booleans, as 1 and 0) compare by value, anything else by its text.
func SameValue(predicted, truth any) bool {
	a, aNumeric := numeric(predicted)
	b, bNumeric := numeric(truth)
	if aNumeric && bNumeric {
		if ai, ok := exactInt(predicted); ok {
			if bi, ok := exactInt(truth); ok {
				return ai == bi
			}
		}
		return a == b
	}
	return text(predicted) == text(truth)
}

func numeric(v any) (float64, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

func exactInt(v any) (int64, bool) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case json.Number:
		i, err := x.Int64()
		return i, err == nil
	}
	return 0, false
}

// asFloat is a predicted value as a number: numbers, booleans, and numeric strings (as
// Python's float() took them).
func asFloat(v any) (float64, bool) {
	if f, ok := numeric(v); ok {
		return f, true
	}
	if s, ok := v.(string); ok {
		f, err := strconv.ParseFloat(s, 64)
		return f, err == nil
	}
	return 0, false
}

// text is a value as Python's str() wrote it (the Python sidecar compared classes that way).
func text(v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "True"
		}
		return "False"
	case json.Number:
		return x.String()
	case string:
		return x
	case nil:
		return "None"
	}
	return fmt.Sprint(v)
}

// Observable is a predicted value as a histogram observation (numbers and booleans only).
func Observable(v any) (float64, bool) {
	f, ok := numeric(v)
	return f, ok && !math.IsNaN(f)
}
