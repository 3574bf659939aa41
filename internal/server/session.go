package server

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// session is one device's WebSocket (docs/protocol.md §9.4): after the
// challenge-response, the session goroutine reads requests and answers
// them in order, except sends, which a send queue (sendqueue.go) stores
// and answers; a pusher (delivery.go) pushes queued envelopes. Both run
// worker goroutines only while they have work. coder/websocket allows
// concurrent writes.
type session struct {
	s      *Server
	conn   *websocket.Conn
	ref    store.DeviceRef // set by authenticate; read-only once authed
	authed atomic.Bool     // ref is valid (read by Server.disconnect)

	// closeAfterReply ends the connection once the current reply is
	// written: the device removed itself. Read loop only.
	closeAfterReply bool

	sends sendQueue
}

func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	ip := remoteIP(r)
	if ok, why := s.acquireConn(ip); !ok {
		s.log.Warn("connection refused", "ip", ip, "reason", why)
		writeError(w, apiErr(codeRateLimited, "%s", why))
		return
	}
	c, err := websocket.Accept(smallBuffers{w}, r, nil)
	if err != nil {
		s.releaseConn(ip)
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	c.SetReadLimit(maxFrameSize)
	// The session runs on a goroutine of its own and this handler returns:
	// the hijacked connection does not need it, and letting it go frees
	// net/http's per-request state and its deep stack for as long as the
	// connection stays open (idle connections are most of them).
	go s.serveSession(c, ip)
}

