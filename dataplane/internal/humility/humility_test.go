package humility

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"modelops.io/dataplane/internal/inputs"
)

const profileDocument = `{"kind":"TrainingProfile","rows":100,"features":[
 {"name":"age","type":"numeric","edges":[18,30,50],"min":16,"max":90},
 {"name":"colour","type":"categorical","categories":["red","blue"]},
 {"name":"bare","type":"numeric","edges":[0]}]}`

func profile(t *testing.T) *inputs.Profile {
	t.Helper()
	p, err := inputs.Parse([]byte(profileDocument))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t *testing.T, text string) *Rules {
	t.Helper()
	rules, err := Parse(text, profile(t))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

func decode(t *testing.T, text string) map[string]any {
	t.Helper()
	decoder := json.NewDecoder(strings.NewReader(text))
	decoder.UseNumber()
	var object map[string]any
	if err := decoder.Decode(&object); err != nil {
		t.Fatal(err)
	}
	return object
}

func TestTheDocumentedExampleParses(t *testing.T) {
	p, err := inputs.Parse([]byte(`{"kind":"TrainingProfile","features":[` +
		`{"name":"f0","type":"numeric","edges":[0]},{"name":"f3","type":"numeric","edges":[0]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Parse(`{"rules": [
  {"name": "outlying-input", "when": {"outlyingInput": {"features": ["f0", "f3"]}}, "action": "flag"},
  {"name": "unsure", "when": {"confidenceBelow": 0.6, "confidenceOutput": "predict_proba"}, "action": "override", "overrideValue": 0},
  {"name": "far-out", "when": {"outlyingInput": {}}, "action": "refuse"}
]}`, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.List) != 3 || !rules.NeedsInputs() {
		t.Fatalf("%+v", rules)
	}
	unsure := rules.List[1]
	if unsure.Action != Override || unsure.ConfidenceBelow != 0.6 ||
		unsure.ConfidenceOutput != "predict_proba" || unsure.OverrideValue != json.Number("0") {
		t.Errorf("unsure: %+v", unsure)
	}
	if got := rules.List[2].Features; len(got) != 2 {
		t.Errorf("far-out reads features %v, want all (2)", got)
	}
	if got := rules.List[0].Features; fmt.Sprint(got) != "[0 1]" {
		t.Errorf("outlying-input reads features %v", got)
	}
}

func TestEmptyTextIsNoRules(t *testing.T) {
	for _, text := range []string{"", "  ", `{"rules": []}`, `{}`} {
		if rules, err := Parse(text, nil); rules != nil || err != nil {
			t.Errorf("%q: %v %v", text, rules, err)
		}
	}
}

func TestInvalidRulesAreRefusedNamingTheRuleAndField(t *testing.T) {
	rule := func(body string) string { return `{"rules":[` + body + `]}` }
	many := make([]string, MaxRules+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"name":"r%d","when":{"confidenceBelow":0.5},"action":"flag"}`, i)
	}
	for text, want := range map[string]string{
		`nope`:            "not a rule document",
		`{"rules":[]} {}`: "text after it",
		`{"rules":{}}`:    "not a rule document",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"flag","extra":1}`):                     `unknown field "extra"`,
		rule(`{"name":"","when":{"confidenceBelow":0.5},"action":"flag"}`):                                "rules[0]: name",
		rule(`{"name":"Upper","when":{"confidenceBelow":0.5},"action":"flag"}`):                           "rules[0]: name",
		rule(`{"name":"` + strings.Repeat("a", 64) + `","when":{"confidenceBelow":0.5},"action":"flag"}`): "rules[0]: name",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"flag"},` +
			`{"name":"a","when":{"confidenceBelow":0.5},"action":"flag"}`): "rules[1] (a): name used",
		rule(`{"name":"a","when":{},"action":"flag"}`):                                               "rules[0] (a): when: needs exactly one condition",
		rule(`{"name":"a","when":{"outlyingInput":null},"action":"flag"}`):                           "exactly one condition",
		rule(`{"name":"a","when":{"outlyingInput":{},"confidenceBelow":0.5},"action":"flag"}`):       "exactly one condition",
		rule(`{"name":"a","when":{"outlyingInput":{},"confidenceOutput":"p"},"action":"flag"}`):      "when.confidenceOutput",
		rule(`{"name":"a","when":{"confidenceBelow":0},"action":"flag"}`):                            "when.confidenceBelow (0)",
		rule(`{"name":"a","when":{"confidenceBelow":1.5},"action":"flag"}`):                          "when.confidenceBelow (1.5)",
		rule(`{"name":"a","when":{"confidenceBelow":0.5,"confidenceOutput":""},"action":"flag"}`):    "confidenceOutput: empty",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"drop"}`):                          `action "drop"`,
		rule(`{"name":"a","when":{"confidenceBelow":0.5}}`):                                          `action ""`,
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"override"}`):                      "needs overrideValue",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"override","overrideValue":null}`): "needs overrideValue",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"override","overrideValue":[1]}`):  "JSON number, string or boolean",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"override","overrideValue":{}}`):   "JSON number, string or boolean",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"flag","overrideValue":1}`):        "only for action override",
		rule(`{"name":"a","when":{"confidenceBelow":0.5},"action":"refuse","overrideValue":null}`):   "only for action override",
		rule(`{"name":"a","when":{"outlyingInput":{"features":["age","zz"]}},"action":"flag"}`):      `rules[0] (a): when.outlyingInput.features: "zz"`,
		rule(`{"name":"a","when":{"outlyingInput":{"features":["age","age"]}},"action":"flag"}`):     "named twice",
		rule(strings.Join(many, ",")): "17 rules; at most 16",
	} {
		_, err := Parse(text, profile(t))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", text, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error of several lines: %q", text, err)
		}
	}
	_, err := Parse(rule(`{"name":"far-out","when":{"outlyingInput":{}},"action":"refuse"}`), nil)
	if err == nil || !strings.Contains(err.Error(), "rules[0] (far-out): when.outlyingInput needs --profile-file") {
		t.Errorf("without a profile: %v", err)
	}
	if _, err := Parse(rule(`{"name":"ok-1","when":{"confidenceBelow":1},"action":"override","overrideValue":"unsure"}`), nil); err != nil {
		t.Errorf("a confidence rule needs no profile: %v", err)
	}
}

