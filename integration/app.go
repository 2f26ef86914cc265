//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// startAttempts bounds the retries when a free port was taken between
	// probing it and the process binding it.
	startAttempts = 5
	// defaultReadyTimeout is how long a process gets to answer its
	// readiness path with 200.
	defaultReadyTimeout = 30 * time.Second
	// stopGrace is how long a process gets to exit after SIGTERM in
	// cleanup before it is killed.
	stopGrace = 5 * time.Second
	// logTailLines is how much of each process log a failing test prints.
	logTailLines = 200
)

// The upstream protobuf_message values, as the gateway's config spells them.
const (
	protoV1 = "prometheus.WriteRequest"
	protoV2 = "io.prometheus.write.v2.Request"
)

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("address already in use")

// ProcessOptions describes one process to start.
type ProcessOptions struct {
	// Name names the process in logs and failure messages.
	Name string
	// Bin is the executable.
	Bin string
	// Args returns the arguments for a process listening on addr
	// (127.0.0.1:PORT). It is called once per start attempt and may write
	// configuration files that name addr.
	Args func(addr string) []string
	// ReadyPath is polled until it answers 200, e.g. /-/ready.
	ReadyPath string
	// Ready, if set, replaces the plain-HTTP GET of ReadyPath: it is polled
	// with the process's address until it returns nil (for processes that
	// serve only TLS or need credentials).
	Ready func(addr string) error
	// Addr, if set, is the fixed address to listen on, for a process that
	// must come up where another already expects it; no other port is tried.
	Addr string
	// ReadyTimeout defaults to 30s.
	ReadyTimeout time.Duration
	// Dir is the working directory; empty is a fresh temporary directory.
	Dir string
}

// Process is a started child process. Its methods are safe for concurrent
// use.
type Process struct {
	Name string
	// Addr is the 127.0.0.1:PORT it listens on.
	Addr    string
	LogPath string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// StartProcess starts opts.Bin on a free 127.0.0.1 port and waits until
// opts.ReadyPath answers 200. It retries on another port if the port was
// taken in the meantime. The process is stopped by PID in t.Cleanup (SIGTERM,
// then SIGKILL after 5s), and its log tail is printed if t failed.
func StartProcess(t testing.TB, opts ProcessOptions) *Process {
	t.Helper()
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = defaultReadyTimeout
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		p, err := startOnce(t, opts, attempt)
		if err == nil {
			return p
		}
		lastErr = err
		if opts.Addr != "" || !errors.Is(err, errPortInUse) {
			break
		}
		t.Logf("%s: port taken, retrying on another (%v)", opts.Name, err)
	}
	t.Fatalf("start %s: %v", opts.Name, lastErr)
	return nil
}

func startOnce(t testing.TB, opts ProcessOptions, attempt int) (*Process, error) {
	t.Helper()
	addr := opts.Addr
	if addr == "" {
		var err error
		if addr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("%s.%d.log", sanitize(opts.Name), attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := opts.Args(addr)
	cmd := exec.Command(opts.Bin, args...)
	cmd.Dir = opts.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Children die with the test binary, even when it is killed by -timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(logFile, "# %s %s\n", opts.Bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("exec %s: %w", opts.Bin, err)
	}
	p := &Process{Name: opts.Name, Addr: addr, LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	// Cleanups run last-in first-out: stop first, then print the complete log.
	t.Cleanup(func() {
		if t.Failed() {
			p.dumpLog(t)
		}
	})
	t.Cleanup(func() { p.Stop(t, stopGrace) })

	ready := opts.Ready
	if ready == nil {
		ready = func(string) error { return p.getOK(opts.ReadyPath) }
	}
	err = p.pollReady(opts.ReadyTimeout, ready)
	if err == nil {
		// Another test's process may have taken the port between the probe
		// and this process's bind, and answered the readiness check for it:
		// ready means this process is still running, has not failed to
		// bind, and is still ready a moment later.
		err = p.confirmReady(ready)
	}
	if err != nil {
		p.Stop(t, stopGrace)
		if opts.Addr == "" && strings.Contains(p.Log(), "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortInUse, err)
		}
		return nil, fmt.Errorf("%v; log:\n%s", err, p.logTail(logTailLines))
	}
	t.Logf("%s: pid %d ready on %s (log %s)", p.Name, p.PID(), p.Addr, p.LogPath)
	return p, nil
}

// handedOut holds the addresses freeAddr returned. The kernel may give a
// port that a process of a test here listened on again once it exited,
// and a parallel test's process listening there would answer for it (a
// check that an exited gateway is no longer ready saw another's 200): an
// address is handed out once per test binary.
var handedOut sync.Map

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago and that it never returned before.
func freeAddr() (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("probe free port: %w", err)
		}
		addr := l.Addr().String()
		if err := l.Close(); err != nil {
			return "", err
		}
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr, nil
		}
	}
	return "", fmt.Errorf("probe free port: every port offered was handed out before")
}