func (s *Server) serveSession(c *websocket.Conn, ip string) {
	defer s.releaseConn(ip)
	ss := &session{s: s, conn: c}
	ss.sends.ss = ss
	if !s.track(ss) {
		c.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer s.untrack(ss)
	s.metrics.connections.Inc()
	defer s.metrics.connections.Dec()
	ss.run()
}

func (ss *session) run() {
	defer ss.conn.CloseNow()
	if err := ss.authenticate(); err != nil {
		var e *apiError
		if errors.As(err, &e) {
			ss.conn.Close(websocket.StatusPolicyViolation, e.code)
		}
		return
	}
	ss.s.log.Info("connected", "user", ss.ref.Username, "device", ss.ref.ID)
	// Authenticated devices may relay a link payload (provision_send, up
	// to MaxProvisionBody); dispatch holds every other request to
	// maxFrameSize. Unauthenticated sockets never get past maxFrameSize.
	ss.conn.SetReadLimit(maxAuthedFrameSize)
	start := time.Now()

	p := ss.startPush()
	ss.readLoop()
	ss.sends.wait()
	p.stop()
	ss.s.log.Info("disconnected", "user", ss.ref.Username, "device", ss.ref.ID, "dur", time.Since(start).Round(time.Millisecond))
}

// readLoop answers requests until the connection ends. The read has no
// deadline: an idle device stays connected, and the pusher's pings find
// dead peers. A bad frame is answered, not fatal.
func (ss *session) readLoop() {
	for {
		typ, data, err := ss.conn.Read(context.Background())
		if err != nil {
			return
		}
		var f wire.ClientFrame
		switch {
		case typ != websocket.MessageBinary:
			ss.badFrame("frames must be binary protobuf ClientFrames")
		case proto.Unmarshal(data, &f) != nil:
			ss.badFrame("frame is not a ClientFrame")
		default:
			ss.dispatch(&f, len(data))
		}
	}
}

// dispatch handles one request and writes its reply (same id).
// size is the frame's length in bytes.
func (ss *session) dispatch(f *wire.ClientFrame, size int) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var (
		typ  string
		resp *wire.ServerFrame
		err  error
	)
	switch f.Body.(type) {
	case *wire.ClientFrame_GetAccount:
		typ = "get_account"
	case *wire.ClientFrame_GetPrekeys:
		typ = "get_prekeys"
	case *wire.ClientFrame_UploadPrekeys:
		typ = "upload_prekeys"
	case *wire.ClientFrame_Send:
		typ = "send"
	case *wire.ClientFrame_Ack:
		typ = "ack"
	case *wire.ClientFrame_UpdateDeviceList:
		typ = "update_device_list"
	case *wire.ClientFrame_GetSenderCertificate:
		typ = "get_sender_certificate"
	case *wire.ClientFrame_SetDeliveryToken:
		typ = "set_delivery_token"
	case *wire.ClientFrame_SetBlocked:
		typ = "set_blocked"
	case *wire.ClientFrame_ProvisionSend:
		typ = "provision_send"
	case *wire.ClientFrame_ResetAccountKey:
		typ = "reset_account_key"
	case *wire.ClientFrame_BlobUpload:
		typ = "blob_upload"
	case *wire.ClientFrame_TurnCredentials:
		typ = "turn_credentials"
	case *wire.ClientFrame_Auth:
		typ, err = "auth", apiErr(codeBadRequest, "already authenticated")
	default:
		typ, err = "unknown", apiErr(codeBadRequest, "empty or unknown request")
	}
	if err == nil && f.Id == 0 {
		err = apiErr(codeBadRequest, "request id must not be 0")
	}
	if err == nil && size > maxFrameSize && typ != "provision_send" {
		// The read limit admits provision_send's large bodies; every
		// other request keeps the ordinary frame limit.
		err = apiErr(codeTooLarge, "frame is %d bytes; only provision_send may exceed %d", size, maxFrameSize)
	}
	if err == nil {
		switch typ {
		case "get_account":
			resp, err = ss.getAccount(ctx, f.GetGetAccount())
		case "get_prekeys":
			resp, err = ss.getPrekeys(ctx, f.GetGetPrekeys())
		case "upload_prekeys":
			resp, err = ss.uploadPrekeys(ctx, f.GetUploadPrekeys())
		case "send":
			resp, err = ss.send(ctx, f.Id, start, f.GetSend())
			if err == errReplyLater {
				return // the send queue replies once the message is stored
			}
		case "ack":
			resp, err = ss.ack(ctx, f.GetAck())
		case "update_device_list":
			resp, err = ss.updateDeviceList(ctx, f.GetUpdateDeviceList())
		case "get_sender_certificate":
			resp, err = ss.senderCertificate(ctx)
		case "set_delivery_token":
			resp, err = ss.setDeliveryToken(ctx, f.GetSetDeliveryToken())
		case "set_blocked":
			resp, err = ss.setBlocked(ctx, f.GetSetBlocked())
		case "provision_send":
			resp, err = ss.provisionSend(f.GetProvisionSend())
		case "reset_account_key":
			resp, err = ss.resetAccountKey(ctx, f.GetResetAccountKey())
		case "blob_upload":
			resp, err = ss.blobUpload(f.GetBlobUpload())
		case "turn_credentials":
			resp, err = ss.turnCredentials()
		}
	}
	ss.s.finish(typ, start, err, "user", ss.ref.Username, "device", ss.ref.ID)
	if err != nil {
		ss.reject(f.Id, err)
		return
	}
	resp.Id = f.Id
	if err := ss.write(resp); err != nil {
		ss.conn.CloseNow()
	}
	if ss.closeAfterReply {
		go ss.conn.Close(websocket.StatusPolicyViolation, "device removed from the account")
	}
}

// badFrame answers a frame that is not a request at all.
func (ss *session) badFrame(msg string) {
	err := apiErr(codeBadRequest, "%s", msg)
	ss.s.finish("invalid", time.Now(), err, "user", ss.ref.Username, "device", ss.ref.ID)
	ss.reject(0, err)
}

// reject answers a request with an Error frame.
func (ss *session) reject(id uint64, err error) {
	e := asAPIError(err)
	if ss.write(&wire.ServerFrame{Id: id, Body: &wire.ServerFrame_Error{Error: &wire.Error{Code: e.code, Message: e.msg}}}) != nil {
		ss.conn.CloseNow()
	}
}

// write sends one frame. A peer that does not take it within
// writeTimeout is cut off (coder/websocket closes on the deadline).
func (ss *session) write(f *wire.ServerFrame) error {
	b, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return ss.conn.Write(ctx, websocket.MessageBinary, b)
}

// goAway closes the connection for a server shutdown (status 1001).
func (ss *session) goAway() {
	ss.conn.Close(websocket.StatusGoingAway, "server shutting down")
}
