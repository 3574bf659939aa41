package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hushBin is the hush binary built once by TestMain.
var hushBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hush-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hushBin = filepath.Join(dir, "hush")
	build := exec.Command("go", "build", "-o", hushBin, "github.com/hush-chat/hush/cmd/hush")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hush:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveProc is a running "hush serve".
type serveProc struct {
	t      *testing.T
	data   string
	addr   string
	URL    string
	cmd    *exec.Cmd
	stderr *syncBuffer // everything the server logged, across restarts
	exited chan error
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startServe starts "hush serve" on a free loopback port with a fresh
// data directory and no proof of work.
func startServe(t *testing.T) *serveProc {
	t.Helper()
	s := &serveProc{t: t, data: t.TempDir(), addr: "127.0.0.1:0", stderr: &syncBuffer{}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *serveProc) start() {
	s.t.Helper()
	pr, pw := io.Pipe()
	// TURN on a port of its own (tests run several servers at once),
	// allowed to relay to loopback peers for call tests.
	s.cmd = exec.Command(hushBin, "serve", "--listen", s.addr, "--data", s.data, "--pow-bits", "0",
		"--turn-listen", "127.0.0.1:0", "--turn-allow-private")
	s.cmd.Stderr = pw
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() {
		err := s.cmd.Wait()
		pw.Close()
		s.exited <- err
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			s.stderr.Write(append(sc.Bytes(), '\n'))
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case addr := <-found:
		s.addr = addr
		s.URL = "http://" + addr
	case err := <-s.exited:
		s.t.Fatalf("hush serve exited: %v\n%s", err, s.stderr)
	case <-time.After(30 * time.Second):
		s.t.Fatalf("hush serve did not report its address:\n%s", s.stderr)
	}
}

// stop sends SIGTERM and waits for the graceful shutdown.
func (s *serveProc) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		if err != nil {
			s.t.Errorf("hush serve exited with %v after SIGTERM:\n%s", err, s.stderr)
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("hush serve did not stop within 30s of SIGTERM")
	}
	s.cmd = nil
}

// restart stops the server and starts it again on the same address and
// data directory.
func (s *serveProc) restart() {
	s.stop()
	s.start()
}

// result is one finished hush invocation.
type result struct {
	stdout, stderr string
	code           int
}

// user is a hush home pointed at a server.
type user struct {
	t      *testing.T
	home   string
	server string
}

func newHome(t *testing.T, server string) *user {
	return &user{t: t, home: filepath.Join(t.TempDir(), "home"), server: server}
}

func (u *user) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--home", u.home}, args...)
	cmd := exec.CommandContext(ctx, hushBin, full...)
	cmd.Env = append(os.Environ(), "HUSH_SERVER="+u.server, "TZ=UTC")
	return cmd
}

// run runs hush with stdin and waits for it.
func (u *user) run(stdin string, args ...string) result {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := u.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		u.t.Fatalf("hush %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs hush and requires success.
func (u *user) ok(args ...string) string {
	u.t.Helper()
	r := u.run("", args...)
	if r.code != 0 {
		u.t.Fatalf("hush %v: exit %d\nstderr: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

func register(t *testing.T, s *serveProc, name string) *user {
	t.Helper()
	u := newHome(t, s.URL)
	u.ok("register", name)
	return u
}

// textLine is the text form of one received message.
var textLine = regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d\] ([a-z0-9_.]+): (.*)$`)

// eventLineRE is the text form of an event that is not a message.
var eventLineRE = regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d\] \* `)

// messages parses recv's text output into "from: text" strings, leaving
// out event lines (delivery receipts come back for every message sent).
func messages(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" || eventLineRE.MatchString(l) {
			continue // a receipt, reaction, edit… (messaging_e2e_test.go)
		}
		m := textLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("recv printed %q, not a message line", l)
		}
		got = append(got, m[1]+": "+m[2])
	}
	return got
}
