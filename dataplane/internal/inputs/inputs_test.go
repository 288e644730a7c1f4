package inputs

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// As `modelops profile` writes it (operator/modelops_operator/monitoring/profile.py).
const profileDocument = `{"apiVersion":"modelops.io/v1alpha1","kind":"TrainingProfile","rows":100,
 "features":[
  {"name":"age","type":"numeric","edges":[18,30,50],"frequencies":[0.1,0.3,0.4,0.2],"min":16,"max":90,"missing":0},
  {"name":"colour","type":"categorical","categories":["red","blue"],"frequencies":[0.5,0.3,0.2],"missing":0}],
 "holdout":{"metric":"accuracy","value":0.9,"rows":100}}`

func counter(t *testing.T) (*Counter, *prometheus.Registry) {
	p, err := Parse([]byte(profileDocument))
	if err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	return NewCounter(p, prometheus.Labels{"deployment": "d"}, registry), registry
}

func binCount(t *testing.T, registry *prometheus.Registry, feature, bin string) float64 {
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, family := range families {
		if family.GetName() != "modelops_input_bin_total" {
			continue
		}
		for _, metric := range family.GetMetric() {
			labels := map[string]string{}
			for _, pair := range metric.GetLabel() {
				labels[pair.GetName()] = pair.GetValue()
			}
			if labels["feature"] == feature && labels["bin"] == bin {
				return metric.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series for feature %s bin %s", feature, bin)
	return 0
}

func TestValuesGoToTheFirstEdgeAtOrAboveThemAsTheProfileCountedThem(t *testing.T) {
	c, registry := counter(t)
	c.Observe([]byte(`{"inputs":[{"name":"input-0","shape":[5,2],"datatype":"BYTES",` +
		`"data":[[18,"red"],[18.5,"blue"],[50,"green"],[95,"red"],[null,""]]}]}`))
	for bin, want := range map[string]float64{"0": 1, "1": 1, "2": 1, "3": 1} {
		if got := binCount(t, registry, "age", bin); got != want {
			t.Errorf("age bin %s: %v, want %v", bin, got, want)
		}
	}
	for bin, want := range map[string]float64{"0": 2, "1": 1, "2": 1} {
		if got := binCount(t, registry, "colour", bin); got != want {
			t.Errorf("colour bin %s: %v, want %v", bin, got, want)
		}
	}
	if got := testutil.ToFloat64(c.outside[0]); got != 1 {
		t.Errorf("age out of range %v, want 1 (95 > 90)", got)
	}
	if got := testutil.ToFloat64(c.missing[0]) + testutil.ToFloat64(c.missing[1]); got != 2 {
		t.Errorf("missing %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.rows); got != 5 {
		t.Errorf("rows %v, want 5", got)
	}
}

func TestOneTensorPerFeatureIsMatchedByName(t *testing.T) {
	c, registry := counter(t)
	c.Observe([]byte(`{"inputs":[{"name":"colour","shape":[2],"datatype":"BYTES","data":["blue","blue"]},` +
		`{"name":"age","shape":[2],"datatype":"FP64","data":[20,60]}]}`))
	if binCount(t, registry, "colour", "1") != 2 || binCount(t, registry, "age", "1") != 1 ||
		binCount(t, registry, "age", "3") != 1 {
		t.Error("named columns were not counted as their features")
	}
}

func TestInputsThatDoNotFitAreCountedApartAndNothingElse(t *testing.T) {
	c, _ := counter(t)
	for _, body := range []string{
		`not json`,
		`{"inputs":[]}`,
		`{"inputs":[{"name":"input-0","shape":[1,3],"data":[1,2,3]}]}`,
		`{"inputs":[{"name":"age","data":[1]},{"name":"size","data":[2]}]}`,
		`{"inputs":[{"name":"input-0","data":[[[[[[[[[[1,2]]]]]]]]]]}]}`,
	} {
		c.Observe([]byte(body))
	}
	if got := testutil.ToFloat64(c.unreadable); got != 5 {
		t.Errorf("unreadable %v, want 5", got)
	}
	if got := testutil.ToFloat64(c.rows); got != 0 {
		t.Errorf("rows %v, want 0", got)
	}
}

func TestAHugeBatchCountsAtMostMaxRowsPerRequest(t *testing.T) {
	c, _ := counter(t)
	rows := strings.Repeat(`[20,"red"],`, 1000)
	c.Observe([]byte(`{"inputs":[{"name":"input-0","data":[` + rows + `[20,"red"]]}]}`))
	if got := testutil.ToFloat64(c.rows); got != MaxRowsPerRequest {
		t.Errorf("rows %v, want %d", got, MaxRowsPerRequest)
	}
}

func TestTheProfileIsExportedForTheOperator(t *testing.T) {
	_, registry := counter(t)
	expected := `
# HELP modelops_profile_rows Rows the training profile was built from.
# TYPE modelops_profile_rows gauge
modelops_profile_rows{deployment="d"} 100
`
	if err := testutil.GatherAndCompare(registry, strings.NewReader(expected), "modelops_profile_rows"); err != nil {
		t.Error(err)
	}
	expected = `
# HELP modelops_profile_holdout The model's figure on the profile's labelled rows (metric: accuracy or meanAbsoluteError), the accuracy monitor's reference.
# TYPE modelops_profile_holdout gauge
modelops_profile_holdout{deployment="d",metric="accuracy"} 0.9
`
	if err := testutil.GatherAndCompare(registry, strings.NewReader(expected), "modelops_profile_holdout"); err != nil {
		t.Error(err)
	}
	if count, _ := testutil.GatherAndCount(registry, "modelops_profile_bin_share"); count != 7 {
		t.Errorf("%d share series, want 7 (4 age bins, 3 colour bins)", count)
	}
}

func TestBadProfilesAreRefusedNamingTheFeature(t *testing.T) {
	for document, want := range map[string]string{
		`{"kind":"Other","features":[]}`:                                                      "TrainingProfile",
		`{"kind":"TrainingProfile","features":[]}`:                                            "features: 0",
		`{"kind":"TrainingProfile","features":[{"name":"x","type":"numeric","edges":[2,1]}]}`: "(x): edges must increase",
		`{"kind":"TrainingProfile","features":[{"name":"x","type":"text"}]}`:                  `(x): type "text"`,
	} {
		if _, err := Parse([]byte(document)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one saying %q", document, err, want)
		}
	}
}
