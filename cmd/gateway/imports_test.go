package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImportGraph keeps the gateway's packages peers that main wires: the
// receiver, tenant and forward packages never import each other, the queue
// is a generic FIFO that knows nothing of the registry, the wire package
// and config import no package of the gateway. It reads the graph from
// `go list -deps`, as the build sees it (tests excluded).
func TestImportGraph(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const mod = "github.com/rwgateway/gateway/"
	forbidden := map[string][]string{
		"pkg/forward":  {"pkg/receiver", "pkg/tenant"},
		"pkg/tenant":   {"pkg/receiver", "pkg/forward"},
		"pkg/receiver": {"pkg/forward", "pkg/tenant", "pkg/queue"},
		"pkg/queue":    {"pkg/registry", "pkg/prw", "pkg/forward", "config"},
		"pkg/prw":      {"*"},
		"config":       {"*"},
	}
	for pkg, bad := range forbidden {
		t.Run(pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
			require.NoError(t, err, "go list -deps %s", pkg)
			deps := strings.Fields(string(out))
			require.Contains(t, deps, mod+pkg)
			for _, d := range deps {
				own, ok := strings.CutPrefix(d, mod)
				if !ok || own == pkg {
					continue
				}
				for _, b := range bad {
					require.False(t, b == "*" || own == b || strings.HasPrefix(own, b+"/"),
						"%s imports %s: the design keeps them apart (packages are peers wired by main)", pkg, own)
				}
			}
		})
	}
}
