package marks

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestMarksAreReadAsThePythonSidecarReadThem(t *testing.T) {
	cases := []struct {
		lines []string
		want  Marks
	}{
		{nil, Marks{"", 1, 0}},
		{[]string{"X-Request-Id: a", "x-request-id:  b \t"}, Marks{"b", 1, 0}},
		{[]string{"x-envoy-attempt-count: 3"}, Marks{"", 3, 0}},
		{[]string{"grpc-previous-rpc-attempts: 0"}, Marks{"", 1, 0}},
		{[]string{"grpc-previous-rpc-attempts: 2"}, Marks{"", 3, 0}},
		{[]string{"x-envoy-attempt-count: many", "grpc-previous-rpc-attempts: -1"}, Marks{"", 1, 0}},
		{[]string{"X-Modelops-Attempt: 4"}, Marks{"", 1, 4}},
		{[]string{"X-Modelops-Attempt: junk"}, Marks{"", 1, 1}},
		{[]string{"x-envoy-attempt-count: 99999999999999999999"}, Marks{"", 1000, 0}},
		{[]string{"grpc-previous-rpc-attempts: " + strings.Repeat("9", 5000)}, Marks{"", 1001, 0}},
		{[]string{"X-Modelops-Attempt: 0002", "x-envoy-attempt-count: 000000001"}, Marks{"", 1, 2}},
	}
	for _, c := range cases {
		header := http.Header{}
		for _, line := range c.lines {
			name, value, _ := strings.Cut(line, ":")
			header.Add(name, strings.TrimLeft(value, " "))
		}
		if got := Read(header); got != c.want {
			t.Errorf("%v: got %+v, want %+v", c.lines, got, c.want)
		}
	}
}

func TestRequestIDsAreBoundedPrintableASCII(t *testing.T) {
	for id, ok := range map[string]bool{
		"abc-1": true, strings.Repeat("a", 256): true, "with space": true,
		strings.Repeat("a", 257): false, "caf\u00e9": false, "a\x00b": false, "a\x7fb": false,
	} {
		header := http.Header{"X-Request-Id": {id}}
		if got := CheckRequestIDs(header) == ""; got != ok {
			t.Errorf("%q: accepted %v, want %v", id, got, ok)
		}
	}
}

func TestAnIDCannotSplitTheHeaderItIsWrittenIn(t *testing.T) {
	if got := HeaderValue("a\r\nSet-Cookie: x\x00\x7f"); got != "a  Set-Cookie: x  " {
		t.Errorf("got %q", got)
	}
	if got := HeaderValue("caf\u00e9"); got != "caf\u00e9" {
		t.Errorf("got %q", got)
	}
}

func TestOnlyAnIPLiteralAndAPortNameAReplica(t *testing.T) {
	for value, want := range map[string]string{
		"10.0.0.7:8000": "10.0.0.7:8000", " 10.0.0.7:8000\t": "10.0.0.7:8000",
		"[fd00::1]:8000": "[fd00::1]:8000", "[::1]:1": "[::1]:1",
		"localhost:8000": "", "http://10.0.0.7:8000": "", "10.0.0.7:8000/v2": "",
		"user@10.0.0.7:8000": "", "10.0.0.7:0": "", "10.0.0.7:65536": "", "0.0.0.0:8000": "",
		"[::]:8000": "", "224.0.0.1:8000": "", "[::1%lo]:8000": "", "fd00::1:8000": "",
		"[10.0.0.7]:8000": "", "010.0.0.7:8000": "", "10.0.0.7:08000": "", "": "",
	} {
		if got := ReplicaAddress(value); got != want {
			t.Errorf("ReplicaAddress(%q) = %q, want %q", value, got, want)
		}
	}
}

func TestTheSidecarNamesTheAddressAConnectionCameInOn(t *testing.T) {
	for addr, want := range map[net.Addr]string{
		&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8000}:        "10.1.2.3:8000",
		&net.TCPAddr{IP: net.ParseIP("::ffff:10.1.2.3"), Port: 8000}: "10.1.2.3:8000",
		&net.TCPAddr{IP: net.ParseIP("fd00::5"), Port: 8000}:         "[fd00::5]:8000",
		&net.TCPAddr{IP: net.ParseIP("0.0.0.0"), Port: 8000}:         "",
		&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}:              "",
	} {
		if got := ServedBy(addr); got != want {
			t.Errorf("ServedBy(%v) = %q, want %q", addr, got, want)
		}
	}
}

func TestTheMemoAnswersAsServedByWhateverAddressComes(t *testing.T) {
	var memo ServedByMemo
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8000},
		&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8000}, // from the memo
		&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8001}, // another port: computed again
		&net.TCPAddr{IP: net.ParseIP("0.0.0.0"), Port: 8001},
		&net.UnixAddr{Name: "/run/x.sock", Net: "unix"},
		&net.TCPAddr{IP: net.ParseIP("fd00::5"), Port: 8000},
		&net.TCPAddr{IP: net.ParseIP("fd00::5"), Port: 8000},
	} {
		if got, want := memo.Of(addr), ServedBy(addr); got != want {
			t.Errorf("memo.Of(%v) = %q, want %q", addr, got, want)
		}
	}
}
