package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/server/pow"
	"github.com/hush-chat/hush/wire"
)

// clusterDelivery: alice on node a, bob on node b, both registered on
// their own node; messages both ways arrive live, and a low prekey count
// caused on one node reaches the device on the other.
func clusterDelivery(t *testing.T, tc *testCluster) {
	a, b := tc.nodes[0], tc.nodes[1]
	if !a.srv.ServerKey().Equal(b.srv.ServerKey()) {
		t.Fatal("nodes given one key file have different server keys")
	}
	alice, bob := newUser(t, "alice", 1), newUser(t, "bob", PrekeyLowWater)
	a.mustRegister(t, alice)
	b.mustRegister(t, bob)
	ac, bc := a.dial(t, alice), b.dial(t, bob)
	if len(ac.backlog(t)) != 0 || len(bc.backlog(t)) != 0 {
		t.Fatal("unexpected messages")
	}
	for i := range 5 {
		msg := []byte{'a', byte('0' + i)}
		ac.send(t, "bob", msg)
		if e := bc.envelope(t); e.Sender != "alice" || !bytes.Equal(e.Content, msg) {
			t.Fatalf("bob got %v, want %q from alice", e, msg)
		}
		msg[0] = 'b'
		bc.send(t, "alice", msg)
		if e := ac.envelope(t); e.Sender != "bob" || !bytes.Equal(e.Content, msg) {
			t.Fatalf("alice got %v, want %q from bob", e, msg)
		}
	}
	fetchBundle(t, ac, bob)
	for {
		if p := bc.push(t); p.GetPrekeyCounts() != nil {
			if !p.GetPrekeyCounts().Low {
				t.Fatalf("prekey counts pushed across nodes: %v, want low", p)
			}
			break
		}
	}
}

func TestClusterDelivery(t *testing.T) {
	clusterDelivery(t, startCluster(t, 2))
}

func TestClusterDeliveryOverNATS(t *testing.T) {
	clusterDelivery(t, startNATSCluster(t, 2))
}

// TestClusterSweepDeliversLostWakeUps: with every wake-up lost, the
// connection's sweep still delivers, and says so in the metrics.
func TestClusterSweepDeliversLostWakeUps(t *testing.T) {
	tc := startCluster(t, 2, func(c *Config) { c.SweepInterval = 50 * time.Millisecond })
	a, b := tc.nodes[0], tc.nodes[1]
	_, bob, ac := pair(t, a)
	bc := b.dial(t, bob)
	if len(bc.backlog(t)) != 0 {
		t.Fatal("unexpected messages")
	}
	tc.net.bus.lose.Store(true)
	ac.send(t, "bob", []byte("woken by nobody"))
	if e := bc.envelope(t); string(e.Content) != "woken by nobody" {
		t.Fatalf("bob got %q", e.Content)
	}
	// Counted once written, which may be a moment after bob read it.
	eventually(t, "the swept message is counted in hush_messages_swept_total", func() bool {
		_, body := b.get(t, "/metrics")
		return bytes.Contains(body, []byte("hush_messages_swept_total 1\n"))
	})
}

// TestClusterSweepDefaults: a node of several sweeps by default; a single
// node does not.
func TestClusterSweepDefaults(t *testing.T) {
	if s := startServer(t).srv.sweepEvery; s != 0 {
		t.Fatalf("single node sweeps every %v", s)
	}
	if s := startCluster(t, 1).nodes[0].srv.sweepEvery; s != DefaultSweepInterval {
		t.Fatalf("node of a cluster sweeps every %v, want %v", s, DefaultSweepInterval)
	}
	if s := startCluster(t, 1, func(c *Config) { c.SweepInterval = -1 }).nodes[0].srv.sweepEvery; s != 0 {
		t.Fatalf("negative SweepInterval: sweeps every %v", s)
	}
	for range 100 {
		if j := jitter(time.Second); j < 750*time.Millisecond || j > 1250*time.Millisecond {
			t.Fatalf("jitter(1s) = %v", j)
		}
	}
}

