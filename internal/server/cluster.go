package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/store"
)

// Several nodes (docs/deploy.md). Nodes share the Store, which is the
// truth, and the server key. What a node keeps in memory must not go
// wrong when another node changes the store, so each such thing is either
// made right by a control event from the node that made the change, or
// bounded in time when that event is lost:
//
//	what                          event          if the event is lost
//	device-id cache (devcache.go) "devices"      entries expire (clusterCacheTTL);
//	                                             a send that does not fit a cached
//	                                             list re-reads it first
//	blocked-list cache            "blocked"      entries expire (clusterCacheTTL)
//	connections of a removed      "disconnect"   the connection's sweep finds the
//	device                                       device gone (DefaultSweepInterval)
//	spent proof-of-work           "pow"          the challenge works once more on
//	challenges                                   another node, still only for the
//	                                             username it was solved for
//	linking devices waiting on    "link.<node>", the primary is told to make a new
//	GET /v1/provision             "linkres.<node>" link code (provrelay.go)
//	the server key                "nodekey"      nothing: it only reports a node
//	                                             configured with another key
//
// Wake-ups travel on Config.Bus and Config.LowBus; a lost one delays
// delivery until the connection's sweep (delivery.go), never loses it.
//
// What stays per node, by design: rate limits and the per-address
// connection cap (each node counts on its own), and metrics.
//
// Every event starts with a version byte and the publishing node's tag;
// a node ignores its own events (it has already acted on them, and a
// disconnect coming back would cut the connection that asked for it
// before its reply).

// Control carries events between the nodes of one deployment: at most
// once, possibly duplicated, possibly delivered to the publisher too.
// *natsbus.Bus implements it.
type Control interface {
	// PublishControl sends data to subject's subscribers on every node.
	// It must not block.
	PublishControl(subject string, data []byte) error
	// SubscribeControl calls fn with each event published to subject
	// until cancel is called. fn must return quickly, must not call the
	// Control, and must not keep data.
	SubscribeControl(subject string, fn func(data []byte)) (cancel func(), err error)
}

const (
	// clusterCacheTTL bounds how long a node of several trusts a cached
	// device or blocked list, in case the event that should have dropped
	// it was lost.
	clusterCacheTTL = 30 * time.Second
	// DefaultSweepInterval is how often, on a node of several, each
	// connection re-reads its queue (and checks its device still exists).
	DefaultSweepInterval = 30 * time.Second
)

// Control subjects (natsbus puts them under "<prefix>.ctl.").
const (
	ctlDevices    = "devices"    // body: username; its device list changed
	ctlBlocked    = "blocked"    // body: username; its blocked list changed
	ctlDisconnect = "disconnect" // body: u32 device id || username; device removed
	ctlPow        = "pow"        // body: a proof-of-work challenge just spent
	ctlNodeKey    = "nodekey"    // body: u8 kind || server public key
	ctlLinkBase   = "link."      // + node tag in hex: link payload chunks for that node
	ctlLinkResult = "linkres."   // + node tag in hex: relay results for that node
)

// nodeTag names one running node: random, made at start.
type nodeTag [4]byte

func (t nodeTag) String() string { return hex.EncodeToString(t[:]) }

// cluster is a node's multi-node state.
type cluster struct {
	ctl  Control
	node nodeTag
	// linkAck and linkAssembly are linkAckTimeout and
	// linkAssemblyTimeout; shorter in tests.
	linkAck, linkAssembly time.Duration

	mu      sync.Mutex
	cancels []func()
	closed  bool
	// waits are link relays this node started, by transfer id; sends
	// the holder's answers (provrelay.go).
	waits map[xferID]chan byte
	// assemblies are link payloads arriving for devices waiting here.
	assemblies map[xferID]*linkAssembly
}

// joinCluster subscribes to the control subjects and announces this
// node's server key.
func (s *Server) joinCluster(ctl Control) error {
	c := &cluster{
		ctl: ctl, linkAck: linkAckTimeout, linkAssembly: linkAssemblyTimeout,
		waits: map[xferID]chan byte{}, assemblies: map[xferID]*linkAssembly{},
	}
	rand.Read(c.node[:])
	s.cluster = c
	subs := []struct {
		subject string
		fn      func(origin nodeTag, body []byte)
	}{
		{ctlDevices, s.onUser(s.devices.invalidate)},
		{ctlBlocked, s.onUser(s.blocks.invalidate)},
		{ctlDisconnect, s.onDisconnect},
		{ctlPow, func(_ nodeTag, body []byte) { s.pow.Spend(body) }},
		{ctlNodeKey, s.onNodeKey},
		{ctlLinkBase + c.node.String(), s.onLinkChunk},
		{ctlLinkResult + c.node.String(), s.onLinkResult},
	}
	for _, sub := range subs {
		cancel, err := ctl.SubscribeControl(sub.subject, s.controlHandler(sub.subject, sub.fn))
		if err != nil {
			s.leaveCluster()
			return fmt.Errorf("server: subscribe to control events: %w", err)
		}
		c.mu.Lock()
		c.cancels = append(c.cancels, cancel)
		c.mu.Unlock()
	}
	s.log.Info("joined the cluster", "node", c.node.String(), "server_key", keyFingerprint(s.pub))
	s.publishControl(ctlNodeKey, []byte{nodeKeyAnnounce}, s.pub.Bytes())
	return nil
}

