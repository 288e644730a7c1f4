package marks

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync/atomic"
)

// ServedByField names the replica that answered (ip:port): the sidecar writes it, the router
// keeps it with the request id, takes it out of the answer and sends feedback there.
const ServedByField = "X-Modelops-Served-By"

var replicaSyntax = regexp.MustCompile(
	`^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]{2,45}\]):([1-9][0-9]{0,4})$`)

// ReplicaAddress is value when it names one unicast or loopback IP literal (IPv6 in brackets)
// and a port 1-65535, exactly; "" for anything else (no host names, paths, users, zones).
func ReplicaAddress(value string) string {
	value = trimBlank(value)
	match := replicaSyntax.FindStringSubmatch(value)
	if match == nil {
		return ""
	}
	if port, err := strconv.Atoi(match[2]); err != nil || port > 65535 {
		return ""
	}
	host := match[1]
	bracketed := host[0] == '['
	if bracketed {
		host = host[1 : len(host)-1]
	}
	address, err := netip.ParseAddr(host)
	if err != nil || address.Zone() != "" || bracketed != address.Is6() {
		return ""
	}
	if address.IsUnspecified() || address.IsMulticast() {
		return ""
	}
	return value
}

// ServedBy is the value for a connection accepted on local; "" when the router would not take it.
func ServedBy(local net.Addr) string {
	address, ok := localAddrPort(local)
	if !ok {
		return ""
	}
	return servedByOf(address)
}

func localAddrPort(local net.Addr) (netip.AddrPort, bool) {
	tcp, ok := local.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	address, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return netip.AddrPort{}, false
	}
	address = address.Unmap() // a dual-stack socket took an IPv4 connection
	return netip.AddrPortFrom(address.WithZone(""), uint16(tcp.Port)), true
}

func servedByOf(local netip.AddrPort) string {
	return ReplicaAddress(local.String())
}

// ServedByMemo answers ServedBy for the address it last saw without the regular expression:
// a proxy's connections all arrive on the one address it listens on.
type ServedByMemo struct {
	last atomic.Pointer[servedByEntry]
}

type servedByEntry struct {
	local netip.AddrPort
	value string
}

func (m *ServedByMemo) Of(local net.Addr) string {
	key, ok := localAddrPort(local)
	if !ok {
		return ""
	}
	if last := m.last.Load(); last != nil && last.local == key {
		return last.value
	}
	entry := &servedByEntry{key, servedByOf(key)}
	m.last.Store(entry)
	return entry.value
}

func trimBlank(value string) string {
	start, end := 0, len(value)
	for start < end && (value[start] == ' ' || value[start] == '\t') {
		start++
	}
	for end > start && (value[end-1] == ' ' || value[end-1] == '\t') {
		end--
	}
	return value[start:end]
}
