package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// Benchmarks of the server on loopback with real SQLite (durable: WAL,
// synchronous=FULL). Run with
//
//	go test -run '^$' -bench . -benchtime 20000x ./internal/server
//
// BenchmarkThroughput reports delivered msgs/s and the send-to-push
// latency (p50, p99); BenchmarkEcho is the raw coder/websocket round-trip
// ceiling on the same machine; BenchmarkIdleConnMemory the server's memory
// per idle authenticated connection, with the clients in another process.
// Numbers are noisy when other processes share the two cores; run a few
// times (-count 3).

const (
	benchContentSize = 256 // a typical short text message after the ratchet
	benchWindow      = 64  // requests in flight per sender connection
	benchAckBatch    = 64
)

func quiet(c *Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) }

// benchConn is an authenticated connection without a testing.TB, for
// goroutines that run while the benchmark clock is running.
func benchDial(addr string, u *testUser) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(maxFrameSize)
	ch, err := tryReadFrame(c)
	if err != nil {
		return nil, err
	}
	b, _ := proto.Marshal(u.authFrame(ch.GetChallenge().GetNonce()))
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		return nil, err
	}
	if r, err := tryReadFrame(c); err != nil || r.GetAuthOk() == nil {
		return nil, fmt.Errorf("auth: %v %v", r, err)
	}
	return c, nil
}

func BenchmarkThroughput(b *testing.B) {
	for _, shape := range []struct{ senders, receivers int }{{1, 1}, {4, 4}, {16, 16}, {64, 64}} {
		b.Run(fmt.Sprintf("%dx%d", shape.senders, shape.receivers), func(b *testing.B) {
			benchThroughput(b, shape.senders, shape.receivers, 0)
		})
	}
	// Latency at a fixed offered load, below saturation.
	for _, rate := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("4x4-paced-%d", rate), func(b *testing.B) {
			benchThroughput(b, 4, 4, rate)
		})
	}
}

