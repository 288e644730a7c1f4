// Package promtext serves a registry in the Prometheus text format 0.0.4, as the Python
// sidecar and router did: the same content type whatever the scraper asks for, and bucket
// bounds written as Python's client wrote them (le="1.0", not le="1"), so that the series of a
// pod running the Go binary and of one still running the Python one are the same series.
package promtext

import (
	"bytes"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves gatherer's metrics; before is called first (to bring gauges up to date).
func Handler(gatherer prometheus.Gatherer, before func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if before != nil {
			before()
		}
		page, err := Page(gatherer)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(page)))
		_, _ = w.Write(page)
	})
}

var bound = regexp.MustCompile(`le="([^"]*)"`)

// Page is the exposition of gatherer.
func Page(gatherer prometheus.Gatherer) ([]byte, error) {
	families, err := gatherer.Gather()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	encoder := expfmt.NewEncoder(&out, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, family := range families {
		if err := encoder.Encode(family); err != nil {
			return nil, err
		}
	}
	return bound.ReplaceAllFunc(out.Bytes(), func(match []byte) []byte {
		value, err := strconv.ParseFloat(string(match[4:len(match)-1]), 64)
		if err != nil {
			return match
		}
		return []byte(`le="` + PythonFloat(value) + `"`)
	}), nil
}

// PythonFloat writes f as prometheus_client's floatToGoString does: Python's repr, except
// that positive numbers of seven or more integer digits take an exponent, as Go's do.
func PythonFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	magnitude := math.Abs(f)
	if f != 0 && (magnitude < 1e-4 || magnitude >= 1e16) {
		return strconv.FormatFloat(f, 'e', -1, 64) // 1e-05, 1.5e+16: as Python's repr
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	dot := strings.Index(s, ".")
	if f > 0 && dot > 6 {
		mantissa := strings.TrimRight(s[:1]+"."+s[1:dot]+s[dot+1:], "0.")
		return mantissa + "e+0" + strconv.Itoa(dot-1)
	}
	return s
}