func request(t *testing.T, rules *Rules, body string) Request {
	rows, ok := rules.Profile().Read([]byte(body))
	return Request{Rows: rows, Read: ok}
}

const threeRows = `{"inputs":[{"name":"x","shape":[3,3],"datatype":"BYTES","data":[` +
	`[20,"red",5],[95,"blue",-7],[30,"green",0]]}]}`

func TestOutlyingInputsByFeature(t *testing.T) {
	rules := mustParse(t, `{"rules":[
	 {"name":"age","when":{"outlyingInput":{"features":["age"]}},"action":"flag"},
	 {"name":"colour","when":{"outlyingInput":{"features":["colour"]}},"action":"flag"},
	 {"name":"bare","when":{"outlyingInput":{"features":["bare"]}},"action":"flag"},
	 {"name":"any","when":{"outlyingInput":{}},"action":"flag"}]}`)
	out := rules.Evaluate(request(t, rules, threeRows), map[string]any{}, nil)
	// Row 1's age (95 > max 90) and row 2's colour (green) are outlying; "bare" has no min/max
	// in the profile, so no value of it is.
	if fmt.Sprint(out.Fired) != "[1 1 0 2]" || out.Checked != 3 {
		t.Errorf("fired %v checked %d", out.Fired, out.Checked)
	}
	if out.Header != "age,colour,any" {
		t.Errorf("header %q", out.Header)
	}
	if out.Refusal != "" || out.Overrides != nil {
		t.Errorf("%+v", out)
	}
}

func TestConfidenceOfTwoAndOneDimensionalOutputs(t *testing.T) {
	rules := mustParse(t, `{"rules":[
	 {"name":"multi","when":{"confidenceBelow":0.6},"action":"flag"},
	 {"name":"binary","when":{"confidenceBelow":0.7,"confidenceOutput":"p1"},"action":"flag"}]}`)
	response := decode(t, `{"outputs":[
	 {"name":"predict_proba","datatype":"FP32","shape":[3,3],"data":[0.5,0.3,0.2, 0.1,0.8,0.1, 0.34,0.33,0.33]},
	 {"name":"p1","datatype":"FP64","shape":[3],"data":[0.9, 0.35, 0.5]}]}`)
	out := rules.Evaluate(Request{}, response, nil)
	// multi: rows 0 (0.5) and 2 (0.34); binary: max(p, 1-p) is 0.9, 0.65, 0.5: rows 1 and 2.
	if fmt.Sprint(out.Fired) != "[2 2]" || out.Checked != 3 || out.Header != "multi,binary" {
		t.Errorf("%+v", out)
	}
	nested := decode(t, `{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[2,2],`+
		`"data":[[0.9,0.1],[0.55,0.45]]}]}`)
	if out := rules.Evaluate(Request{}, nested, nil); fmt.Sprint(out.Fired) != "[1 0]" ||
		fmt.Sprint(out.Unavailable) != "[false true]" {
		t.Errorf("nested: %+v", out)
	}
}