// TestClusterDeviceListChange: node b caches bob's devices; bob adds a
// device through node a; a send through b must then cover it. With the
// event lost, the entry expires instead; and a sender that already knows
// the new list is not refused by a stale cache.
func TestClusterDeviceListChange(t *testing.T) {
	for _, mode := range []string{"event", "lost_event", "sender_knows"} {
		t.Run(mode, func(t *testing.T) {
			tc := startCluster(t, 2, serverOpt(func(s *Server) {
				if mode == "lost_event" {
					s.devices.ttl = 200 * time.Millisecond
				}
			}))
			a, b := tc.nodes[0], tc.nodes[1]
			bob, carol := newUser(t, "bob", 1), newUser(t, "carol", 0)
			a.mustRegister(t, bob)
			a.mustRegister(t, carol)
			cc := b.dial(t, carol)
			cc.send(t, "bob", []byte("fills b's cache"))
			if mode != "event" {
				tc.net.ctl.setDrop(func(subject string, _ []byte) bool { return subject == ctlDevices })
			}
			second := newDeviceOf(t, bob, 2, 1)
			setList(t, a.dial(t, bob), listOf(t, 2, bob, second))
			if mode == "sender_knows" {
				// b's cache says one device; b reads the list again
				// before refusing a send that names two.
				cc.send(t, "bob", []byte("to both"), 1, 2)
				return
			}
			eventually(t, "node b sees bob's second device", func() bool {
				r := cc.do(t, sendFrame(newMessageID(), "bob", []byte("x"), 1)).GetSent()
				return !r.GetStored() && slices.Equal(r.GetMissingDevices(), []uint32{2})
			})
		})
	}
}

// TestClusterBlockedList: bob blocks carol through node a; carol's sends
// through node b are dropped from then on.
func TestClusterBlockedList(t *testing.T) {
	tc := startCluster(t, 2)
	a, b := tc.nodes[0], tc.nodes[1]
	bob, carol := newUser(t, "bob", 1), newUser(t, "carol", 0)
	a.mustRegister(t, bob)
	a.mustRegister(t, carol)
	cc := b.dial(t, carol)
	cc.send(t, "bob", []byte("before the block")) // b caches: not blocked
	bc := a.dial(t, bob)
	if envs := bc.backlog(t); len(envs) != 1 {
		t.Fatalf("bob's backlog holds %d messages", len(envs))
	}
	if r := bc.do(t, setBlockedFrame("carol")); r.GetOk() == nil {
		t.Fatalf("set_blocked: %v", r)
	}
	eventually(t, "node b drops carol's messages to bob", func() bool {
		cc.send(t, "bob", []byte("after the block"))
		_, body := b.get(t, "/metrics")
		return !bytes.Contains(body, []byte("hush_messages_dropped_blocked_total 0\n"))
	})
}

// TestClusterRemovedDeviceDisconnected: device 2 of alice is connected to
// node b when device 1 removes it through node a. With the disconnect
// event lost, the connection's sweep notices.
func TestClusterRemovedDeviceDisconnected(t *testing.T) {
	for _, lose := range []bool{false, true} {
		t.Run(map[bool]string{false: "event", true: "lost_event"}[lose], func(t *testing.T) {
			tc := startCluster(t, 2, func(c *Config) {
				if lose {
					c.SweepInterval = 50 * time.Millisecond
				} else {
					c.SweepInterval = time.Hour
				}
			})
			a, b := tc.nodes[0], tc.nodes[1]
			alice := newUser(t, "alice", 1)
			a.mustRegister(t, alice)
			second := newDeviceOf(t, alice, 2, 1)
			c1 := a.dial(t, alice)
			setList(t, c1, listOf(t, 2, alice, second))
			c2 := b.dial(t, second)
			if len(c2.backlog(t)) != 0 {
				t.Fatal("unexpected messages")
			}
			if lose {
				tc.net.ctl.setDrop(func(subject string, _ []byte) bool { return subject == ctlDisconnect })
			}
			setList(t, c1, listOf(t, 3, alice))
			select {
			case <-c2.done:
			case <-time.After(waitFor):
				t.Fatal("removed device still connected to the other node")
			}
			if websocket.CloseStatus(c2.readErr) != websocket.StatusPolicyViolation {
				t.Fatalf("removed device's connection ended with %v", c2.readErr)
			}
			// The device that asked is still connected.
			if r := c1.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: "alice"}}}); r.GetAccount() == nil {
				t.Fatalf("get_account on the remaining device: %v", r)
			}
		})
	}
}

