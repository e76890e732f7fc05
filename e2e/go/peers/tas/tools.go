//go:build tools

// Package tools pins Intel's Telemetry Aware Scheduling extender
// (telemetry-aware-scheduling/cmd), the Go scheduler extender the
// benchmarks run beside headroom-extender. Nothing here is our code.
package tools

import (
	_ "github.com/intel/platform-aware-scheduling/telemetry-aware-scheduling/cmd"
)
