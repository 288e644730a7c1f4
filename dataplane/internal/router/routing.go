package router

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"

	"golang.org/x/crypto/blake2b"
)

const (
	Champion   = "champion"
	Challenger = "challenger"
)

// Sticky places header values in [0, 1) with BLAKE2b (8-byte digest), the same in every
// replica and after restarts. Without a key it is the Python router's hash, value for value:
// anyone can compute a value's position and so choose their arm. With a key (--sticky-key-file)
// it is keyed BLAKE2b: positions are as stable, but only the key's holders can compute them.
type Sticky struct{ key []byte }

func NewSticky(key []byte) (*Sticky, error) {
	if len(key) > blake2b.Size {
		return nil, errKeyTooLong
	}
	return &Sticky{key: key}, nil
}

var errKeyTooLong = errorString("the sticky key is longer than 64 bytes (BLAKE2b's limit)")

type errorString string

func (e errorString) Error() string { return string(e) }

// Position of a sticky header value.
func (s *Sticky) Position(value string) float64 {
	hash, err := blake2b.New(8, s.key)
	if err != nil { // only for a key over 64 bytes, which NewSticky refuses
		panic(err)
	}
	hash.Write([]byte(value))
	return float64(binary.BigEndian.Uint64(hash.Sum(nil))) / math.Exp2(64)
}

// ChooseArm for a new request: the challenger takes the positions below its weight (a
// percentage), so raising a canary's weight only moves keys from champion to challenger.
func (s *Sticky) ChooseArm(weight float64, value string, hasValue bool) string {
	if weight <= 0 {
		return Champion
	}
	if weight >= 100 {
		return Challenger
	}
	position := rand.Float64()
	if hasValue {
		position = s.Position(value)
	}
	if position*100 < weight {
		return Challenger
	}
	return Champion
}

// ShouldMirror draws whether a request is copied to the shadow arm.
func ShouldMirror(percent float64) bool {
	return percent >= 100 || (percent > 0 && rand.Float64()*100 < percent)
}

// firstOutput is the data of a V2 answer's first output, to compare paired answers.
func firstOutput(status int, payload []byte) ([]any, bool) {
	if status != 200 {
		return nil, false
	}
	response := parseJSON(payload)
	object, _ := response.(map[string]any)
	outputs, _ := object["outputs"].([]any)
	if len(outputs) == 0 {
		return nil, false
	}
	first, _ := outputs[0].(map[string]any)
	data, ok := first["data"].([]any)
	return data, ok
}

// Agreement of two answers to one request: numbers agree within a relative tolerance of 1e-6,
// anything else when equal; error when either is missing.
func Agreement(primary, shadow []any, primaryOK, shadowOK bool) string {
	if !primaryOK || !shadowOK {
		return "error"
	}
	if len(primary) != len(shadow) {
		return "disagree"
	}
	for i := range primary {
		a, aNumber := number(primary[i])
		b, bNumber := number(shadow[i])
		if aNumber && bNumber {
			if math.Abs(a-b) > 1e-6*max(1, math.Abs(a), math.Abs(b)) {
				return "disagree"
			}
		} else if !equal(primary[i], shadow[i]) {
			return "disagree"
		}
	}
	return "agree"
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// equal compares JSON values as Python's == does (numbers by value, 1 == 1.0 == true).
func equal(a, b any) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x == y
	}
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	}
	return a == b
}
