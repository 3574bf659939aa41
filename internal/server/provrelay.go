package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// The linking relay across nodes (provision.go has the single-node one).
// A linking device's socket lives on one node; its primary's
// provision_send may arrive on any other. On a node of several, a relay
// address starts with the node's tag, so the node that receives the
// payload knows where to take it:
//
//	relaying node                            holding node
//	chunks on "link.<holder>" ───────────▶   first chunk: a device waits at
//	                                         the address → "accepted", else
//	                                         "no such address"
//	                          ◀───────────   result on "linkres.<relayer>"
//	                                         all chunks: write the envelope,
//	                          ◀───────────   "delivered" or "gone"
//
// The payload (up to 8 MiB) is cut into linkChunkData pieces, since NATS
// refuses large messages. Like the single-node relay it stays in memory
// and is never logged; the HPKE sealing (§9.10) keeps it unreadable to
// NATS and to every node. Core NATS may lose a chunk: the holder then
// gives up after linkAssemblyTimeout and the primary is told to make a
// new link code. At most one payload is assembled per waiting device, so
// memory stays within one payload per linking socket.

const (
	// linkAckTimeout bounds the wait for the holder's first answer: a node
	// that has gone (crashed, or the code is old) never answers.
	linkAckTimeout = 10 * time.Second
	// linkAssemblyTimeout bounds the wait for the remaining chunks. The
	// whole relay, as the relaying node sees it, is bounded by that plus
	// provisionWrite (the write to the device) and a margin.
	linkAssemblyTimeout = 20 * time.Second
)

// linkAssembly is a payload arriving for a device waiting on this node.
type linkAssembly struct {
	origin nodeTag
	addr   string
	buf    []byte
	got    []bool
	left   int
	timer  *time.Timer
}

// newRelayAddress makes a relay address: random, and on a node of
// several starting with the node's tag.
func (s *Server) newRelayAddress() string {
	var raw [provisionAddressSize]byte
	rand.Read(raw[:])
	if s.cluster != nil {
		copy(raw[:], s.cluster.node[:])
	}
	return hex.EncodeToString(raw[:])
}

// relayHolder returns the node a relay address belongs to when that is
// another node of the cluster.
func (s *Server) relayHolder(addr string) (nodeTag, bool) {
	var t nodeTag
	if s.cluster == nil {
		return t, false
	}
	raw, err := hex.DecodeString(addr)
	if err != nil || len(raw) != provisionAddressSize {
		return t, false
	}
	copy(t[:], raw)
	return t, t != s.cluster.node
}

// relayLink sends body to the device waiting at addr on node holder and
// waits for the outcome.
func (s *Server) relayLink(addr string, holder nodeTag, body []byte) error {
	c := s.cluster
	var x xferID
	rand.Read(x[:])
	results := make(chan byte, 4)
	c.mu.Lock()
	c.waits[x] = results
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waits, x)
		c.mu.Unlock()
	}()

	ch := linkChunk{xfer: x, total: len(body), count: linkChunkCount(len(body))}
	raw, _ := hex.DecodeString(addr) // checked by validProvisionAddress
	copy(ch.addr[:], raw)
	subject := ctlLinkBase + holder.String()
	for ch.index = 0; ch.index < ch.count; ch.index++ {
		ch.data = body[ch.index*linkChunkData : min(len(body), (ch.index+1)*linkChunkData)]
		s.publishControl(subject, encodeLinkChunk(ch))
	}

	unreachable := apiErr(codeNoSuchAddress, "the device waiting at that link address could not be reached; make a new link code")
	ack := time.NewTimer(c.linkAck)
	defer ack.Stop()
	whole := time.NewTimer(c.linkAssembly + provisionWrite + 10*time.Second)
	defer whole.Stop()
	for {
		select {
		case r := <-results:
			switch r {
			case linkAccepted:
				ack.Stop()
				continue
			case linkDelivered:
				return nil
			case linkGone:
				return apiErr(codeNoSuchAddress, "the device waiting at that link address went away; make a new link code")
			case linkNoSuchAddr:
				return apiErr(codeNoSuchAddress, "no device is waiting at that link address; make a new link code")
			default:
				return unreachable
			}
		case <-ack.C:
			s.log.Warn("link relay: the node holding the address did not answer", "node", holder.String())
			return unreachable
		case <-whole.C:
			s.log.Warn("link relay: no outcome from the node holding the address", "node", holder.String())
			return unreachable
		}
	}
}

