package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"modelops.io/dataplane/internal/marks"
	"modelops.io/dataplane/internal/receipt"
	"modelops.io/dataplane/internal/serve"
	"modelops.io/dataplane/internal/upstream"
)

const upstreamTimeout = 120 * time.Second

// Router routes inference calls between the arms of the live configuration.
type Router struct {
	Watcher   *Watcher
	Metrics   *Metrics
	Memory    *Memory
	Sticky    *Sticky
	Mirror    *Mirror
	Replicas  http.RoundTripper // to the replica that answered: a short connect timeout
	Receipts  *receipt.Checker  // nil: labels name a request id this router remembers
	transport http.RoundTripper
	proxy     *httputil.ReverseProxy
}

// exchange is one proxied request's state, carried in its context.
type exchange struct {
	live      *Live
	inference bool
	arm       string
	backend   *url.URL
	attempt   int
	requestID string
	started   time.Time
	body      []byte
	header    http.Header // as the client sent it, for the shadow copy
	target    string
}

type exchangeKey struct{}

func (rt *Router) Init(transport http.RoundTripper) {
	rt.transport = transport
	rt.proxy = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      transport,
		ModifyResponse: rt.modifyResponse,
		ErrorHandler:   rt.failed,
		ErrorLog:       slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
		BufferPool:     &upstream.Buffers{},
	}
}

// Handle every request on the traffic port.
func (rt *Router) Handle(w http.ResponseWriter, r *http.Request, body []byte) {
	path := r.URL.Path
	if path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		serve.JSON(w, http.StatusOK, map[string]bool{"live": true})
		return
	}
	if path == "/v2/feedback" && r.Method == http.MethodPost {
		rt.feedback(w, r, body)
		return
	}
	live := rt.Watcher.Live.Load() // this request keeps the configuration it started with
	// Classified on the decoded path, as Go's mux routes: /v2/models/m/inf%65r is counted and
	// split like /v2/models/m/infer (and forwarded as sent).
	ex := &exchange{live: live, arm: Champion, backend: live.Champion, attempt: 1, started: time.Now(),
		inference: r.Method == http.MethodPost && strings.HasSuffix(path, "/infer"), body: body,
		target: r.URL.RequestURI()}
	if ex.inference {
		rt.route(ex, r)
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), exchangeKey{}, ex), upstreamTimeout)
	defer cancel()
	rt.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// route picks an inference call's arm (its first attempt's, for a retry) and attempt number.
func (rt *Router) route(ex *exchange, r *http.Request) {
	mk := marks.Read(r.Header)
	earlier, retry, attempt := rt.Memory.Earlier(mk)
	value, hasValue := "", false
	if ex.live.StickyHeader != "" && ex.live.Mode == "split" {
		if values := r.Header.Values(ex.live.StickyHeader); len(values) > 0 {
			value, hasValue = values[0], true
		}
	}
	ex.arm = RouteArm(ex.live, rt.Sticky, earlier, retry, value, hasValue)
	if ex.arm == Challenger {
		ex.backend = ex.live.Challenger
	}
	ex.attempt, ex.requestID = attempt, mk.RequestID
	ex.header = r.Header.Clone()
	rt.Memory.Dispatched(mk.RequestID, earlier, retry, ex.arm, URLString(ex.backend), attempt)
}

func rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(exchangeKey{}).(*exchange)
	pr.SetURL(ex.backend)
	upstream.SendWhole(pr.Out, ex.body)
	for _, name := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if values, ok := pr.In.Header[name]; ok {
			pr.Out.Header[name] = values // forwarded unchanged, as before
		}
	}
	pr.Out.Header.Del("Expect") // the body is read whole here; 100-continue answered here
	// Only the router says "retry" to a sidecar: a client's value would reach the sidecar of an
	// arm the client can choose (docs/serving.md, retries).
	pr.Out.Header.Del(marks.AttemptField)
	if ex.attempt > 1 {
		pr.Out.Header.Set(marks.AttemptField, itoa(ex.attempt))
	}
}

func (rt *Router) modifyResponse(resp *http.Response) error {
	ex := resp.Request.Context().Value(exchangeKey{}).(*exchange)
	if !ex.inference {
		return nil
	}
	// The replica that answered is for the router alone; exactly one valid value is kept.
	served := resp.Header.Values(marks.ServedByField)
	resp.Header.Del(marks.ServedByField)
	replica := ""
	if len(served) == 1 && ex.backend.Scheme == "http" {
		replica = marks.ReplicaAddress(served[0])
	}
	requestID := ex.requestID
	if answered := strings.Trim(resp.Header.Get(marks.RequestIDField), " \t"); answered != "" {
		requestID = answered
	}
	shadowURL := ""
	if ex.attempt == 1 && ex.live.Mode == "shadow" && ex.live.Challenger != nil &&
		ShouldMirror(ex.live.MirrorPercent) {
		payload, err := upstream.ReadAnswer(resp, maxAnswerBytes)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(payload))
		if len(payload) <= maxAnswerBytes { // a larger answer passes, uncompared
			shadowURL = URLString(ex.live.Challenger)
			rt.Mirror.Enqueue(&MirrorJob{
				Base: ex.live.Challenger, Target: ex.target, Body: ex.body,
				Header: mirrorHeader(ex.header, requestID), PrimaryStatus: resp.StatusCode,
				PrimaryPayload: payload, RequestID: requestID,
			})
		}
	}
	if requestID != "" {
		rt.Memory.Answer(requestID, ex.arm, URLString(ex.backend), shadowURL, replica, ex.attempt)
	}
	rt.Metrics.CountRequest(ex.arm, resp.StatusCode, ex.attempt)
	rt.Metrics.Duration[ex.arm].Observe(time.Since(ex.started).Seconds())
	return nil
}

const maxAnswerBytes = 64 << 20 // an answer read whole to be compared with its shadow copy's

func (rt *Router) failed(w http.ResponseWriter, r *http.Request, err error) {
	ex := r.Context().Value(exchangeKey{}).(*exchange)
	status, what := http.StatusBadGateway, "is unavailable ("+upstream.Reason(err)+")"
	if errors.Is(err, context.DeadlineExceeded) {
		status, what = http.StatusGatewayTimeout, "timed out"
	}
	if ex.inference {
		rt.Metrics.CountRequest(ex.arm, status, ex.attempt)
		rt.Metrics.Duration[ex.arm].Observe(time.Since(ex.started).Seconds())
	}
	serve.Error(w, status, "the "+ex.arm+" "+what)
}

// hopByHop are the fields that describe one connection, not the message.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Trailers", "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Expect"}

// endToEnd is a copy of header without hop-by-hop fields (and those Connection names).
func endToEnd(header http.Header) http.Header {
	out := header.Clone()
	for _, value := range header.Values("Connection") {
		for _, name := range strings.Split(value, ",") {
			out.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range hopByHop {
		out.Del(name)
	}
	return out
}

// mirrorHeader is the shadow copy's header: the client's, without an X-Modelops-Attempt, with
// the id the champion's answer was remembered by (the same id on both arms pairs the labels).
func mirrorHeader(header http.Header, requestID string) http.Header {
	out := endToEnd(header)
	out.Del(marks.AttemptField)
	if requestID != "" {
		out.Set(marks.RequestIDField, marks.HeaderValue(requestID))
	}
	return out
}

func parseJSON(payload []byte) any {
	decoder := json.NewDecoder(bytes.NewReader(payload))
	decoder.UseNumber()
	var value any
	if decoder.Decode(&value) != nil {
		return nil
	}
	return value
}
