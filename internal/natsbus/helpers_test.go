package natsbus

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 15 * time.Second

// sharedNATS returns the URL of the NATS server named by HUSH_TEST_NATS,
// or skips the test.
func sharedNATS(t testing.TB) string {
	t.Helper()
	u := os.Getenv("HUSH_TEST_NATS")
	if u == "" {
		t.Skip("HUSH_TEST_NATS is not set (e.g. nats://127.0.0.1:4222)")
	}
	return u
}

// testPrefix returns a prefix no other test (or concurrent test run)
// uses, so tests sharing a NATS server cannot wake each other.
func testPrefix() string { return "hushtest-" + rand.Text() }

// testLogs collects a test's log output and forwards it to t.Log while
// the test runs (nats.go callbacks may log after it ends).
type testLogs struct {
	t    testing.TB
	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func newTestLogger(t testing.TB) (*slog.Logger, *testLogs) {
	l := &testLogs{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

func (l *testLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Log(string(bytes.TrimSpace(p)))
	}
	return len(p), nil
}

func (l *testLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newTestBus connects a Bus (one "node") and closes it when the test ends.
func newTestBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	return newTestBusQueue(t, cfg, msgQueueLen)
}

func newTestBusQueue(t testing.TB, cfg Config, msgQueue int) *Bus {
	t.Helper()
	b, _ := newTestBusLogs(t, cfg, msgQueue)
	return b
}

// newTestBusLogs is newTestBus that also returns what the Bus logged.
func newTestBusLogs(t testing.TB, cfg Config, msgQueue int) (*Bus, *testLogs) {
	t.Helper()
	logger, logs := newTestLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := newBus(ctx, cfg, logger, msgQueue)
	if err != nil {
		t.Fatalf("new bus: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, logs
}

// counter counts wake-ups and lets a test wait for a count.
type counter struct {
	n      atomic.Int64
	notify chan struct{}
}

func newCounter() *counter { return &counter{notify: make(chan struct{}, 1)} }

func (c *counter) wake() {
	c.n.Add(1)
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *counter) get() int64 { return c.n.Load() }

// waitAtLeast waits until c has counted at least n wake-ups.
func (c *counter) waitAtLeast(t testing.TB, n int64, what string) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for c.n.Load() < n {
		select {
		case <-c.notify:
		case <-timer.C:
			t.Fatalf("%s: %d wake-ups after %v, want at least %d", what, c.n.Load(), waitTimeout, n)
		}
	}
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// subscribeLive subscribes c to ref and waits for the wake-up that says
// NATS has confirmed the subscription, so a publish from another node
// reaches it from now on.
func subscribeLive(t testing.TB, b *Bus, ref store.DeviceRef, c *counter) (cancel func()) {
	t.Helper()
	before := c.get()
	cancel = b.Subscribe(ref, c.wake)
	c.waitAtLeast(t, before+1, fmt.Sprintf("confirmation of %v", ref))
	return cancel
}

// natsServer is a nats-server subprocess on a fixed loopback port, so a
// test can kill it and start it again where clients will reconnect.
type natsServer struct {
	t      testing.TB
	bin    string
	port   int
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startNATS starts a private nats-server, or skips the test if there is
// no nats-server binary.
func startNATS(t testing.TB, args ...string) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nats-server"); err != nil {
			t.Skip("no nats-server binary")
		}
		bin = "/usr/sbin/nats-server"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &natsServer{t: t, bin: bin, port: port, args: args}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *natsServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *natsServer) start() {
	s.t.Helper()
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.port)}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)
	waitFor(s.t, "nats-server to listen on "+s.addr(), func() bool {
		select {
		case <-s.exited:
			s.t.Fatalf("nats-server exited at start")
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr(), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

func (s *natsServer) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(waitTimeout):
		s.t.Errorf("nats-server did not exit after SIGKILL")
	}
	s.cmd = nil
}
