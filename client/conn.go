package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// Transport constants (docs/protocol.md §9).
const (
	// AuthLabel starts the message a device signs to authenticate.
	AuthLabel = "Hush-Auth-v1"
	// AuthNonceSize is the size of the server's challenge nonce.
	AuthNonceSize = 32
	// maxFrame bounds one frame from the server: a 96 KiB envelope plus
	// headers, or a handful of prekey bundles.
	maxFrame = 512 << 10
	// maxQueuedPushes bounds envelopes held in memory before they are
	// processed; beyond it they are dropped and fetched again by
	// reconnecting, since the server re-sends everything unacknowledged.
	maxQueuedPushes = 4096
	// handshakeTimeout bounds dialing plus authentication.
	handshakeTimeout = 20 * time.Second
)

// AuthMessage is what a device signs to answer a challenge:
// "Hush-Auth-v1" || nonce || uint8(len(username)) || username ||
// uint32be(device id).
func AuthMessage(nonce []byte, username string, device uint32) []byte {
	m := make([]byte, 0, len(AuthLabel)+len(nonce)+1+len(username)+4)
	m = append(m, AuthLabel...)
	m = append(m, nonce...)
	m = append(m, byte(len(username)))
	m = append(m, username...)
	return binary.BigEndian.AppendUint32(m, device)
}

// wsURL turns the server's base URL into its WebSocket endpoint.
func wsURL(server string) (string, error) {
	u, err := parseServerURL(server)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/ws"
	return u.String(), nil
}

// parseServerURL accepts http(s)://host[:port][/prefix].
func parseServerURL(server string) (*url.URL, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q must look like http://host:port or https://host", server)
	}
	return u, nil
}

// conn is one authenticated WebSocket to the server. Requests carry an id
// the server echoes; frames with id 0 are pushes, queued in order for the
// receiving loop.
type conn struct {
	ws     *websocket.Conn
	server string
	authOK *wire.AuthOK
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan *wire.ServerFrame
	err     error         // why the connection ended; set once
	done    chan struct{} // closed when the connection ends

	// Pushes, guarded by mu.
	pushes    []*wire.ServerFrame
	notify    chan struct{} // signalled when pushes grows
	receiving bool          // a Receive is consuming pushes
	dropped   bool          // an envelope arrived while nobody was receiving
	overflow  bool          // envelopes were dropped because the queue was full
	drained   bool          // queue_empty arrived
	counts    *wire.PrekeyCounts
	inflight  int  // requests waiting for an answer
	retired   bool // replaced: close once inflight reaches 0
}

// dial connects and authenticates as the account's device.
func dial(ctx context.Context, hc *http.Client, server string, a *account, receiving bool) (*conn, error) {
	u, err := wsURL(server)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(hctx, u, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			switch {
			case resp.StatusCode == http.StatusTooManyRequests:
				return nil, &ServerError{Code: "rate_limited", Message: "the server refuses more connections from this address for now"}
			case resp.StatusCode >= 500:
				return nil, &ServerError{Code: "internal", Message: fmt.Sprintf("the server answered HTTP %d; try again later", resp.StatusCode)}
			}
			return nil, fmt.Errorf("%w: WebSocket handshake refused with HTTP %d", ErrProtocol, resp.StatusCode)
		}
		return nil, &UnreachableError{URL: server, Err: err}
	}
	ws.SetReadLimit(maxFrame)
	c := &conn{
		ws:        ws,
		server:    server,
		pending:   map[uint64]chan *wire.ServerFrame{},
		done:      make(chan struct{}),
		notify:    make(chan struct{}, 1),
		receiving: receiving,
	}
	if err := c.authenticate(hctx, a); err != nil {
		ws.CloseNow()
		return nil, err
	}
	c.counts = c.authOK.GetPrekeyCounts()
	go c.readLoop()
	return c, nil
}

func (c *conn) readFrame(ctx context.Context) (*wire.ServerFrame, error) {
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return nil, &UnreachableError{URL: c.server, Err: err}
	}
	if typ != websocket.MessageBinary {
		return nil, fmt.Errorf("%w: text frame", ErrProtocol)
	}
	var f wire.ServerFrame
	if err := proto.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: malformed frame: %v", ErrProtocol, err)
	}
	return &f, nil
}

// authenticate answers the server's challenge (docs/protocol.md §9.3).
func (c *conn) authenticate(ctx context.Context, a *account) error {
	f, err := c.readFrame(ctx)
	if err != nil {
		return err
	}
	if e := f.GetError(); e != nil {
		return &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
	}
	ch := f.GetChallenge()
	if ch == nil || len(ch.GetNonce()) != AuthNonceSize {
		return fmt.Errorf("%w: expected a %d-byte authentication challenge", ErrProtocol, AuthNonceSize)
	}
	sig := a.Signing.Sign(AuthMessage(ch.GetNonce(), a.Username, a.DeviceID))
	if err := c.write(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_Auth{Auth: &wire.AuthResponse{
		Username: a.Username, DeviceId: a.DeviceID, Signature: sig,
	}}}); err != nil {
		return err
	}
	f, err = c.readFrame(ctx)
	if err != nil {
		return err
	}
	if e := f.GetError(); e != nil {
		return &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
	}
	if f.GetAuthOk() == nil {
		return fmt.Errorf("%w: expected auth_ok", ErrProtocol)
	}
	c.authOK = f.GetAuthOk()
	return nil
}

