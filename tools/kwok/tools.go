//go:build tools

// Package tools is never compiled: it pins kwok for scripts/devcluster-build.sh.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
