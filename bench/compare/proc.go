package main

import (
	"bufio"
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
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (the kernel converts its
// internal HZ to it), so it is not read with sysconf, which needs cgo.
const clockTicks = 100

const (
	// readyTimeout is how long a process gets to answer its readiness path.
	readyTimeout = 60 * time.Second
	// stopGrace is how long a process gets to exit after SIGTERM before it
	// is killed.
	stopGrace = 5 * time.Second
	// startAttempts bounds retries when a probed free port was taken.
	startAttempts = 3
)

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("address already in use")

// procSpec describes one process to start.
type procSpec struct {
	name string
	bin  string
	// args returns the arguments for a process listening on addr; it may
	// write configuration files naming addr.
	args      func(addr string) ([]string, error)
	readyPath string
	dir       string
}

// proc is a started child process. It is stopped by PID only.
type proc struct {
	name    string
	addr    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// procs tracks every process started so that all of them can be stopped
// on any exit path, Ctrl-C included. Safe for concurrent use.
type procs struct {
	mu  sync.Mutex
	all map[*proc]struct{}
}

func (ps *procs) add(p *proc) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.all == nil {
		ps.all = map[*proc]struct{}{}
	}
	ps.all[p] = struct{}{}
}

// stop stops p and forgets it; it returns whether p had to be killed.
func (ps *procs) stop(p *proc) bool {
	killed := p.stop(stopGrace)
	ps.mu.Lock()
	delete(ps.all, p)
	ps.mu.Unlock()
	return killed
}

// stopAll stops every process still running.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := make([]*proc, 0, len(ps.all))
	for p := range ps.all {
		list = append(list, p)
	}
	ps.mu.Unlock()
	for _, p := range list {
		ps.stop(p)
	}
}

// start starts spec on a free 127.0.0.1 port and waits until it is ready.
func (ps *procs) start(ctx context.Context, spec procSpec) (*proc, error) {
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		p, err := ps.startOnce(ctx, spec, attempt)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	return nil, fmt.Errorf("start %s: %w", spec.name, lastErr)
}

func (ps *procs) startOnce(ctx context.Context, spec procSpec, attempt int) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args, err := spec.args(addr)
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(spec.dir, fmt.Sprintf("%s.%d.log", spec.name, attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "# %s %s\n", spec.bin, strings.Join(args, " "))
	cmd := exec.Command(spec.bin, args...)
	cmd.Dir = spec.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a Ctrl-C in the terminal reaches only this
		// program, which then stops its children by PID.
		Setpgid: true,
		// Children die with this program even if it is killed.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("exec %s: %w", spec.bin, err)
	}
	p := &proc{name: spec.name, addr: addr, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	ps.add(p)
	if err := p.waitReady(ctx, spec.readyPath); err != nil {
		ps.stop(p)
		log := tail(logPath, 20)
		if strings.Contains(log, "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortInUse, err)
		}
		return nil, fmt.Errorf("%v; log %s:\n%s", err, logPath, log)
	}
	return p, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("probe free port: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) waitReady(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready on %s: %v (last: %s)", p.name, path, ctx.Err(), last)
		case <-tick.C:
		}
		resp, err := client.Get(p.url(path))
		if err != nil {
			last = err.Error()
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = resp.Status
	}
}

// stop sends SIGTERM, waits up to grace, then kills; it returns whether
// the process had to be killed. A no-op once the process has exited.
func (p *proc) stop(grace time.Duration) bool {
	select {
	case <-p.exited:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return false
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return true
}

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// cpuSeconds returns the process's user plus system CPU time so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name", len(f))
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat stime: %w", err)
	}
	return float64(utime+stime) / clockTicks, nil
}

// peakRSS returns VmHWM, the process's peak resident set size, in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseVmHWM(f)
}

func parseVmHWM(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("proc status: VmHWM %q", rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status VmHWM: %w", err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("proc status: no VmHWM")
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
