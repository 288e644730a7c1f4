//go:build tools

// Package tools is never compiled: its import keeps `go mod tidy` from dropping Prometheus,
// which scripts/devcluster-build.sh builds for the dev cluster (Debian's package leaves out
// Kubernetes service discovery, which the in-cluster Prometheus needs).
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
)
