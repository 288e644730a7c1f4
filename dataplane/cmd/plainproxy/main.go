// Command plainproxy is the floor the serving benchmark measures the sidecar against: a bare
// httputil.ReverseProxy on net/http (its copy buffers pooled), with no limits, metrics, parsing
// or signing, run with the data plane's runtime settings (one thread, and the linked-in default
// of dataplane/build.sh).
// What it adds to a request is what net/http and the Go runtime cost by themselves.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"

	"modelops.io/dataplane/internal/upstream"
)

func main() {
	upstreamURL := flag.String("upstream", "", "URL of the server to proxy to")
	listen := flag.String("listen", "127.0.0.1:8000", "address to listen on")
	procs := flag.Int("procs", 1, "GOMAXPROCS (the data plane's default is 1)")
	flag.Parse()
	target, err := url.Parse(*upstreamURL)
	if err != nil || target.Host == "" {
		fmt.Fprintf(os.Stderr, "error: --upstream: expected an http:// URL, got %q\n", *upstreamURL)
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*procs)
	proxy := httputil.NewSingleHostReverseProxy(target)
	// As the data plane's transport: enough idle connections that c=16 reuses them.
	proxy.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}
	// And its copy buffers reused, as any tuned ReverseProxy has them: without a pool each
	// response allocates 32 KiB, which is not what net/http must cost.
	proxy.BufferPool = &upstream.Buffers{}
	fmt.Fprintln(os.Stderr, http.ListenAndServe(*listen, proxy))
	os.Exit(1)
}
