//go:build tools

// Package tools is never compiled: it pins helm for scripts/devcluster-build.sh.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