func TestAMissingOrUnreadableConfidenceOutputIsUnavailable(t *testing.T) {
	rules := mustParse(t, `{"rules":[{"name":"unsure","when":{"confidenceBelow":0.6},"action":"refuse"}]}`)
	for _, answer := range []string{
		`{"outputs":[{"name":"label","datatype":"INT64","shape":[1],"data":[1]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"INT64","shape":[1,2],"data":[0,1]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[2,2],"data":[0.5,0.5,0.1]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[1,0],"data":[]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":["1"],"data":[0.5]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[1,1,1],"data":[0.5]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[1,99999999999],"data":[0.5]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[1],"data":"0.5"}]}`,
		`{"outputs":"nope"}`, `{}`,
	} {
		out := rules.Evaluate(Request{}, decode(t, answer), nil)
		if !out.Unavailable[0] || out.Fired[0] != 0 || out.Refusal != "" {
			t.Errorf("%s: %+v", answer, out)
		}
	}
	// A value that is not a number leaves its row unknown, not the output.
	out := rules.Evaluate(Request{}, decode(t, `{"outputs":[{"name":"predict_proba","datatype":"FP32",`+
		`"shape":[2,2],"data":[0.5,"x",0.5,0.5]}]}`), nil)
	if out.Unavailable[0] || out.Fired[0] != 1 || !strings.Contains(out.Refusal, "refused row 1") {
		t.Errorf("%+v", out)
	}
}

func TestRefuseWinsAndNamesTheFirstRefusedRow(t *testing.T) {
	rules := mustParse(t, `{"rules":[
	 {"name":"flagged","when":{"outlyingInput":{}},"action":"flag"},
	 {"name":"zero","when":{"outlyingInput":{"features":["age"]}},"action":"override","overrideValue":0},
	 {"name":"far-out","when":{"outlyingInput":{"features":["colour"]}},"action":"refuse"}]}`)
	out := rules.Evaluate(request(t, rules, threeRows), map[string]any{}, nil)
	want := `humility rule 'far-out' refused row 2: feature colour: "green" is not a category of the training profile`
	if out.Refusal != want {
		t.Errorf("refusal %q,\nwant %q", out.Refusal, want)
	}
	if out.Overrides != nil || fmt.Sprint(out.Fired) != "[2 1 1]" || out.Header != "flagged,zero,far-out" {
		t.Errorf("%+v", out)
	}
}

func TestOverridesReplaceTheFiredRowsOfThePrediction(t *testing.T) {
	rules := mustParse(t, `{"rules":[
	 {"name":"first","when":{"confidenceBelow":0.6},"action":"override","overrideValue":-1},
	 {"name":"second","when":{"confidenceBelow":0.9},"action":"override","overrideValue":"unsure"}]}`)
	response := decode(t, `{"outputs":[
	 {"name":"label","datatype":"INT64","shape":[3],"data":[0,1,2]},
	 {"name":"predict_proba","datatype":"FP32","shape":[3,2],"data":[0.5,0.5, 0.95,0.05, 0.2,0.8]}]}`)
	prediction := response["outputs"].([]any)[0].(map[string]any)
	out := rules.Evaluate(Request{}, response, prediction)
	if fmt.Sprint(out.Fired) != "[1 2]" || len(out.Overrides) != 2 {
		t.Fatalf("%+v", out)
	}
	if !Apply(prediction, out.Overrides) {
		t.Fatal("nothing applied")
	}
	// Row 0 fired both rules: the first in rule order gives its value.
	if got := fmt.Sprint(prediction["data"]); got != "[-1 1 unsure]" {
		t.Errorf("data %s", got)
	}
	wide := decode(t, `{"name":"scores","shape":[2,2],"data":[1,2,3,4]}`)
	Apply(wide, map[int]any{1: json.Number("0")})
	nested := decode(t, `{"name":"scores","shape":[2,2],"data":[[1,2],[3,[4]]]}`)
	Apply(nested, map[int]any{1: json.Number("0")})
	if fmt.Sprint(wide["data"]) != "[1 2 0 0]" || fmt.Sprint(nested["data"]) != "[[1 2] [0 [0]]]" {
		t.Errorf("wide %v nested %v", wide["data"], nested["data"])
	}
	if Apply(decode(t, `{"data":"x"}`), map[int]any{0: 1}) || Apply(decode(t, `{"data":[]}`), map[int]any{0: 1}) {
		t.Error("applied to no data")
	}
}

