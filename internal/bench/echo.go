package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The echo ceiling: a bare coder/websocket server on loopback that sends
// every binary message straight back, driven with the run's number of
// connections and message size. Each bench message crosses the loopback
// twice as WebSocket messages (send, then push), as an echo round trip
// does, so this is the rate the server would reach if storing, routing and
// encrypting cost nothing.

// echoTotalWindow bounds the round trips in flight over all connections:
// enough to keep both cores busy, few enough for 10,000 connections.
const echoTotalWindow = 4096

// echoConnections is conns, less if the process may not open two file
// descriptors per connection (client and server side both live here).
func echoConnections(conns int) int {
	if lim, ok := openFileLimit(); ok {
		conns = min(conns, max(1, (lim-256)/2))
	}
	return conns
}

// echoCeiling measures round trips per second for d.
func echoCeiling(ctx context.Context, conns, size int, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("echo server: %w", err)
	}
	hs := &http.Server{
		Handler:           http.HandlerFunc(echoHandler),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go hs.Serve(ln)
	defer hs.Close()

	dialCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cs := make([]*websocket.Conn, 0, conns)
	defer func() {
		for _, c := range cs {
			c.CloseNow()
		}
	}()
	for range conns {
		c, _, err := websocket.Dial(dialCtx, "ws://"+ln.Addr().String(), nil)
		if err != nil {
			return 0, fmt.Errorf("echo server: dial: %w", err)
		}
		c.SetReadLimit(int64(size) + 1024)
		cs = append(cs, c)
	}

	window := max(1, min(64, echoTotalWindow/conns))
	msg := make([]byte, size)
	runCtx, stop := context.WithTimeout(ctx, d)
	defer stop()
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range cs {
		slots := make(chan struct{}, window)
		wg.Go(func() {
			for {
				if _, _, err := c.Read(runCtx); err != nil {
					return
				}
				done.Add(1)
				<-slots
			}
		})
		wg.Go(func() {
			for {
				select {
				case slots <- struct{}{}:
				case <-runCtx.Done():
					return
				}
				if err := c.Write(runCtx, websocket.MessageBinary, msg); err != nil {
					return
				}
			}
		})
	}
	<-runCtx.Done()
	elapsed := time.Since(start)
	n := done.Load() // echoes completed within the window
	for _, c := range cs {
		c.CloseNow()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("echo server: no message came back")
	}
	return float64(n) / elapsed.Seconds(), nil
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := context.Background()
	for {
		typ, m, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, m); err != nil {
			return
		}
	}
}
