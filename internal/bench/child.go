package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Child is a "hush serve" the bench started for itself: on a free
// loopback port, with a fresh data directory, no proof of work and its
// abuse limits off (--no-rate-limits), so the numbers are the server's
// and not its rate limiter's.
type Child struct {
	URL string // http://127.0.0.1:PORT

	cmd    *exec.Cmd
	dir    string
	exited chan struct{} // closed once the process is reaped
	err    error         // its exit status; read after exited

	mu   sync.Mutex
	tail []string // the last lines it logged, for error messages
}

const (
	childStartTimeout = time.Minute
	childStopTimeout  = 20 * time.Second // above the server's own 10 s shutdown bound
	childTailLines    = 20
)

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// StartServer runs exe (a hush binary) as "hush serve" and waits until it
// logs the address it listens on.
func StartServer(ctx context.Context, exe string) (*Child, error) {
	dir, err := os.MkdirTemp("", "hush-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: data directory for the server: %w", err)
	}
	c := &Child{dir: dir, exited: make(chan struct{})}
	c.cmd = exec.Command(exe, "serve", "--listen", "127.0.0.1:0", "--data", dir, "--pow-bits", "0", "--no-rate-limits", "--turn-listen", "off")
	c.cmd.SysProcAttr = childAttr()
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: start %s serve: %w", exe, err)
	}
	addr := make(chan string, 1)
	go func() {
		c.readLog(stderr, addr)
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	select {
	case a := <-addr:
		c.URL = "http://" + a
		return c, nil
	case <-c.exited:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: hush serve exited at start (%v): %s", c.err, c.Log())
	case <-ctx.Done():
		c.Stop()
		return nil, ctx.Err()
	case <-time.After(childStartTimeout):
		c.Stop()
		return nil, fmt.Errorf("bench: hush serve did not report its address within %v: %s", childStartTimeout, c.Log())
	}
}

// readLog keeps the tail of the server's log and reports the listening
// address once; it reads to EOF so the server never blocks on a full pipe.
func (c *Child) readLog(r io.Reader, addr chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	found := false
	for sc.Scan() {
		line := sc.Text()
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > childTailLines {
			c.tail = c.tail[1:]
		}
		c.mu.Unlock()
		if m := listeningRE.FindStringSubmatch(line); m != nil && !found {
			found = true
			addr <- m[1]
		}
	}
	io.Copy(io.Discard, r)
}

// PID is the server's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Exited is closed when the server process has ended.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Log is the last lines the server logged, on one line.
func (c *Child) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, " | ")
}

// RSS reads the server's resident memory and its peak from /proc.
func (c *Child) RSS() (cur, peak int64, err error) {
	select {
	case <-c.exited:
		return 0, 0, errors.New("bench: the server has exited")
	default:
	}
	return procRSS(c.PID())
}

// Stop shuts the server down (SIGTERM, then SIGKILL after
// childStopTimeout) and removes its data directory. It returns an error
// if the server had already died or did not stop cleanly.
func (c *Child) Stop() error {
	defer os.RemoveAll(c.dir)
	select {
	case <-c.exited:
		return fmt.Errorf("bench: hush serve had exited (%v): %s", c.err, c.Log())
	default:
	}
	terminate(c.cmd.Process)
	select {
	case <-c.exited:
		if c.err != nil {
			return fmt.Errorf("bench: hush serve exited with %v: %s", c.err, c.Log())
		}
		return nil
	case <-time.After(childStopTimeout):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("bench: hush serve did not stop within %v of SIGTERM; killed", childStopTimeout)
	}
}
