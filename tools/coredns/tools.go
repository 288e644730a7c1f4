//go:build tools

// Package tools is never compiled: its import keeps `go mod tidy` from dropping CoreDNS, which
// scripts/devcluster-build.sh builds to resolve Service names on the dev cluster's real node.
package tools

import (
	_ "github.com/coredns/coredns"
)