// leaveCluster cancels the subscriptions; Close calls it.
func (s *Server) leaveCluster() {
	c := s.cluster
	if c == nil {
		return
	}
	c.mu.Lock()
	cancels := c.cancels
	c.cancels, c.closed = nil, true
	c.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
}

// controlHandler checks an event's header and drops this node's own.
func (s *Server) controlHandler(subject string, fn func(nodeTag, []byte)) func([]byte) {
	return func(data []byte) {
		origin, body, err := parseControl(data)
		if err != nil {
			s.log.Warn("cluster: malformed control event dropped", "subject", subject, "err", err)
			return
		}
		if origin == s.cluster.node {
			return
		}
		fn(origin, body)
	}
}

// publishControl sends an event made of parts to the other nodes; a
// no-op on a single node.
func (s *Server) publishControl(subject string, parts ...[]byte) {
	c := s.cluster
	if c == nil {
		return
	}
	n := controlHeaderSize
	for _, p := range parts {
		n += len(p)
	}
	data := make([]byte, 0, n)
	data = append(data, controlVersion)
	data = append(data, c.node[:]...)
	for _, p := range parts {
		data = append(data, p...)
	}
	if err := c.ctl.PublishControl(subject, data); err != nil {
		s.log.Error("cluster: publish control event", "subject", subject, "err", err)
	}
}

func (s *Server) publishDevices(user string) { s.publishControl(ctlDevices, []byte(user)) }

func (s *Server) publishBlocked(user string) { s.publishControl(ctlBlocked, []byte(user)) }

func (s *Server) publishDisconnect(ref store.DeviceRef) {
	if s.cluster != nil {
		s.publishControl(ctlDisconnect, encodeRef(ref))
	}
}

// publishPowSpent tells the other nodes a challenge was used here.
func (s *Server) publishPowSpent(challenge []byte) { s.publishControl(ctlPow, challenge) }

// onUser adapts a per-user action to a control handler.
func (s *Server) onUser(fn func(user string)) func(nodeTag, []byte) {
	return func(_ nodeTag, body []byte) {
		user, err := parseUser(body)
		if err != nil {
			s.log.Warn("cluster: malformed control event dropped", "err", err)
			return
		}
		fn(user)
	}
}

func (s *Server) onDisconnect(_ nodeTag, body []byte) {
	ref, err := parseRef(body)
	if err != nil {
		s.log.Warn("cluster: malformed disconnect event dropped", "err", err)
		return
	}
	s.disconnectLocal(ref, nil)
}

// Kinds of nodekey events: a node that starts announces its key; nodes
// that see an announcement answer with theirs, so both sides can tell.
const (
	nodeKeyAnnounce = 1
	nodeKeyReply    = 2
)

// onNodeKey compares another node's server key with ours. Two keys in
// one deployment break every client that pinned the other one; the
// operator must hear of it.
func (s *Server) onNodeKey(origin nodeTag, body []byte) {
	kind, key, err := parseNodeKey(body)
	if err != nil {
		s.log.Warn("cluster: malformed nodekey event dropped", "err", err)
		return
	}
	if !key.Equal(s.pub) {
		s.log.Error("cluster: another node of this deployment has a different server key; clients pinned to one fail on the other: give every node the same --server-key file",
			"node", origin.String(), "its_key", keyFingerprint(key), "our_key", keyFingerprint(s.pub))
	}
	if kind == nodeKeyAnnounce {
		// Handlers must not call the Control.
		go s.publishControl(ctlNodeKey, []byte{nodeKeyReply}, s.pub.Bytes())
	}
}

// keyFingerprint is a short public name for a server key, for logs.
func keyFingerprint(k keys.ServerPublic) string {
	sum := sha256.Sum256(k.Bytes())
	return hex.EncodeToString(sum[:8])
}