// benchThroughput pushes b.N messages from nSend sender connections to
// nRecv receiver connections, which ack in batches. rate > 0 paces the
// senders to rate messages/s in total.
func benchThroughput(b *testing.B, nSend, nRecv, rate int) {
	ts := startServer(b, quiet)
	senders := make([]*testUser, nSend)
	receivers := make([]*testUser, nRecv)
	for i := range senders {
		senders[i] = newUser(b, fmt.Sprintf("sender%d", i), 0)
		ts.mustRegister(b, senders[i])
	}
	for i := range receivers {
		receivers[i] = newUser(b, fmt.Sprintf("receiver%d", i), 0)
		ts.mustRegister(b, receivers[i])
	}
	dial := func(u *testUser) *websocket.Conn {
		c, err := benchDial(ts.addr, u)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.CloseNow() })
		return c
	}
	recvConns := make([]*websocket.Conn, nRecv)
	for i, u := range receivers {
		recvConns[i] = dial(u)
		// Skip the (empty) backlog.
		for {
			f, err := tryReadFrame(recvConns[i])
			if err != nil {
				b.Fatal(err)
			}
			if f.GetQueueEmpty() != nil {
				break
			}
		}
	}
	sendConns := make([]*websocket.Conn, nSend)
	for i, u := range senders {
		sendConns[i] = dial(u)
	}

	total := b.N
	latencies := make([][]time.Duration, nRecv)
	errs := make(chan error, nSend+nRecv)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for r := range nRecv {
		want := total / nRecv
		if r < total%nRecv {
			want++
		}
		wg.Go(func() { errs <- benchReceive(recvConns[r], want, &latencies[r]) })
	}
	for s := range nSend {
		var mine []int // message indexes this sender sends
		for k := s; k < total; k += nSend {
			mine = append(mine, k)
		}
		var interval time.Duration
		if rate > 0 {
			interval = time.Duration(float64(time.Second) * float64(nSend) / float64(rate))
		}
		wg.Go(func() { errs <- benchSend(sendConns[s], mine, receivers, interval) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// benchSend sends the messages with up to benchWindow in flight; message
// k goes to receiver k % len(receivers). Content starts with the send
// time for the latency measurement.
func benchSend(c *websocket.Conn, mine []int, receivers []*testUser, interval time.Duration) error {
	window := make(chan struct{}, benchWindow)
	readErr := make(chan error, 1)
	go func() {
		for n := 0; n < len(mine); {
			f, err := tryReadFrame(c)
			if err != nil {
				readErr <- err
				return
			}
			if f.Id == 0 && f.GetError() == nil {
				continue // the sender's own (empty) queue
			}
			n++
			if !f.GetSent().GetStored() {
				readErr <- fmt.Errorf("send not stored: %v", f)
				return
			}
			<-window
		}
		readErr <- nil
	}()
	ctx := context.Background()
	next := time.Now()
	content := make([]byte, benchContentSize)
	for i, k := range mine {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
		}
		window <- struct{}{}
		binary.BigEndian.PutUint64(content, uint64(time.Now().UnixNano()))
		f := sendFrame(newMessageID(), receivers[k%len(receivers)].name, content)
		f.Id = uint64(i + 1)
		buf, _ := proto.Marshal(f)
		if err := c.Write(ctx, websocket.MessageBinary, buf); err != nil {
			return err
		}
	}
	return <-readErr
}

// benchReceive reads want envelopes, acking every benchAckBatch and at
// the end, and records each one's latency.
func benchReceive(c *websocket.Conn, want int, lat *[]time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	*lat = make([]time.Duration, 0, want)
	var pending []uint64
	var ackID, acksOut uint64
	ack := func() error {
		ackID++
		acksOut++
		f := &wire.ClientFrame{Id: ackID, Body: &wire.ClientFrame_Ack{Ack: &wire.AckRequest{ServerIds: pending}}}
		pending = nil
		b, _ := proto.Marshal(f)
		return c.Write(ctx, websocket.MessageBinary, b)
	}
	got := 0
	for got < want || acksOut > 0 {
		if got == want && len(pending) > 0 {
			if err := ack(); err != nil {
				return err
			}
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		var f wire.ServerFrame
		if err := proto.Unmarshal(b, &f); err != nil {
			return err
		}
		switch {
		case f.GetAcked() != nil:
			acksOut--
		case f.GetEnvelope() != nil:
			e := f.GetEnvelope()
			sent := int64(binary.BigEndian.Uint64(e.Content))
			*lat = append(*lat, time.Duration(time.Now().UnixNano()-sent))
			got++
			pending = append(pending, e.ServerId)
			if len(pending) >= benchAckBatch {
				if err := ack(); err != nil {
					return err
				}
			}
		case f.GetError() != nil:
			return fmt.Errorf("receiver got %v", f.GetError())
		}
	}
	return nil
}

// BenchmarkEcho is the ceiling: a coder/websocket server that echoes
// each binary message, driven like the senders above (same message size,
// same window), with one connection per client.
func BenchmarkEcho(b *testing.B) {
	for _, conns := range []int{1, 4, 16} {
		b.Run(strconv.Itoa(conns), func(b *testing.B) { benchEcho(b, conns) })
	}
}

func benchEcho(b *testing.B, conns int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, m, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, m); err != nil {
				return
			}
		}
	})}
	go hs.Serve(ln)
	b.Cleanup(func() { hs.Close() })

	cs := make([]*websocket.Conn, conns)
	for i := range cs {
		c, _, err := websocket.Dial(context.Background(), "ws://"+ln.Addr().String(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.CloseNow() })
		cs[i] = c
	}
	msg := make([]byte, benchContentSize+40) // about the size of a send frame
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, c := range cs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Go(func() {
			window := make(chan struct{}, benchWindow)
			done := make(chan error, 1)
			go func() {
				for range n {
					if _, _, err := c.Read(context.Background()); err != nil {
						done <- err
						return
					}
					<-window
				}
				done <- nil
			}()
			for range n {
				window <- struct{}{}
				if err := c.Write(context.Background(), websocket.MessageBinary, msg); err != nil {
					errs <- err
					return
				}
			}
			errs <- <-done
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(0, "ns/op")
}

// Environment for the idle-connection helper process.
const (
	idleHelperEnv = "HUSH_BENCH_IDLE_CLIENTS"
	idleAddrEnv   = "HUSH_BENCH_ADDR"
	idleUserEnv   = "HUSH_BENCH_USER"
	idleKeyEnv    = "HUSH_BENCH_KEY"
)

// TestIdleClientsHelper is not a test: BenchmarkIdleConnMemory runs the
// test binary again with this test selected to hold connections open
// from another process, so the server's memory is measured alone.
func TestIdleClientsHelper(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(idleHelperEnv))
	if err != nil {
		t.Skip("helper process for BenchmarkIdleConnMemory")
	}
	priv, err := hex.DecodeString(os.Getenv(idleKeyEnv))
	if err != nil {
		t.Fatal(err)
	}
	signing, err := keys.ParseDeviceSigningPrivate(priv)
	if err != nil {
		t.Fatal(err)
	}
	u := &testUser{name: os.Getenv(idleUserEnv), dev: newUser(t, "helper", 0).dev}
	u.dev.Signing = signing
	for range n {
		c, err := benchDial(os.Getenv(idleAddrEnv), u)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		// Read the queue_empty, then stay idle.
		if _, err := tryReadFrame(c); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // hold until the benchmark closes stdin
}

// BenchmarkIdleConnMemory measures the server's heap and stack per idle
// authenticated WebSocket, with the clients in a child process.
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 1000
	ts := startServer(b, quiet)
	u := newUser(b, "idle", 0)
	ts.mustRegister(b, u)

	// HUSH_BENCH_HEAPPROFILE=file writes an exact heap profile of the
	// connections (and a goroutine dump beside it), to see where they cost.
	heapProfile := os.Getenv("HUSH_BENCH_HEAPPROFILE")
	if heapProfile != "" {
		runtime.MemProfileRate = 1
	}
	beforeHeap, beforeStack := liveMemory()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientsHelper$", "-test.v=false")
	cmd.Env = append(os.Environ(),
		idleHelperEnv+"="+strconv.Itoa(conns),
		idleAddrEnv+"="+ts.addr,
		idleUserEnv+"="+u.name,
		idleKeyEnv+"="+hex.EncodeToString(u.dev.Signing.Bytes()))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if sc.Text() == "ready" {
			ready = true
			break
		}
	}
	if !ready {
		b.Fatal(errors.New("helper process did not get ready"))
	}
	go io.Copy(io.Discard, stdout)
	eventually(b, "all connections are registered", func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.sessions) == conns
	})
	afterHeap, afterStack := liveMemory()
	if heapProfile != "" {
		for name, debug := range map[string]int{"heap": 0, "goroutine": 1} {
			f, err := os.Create(heapProfile + "." + name)
			if err != nil {
				b.Fatal(err)
			}
			pprof.Lookup(name).WriteTo(f, debug)
			f.Close()
		}
	}
	for b.Loop() {
	}
	b.ReportMetric(float64(afterHeap+afterStack-beforeHeap-beforeStack)/conns, "bytes/conn")
	b.ReportMetric(float64(afterHeap-beforeHeap)/conns, "heap-bytes/conn")
	b.ReportMetric(float64(afterStack-beforeStack)/conns, "stack-bytes/conn")
	b.ReportMetric(0, "ns/op")
}

// liveMemory is the heap in use and the goroutine stacks, after GCs
// (which also shrink stacks grown during authentication).
func liveMemory() (heap, stack uint64) {
	for range 5 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}