// pollReady calls ready with p's address every 100ms until it returns nil,
// p exits or timeout passes.
func (p *Process) pollReady(timeout time.Duration, ready func(addr string) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready: %v", p.Name, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready on %s after %v (last: %v)", p.Name, p.Addr, timeout, last)
		case <-tick.C:
		}
		if last = ready(p.Addr); last == nil {
			return nil
		}
	}
}

// confirmReady checks, 300ms after the first successful readiness check,
// that p is still running, has not logged a failed bind, and is still ready.
func (p *Process) confirmReady(ready func(addr string) error) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited right after it looked ready: %v", p.Name, p.waitErr)
	case <-time.After(300 * time.Millisecond):
	}
	if strings.Contains(p.Log(), "address already in use") {
		return fmt.Errorf("%s could not bind %s; another process answered for it", p.Name, p.Addr)
	}
	return ready(p.Addr)
}

// readyClient polls readiness paths.
var readyClient = &http.Client{Timeout: 2 * time.Second}

// getOK returns nil if GET path answers 200.
func (p *Process) getOK(path string) error {
	resp, err := readyClient.Get(p.URL(path))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// URL returns http://Addr + path.
func (p *Process) URL(path string) string { return "http://" + p.Addr + path }

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the process by PID.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitCode waits up to timeout for the process to exit and returns its exit
// code, or an error if it is still running or was killed by a signal.
func (p *Process) ExitCode(timeout time.Duration) (int, error) {
	select {
	case <-p.exited:
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still running after %v", p.Name, timeout)
	}
	st := p.cmd.ProcessState
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, fmt.Errorf("%s killed by %v", p.Name, ws.Signal())
	}
	return st.ExitCode(), nil
}

// Stop sends SIGTERM, waits up to grace, then sends SIGKILL and waits. It
// is a no-op once the process has exited.
func (p *Process) Stop(t testing.TB, grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(grace):
	}
	t.Logf("%s: pid %d still running %v after SIGTERM, killing it", p.Name, p.PID(), grace)
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Log returns the process's whole log so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func (p *Process) logTail(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n {
			lines = append(lines[:0], lines[len(lines)-n:]...)
		}
	}
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %s truncated; whole log: %s]", p.Name, p.LogPath)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

var dumpMu sync.Mutex

func (p *Process) dumpLog(t testing.TB) {
	dumpMu.Lock()
	defer dumpMu.Unlock()
	t.Logf("===== %s (pid %d, %s) log tail =====\n%s\n===== end of %s log =====", p.Name, p.PID(), p.Addr, p.logTail(logTailLines), p.Name)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// writeFile writes content to dir/name and returns its path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// repoRoot is the repository root: tests run in integration/.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// requireIntegration skips t under -short.
func requireIntegration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
}

// gatewayBin returns the gateway binary: $GATEWAY_BIN or bin/gateway. It
// fails t if there is none.
func gatewayBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("GATEWAY_BIN")
	if bin == "" {
		bin = filepath.Join(repoRoot(t), "bin", "gateway")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("gateway binary %s missing or not executable (run `make build`, or set GATEWAY_BIN): %v", bin, err)
	}
	return bin
}