// onLinkResult passes a holder's answer to the relay waiting for it.
func (s *Server) onLinkResult(_ nodeTag, body []byte) {
	x, r, err := parseLinkResult(body)
	if err != nil {
		s.log.Warn("cluster: malformed link result dropped", "err", err)
		return
	}
	c := s.cluster
	c.mu.Lock()
	results := c.waits[x]
	c.mu.Unlock()
	if results != nil {
		select {
		case results <- r:
		default: // duplicates beyond the buffer carry nothing new
		}
	}
}

// onLinkChunk collects the chunks of a payload for a device waiting
// here. It runs on the Control's dispatcher: it copies and returns, and
// leaves writing and answering to goroutines.
func (s *Server) onLinkChunk(origin nodeTag, body []byte) {
	ch, err := parseLinkChunk(body)
	if err != nil {
		s.log.Warn("cluster: malformed link chunk dropped", "err", err)
		return
	}
	c := s.cluster
	addr := hex.EncodeToString(ch.addr[:])
	c.mu.Lock()
	a := c.assemblies[ch.xfer]
	if a == nil {
		if ch.index != 0 {
			// The start was lost (or this transfer already ended): the
			// relaying node times out and says so.
			c.mu.Unlock()
			return
		}
		if c.closed || !s.provisionWaiting(addr) || c.assembling(addr) {
			c.mu.Unlock()
			go s.answerLink(origin, ch.xfer, linkNoSuchAddr)
			return
		}
		a = &linkAssembly{origin: origin, addr: addr, buf: make([]byte, ch.total), got: make([]bool, ch.count), left: ch.count}
		x := ch.xfer
		a.timer = time.AfterFunc(c.linkAssembly, func() { s.dropAssembly(x, a) })
		c.assemblies[x] = a
		go s.answerLink(origin, x, linkAccepted)
	}
	if len(a.buf) != ch.total || len(a.got) != ch.count || a.origin != origin {
		c.mu.Unlock()
		s.log.Warn("cluster: link chunk does not match its transfer; dropped")
		return
	}
	if !a.got[ch.index] {
		copy(a.buf[ch.index*linkChunkData:], ch.data)
		a.got[ch.index] = true
		a.left--
	}
	done := a.left == 0
	if done {
		delete(c.assemblies, ch.xfer)
		a.timer.Stop()
	}
	c.mu.Unlock()
	if done {
		go s.deliverLink(ch.xfer, a)
	}
}

// assembling reports whether a payload is already on its way to addr.
// c.mu must be held.
func (c *cluster) assembling(addr string) bool {
	for _, a := range c.assemblies {
		if a.addr == addr {
			return true
		}
	}
	return false
}

// provisionWaiting reports whether a linking device waits at addr here.
func (s *Server) provisionWaiting(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.provisions[addr]
	return ok
}

// dropAssembly gives up on a payload whose chunks did not all arrive.
func (s *Server) dropAssembly(x xferID, a *linkAssembly) {
	c := s.cluster
	c.mu.Lock()
	cur := c.assemblies[x]
	if cur == a {
		delete(c.assemblies, x)
	}
	c.mu.Unlock()
	if cur == a {
		s.log.Warn("link relay: chunks of a link payload were lost; the primary is told to retry")
		s.answerLink(a.origin, x, linkIncomplete)
	}
}

// deliverLink writes an assembled payload to its device, as
// provisionSend does on a single node, and tells the relaying node.
func (s *Server) deliverLink(x xferID, a *linkAssembly) {
	slot := s.takeProvision(a.addr)
	if slot == nil {
		s.answerLink(a.origin, x, linkNoSuchAddr)
		return
	}
	defer close(slot.done)
	b, err := proto.Marshal(&wire.ProvisionEnvelope{Body: a.buf})
	a.buf = nil
	if err != nil {
		s.answerLink(a.origin, x, linkGone)
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), provisionWrite)
	defer cancel()
	if err := slot.conn.Write(wctx, websocket.MessageBinary, b); err != nil {
		s.answerLink(a.origin, x, linkGone)
		return
	}
	s.log.Info("provision relayed", "from_node", a.origin.String())
	s.answerLink(a.origin, x, linkDelivered)
}

func (s *Server) answerLink(to nodeTag, x xferID, r byte) {
	s.publishControl(ctlLinkResult+to.String(), encodeLinkResult(x, r))
}
