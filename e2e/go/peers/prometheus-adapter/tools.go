//go:build tools

// Package tools pins prometheus-adapter (cmd/adapter), the custom metrics
// adapter the benchmarks run beside headroom-metrics-adapter, backed by a
// Prometheus server. Nothing here is our code.
package tools

import (
	_ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
)
