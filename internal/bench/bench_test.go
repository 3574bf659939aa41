package bench

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/wire"
)

// startServer runs a real server (SQLite in a temporary directory) on
// 127.0.0.1:0 with its limits off, and returns its URL.
func startServer(t *testing.T) string {
	t.Helper()
	srv, err := server.New(server.Config{
		DataDir: t.TempDir(),
		Limits:  server.Unlimited(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func smallRun(server string) Config {
	return Config{
		Server:       server,
		Users:        4,
		Rate:         200,
		Duration:     time.Second,
		EchoDuration: 200 * time.Millisecond,
	}
}

func TestRunAgainstARealServerLosesAndDoublesNothing(t *testing.T) {
	rep, err := Run(context.Background(), smallRun(startServer(t)))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Errors != 0 || len(rep.ErrorKinds) != 0 {
		t.Fatalf("not clean: %+v", rep)
	}
	if rep.Sent < 150 || rep.Stored != rep.Sent || rep.Delivered != rep.Sent {
		t.Fatalf("sent %d, stored %d, delivered %d", rep.Sent, rep.Stored, rep.Delivered)
	}
	if rep.DeliveredPerSec <= 0 || rep.P50Ms <= 0 || rep.P99Ms < rep.P50Ms || rep.P999Ms < rep.P99Ms || rep.MaxMs < rep.P999Ms {
		t.Fatalf("rates and latencies: %+v", rep)
	}
	// The in-process server's /metrics has the process collector.
	if rep.ServerRSSBytes == nil || *rep.ServerRSSBytes <= 0 || rep.ServerRSSPeakBytes == nil || *rep.ServerRSSPeakBytes < *rep.ServerRSSBytes {
		t.Fatalf("RSS %v peak %v (%s)", rep.ServerRSSBytes, rep.ServerRSSPeakBytes, rep.RSSNote)
	}
	if rep.ServerCPUS == nil || *rep.ServerCPUS < 0 || rep.BenchCPUS == nil || *rep.BenchCPUS <= 0 || rep.CPUs < 1 {
		t.Fatalf("CPU: server %v bench %v of %d", rep.ServerCPUS, rep.BenchCPUS, rep.CPUs)
	}
	if rep.EchoCeilingPerSec <= 0 || rep.EchoConnections != 4 || rep.MessageBytes < padBlock {
		t.Fatalf("echo %+v", rep)
	}
}

// lossyProxy stands between the bench and a real server and misdelivers
// on purpose: of the measured envelopes it pushes, it drops every
// dropEvery-th and sends every dupEvery-th twice.
type lossyProxy struct {
	upstream            string // host:port
	dropEvery, dupEvery int64
	rp                  *httputil.ReverseProxy

	n, dropped, doubled atomic.Int64
}

func (p *lossyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/ws" {
		p.rp.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	up, _, err := websocket.Dial(ctx, "ws://"+p.upstream+"/v1/ws", nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.CloseNow()
	down, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer down.CloseNow()
	up.SetReadLimit(readLimit)
	down.SetReadLimit(readLimit)
	go func() {
		defer cancel()
		for {
			typ, b, err := down.Read(ctx)
			if err != nil || up.Write(ctx, typ, b) != nil {
				return
			}
		}
	}()
	for {
		typ, b, err := up.Read(ctx)
		if err != nil {
			return
		}
		copies := 1
		var f wire.ServerFrame
		if proto.Unmarshal(b, &f) == nil && f.GetEnvelope() != nil {
			if id, err := parseMsgID(f.GetEnvelope().MessageId); err == nil && id.seq > 0 {
				switch k := p.n.Add(1); {
				case k%p.dropEvery == 0:
					p.dropped.Add(1)
					copies = 0
				case k%p.dupEvery == 0:
					p.doubled.Add(1)
					copies = 2
				}
			}
		}
		for range copies {
			if down.Write(ctx, typ, b) != nil {
				return
			}
		}
	}
}

func TestRunDetectsALossyServer(t *testing.T) {
	target := startServer(t)
	u, _ := url.Parse(target)
	p := &lossyProxy{upstream: u.Host, dropEvery: 7, dupEvery: 5, rp: httputil.NewSingleHostReverseProxy(u)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: p}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	cfg := smallRun("http://" + ln.Addr().String())
	cfg.Drain = time.Second // the dropped ones never come
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.dropped.Load() == 0 || p.doubled.Load() == 0 {
		t.Fatalf("the proxy misdelivered nothing (%d envelopes)", p.n.Load())
	}
	if rep.Lost != p.dropped.Load() || rep.Duplicated != p.doubled.Load() {
		t.Fatalf("report: lost %d, duplicated %d; proxy: dropped %d, doubled %d", rep.Lost, rep.Duplicated, p.dropped.Load(), p.doubled.Load())
	}
	// A second copy is a duplicate, not also a decrypt error.
	if rep.Errors != 0 || rep.OK() {
		t.Fatalf("errors %d %v, OK %v", rep.Errors, rep.ErrorKinds, rep.OK())
	}
	if rep.Delivered != rep.Sent-rep.Lost {
		t.Fatalf("delivered %d of %d with %d lost", rep.Delivered, rep.Sent, rep.Lost)
	}
}

func TestRunReportsAServerThatRefusesTheLoad(t *testing.T) {
	// A server with its production limits registers only a few users
	// from one address.
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	cfg := smallRun("http://" + ln.Addr().String())
	cfg.Users = 20
	_, err = Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "rate_limited") || !strings.Contains(err.Error(), "--no-rate-limits") {
		t.Fatalf("err = %v", err)
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8090", "http://localhost:1", "https://[::1]:443", "http://127.1.2.3"} {
		if err := CheckLoopback(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8090", "http://example.com", "ws://127.0.0.1:1", "127.0.0.1:8090", "http://", "http://0.0.0.0:1", "http://[::]:1"} {
		if err := CheckLoopback(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestValidateBounds(t *testing.T) {
	good := Config{Users: 2, Rate: 1, Duration: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"one user":       func(c *Config) { c.Users = 1 },
		"too many users": func(c *Config) { c.Users = MaxUsers + 1 },
		"zero rate":      func(c *Config) { c.Rate = 0 },
		"NaN rate":       func(c *Config) { c.Rate = zero() / zero() },
		"rate too high":  func(c *Config) { c.Rate = MaxRate + 1 },
		"no duration":    func(c *Config) { c.Duration = 0 },
		"over a day":     func(c *Config) { c.Duration = MaxDuration + 1 },
		"too many msgs":  func(c *Config) { c.Rate, c.Duration = MaxRate, 3*time.Minute },
		"peers >= users": func(c *Config) { c.Peers = 2 },
		"negative peers": func(c *Config) { c.Peers = -1 },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Run(context.Background(), Config{Server: "http://192.0.2.1:8090", Users: 2, Rate: 1, Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("non-loopback server: %v", err)
	}
}

func zero() float64 { return 0 }

func TestEchoCeiling(t *testing.T) {
	n, err := echoCeiling(context.Background(), 3, 300, 200*time.Millisecond)
	if err != nil || n <= 0 {
		t.Fatalf("%g, %v", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := echoCeiling(ctx, 1, 300, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
