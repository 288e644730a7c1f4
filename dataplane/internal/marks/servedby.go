package marks

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
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
	tcp, ok := local.(*net.TCPAddr)
	if !ok {
		return ""
	}
	address, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return ""
	}
	address = address.Unmap() // a dual-stack socket took an IPv4 connection
	return ReplicaAddress(netip.AddrPortFrom(address.WithZone(""), uint16(tcp.Port)).String())
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
