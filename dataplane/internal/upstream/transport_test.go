package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// An upstream that closes every connection after reading its second request, unanswered (its
// keep-alive timeout striking as the request arrives): the POST is sent again on a new
// connection and the client never sees the failure.
func TestAPostOnAConnectionClosedUnansweredIsRetriedOnce(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	var dropped atomic.Int64
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				reader := bufio.NewReader(conn)
				for count := 1; ; count++ {
					request, err := http.ReadRequest(reader)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, request.Body)
					if count == 2 {
						dropped.Add(1)
						return
					}
					_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				}
			}()
		}
	}()
	transport := New(time.Second)
	for i := range 6 {
		body := []byte(`{"n":1}`)
		request, _ := http.NewRequest(http.MethodPost, "http://"+listener.Addr().String()+"/infer",
			bytes.NewReader(body))
		request.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		response, err := transport.RoundTrip(request)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		payload, _ := io.ReadAll(response.Body)
		response.Body.Close()
		if string(payload) != "ok" {
			t.Fatalf("request %d: %q", i, payload)
		}
	}
	if dropped.Load() == 0 {
		t.Error("the upstream never dropped a request: the test tested nothing")
	}
}

func TestAFreshConnectionThatFailsIsNotRetried(t *testing.T) {
	listener, _ := net.Listen("tcp", "127.0.0.1:0")
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_, _ = bufio.NewReader(conn).ReadString('\n')
			conn.Close()
		}
	}()
	defer listener.Close()
	request, _ := http.NewRequest(http.MethodPost, "http://"+listener.Addr().String()+"/",
		strings.NewReader("x"))
	if _, err := New(time.Second).RoundTrip(request); err == nil {
		t.Fatal("no error")
	}
	if accepted.Load() != 1 {
		t.Errorf("%d connections, want 1", accepted.Load())
	}
}
