//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Lock takes an exclusive, non-blocking flock(2) on <dir>/lock and writes the
// pid of this process into it. It fails at once, with an error wrapping
// ErrLocked that names the holder's pid when the file says it, if another
// open file description holds the lock: another process, or another Lock of
// the same directory in this process.
//
// The kernel drops the lock when the process exits, so a crash never leaves
// a stale lock behind; the file itself is left in place (removing it would
// race with a process about to lock it). release unlocks and closes; calling
// it more than once is safe.
func Lock(dir string) (release func() error, err error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := "unknown"
		if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			pid = strings.TrimSpace(string(b))
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another process (pid %s); is another gateway using the same storage path?", ErrLocked, dir, pid)
		}
		return nil, fmt.Errorf("flock %s: %w", path, err)
	}
	// The pid is informational: failing to write it does not fail the lock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		})
		return err
	}, nil
}
