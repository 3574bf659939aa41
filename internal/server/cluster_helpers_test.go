package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hush-chat/hush/internal/natsbus"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/internal/store/sqlite"
)

// Helpers for several Servers sharing one store, as nodes of one
// deployment: over an in-process network that can lose messages on
// demand (memNet), or over the NATS server named by HUSH_TEST_NATS.

// memNet connects in-process nodes: one wake-up bus shared by all (a
// Publish on one node wakes subscribers on every node, as NATS does), one
// for low prekeys, and control events delivered in order by one
// dispatcher goroutine, like natsbus. Loss is switched on per kind.
type memNet struct {
	bus, lowBus *lossyBus
	ctl         *memControl
}

func newMemNet(t testing.TB) *memNet {
	n := &memNet{
		bus:    &lossyBus{Bus: NewLocalBus()},
		lowBus: &lossyBus{Bus: NewLocalBus()},
		ctl:    newMemControl(),
	}
	t.Cleanup(n.ctl.close)
	return n
}

// lossyBus is a Bus that drops every Publish while lose is set.
type lossyBus struct {
	Bus
	lose atomic.Bool
}

func (b *lossyBus) Publish(ref store.DeviceRef) {
	if !b.lose.Load() {
		b.Bus.Publish(ref)
	}
}

type ctlEvent struct {
	subject string
	data    []byte
}

// memControl is an in-process Control.
type memControl struct {
	mu   sync.RWMutex
	subs map[string]map[*func([]byte)]struct{}
	// drop, if set, decides which events are lost.
	drop atomic.Pointer[func(subject string, data []byte) bool]

	queue chan ctlEvent
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newMemControl() *memControl {
	m := &memControl{
		subs:  map[string]map[*func([]byte)]struct{}{},
		queue: make(chan ctlEvent, 8192),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go m.dispatch()
	return m
}

func (m *memControl) dispatch() {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			return
		case e := <-m.queue:
			m.mu.RLock()
			for fn := range m.subs[e.subject] {
				(*fn)(e.data)
			}
			m.mu.RUnlock()
		}
	}
}

func (m *memControl) close() {
	m.once.Do(func() { close(m.stop); <-m.done })
}

// setDrop makes events for which f returns true disappear (nil: none).
func (m *memControl) setDrop(f func(subject string, data []byte) bool) {
	if f == nil {
		m.drop.Store(nil)
		return
	}
	m.drop.Store(&f)
}

func (m *memControl) PublishControl(subject string, data []byte) error {
	if len(data) > natsbus.MaxControlData {
		panic("control event larger than natsbus accepts")
	}
	if f := m.drop.Load(); f != nil && (*f)(subject, data) {
		return nil
	}
	select {
	case m.queue <- ctlEvent{subject, bytes.Clone(data)}:
	case <-m.stop:
	}
	return nil
}

func (m *memControl) SubscribeControl(subject string, fn func([]byte)) (func(), error) {
	key := &fn
	m.mu.Lock()
	if m.subs[subject] == nil {
		m.subs[subject] = map[*func([]byte)]struct{}{}
	}
	m.subs[subject][key] = struct{}{}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.subs[subject], key)
		m.mu.Unlock()
	}, nil
}

// testCluster is n nodes sharing one SQLite store and one server key file.
type testCluster struct {
	nodes []*testServer
	store store.Store
	net   *memNet // nil over NATS
}

// startCluster starts n nodes over a memNet. opts apply to every node.
func startCluster(t testing.TB, n int, opts ...any) *testCluster {
	t.Helper()
	net := newMemNet(t)
	tc := startClusterWith(t, n, func(int) (Bus, Bus, Control) { return net.bus, net.lowBus, net.ctl }, opts...)
	tc.net = net
	return tc
}

// startNATSCluster starts n nodes over the NATS server at HUSH_TEST_NATS
// (skipping without it), each with its own connections, under a prefix
// of this test's.
func startNATSCluster(t testing.TB, n int, opts ...any) *testCluster {
	t.Helper()
	url := os.Getenv("HUSH_TEST_NATS")
	if url == "" {
		t.Skip("HUSH_TEST_NATS is not set (e.g. nats://127.0.0.1:4222)")
	}
	prefix := "hushtest-" + filepath.Base(t.TempDir())
	return startClusterWith(t, n, func(int) (Bus, Bus, Control) {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		bus, err := natsbus.NewConfig(ctx, natsbus.Config{URL: url, Prefix: prefix}, nil)
		if err != nil {
			t.Fatal(err)
		}
		low, err := natsbus.NewConfig(ctx, natsbus.Config{URL: url, Prefix: prefix + "-low"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Closed after the node stops (cleanups run last-in first-out).
		t.Cleanup(func() { bus.Close(); low.Close() })
		return bus, low, bus
	}, opts...)
}

func startClusterWith(t testing.TB, n int, buses func(i int) (Bus, Bus, Control), opts ...any) *testCluster {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "shared.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tc := &testCluster{store: st}
	keyFile := filepath.Join(dir, "server.key")
	for i := range n {
		bus, low, ctl := buses(i)
		nodeOpts := append([]any{func(c *Config) {
			c.Store, c.ServerKeyFile = st, keyFile
			c.Bus, c.LowBus, c.Control = bus, low, ctl
		}}, opts...)
		tc.nodes = append(tc.nodes, startServerIn(t, filepath.Join(dir, "node"+string(rune('a'+i))), nodeOpts...))
	}
	return tc
}
