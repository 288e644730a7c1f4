//go:build tools

// Package tools is never compiled: it pins the Gateway API module whose config/crd/standard
// CRDs the dev cluster installs.
package tools

import _ "sigs.k8s.io/gateway-api/apis/v1"
