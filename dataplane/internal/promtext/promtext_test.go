package promtext

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBoundsAreWrittenAsPythonsClientWroteThem(t *testing.T) {
	for value, want := range map[float64]string{
		1: "1.0", 0.1: "0.1", 0.0025: "0.0025", 10: "10.0", -100: "-100.0", 0: "0.0",
		1e-05: "1e-05", 1234567: "1.234567e+06", 100000: "100000.0", math.Inf(1): "+Inf",
	} {
		if got := PythonFloat(value); got != want {
			t.Errorf("PythonFloat(%v) = %s, want %s", value, got, want)
		}
	}
	registry := prometheus.NewRegistry()
	histogram := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "h",
		Buckets: []float64{-1, 0.5, 1}})
	registry.MustRegister(histogram)
	page, err := Page(registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, bound := range []string{`le="-1.0"`, `le="0.5"`, `le="1.0"`, `le="+Inf"`} {
		if !strings.Contains(string(page), bound) {
			t.Errorf("%s missing in\n%s", bound, page)
		}
	}
}