func TestRowsBeyondTheCapAreNotChecked(t *testing.T) {
	rules := mustParse(t, `{"rules":[{"name":"far-out","when":{"outlyingInput":{}},"action":"refuse"},`+
		`{"name":"unsure","when":{"confidenceBelow":0.6},"action":"flag"}]}`)
	var rows, probabilities []string
	for r := range 300 {
		age := "20"
		if r == 299 {
			age = "999"
		}
		rows = append(rows, `[`+age+`,"red",0]`)
		probabilities = append(probabilities, "0.5")
	}
	body := `{"inputs":[{"name":"x","shape":[300,3],"datatype":"BYTES","data":[` + strings.Join(rows, ",") + `]}]}`
	response := decode(t, `{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[300],"data":[`+
		strings.Join(probabilities, ",")+`]}]}`)
	out := rules.Evaluate(request(t, rules, body), response, nil)
	if out.Checked != MaxRows || out.Refusal != "" || fmt.Sprint(out.Fired) != "[0 256]" {
		t.Errorf("checked %d fired %v refusal %q", out.Checked, out.Fired, out.Refusal)
	}
}

func TestHostileRequestsAndAnswersAreNoRowsNotPanics(t *testing.T) {
	rules := mustParse(t, `{"rules":[{"name":"far-out","when":{"outlyingInput":{}},"action":"refuse"},`+
		`{"name":"unsure","when":{"confidenceBelow":0.6},"action":"override","overrideValue":0}]}`)
	deep := strings.Repeat("[", 100) + "1" + strings.Repeat("]", 100)
	bodies := []string{``, `nope`, `[]`, `{"inputs":7}`, `{"inputs":[]}`,
		`{"inputs":[{"name":"x","shape":[9223372036854775807,3],"data":[1,2,3]}]}`,
		`{"inputs":[{"name":"x","shape":[1,3],"data":` + deep + `}]}`,
		`{"inputs":[{"name":"x","shape":"big","data":[1,2,3]}]}`,
		`{"inputs":[{"name":"x","shape":[1,3],"data":[{"a":1},true,null]}]}`,
		`{"inputs":[{"name":"age","data":[1]},{"name":"colour","data":["red","red"]},{"name":"bare","data":[1]}]}`}
	answers := []string{`{}`, `{"outputs":null}`, `{"outputs":[null,7,"x"]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[-1,2],"data":[0.1,0.9]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[1e300],"data":[0.1]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[1],"data":[1e999]}]}`,
		`{"outputs":[{"name":"predict_proba","datatype":"FP32","shape":[1],"data":` + deep + `}]}`,
		`{"outputs":[{"name":"label","shape":[5],"data":[1]},` +
			`{"name":"predict_proba","datatype":"FP32","shape":[2],"data":[0.5,0.5]}]}`}
	for _, body := range bodies {
		for _, answer := range answers {
			var response map[string]any
			decoder := json.NewDecoder(bytes.NewReader([]byte(answer)))
			decoder.UseNumber()
			_ = decoder.Decode(&response)
			var prediction map[string]any
			if outputs, ok := response["outputs"].([]any); ok && len(outputs) > 0 {
				prediction, _ = outputs[0].(map[string]any)
			}
			out := rules.Evaluate(request(t, rules, body), response, prediction)
			if out.Checked > MaxRows {
				t.Errorf("%s / %s: checked %d", body, answer, out.Checked)
			}
			if prediction != nil {
				Apply(prediction, out.Overrides)
			}
		}
	}
}
