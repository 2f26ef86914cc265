//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// demoRun is `make demo` (scripts/demo.sh) started by a test: the README's
// first command, with its client and upstream Prometheus, in a process
// group of its own as a terminal would start it.
type demoRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer // stdout
	mu     sync.Mutex
	stderr []string // lines so far
	lines  chan string
	done   chan error
}

// startDemo runs `make demo` with the environment env added, its files
// in a temporary directory and preferred ports that are free, and kills
// its process group in t.Cleanup if it is still running.
func startDemo(t *testing.T, env ...string) *demoRun {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "demo")
	dir := filepath.Join(t.TempDir(), "demo")
	cmd.Env = append(os.Environ(),
		"DEMO_DIR="+dir,
		"GATEWAY_BIN="+gatewayBin(t),
		"PROMETHEUS_BIN="+peerBin(t, "PROMETHEUS_BIN", "prometheus"),
	)
	for _, name := range []string{"UPSTREAM_PORT", "GATEWAY_PORT", "CLIENT_PORT"} {
		addr, err := freeAddr()
		require.NoError(t, err)
		cmd.Env = append(cmd.Env, name+"="+addr[strings.LastIndexByte(addr, ':')+1:])
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d := &demoRun{cmd: cmd, lines: make(chan string, 1000), done: make(chan error, 1)}
	cmd.Stdout = &d.out
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.stderr = append(d.stderr, sc.Text())
			d.mu.Unlock()
			select {
			case d.lines <- sc.Text():
			default:
			}
		}
		if err := sc.Err(); err != nil { // a line too long: noted, the rest drained
			d.mu.Lock()
			d.stderr = append(d.stderr, "reading the demo's stderr: "+err.Error())
			d.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
		d.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case err := <-d.done:
			d.done <- err
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		// What the demo started and did not stop, in sessions of their
		// own: killed if the PID is still one of them (its command line
		// names the demo's directory).
		for _, pid := range d.pids() {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(dir)) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("demo stdout:\n%s\ndemo stderr:\n%s", d.out.String(), strings.Join(d.log(), "\n"))
		}
	})
	return d
}

func (d *demoRun) log() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.stderr...)
}

var demoStarted = regexp.MustCompile(`^demo: started (\w+) \(pid (\d+)\)`)

// pids returns the PIDs of the processes the demo said it started.
func (d *demoRun) pids() []int {
	var pids []int
	for _, l := range d.log() {
		if m := demoStarted.FindStringSubmatch(l); m != nil {
			pid, _ := strconv.Atoi(m[2])
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitLine waits up to timeout for a line of the demo's stderr holding s.
func (d *demoRun) waitLine(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-d.lines:
			if strings.Contains(l, s) {
				return
			}
		case err := <-d.done:
			d.done <- err
			t.Fatalf("demo exited (%v) before %q", err, s)
		case <-deadline:
			t.Fatalf("no %q from the demo within %s", s, timeout)
		}
	}
}

// wait waits up to timeout for the demo to exit and returns its exit code
// (-1 if a signal ended it).
func (d *demoRun) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("the demo still runs %s later", timeout)
		return 0
	}
}

// requireStoppedInOrder checks that the demo stopped client, gateway and
// upstream, in that order (each flushes to the next), and that none of
// them runs any more.
func (d *demoRun) requireStoppedInOrder(t *testing.T) {
	t.Helper()
	var stopped []string
	for _, l := range d.log() {
		if name, ok := strings.CutPrefix(l, "demo: stopping "); ok {
			stopped = append(stopped, strings.Fields(name)[0])
		}
		require.NotContains(t, l, "still running 30s after SIGTERM")
	}
	require.Equal(t, []string{"client", "gateway", "upstream"}, stopped)
	pids := d.pids()
	require.Len(t, pids, 3)
	for _, pid := range pids {
		require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "pid %d still runs", pid)
	}
}

// TestDemo runs `make demo` as the README's first command does, for a
// second after data arrived upstream: the client's scrapes reach the
// upstream Prometheus through the gateway, with the gateway's external
// label, and the demo stops what it started.
func TestDemo(t *testing.T) {
	t.Parallel()
	d := startDemo(t, "DEMO_DURATION=1")
	require.Equal(t, 0, d.wait(t, 3*time.Minute))
	out := d.out.String()
	require.Regexp(t, `(?m)^[1-9][0-9]* series arrived upstream`, out)
	require.Regexp(t, `(?m)^[1-9][0-9]* series upstream after 1s`, out)
	d.requireStoppedInOrder(t)
}

// TestDemoSignal stops a running demo as Ctrl-C or `timeout` does: a
// signal to its whole process group. The demo stops its processes in turn
// within seconds (in the terminal's group, every process would get the
// signal at once, and the client would retry against a gateway already
// gone until killed 30 s later).
func TestDemoSignal(t *testing.T) {
	t.Parallel()
	d := startDemo(t)
	d.waitLine(t, "running until Ctrl-C", 3*time.Minute)
	// The signal reaches the script alone, which stops the rest in order.
	for _, pid := range d.pids() {
		pgid, err := syscall.Getpgid(pid)
		require.NoError(t, err)
		require.NotEqual(t, d.cmd.Process.Pid, pgid, "pid %d is in the demo's process group", pid)
	}
	start := time.Now()
	require.NoError(t, syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM))
	d.wait(t, 20*time.Second)
	t.Logf("stopped %s after the signal", time.Since(start))
	d.requireStoppedInOrder(t)
}