// peerBin returns the peer binary for env (PROMETHEUS_BIN or VMAGENT_BIN):
// from the environment, else from .cache/peers/env as scripts/peers.sh
// wrote it, else name on PATH. A missing peer fails t, or skips it when
// GATEWAY_SKIP_PEERS=1.
func peerBin(t testing.TB, env, name string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		bin = peersEnvFile(t)[env]
	}
	if bin == "" {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
		}
	}
	if bin != "" {
		if fi, err := os.Stat(bin); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return bin
		}
	}
	msg := fmt.Sprintf("%s not found (%s=%q, .cache/peers/env, PATH): run scripts/peers.sh (make peers)", name, env, bin)
	if os.Getenv("GATEWAY_SKIP_PEERS") == "1" {
		t.Skip(msg + "; skipped because GATEWAY_SKIP_PEERS=1")
	}
	t.Fatal(msg + ", or set GATEWAY_SKIP_PEERS=1 to skip tests that need it")
	return ""
}

func peersEnvFile(t testing.TB) map[string]string {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".cache", "peers", "env"))
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok {
			m[k] = v
		}
	}
	return m
}

// Gateway starts bin/gateway with the configuration config, on a free port,
// with its storage in a temporary directory, and waits for /-/ready.
func Gateway(t testing.TB, config string, extraArgs ...string) *Process {
	t.Helper()
	bin := gatewayBin(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "gateway.yml", config)
	storage := filepath.Join(dir, "data")
	return StartProcess(t, ProcessOptions{
		Name: "gateway",
		Bin:  bin,
		Dir:  dir,
		Args: func(addr string) []string {
			return append([]string{
				"--config.file=" + cfg,
				"--web.listen-address=" + addr,
				"--storage.path=" + storage,
				"--log.level=debug",
			}, extraArgs...)
		},
		ReadyPath: "/-/ready",
	})
}

// GatewayConfig returns a gateway configuration with external label
// gw="test" and one upstream named name.
func GatewayConfig(name, url, protobufMessage string) string {
	return fmt.Sprintf(`global:
  external_labels: {gw: test}
upstreams:
  - name: %s
    url: %s
    protobuf_message: %s
    queue_config: {batch_send_deadline: 1s, max_shards: 4, min_backoff: 100ms, max_backoff: 1s}
`, name, url, protobufMessage)
}

// Prometheus starts Prometheus with the configuration config(addr), where
// addr is its own listen address, and waits for /-/ready. receiver enables
// its remote-write receiver.
func Prometheus(t testing.TB, name string, config func(addr string) string, receiver bool) *Process {
	t.Helper()
	bin := peerBin(t, "PROMETHEUS_BIN", "prometheus")
	dir := t.TempDir()
	return StartProcess(t, ProcessOptions{
		Name: name,
		Bin:  bin,
		Dir:  dir,
		Args: func(addr string) []string {
			cfg := writeFile(t, dir, "prometheus.yml", config(addr))
			args := []string{
				"--config.file=" + cfg,
				"--web.listen-address=" + addr,
				"--storage.tsdb.path=" + filepath.Join(dir, "data"),
				"--log.level=debug",
			}
			if receiver {
				args = append(args, "--web.enable-remote-write-receiver")
			}
			return args
		},
		ReadyPath:    "/-/ready",
		ReadyTimeout: 60 * time.Second,
	})
}

// VMAgent starts vmagent scraping per scrapeConfig(addr) and remote-writing
// to writeURL, and waits for /health.
func VMAgent(t testing.TB, scrapeConfig func(addr string) string, writeURL string) *Process {
	t.Helper()
	bin := peerBin(t, "VMAGENT_BIN", "vmagent")
	dir := t.TempDir()
	return StartProcess(t, ProcessOptions{
		Name: "vmagent",
		Bin:  bin,
		Dir:  dir,
		Args: func(addr string) []string {
			cfg := writeFile(t, dir, "scrape.yml", scrapeConfig(addr))
			return []string{
				"-httpListenAddr=" + addr,
				"-remoteWrite.url=" + writeURL,
				"-remoteWrite.tmpDataPath=" + filepath.Join(dir, "rw"),
				"-remoteWrite.flushInterval=1s",
				"-promscrape.config=" + cfg,
				"-loggerLevel=INFO",
			}
		},
		ReadyPath: "/health",
	})
}

// eventually calls f every interval until it returns nil or timeout passes,
// and returns f's last error.
func eventually(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// formatUnix formats t as Prometheus API seconds with millisecond precision.
func formatUnix(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// firstLines returns the first n lines of b, for error messages.
func firstLines(b []byte, n int) string {
	lines := bytes.SplitN(b, []byte("\n"), n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
