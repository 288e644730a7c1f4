package router

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJSONAndYAMLDocumentsAreRead(t *testing.T) {
	yamlDoc := "apiVersion: router.modelops.io/v1alpha1\nkind: RouterConfig\nmode: split\n" +
		"champion: {url: \"http://a:8000/\"}\nchallenger: {url: \"https://b\"}\nchallengerWeight: 10\n" +
		"stickyHeader: x-user\nrevision: 3f2a9c01\n"
	live, err := ParseConfig([]byte(yamlDoc))
	if err != nil {
		t.Fatal(err)
	}
	if URLString(live.Champion) != "http://a:8000" || live.ChallengerWeight != 10 ||
		live.StickyHeader != "x-user" || live.MirrorPercent != 100 || live.Revision != "3f2a9c01" {
		t.Errorf("read %+v", live)
	}
	jsonDoc := `{"apiVersion": "router.modelops.io/v1alpha1", "mode": "shadow",
		"champion": {"url": "http://a"}, "challenger": {"url": "http://b"}, "mirrorPercent": 50}`
	if live, err = ParseConfig([]byte(jsonDoc)); err != nil || live.Mode != "shadow" || live.MirrorPercent != 50 {
		t.Errorf("read %+v, %v", live, err)
	}
}

func TestEveryFieldIsValidatedAndNamed(t *testing.T) {
	base := `{"apiVersion": "router.modelops.io/v1alpha1", "champion": {"url": "http://a"}, `
	for document, field := range map[string]string{
		base + `"challenger": {"url": "http://b"}, "challengerWeight": 101}`:              "challengerWeight",
		base + `"challenger": {"url": "http://b"}, "challengerWeight": -1}`:               "challengerWeight",
		base + `"mirrorPercent": 100.5}`:                                                  "mirrorPercent",
		base + `"challengerWeight": 5}`:                                                   "challenger",
		base + `"mode": "shadow"}`:                                                        "challenger",
		base + `"mode": "mirror"}`:                                                        "mode",
		base + `"stickyHeader": "x user"}`:                                                "stickyHeader",
		base + `"stickyHeader": ""}`:                                                      "stickyHeader",
		base + `"revision": "a/b"}`:                                                       "revision",
		base + `"challenger": {"url": "ftp://b"}}`:                                        "challenger.url",
		base + `"challenger": {"url": "http://b:0"}}`:                                     "challenger.url",
		base + `"challenger": {"url": "http://b:65536"}}`:                                 "challenger.url",
		base + `"challenger": {"url": "http://b?x=1"}}`:                                   "challenger.url",
		base + `"challenger": {"url": "http://b", "weight": 1}}`:                          "weight",
		base + `"challangerWeight": 5}`:                                                   "challangerWeight",
		`{"apiVersion": "router.modelops.io/v1alpha1", "champion": {"url": "not a url"}}`: "champion.url",
		`{"apiVersion": "v2", "champion": {"url": "http://a"}}`:                           "apiVersion",
		`{"apiVersion": "router.modelops.io/v1alpha1"}`:                                   "champion",
		`[1, 2]`: "",
		``:       "mapping",
	} {
		_, err := ParseConfig([]byte(document))
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: got %v, want an error naming %q", document, err, field)
		}
	}
}

func TestTheWatcherReadsOnlyWholeFilesAndKeepsTheLastGoodOne(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "router.json")
	write := func(text string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	good := `{"apiVersion": "router.modelops.io/v1alpha1", "champion": {"url": "http://a"}}`
	write(good)
	results := []bool{}
	w := &Watcher{Path: path, OnReload: func(_ *Live, ok bool) { results = append(results, ok) }}
	if err := w.LoadInitial(); err != nil {
		t.Fatal(err)
	}
	w.Poll()
	write(`{"apiVersion": "router.modelops.io/v1alpha1", "champion": {"url": "bad"}}`)
	w.Poll()
	if URLString(w.Live.Load().Champion) != "http://a" {
		t.Error("a bad file replaced the configuration")
	}
	write(strings.Replace(good, "http://a", "http://c", 1))
	w.Poll()
	if URLString(w.Live.Load().Champion) != "http://c" {
		t.Error("a good file was not taken")
	}
	if len(results) != 2 || results[0] || !results[1] {
		t.Errorf("reload results %v, want [false true]", results)
	}
	// A file whose size does not match what was read (being written) is not read now.
	w.seen = signature{}
	if _, _, err := w.readWhole(); err != nil {
		t.Errorf("a whole file: %v", err)
	}
}
