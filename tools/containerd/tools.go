//go:build tools

// Package tools is never compiled: its imports keep `go mod tidy` from dropping the
// container runtime that scripts/devcluster-build.sh builds for the dev cluster's real node.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
