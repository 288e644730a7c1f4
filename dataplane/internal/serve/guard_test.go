package serve

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func guarded(limits Limits, budget int64, draining *atomic.Bool) *httptest.Server {
	guard := &Guard{Limits: limits, Budget: NewBudget(budget), Draining: draining,
		Next: func(w http.ResponseWriter, r *http.Request, body []byte) {
			_, _ = w.Write(body)
		}}
	server := httptest.NewUnstartedServer(guard)
	server.Config.ConnContext = CountRequests
	server.Start()
	return server
}

var testLimits = Limits{MaxURIBytes: 64, MaxBodyBytes: 16, BodyTimeout: time.Second,
	MaxConnRequests: 3}

func post(t *testing.T, url, body string, header map[string]string) *http.Response {
	t.Helper()
	request, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for name, value := range header {
		request.Header.Set(name, value)
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(response.Body)
	response.Body.Close()
	return response
}

func TestTheGuardAnswersEachLimitWithItsStatus(t *testing.T) {
	server := guarded(testLimits, 1<<20, nil)
	defer server.Close()
	for _, c := range []struct {
		path, body string
		header     map[string]string
		status     int
	}{
		{"/ok", "small", nil, 200},
		{"/big", strings.Repeat("x", 17), nil, 413},
		{"/" + strings.Repeat("p", 70), "", nil, 414},
		{"/id", "", map[string]string{"X-Request-Id": strings.Repeat("i", 257)}, 400},
		{"/id", "", map[string]string{"X-Request-Id": "caf\u00e9"}, 400},
	} {
		if got := post(t, server.URL+c.path, c.body, c.header).StatusCode; got != c.status {
			t.Errorf("%s: %d, want %d", c.path, got, c.status)
		}
	}
}

func TestBytesInFlightBeyondTheBudgetAre503(t *testing.T) {
	server := guarded(testLimits, 4, nil)
	defer server.Close()
	if got := post(t, server.URL, "12345", nil).StatusCode; got != 503 {
		t.Errorf("%d, want 503", got)
	}
	if got := post(t, server.URL, "1234", nil).StatusCode; got != 200 {
		t.Errorf("%d, want 200 (the budget was given back)", got)
	}
}

func TestConnectionsCloseAfterTheirRequestsOrWhileDraining(t *testing.T) {
	var draining atomic.Bool
	server := guarded(testLimits, 1<<20, &draining)
	defer server.Close()
	client := &http.Client{}
	closes := []bool{}
	for range 3 {
		response, err := client.Post(server.URL, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(response.Body)
		response.Body.Close()
		closes = append(closes, response.Close)
	}
	if closes[0] || closes[1] || !closes[2] {
		t.Errorf("Connection: close on %v, want only the third", closes)
	}
	draining.Store(true)
	if response := post(t, server.URL, "x", nil); !response.Close {
		t.Error("no Connection: close while draining")
	}
}

func TestTheInflightDefaultIsAQuarterOfTheCgroupLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		path := filepath.Join(dir, "memory.max")
		_ = os.WriteFile(path, []byte(text), 0o644)
		return path
	}
	if got := DefaultInflightBytes(write("2147483648\n")); got != 512<<20 {
		t.Errorf("%d", got)
	}
	if got := DefaultInflightBytes(write("max\n")); got != 1<<30 {
		t.Errorf("%d", got)
	}
	if got := DefaultInflightBytes(write("100000000")); got != 64<<20 {
		t.Errorf("%d, want the 64 MiB floor", got)
	}
	if got := DefaultInflightBytes(filepath.Join(dir, "none")); got != 1<<30 {
		t.Errorf("%d", got)
	}
}
