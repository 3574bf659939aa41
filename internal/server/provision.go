package server

import (
	"context"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// The linking relay (docs/protocol.md §9.10). A device being linked has no
// account yet, so it cannot authenticate; it opens GET /v1/provision and
// the server hands it a random relay address:
//
//	server → device  one binary message: ProvisionAddress (a bare protobuf,
//	                 not a ServerFrame)
//	primary → server provision_send{address, body} on its authenticated
//	                 WebSocket; answered ok, or no_such_address
//	server → device  one binary message: ProvisionEnvelope{body}, then a
//	                 normal close
//
// The device sends nothing; any data message from it ends the socket. The
// socket lives at most ProvisionLifetime. The body is HPKE-sealed to a key
// only the device holds, with a secret only the link code carries, so the
// relay can neither read nor forge it. Relaying is in memory only: the
// address and body are never stored and never logged. With several
// nodes, the primary's node hands the body to the node holding the
// socket (provrelay.go).

// provisionAddressSize is the relay address's random bytes (32 hex digits).
const provisionAddressSize = 16

// provisionSlot is one linking device waiting for its envelope.
type provisionSlot struct {
	conn *websocket.Conn
	done chan struct{} // closed by the relaying side once it has written (or failed)
}

func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ip := remoteIP(r)
	// The address is not logged: it is in memory only, for the minutes
	// the socket lives.
	if !s.provisionLimit.Allow(ip) {
		err := apiErr(codeRateLimited, "too many link requests from your address; try again later")
		s.finish("provision", start, err)
		writeError(w, err)
		return
	}
	if ok, why := s.acquireConn(ip); !ok {
		err := apiErr(codeRateLimited, "%s", why)
		s.finish("provision", start, err)
		writeError(w, err)
		return
	}
	c, err := websocket.Accept(smallBuffers{w}, r, nil)
	if err != nil {
		s.releaseConn(ip)
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	s.finish("provision", start, nil)
	go s.serveProvision(c, ip)
}

func (s *Server) serveProvision(c *websocket.Conn, ip string) {
	defer s.releaseConn(ip)
	defer c.CloseNow()
	s.metrics.connections.Inc()
	defer s.metrics.connections.Dec()

	addr := s.newRelayAddress()
	slot := &provisionSlot{conn: c, done: make(chan struct{})}
	if !s.addProvision(addr, slot) {
		c.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer s.takeProvision(addr)

	b, err := proto.Marshal(&wire.ProvisionAddress{Address: addr})
	if err != nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	err = c.Write(wctx, websocket.MessageBinary, b)
	cancel()
	if err != nil {
		return
	}
	// CloseRead answers pings and the close handshake, and ends the
	// socket if the device sends data; its context ends with the socket.
	closed := c.CloseRead(context.Background())
	life := time.NewTimer(s.provisionLifetime)
	defer life.Stop()
	select {
	case <-slot.done:
		c.Close(websocket.StatusNormalClosure, "")
	case <-closed.Done():
	case <-life.C:
		c.Close(websocket.StatusNormalClosure, "link code expired")
	}
}

// addProvision registers a waiting device; false if the server is
// shutting down (or, never in practice, the address is taken).
func (s *Server) addProvision(addr string, slot *provisionSlot) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if _, taken := s.provisions[addr]; taken {
		return false
	}
	s.provisions[addr] = slot
	return true
}

// takeProvision removes and returns the device waiting at addr, so at
// most one envelope is ever relayed to it.
func (s *Server) takeProvision(addr string) *provisionSlot {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := s.provisions[addr]
	delete(s.provisions, addr)
	return slot
}

// provisionSend relays a primary's sealed LinkPayload to the device
// waiting at the address.
func (ss *session) provisionSend(req *wire.ProvisionSendRequest) (*wire.ServerFrame, error) {
	if !validProvisionAddress(req.GetAddress()) {
		return nil, apiErr(codeBadRequest, "link address must be %d lower-case hex digits", 2*provisionAddressSize)
	}
	if len(req.GetBody()) == 0 {
		return nil, apiErr(codeBadRequest, "provision body is empty")
	}
	if len(req.Body) > MaxProvisionBody {
		return nil, apiErr(codeTooLarge, "provision body is %d bytes; the limit is %d", len(req.Body), MaxProvisionBody)
	}
	slot := ss.s.takeProvision(req.Address)
	if slot == nil {
		if holder, ok := ss.s.relayHolder(req.Address); ok {
			// The device waits on another node (provrelay.go).
			if err := ss.s.relayLink(req.Address, holder, req.Body); err != nil {
				return nil, err
			}
			ss.s.log.Info("provision relayed", "to_node", holder.String())
			return okFrame(), nil
		}
		return nil, apiErr(codeNoSuchAddress, "no device is waiting at that link address; make a new link code")
	}
	defer close(slot.done)
	b, err := proto.Marshal(&wire.ProvisionEnvelope{Body: req.Body})
	if err != nil {
		return nil, err
	}
	// Its own deadline, not the request's: up to 8 MiB may need longer
	// than a store call is allowed.
	wctx, cancel := context.WithTimeout(context.Background(), provisionWrite)
	defer cancel()
	if err := slot.conn.Write(wctx, websocket.MessageBinary, b); err != nil {
		return nil, apiErr(codeNoSuchAddress, "the device waiting at that link address went away; make a new link code")
	}
	ss.s.log.Info("provision relayed")
	return okFrame(), nil
}

func validProvisionAddress(a string) bool {
	if len(a) != 2*provisionAddressSize {
		return false
	}
	for i := range len(a) {
		if c := a[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
