// Package queuetest holds test helpers for the gateway's disk queues.
package queuetest

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// SegmentBytes is the size of every disk queue segment under storage, a
// gateway's --storage.path.
func SegmentBytes(t testing.TB, storage string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(storage, "queues"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".seg") {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	require.NoError(t, err)
	return n
}
