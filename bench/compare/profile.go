package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// profiles collects, for -profile, one CPU profile of the gateway per
// measured run and merges them into one: the profile that `make pgo`
// checks in as cmd/gateway/default.pgo for profile-guided optimization.
// Safe for concurrent use.
type profiles struct {
	mu   sync.Mutex
	all  []*profile.Profile
	errs []error
}

// profileSeconds is how long the CPU profile of a load window of d is:
// whole seconds (the unit of /debug/pprof/profile), at least one, never
// longer than d, so that it ends with the load.
func profileSeconds(d time.Duration) int {
	return max(1, int(d/time.Second))
}

// start asks the process at base (its http://host:port) for a CPU profile
// of the next d in the background and returns a function that waits for
// it. Call start right before the load begins and the wait right after it
// ends. A failure is kept and reported by write.
func (ps *profiles) start(ctx context.Context, base string, d time.Duration, label string) (wait func()) {
	secs := profileSeconds(d)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p, err := fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), time.Duration(secs)*time.Second+30*time.Second)
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if err != nil {
			ps.errs = append(ps.errs, fmt.Errorf("%s: %w", label, err))
			return
		}
		ps.all = append(ps.all, p)
	}()
	return func() { <-done }
}

// fetchProfile GETs a pprof CPU profile from url and parses it.
func fetchProfile(ctx context.Context, url string, timeout time.Duration) (*profile.Profile, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return p, nil
}

// write merges every profile collected into one and writes it to path,
// gzipped pprof protobuf (what `go build -pgo` reads), through a temporary
// file renamed into place, so that a failed run leaves the previous
// profile alone. It writes nothing if any profile could not be fetched:
// a profile missing a scenario would not represent the load.
func (ps *profiles) write(path string) (n int, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err := errors.Join(ps.errs...); err != nil {
		return 0, fmt.Errorf("profile not written: %w", err)
	}
	if len(ps.all) == 0 {
		return 0, errors.New("profile not written: no run of the gateway was profiled (-systems without gateway, or every run skipped)")
	}
	merged, err := profile.Merge(ps.all)
	if err != nil {
		return 0, fmt.Errorf("merge profiles: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if err := merged.Write(tmp); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, err
	}
	return len(ps.all), os.Rename(tmp.Name(), path)
}
