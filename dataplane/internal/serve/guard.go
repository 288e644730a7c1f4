package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"modelops.io/dataplane/internal/marks"
)

// Handler serves one request whose body has been read whole (bodies are held in memory while
// forwarded: retried on a fresh connection, copied to a shadow arm).
type Handler func(w http.ResponseWriter, r *http.Request, body []byte)

// Guard applies the limits to each request before the program sees it.
type Guard struct {
	Limits   Limits
	Budget   *Budget
	Draining *atomic.Bool
	Next     Handler
}

type connRequestsKey struct{}

// CountRequests gives each connection its request counter (http.Server.ConnContext).
func CountRequests(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connRequestsKey{}, new(atomic.Int64))
}

func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Draining (SIGTERM): each answer tells its client to reconnect, to a pod that stays.
	if g.Draining != nil && g.Draining.Load() {
		w.Header().Set("Connection", "close")
	}
	// A connection closed after this many requests reconnects, through the Service, to any
	// replica: long-lived clients are spread again after a scale-up.
	if counter, ok := r.Context().Value(connRequestsKey{}).(*atomic.Int64); ok {
		if n := counter.Add(1); g.Limits.MaxConnRequests > 0 && n >= g.Limits.MaxConnRequests {
			w.Header().Set("Connection", "close")
		}
	}
	// A request with both Content-Length and Transfer-Encoding is framed by the latter, and Go
	// drops the former without a trace; RFC 9112 (6.1) asks to close the connection after
	// answering it, or a front proxy that went by Content-Length reads what follows the body
	// differently from us (request smuggling). Since the Content-Length cannot be seen here,
	// every chunked request closes its connection: clients of inference APIs rarely chunk.
	if len(r.TransferEncoding) > 0 {
		w.Header().Set("Connection", "close")
	}
	if len(r.RequestURI) > g.Limits.MaxURIBytes {
		ErrorAndClose(w, http.StatusRequestURITooLong,
			fmt.Sprintf("request target is longer than %d bytes", g.Limits.MaxURIBytes))
		return
	}
	if problem := marks.CheckRequestIDs(r.Header); problem != "" {
		ErrorAndClose(w, http.StatusBadRequest, problem)
		return
	}
	body, taken, status, problem := g.readBody(w, r)
	defer g.Budget.Give(taken)
	if status != 0 {
		ErrorAndClose(w, status, problem)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	g.Next(w, r, body)
}

const bodyStep = 64 << 10 // a body of unknown length is reserved and read in steps of this

// readBody reads the whole body within the limits; on failure the status and message to answer.
func (g *Guard) readBody(w http.ResponseWriter, r *http.Request) (
	body []byte, taken int64, status int, problem string) {
	limit := g.Limits.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, 0, http.StatusRequestEntityTooLarge, tooLarge(limit)
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, 0, 0, ""
	}
	busy := "the proxy holds as many request bytes as it may (--max-inflight-bytes); retry"
	control := http.NewResponseController(w)
	_ = control.SetReadDeadline(time.Now().Add(g.Limits.BodyTimeout))
	// Cleared after the body: the server's read of the idle connection, while the upstream
	// works, must not time out (that would cancel the request).
	defer func() { _ = control.SetReadDeadline(time.Time{}) }()
	reader := http.MaxBytesReader(w, r.Body, limit)
	known := r.ContentLength > 0
	if known {
		if !g.Budget.Take(r.ContentLength) {
			return nil, 0, http.StatusServiceUnavailable, busy
		}
		taken = r.ContentLength
		body = make([]byte, 0, r.ContentLength)
	}
	for {
		if len(body) == cap(body) {
			if known {
				return body, taken, 0, ""
			}
			if !g.Budget.Take(bodyStep) {
				return nil, taken, http.StatusServiceUnavailable, busy
			}
			taken += bodyStep
			grown := make([]byte, len(body), cap(body)+bodyStep)
			copy(grown, body)
			body = grown
		}
		n, err := reader.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if errors.Is(err, io.EOF) {
			return body, taken, 0, ""
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			var netErr net.Error
			switch {
			case errors.As(err, &tooBig):
				return nil, taken, http.StatusRequestEntityTooLarge, tooLarge(limit)
			case errors.As(err, &netErr) && netErr.Timeout():
				return nil, taken, http.StatusRequestTimeout, "the request body came too slowly"
			default:
				return nil, taken, http.StatusBadRequest, "could not read the request body"
			}
		}
	}
}

// tooLarge is formatted only for the request refused, not for every request.
func tooLarge(limit int64) string {
	return fmt.Sprintf("request body is larger than %d bytes", limit)
}