// TestClusterProvisionRelay: a linking device waits on node b; the
// primary on node a relays to it, up to the 8 MiB cap, which crosses the
// bus in chunks. The relay is once only, as on one node.
func clusterProvisionRelay(t *testing.T, tc *testCluster) {
	a, b := tc.nodes[0], tc.nodes[1]
	alice := newUser(t, "alice", 1)
	a.mustRegister(t, alice)
	ac := a.dial(t, alice)
	for _, size := range []int{1, linkChunkData, linkChunkData + 1, MaxProvisionBody} {
		link, addr := b.dialProvision(t)
		body := make([]byte, size)
		rand.Read(body)
		got := make(chan []byte, 1)
		go func() { got <- readEnvelopeOrNil(link) }()
		if r := ac.do(t, provisionFrame(addr, body)); r.GetOk() == nil {
			t.Fatalf("provision_send of %d bytes across nodes: %v", size, r)
		}
		select {
		case g := <-got:
			if !bytes.Equal(g, body) {
				t.Fatalf("%d-byte body not relayed intact (got %d bytes)", size, len(g))
			}
		case <-time.After(waitFor):
			t.Fatal("no envelope")
		}
		wantError(t, ac.do(t, provisionFrame(addr, body)), codeNoSuchAddress)
	}
	// An address on node b where nobody waits is answered at once.
	_, addr := b.dialProvision(t)
	gone := addr[:8] + strings.Repeat("0", 24)
	wantError(t, ac.do(t, provisionFrame(gone, []byte("x"))), codeNoSuchAddress)
}

func TestClusterProvisionRelay(t *testing.T) {
	clusterProvisionRelay(t, startCluster(t, 2))
}

func TestClusterProvisionRelayOverNATS(t *testing.T) {
	clusterProvisionRelay(t, startNATSCluster(t, 2))
}

// readEnvelopeOrNil reads a relayed envelope's body, nil on any failure.
func readEnvelopeOrNil(c *websocket.Conn) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	typ, b, err := c.Read(ctx)
	var env wire.ProvisionEnvelope
	if err != nil || typ != websocket.MessageBinary || proto.Unmarshal(b, &env) != nil {
		return nil
	}
	return env.Body
}

// TestClusterProvisionRelayFailures: a lost chunk, an address of a node
// that is not there, and a second payload for a device that already has
// one on its way are each answered no_such_address, not left hanging.
func TestClusterProvisionRelayFailures(t *testing.T) {
	tc := startCluster(t, 2, serverOpt(func(s *Server) {
		s.cluster.linkAck = 200 * time.Millisecond
		s.cluster.linkAssembly = time.Second
	}))
	a, b := tc.nodes[0], tc.nodes[1]
	alice := newUser(t, "alice", 1)
	a.mustRegister(t, alice)
	ac := a.dial(t, alice)
	dropChunks := func(lost func(index int) bool) {
		tc.net.ctl.setDrop(func(subject string, data []byte) bool {
			if !strings.HasPrefix(subject, ctlLinkBase) {
				return false
			}
			_, body, _ := parseControl(data)
			c, err := parseLinkChunk(body)
			return err == nil && lost(c.index)
		})
	}

	// Chunk 1 of 2 lost: the holder gives up, the primary is told.
	link, addr := b.dialProvision(t)
	dropChunks(func(i int) bool { return i == 1 })
	wantError(t, ac.do(t, provisionFrame(addr, make([]byte, linkChunkData+1))), codeNoSuchAddress)
	tc.net.ctl.setDrop(nil)
	// The device still waits and can be reached.
	if r := ac.do(t, provisionFrame(addr, []byte("second try"))); r.GetOk() == nil {
		t.Fatalf("provision_send after a lost chunk: %v", r)
	}
	if got := readEnvelope(t, link); string(got) != "second try" {
		t.Fatalf("relayed %q", got)
	}

	// A node tag nobody has: no answer, so the relay gives up.
	wantError(t, ac.do(t, provisionFrame("ffffffff"+strings.Repeat("1", 24), []byte("x"))), codeNoSuchAddress)

	// A payload whose later chunks are lost is being assembled on b; a
	// second one for the same device, from another connection, is refused.
	_, addr = b.dialProvision(t)
	dropChunks(func(i int) bool { return i > 0 })
	first := make(chan *wire.ServerFrame, 1)
	go func() {
		f := provisionFrame(addr, make([]byte, 3*linkChunkData))
		f.Id = ac.nextID.Add(1)
		b, _ := proto.Marshal(f)
		ac.conn.Write(context.Background(), websocket.MessageBinary, b)
		select {
		case r := <-ac.replies:
			first <- r
		case <-time.After(waitFor):
			first <- nil
		}
	}()
	eventually(t, "node b assembles the first payload", func() bool {
		c := b.srv.cluster
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.assemblies) == 1
	})
	wantError(t, a.dial(t, alice).do(t, provisionFrame(addr, []byte("second"))), codeNoSuchAddress)
	if r := <-first; r == nil {
		t.Fatal("relay with lost chunks never answered")
	} else {
		wantError(t, r, codeNoSuchAddress)
	}
	tc.net.ctl.setDrop(nil)
}