func (c *conn) write(ctx context.Context, f *wire.ClientFrame) error {
	data, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	if err := c.ws.Write(ctx, websocket.MessageBinary, data); err != nil {
		err = &UnreachableError{URL: c.server, Err: err}
		c.fail(err)
		return err
	}
	return nil
}

func (c *conn) readLoop() {
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.fail(&UnreachableError{URL: c.server, Err: err})
			return
		}
		if err := c.handle(typ, data); err != nil {
			c.fail(err)
			return
		}
	}
}

// handle dispatches one frame from the server: an answer to its request,
// or a push. An error ends the connection.
func (c *conn) handle(typ websocket.MessageType, data []byte) error {
	if typ != websocket.MessageBinary {
		return fmt.Errorf("%w: text frame", ErrProtocol)
	}
	f := &wire.ServerFrame{}
	if err := proto.Unmarshal(data, f); err != nil {
		return fmt.Errorf("%w: malformed frame: %v", ErrProtocol, err)
	}
	if f.GetId() != 0 {
		c.mu.Lock()
		ch := c.pending[f.GetId()]
		delete(c.pending, f.GetId())
		c.mu.Unlock()
		if ch != nil {
			ch <- f // buffered, one answer per request
		}
		return nil
	}
	if e := f.GetError(); e != nil {
		return &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
	}
	c.push(f)
	return nil
}

func (c *conn) push(f *wire.ServerFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case f.GetEnvelope() != nil:
		if !c.receiving {
			c.dropped = true
			return
		}
		if len(c.pushes) >= maxQueuedPushes {
			c.overflow = true
			return
		}
	case f.GetQueueEmpty() != nil:
		c.drained = true
		if !c.receiving {
			return
		}
	case f.GetPrekeyCounts() != nil:
		c.counts = f.GetPrekeyCounts()
	default:
		return // a push this version does not know: ignore it
	}
	c.pushes = append(c.pushes, f)
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// take returns the queued pushes in order and empties the queue.
func (c *conn) take() []*wire.ServerFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pushes
	c.pushes = nil
	return p
}

// fail ends the connection, waking every waiter with err.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.done)
	c.mu.Unlock()
	if c.ws != nil {
		c.ws.CloseNow()
	}
}

func (c *conn) close() {
	c.mu.Lock()
	already := c.err != nil
	c.mu.Unlock()
	if !already {
		c.ws.Close(websocket.StatusNormalClosure, "")
	}
	c.fail(errConnClosed)
}

var errConnClosed = errors.New("connection closed")

// retire closes the connection once the requests still using it are
// answered, so replacing a connection never fails a request in flight.
func (c *conn) retire() {
	c.mu.Lock()
	c.retired = true
	idle := c.inflight == 0
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

// alive reports whether the connection can still be used.
func (c *conn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *conn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == errConnClosed {
		return &UnreachableError{URL: c.server, Err: c.err}
	}
	return c.err
}

// request sends a request frame and waits for the answer with its id. An
// Error answer becomes a *ServerError.
func (c *conn) request(ctx context.Context, f *wire.ClientFrame) (*wire.ServerFrame, error) {
	id := c.nextID.Add(1)
	f.Id = id
	ch := make(chan *wire.ServerFrame, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.failure()
	}
	c.pending[id] = ch
	c.inflight++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.inflight--
		closeNow := c.retired && c.inflight == 0
		c.mu.Unlock()
		if closeNow {
			c.close()
		}
	}()
	if err := c.write(ctx, f); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if e := r.GetError(); e != nil {
			return nil, &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
		}
		return r, nil
	case <-c.done:
		return nil, c.failure()
	case <-ctx.Done():
		return nil, &UnreachableError{URL: c.server, Err: ctx.Err()}
	}
}

// post sends a frame without waiting for its answer (acks).
func (c *conn) post(ctx context.Context, f *wire.ClientFrame) error {
	f.Id = c.nextID.Add(1)
	return c.write(ctx, f)
}

// connection returns the live connection, dialing a new one if needed.
func (c *Client) connection(ctx context.Context) (*conn, error) {
	a, err := c.account()
	if err != nil {
		return nil, err
	}
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur != nil && cur.alive() {
		return cur, nil
	}
	return c.redialLocked(ctx, a, false)
}

// redial replaces the current connection with a new one.
func (c *Client) redial(ctx context.Context, a *account, receiving bool) (*conn, error) {
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	return c.redialLocked(ctx, a, receiving)
}

func (c *Client) redialLocked(ctx context.Context, a *account, receiving bool) (*conn, error) {
	cn, err := dial(ctx, c.http, c.serverURL(a), a, receiving)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cn.close()
		return nil, errors.New("client: closed")
	}
	old := c.cur
	c.cur = cn
	c.mu.Unlock()
	if old != nil {
		old.retire()
	}
	// Best effort: a failure here is retried on the next connection.
	if err := c.refillPrekeys(ctx, cn, cn.counts); err != nil {
		c.cfg.Warn(fmt.Errorf("could not upload new prekeys: %w", err))
	}
	// The delivery token's hash and the blocked list (client/sealed.go).
	if err := c.syncSealedState(ctx, cn); err != nil {
		c.cfg.Warn(fmt.Errorf("could not update the server's sealed-sender settings: %w", err))
	}
	return cn, nil
}

// verifyServerKey is used at registration: keys.ServerPublic parsing of
// what /v1/info returned.
func verifyServerKey(b []byte) (keys.ServerPublic, error) {
	k, err := keys.ParseServerPublic(b)
	if err != nil {
		return k, fmt.Errorf("%w: server key: %v", ErrProtocol, err)
	}
	return k, nil
}
