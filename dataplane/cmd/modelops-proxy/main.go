// Command modelops-proxy is the data plane's metrics sidecar and router in one static binary.
// Installed as modelops-sidecar and modelops-router, it is the one its name says; otherwise
// the first argument names it: modelops-proxy sidecar|router [flags].
package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"modelops.io/dataplane/internal/router"
	"modelops.io/dataplane/internal/sidecar"
)

func main() {
	program, args := filepath.Base(os.Args[0]), os.Args[1:]
	if !strings.HasPrefix(program, "modelops-sidecar") && !strings.HasPrefix(program, "modelops-router") {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "usage: modelops-proxy sidecar|router [flags]")
			os.Exit(2)
		}
		program, args = "modelops-"+args[0], args[1:]
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(args)})))
	switch program {
	case "modelops-sidecar":
		os.Exit(sidecar.Main(args))
	case "modelops-router":
		os.Exit(router.Main(args))
	}
	fmt.Fprintf(os.Stderr, "unknown program %q: expected sidecar or router\n", program)
	os.Exit(2)
}

// logLevel reads --log-level (or MODELOPS_LOG_LEVEL) before the flags are parsed, so that the
// parsing itself logs at the right level.
func logLevel(args []string) slog.Level {
	name := os.Getenv("MODELOPS_LOG_LEVEL")
	for i, arg := range args {
		if value, ok := strings.CutPrefix(arg, "--log-level="); ok {
			name = value
		} else if arg == "--log-level" && i+1 < len(args) {
			name = args[i+1]
		}
	}
	name = strings.ToUpper(name)
	if name == "WARNING" || name == "CRITICAL" { // Python's names
		name = map[string]string{"WARNING": "WARN", "CRITICAL": "ERROR"}[name]
	}
	var level slog.Level
	if level.UnmarshalText([]byte(name)) != nil {
		return slog.LevelInfo
	}
	return level
}
