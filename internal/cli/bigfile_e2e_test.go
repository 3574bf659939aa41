package cli_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/server"
)

// bigServer runs a server in this process with room for files of size
// bytes (the "hush serve" defaults cap them at 100 MiB and 1 GiB per
// account) and returns its URL.
func bigServer(t *testing.T, size int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		DataDir:     t.TempDir(),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits:      server.Unlimited(),
		MaxFileSize: 2*size + 1<<20,
		BlobQuota:   -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// peakRSS runs hush as u and returns its stdout and its peak resident
// memory: VmHWM of /proc/PID/status, read until the process ends (a
// high-water mark, so only growth in its last few milliseconds could be
// missed). The rusage maxrss is no use here: it counts the parent's pages
// from before the exec.
func (u *user) peakRSS(args ...string) (string, int64) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := u.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var peak int64
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(status); err == nil {
			if m := vmHWM.FindSubmatch(b); m != nil {
				kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
				peak = max(peak, kb<<10)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				u.t.Fatalf("hush %v: %v\n%s", args, err, errb.String())
			}
			if peak == 0 {
				u.t.Skip("no /proc/PID/status on this platform")
			}
			return out.String(), peak
		case <-tick.C:
		}
	}
}

var vmHWM = regexp.MustCompile(`VmHWM:\s+(\d+) kB`)

// writeRandomFile writes size pseudo-random bytes (a repeated random
// block, cheap to make) to a file and returns its path and SHA-256.
func writeRandomFile(t *testing.T, size int64) (string, [32]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "big.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20+7)
	for i := range block {
		block[i] = byte(i*7919 + i>>8)
	}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	for left := size; left > 0; {
		n := min(left, int64(len(block)))
		if _, err := w.Write(block[:n]); err != nil {
			t.Fatal(err)
		}
		block[0]++ // no two blocks alike
		left -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return path, sum
}

// roundTrip sends a file of size bytes from alice to bob through the hush
// binary and checks the SHA-256 of what bob saved; it returns both
// processes' peak memory.
func roundTrip(t *testing.T, size int64) (sendRSS, recvRSS int64) {
	url := bigServer(t, size)
	alice := newHome(t, url)
	alice.ok("register", "alice")
	bob := newHome(t, url)
	bob.ok("register", "bob")
	bob.ok("accept", "alice")
	src, sum := writeRandomFile(t, size)
	_, sendRSS = alice.peakRSS("send", "bob", "--file", src)
	dir := t.TempDir()
	out, recvRSS := bob.peakRSS("recv", "--json", "--download-dir", dir)
	var m struct {
		Type, File, SHA256 string
		Size               int64
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil {
		t.Fatalf("recv --json printed %q: %v", out, err)
	}
	if m.Type != "file" || m.Size != size || m.File == "" || m.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("recv --json: %+v", m)
	}
	f, err := os.Open(m.File)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), sum[:]) {
		t.Fatal("the saved file's SHA-256 differs from the sent one's")
	}
	return sendRSS, recvRSS
}

// maxRSS is the memory bound of the issue for a file of any size.
const maxRSS = 64 << 20

func TestCLIFile200MiBRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB round trip in -short mode")
	}
	s, r := roundTrip(t, 200<<20)
	t.Logf("200 MiB: peak RSS send %d MiB, recv %d MiB", s>>20, r>>20)
	if s > maxRSS || r > maxRSS {
		t.Fatalf("peak RSS send %d MiB, recv %d MiB; the bound is %d MiB", s>>20, r>>20, maxRSS>>20)
	}
}

// TestCLIFile1GiBMemory is the 1 GiB measurement; it needs a few
// GiB of temporary disk, so it only runs with HUSH_BIG_FILES=1.
func TestCLIFile1GiBMemory(t *testing.T) {
	if os.Getenv("HUSH_BIG_FILES") != "1" {
		t.Skip("set HUSH_BIG_FILES=1 to send a 1 GiB file")
	}
	s, r := roundTrip(t, 1<<30)
	t.Logf("1 GiB: peak RSS send %d MiB, recv %d MiB", s>>20, r>>20)
	if s > maxRSS || r > maxRSS {
		t.Fatalf("peak RSS send %d MiB, recv %d MiB; the bound is %d MiB", s>>20, r>>20, maxRSS>>20)
	}
}
