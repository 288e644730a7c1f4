// Package upstream is the client side of the proxies: keep-alive connections to a backend, and
// the one retry that makes an upstream's keep-alive timeout invisible to clients.
package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"syscall"
	"time"
)

// Transport retries a request once, on a new connection, when it went out on a reused
// keep-alive connection that the upstream had already closed: nothing came back, so the
// upstream never saw it (a server closes an idle connection just as a request arrives; a
// terminating pod closes its idle ones). Go's own Transport retries that only for idempotent
// methods, and inference is POST. Bodies are held in memory (GetBody), so the retry resends it.
type Transport struct {
	pooled *http.Transport
	fresh  *http.Transport // keep-alives off: each retry gets a connection of its own
}

// New is a Transport whose connections take at most connectTimeout to open.
func New(connectTimeout time.Duration) *Transport {
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	pooled := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256, // the default 2 would open and close connections under load
		// Below the usual servers' keep-alive timeouts (aiohttp 75 s, Go 0 = forever), so that
		// we close idle connections before the server does as often as possible.
		IdleConnTimeout:    30 * time.Second,
		DisableCompression: true, // pass bodies on as they are
		ForceAttemptHTTP2:  false,
	}
	fresh := pooled.Clone()
	fresh.DisableKeepAlives = true
	return &Transport{pooled: pooled, fresh: fresh}
}

func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		reused = info.Reused
	}}
	first := req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := t.pooled.RoundTrip(first)
	if err == nil || !reused || req.Context().Err() != nil || !ClosedBeforeAnswer(err) {
		return resp, err
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		body, bodyErr := req.GetBody()
		if bodyErr != nil {
			return nil, err
		}
		retry.Body = body
	} else if req.Body != nil && req.Body != http.NoBody {
		return nil, err // the body is gone with the first attempt
	}
	return t.fresh.RoundTrip(retry)
}

// CloseIdleConnections closes the pooled connections not in use.
func (t *Transport) CloseIdleConnections() {
	t.pooled.CloseIdleConnections()
}

// ClosedBeforeAnswer: the connection ended before any byte of an answer came back (an EOF at
// the first read, a reset, a broken pipe while writing). A partial answer is another error
// (io.ErrUnexpectedEOF, a malformed response) and is not retried.
func ClosedBeforeAnswer(err error) bool {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "server closed idle connection")
}

// Unreachable: the request was never sent (connection refused, no route, connect timeout),
// so sending it elsewhere cannot duplicate it.
func Unreachable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// Reason is a short name of what failed, for an error message.
func Reason(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before the answer"
	case errors.As(err, &op) && op.Timeout():
		return op.Op + " timed out"
	case errors.As(err, &op):
		return op.Op + " failed"
	}
	return "bad answer"
}