// TestClusterPowChallengeSpentEverywhere: a challenge used on one node is
// refused on the other.
func TestClusterPowChallengeSpentEverywhere(t *testing.T) {
	tc := startCluster(t, 2, func(c *Config) { c.PowBits = 4 })
	a, b := tc.nodes[0], tc.nodes[1]
	_, body := a.get(t, "/v1/pow")
	var ch wire.PowChallenge
	if err := proto.Unmarshal(body, &ch); err != nil {
		t.Fatal(err)
	}
	register := func(ts *testServer, name string) (int, *wire.Error) {
		u := newUser(t, name, 0)
		req := u.registerRequest(t)
		n, err := pow.Solve(context.Background(), ch.Challenge, name, int(ch.Bits))
		if err != nil {
			t.Fatal(err)
		}
		req.PowChallenge, req.PowNonce = ch.Challenge, n
		s, _, e := ts.register(t, req)
		return s, e
	}
	if s, e := register(a, "alice"); e != nil {
		t.Fatalf("register on a: %d %v", s, e)
	}
	eventually(t, "node b refuses the spent challenge", func() bool {
		_, e := register(b, "bob")
		if e == nil {
			t.Fatal("node b accepted a challenge already used on node a")
		}
		return e.Code == codeBadPow
	})
}

// TestClusterServerKeyMismatchIsLogged: two nodes with different keys
// (each left to its own data directory) both say so.
func TestClusterServerKeyMismatchIsLogged(t *testing.T) {
	net := newMemNet(t)
	st := startCluster(t, 1).store
	var nodes []*testServer
	for range 2 {
		nodes = append(nodes, startServer(t, func(c *Config) {
			c.Store = st
			c.Bus, c.LowBus, c.Control = net.bus, net.lowBus, net.ctl
		}))
	}
	for _, n := range nodes {
		eventually(t, "node reports a different server key", func() bool {
			return bytes.Contains(n.logs.Bytes(), []byte("another node of this deployment has a different server key"))
		})
	}
}

func TestClusterConfigErrors(t *testing.T) {
	net := newMemNet(t)
	st := startCluster(t, 1).store
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"bus without control":   {DataDir: dir, Store: st, Bus: net.bus, LowBus: net.lowBus},
		"control without buses": {DataDir: dir, Store: st, Control: net.ctl},
		"cluster without store": {DataDir: dir, Bus: net.bus, LowBus: net.lowBus, Control: net.ctl},
		"no data dir, no key":   {Store: st},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
	// Store and key file given: no data directory needed.
	s, err := New(Config{Store: st, ServerKeyFile: filepath.Join(dir, "k")})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
