package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/internal/server/pow"
	"github.com/hush-chat/hush/wire"
)

// A virtual user is a registered account with one device (id 1) and real
// keys, held in memory: no SQLite, no outbox, so the bench spends its
// CPU on the protocol and leaves the rest to the server. It keeps one
// authenticated WebSocket, read by one goroutine (replies and pushes) and
// written by another (sends and acks). The reader never waits on a
// write: when the server stops reading (its send queue is full) it still
// writes replies and pushes, and they must be read for it to go on.

type vuser struct {
	r    *run
	idx  int
	name string
	dev  *ratchettest.Device // the reader's alone once connected
	list identity.DeviceList // as registered

	peers map[int]*peer // everyone this user has a session with; fixed after setup
	out   []*peer       // whom this user sends to

	conn *websocket.Conn

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]request
	acks    []uint64 // server ids to acknowledge
	closing bool

	sendq      chan []byte   // marshalled frames for the writer
	ackReady   chan struct{} // cap 1: acks are waiting
	window     chan struct{} // measured sends in flight
	queueEmpty chan struct{} // closed at the first queue_empty
	emptyOnce  sync.Once
	done       chan struct{} // closed when the reader ends
}

// peer is this user's side of a session with another user.
type peer struct {
	u   *vuser // the other user
	mu  sync.Mutex
	rec ratchet.Record
	out *edge // this user -> u
	in  *edge // u -> this user
}

type reqKind uint8

const (
	reqSend reqKind = iota
	reqAck
	reqCall // a setup request; the reply goes to the waiting caller
)

type request struct {
	kind  reqKind
	edge  *edge
	seq   uint32
	reply chan *wire.ServerFrame
}

const (
	sendQueue = 256
	// sendWindow bounds one user's measured sends awaiting the server's
	// answer; a user at the limit falls behind schedule.
	sendWindow = 1024
	readLimit  = 2 << 20
)

func newUser(r *run, idx int, oneTime int) (*vuser, error) {
	name := fmt.Sprintf("bench%s_%d", r.runName, idx)
	dev, err := ratchettest.NewDevice(name, 1, oneTime)
	if err != nil {
		return nil, err
	}
	return &vuser{
		r: r, idx: idx, name: name, dev: dev,
		list: identity.DeviceList{Username: name, Version: 1, Devices: []identity.Device{
			{ID: dev.ID, SigningKey: dev.Signing.Public(), IdentityKey: dev.Identity.Public()},
		}},
		peers:      map[int]*peer{},
		pending:    map[uint64]request{},
		sendq:      make(chan []byte, sendQueue),
		ackReady:   make(chan struct{}, 1),
		window:     make(chan struct{}, sendWindow),
		queueEmpty: make(chan struct{}),
		done:       make(chan struct{}),
	}, nil
}

// register solves the proof of work and posts the registration
// (docs/protocol.md §9.2, §9.3).
func (u *vuser) register(ctx context.Context) error {
	var ch wire.PowChallenge
	if err := u.r.httpProto(ctx, http.MethodGet, "/v1/pow", nil, &ch); err != nil {
		return err
	}
	nonce, err := pow.Solve(ctx, ch.Challenge, u.name, int(ch.Bits))
	if err != nil {
		return err
	}
	signed, err := u.dev.DeviceList(1)
	if err != nil {
		return err
	}
	list, err := signed.Marshal()
	if err != nil {
		return err
	}
	req := &wire.RegisterRequest{
		Username:     u.name,
		AccountKey:   u.dev.Account.Public().Bytes(),
		DeviceList:   list,
		Prekeys:      prekeyUpload(u.dev),
		PowChallenge: ch.Challenge,
		PowNonce:     nonce,
	}
	return u.r.httpProto(ctx, http.MethodPost, "/v1/register", req, &wire.RegisterResponse{})
}

// prekeyUpload is every prekey of d, signed.
func prekeyUpload(d *ratchettest.Device) *wire.PrekeyUpload {
	ik := d.Identity.Public()
	spk := d.SPK.Public().Bytes()
	up := &wire.PrekeyUpload{SignedPrekey: &wire.SignedPrekey{
		Id: d.SignedPrekeyID, Key: spk, Signature: identity.SignPrekey(d.Signing, ik, d.SignedPrekeyID, spk),
	}}
	for _, id := range sortedIDs(d.KEM) {
		k := d.KEM[id].Public().Bytes()
		p := &wire.KEMPrekey{Id: id, Key: k, Signature: identity.SignPrekey(d.Signing, ik, id, k)}
		if d.KEM[id].LastResort() {
			up.KemLastResort = p
		} else {
			up.KemOneTime = append(up.KemOneTime, p)
		}
	}
	for _, id := range sortedIDs(d.OneTime) {
		up.OneTime = append(up.OneTime, &wire.OneTimePrekey{Id: id, Key: d.OneTime[id].Public().Bytes()})
	}
	return up
}

func sortedIDs[V any](m map[uint32]V) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// connect opens the WebSocket, authenticates (docs/protocol.md §9.4) and
// starts the reader and writer; they run until ctx ends or the
// connection fails.
func (u *vuser) connect(ctx, life context.Context) error {
	c, _, err := websocket.Dial(ctx, u.r.wsURL, &websocket.DialOptions{HTTPClient: u.r.httpc})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	c.SetReadLimit(readLimit)
	ch, err := readServerFrame(ctx, c)
	if err != nil {
		c.CloseNow()
		return fmt.Errorf("connect: %w", err)
	}
	nonce := ch.GetChallenge().GetNonce()
	if len(nonce) != server.AuthNonceSize {
		c.CloseNow()
		return fmt.Errorf("connect: the server's first frame is not an auth challenge")
	}
	sig := u.dev.Signing.Sign(server.AuthMessage(nonce, u.name, u.dev.ID))
	b, _ := proto.Marshal(&wire.ClientFrame{Body: &wire.ClientFrame_Auth{Auth: &wire.AuthResponse{
		Username: u.name, DeviceId: u.dev.ID, Signature: sig,
	}}})
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		c.CloseNow()
		return fmt.Errorf("connect: %w", err)
	}
	ok, err := readServerFrame(ctx, c)
	if err != nil {
		c.CloseNow()
		return fmt.Errorf("authenticate: %w", err)
	}
	if ok.GetAuthOk() == nil {
		c.CloseNow()
		return fmt.Errorf("authenticate: %s", describeFrame(ok))
	}
	u.conn = c
	go u.readLoop(life)
	go u.writeLoop(life)
	return nil
}

func readServerFrame(ctx context.Context, c *websocket.Conn) (*wire.ServerFrame, error) {
	typ, b, err := c.Read(ctx)
	if err != nil {
		return nil, err
	}
	var f wire.ServerFrame
	if typ != websocket.MessageBinary || proto.Unmarshal(b, &f) != nil {
		return nil, errors.New("the server sent a frame that is not a ServerFrame")
	}
	return &f, nil
}

// describeFrame says what an unwanted frame was, for error messages.
func describeFrame(f *wire.ServerFrame) string {
	if e := f.GetError(); e != nil {
		return e.Code + ": " + e.Message
	}
	return fmt.Sprintf("unexpected %T", f.GetBody())
}

// register a request and return its id.
func (u *vuser) track(r request) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.nextID++
	u.pending[u.nextID] = r
	return u.nextID
}

func (u *vuser) untrack(id uint64) (request, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.pending[id]
	delete(u.pending, id)
	return r, ok
}

// enqueue hands a frame to the writer.
func (u *vuser) enqueue(ctx context.Context, b []byte) error {
	select {
	case u.sendq <- b:
		return nil
	case <-u.done:
		return errors.New("connection closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call sends a setup request and waits for its reply.
func (u *vuser) call(ctx context.Context, f *wire.ClientFrame) (*wire.ServerFrame, error) {
	reply := make(chan *wire.ServerFrame, 1)
	f.Id = u.track(request{kind: reqCall, reply: reply})
	b, err := proto.Marshal(f)
	if err != nil {
		return nil, err
	}
	if err := u.enqueue(ctx, b); err != nil {
		return nil, err
	}
	select {
	case r := <-reply:
		if r.GetError() != nil {
			return nil, errors.New(describeFrame(r))
		}
		return r, nil
	case <-u.done:
		return nil, errors.New("connection closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// send encrypts message seq for p and queues it. Seq 0 is the handshake
// hello; others were allocated from p.out and count in the ledger.
func (u *vuser) send(ctx context.Context, p *peer, seq uint32) error {
	r := u.r
	id := msgID{from: uint16(u.idx), to: uint16(p.u.idx), seq: seq, run: r.runTag}
	pt, err := encodePayload(payload{from: id.from, to: id.to, seq: seq, sent: r.since()}, time.Now(), r.cfg.TextSize)
	if err != nil {
		return err
	}
	p.mu.Lock()
	ct, err := p.rec.Encrypt(pt)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	f := &wire.ClientFrame{
		Id: u.track(request{kind: reqSend, edge: p.out, seq: seq}),
		Body: &wire.ClientFrame_Send{Send: &wire.SendRequest{
			MessageId: id.encode(mrand.Uint32()),
			Recipient: p.u.name,
			Copies:    []*wire.Copy{{DeviceId: p.u.dev.ID, Content: ct}},
		}},
	}
	b, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	if seq > 0 {
		r.frameBytes.Add(int64(len(b)))
	}
	return u.enqueue(ctx, b)
}

// writeLoop writes queued frames and batched acks.
func (u *vuser) writeLoop(ctx context.Context) {
	for {
		var b []byte
		select {
		case b = <-u.sendq:
		case <-u.ackReady:
			if !u.flushAcks(ctx) {
				return
			}
			continue
		case <-u.done:
			return
		case <-ctx.Done():
			return
		}
		if err := u.write(ctx, b); err != nil {
			return
		}
	}
}

func (u *vuser) write(ctx context.Context, b []byte) error {
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	err := u.conn.Write(wctx, websocket.MessageBinary, b)
	if err != nil && !u.isClosing() {
		u.r.fail("connection", fmt.Sprintf("%s: write: %v", u.name, err))
		u.conn.CloseNow()
	}
	return err
}

// flushAcks acknowledges every envelope received so far, at most
// server.MaxAckIDs per request.
func (u *vuser) flushAcks(ctx context.Context) bool {
	u.mu.Lock()
	ids := u.acks
	u.acks = nil
	u.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), server.MaxAckIDs)
		f := &wire.ClientFrame{
			Id:   u.track(request{kind: reqAck}),
			Body: &wire.ClientFrame_Ack{Ack: &wire.AckRequest{ServerIds: ids[:n]}},
		}
		ids = ids[n:]
		b, _ := proto.Marshal(f)
		if u.write(ctx, b) != nil {
			return false
		}
	}
	return true
}

func (u *vuser) queueAck(serverID uint64) {
	u.mu.Lock()
	u.acks = append(u.acks, serverID)
	u.mu.Unlock()
	select {
	case u.ackReady <- struct{}{}:
	default:
	}
}

// settled reports whether every ack was sent and answered.
func (u *vuser) settled() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.acks) > 0 {
		return false
	}
	for _, r := range u.pending {
		if r.kind == reqAck {
			return false
		}
	}
	return true
}

func (u *vuser) isClosing() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.closing
}

// close ends the connection; the reader and writer then stop.
func (u *vuser) close() {
	u.mu.Lock()
	u.closing = true
	u.mu.Unlock()
	if u.conn != nil {
		u.conn.CloseNow()
		<-u.done
	}
}

// httpProto makes one protobuf HTTP request; a non-200 answer is the
// server's wire.Error.
func (r *run) httpProto(ctx context.Context, method, path string, in, out proto.Message) error {
	var body io.Reader
	if in != nil {
		b, err := proto.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.baseURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/x-protobuf")
	}
	resp, err := r.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		if proto.Unmarshal(b, &e) == nil && e.Code != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, e.Code, e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if err := proto.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not a %T", method, path, out)
	}
	return nil
}

func getPrekeys(user string, device uint32) *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_GetPrekeys{GetPrekeys: &wire.GetPrekeysRequest{
		Username: user, DeviceIds: []uint32{device},
	}}}
}

// parseOneBundle reads the single bundle a get_prekeys for one device
// returns. It does not verify it.
func parseOneBundle(f *wire.ServerFrame) (*identity.Bundle, error) {
	bs := f.GetPrekeys().GetBundles()
	if len(bs) != 1 {
		return nil, fmt.Errorf("the server sent %d bundles for one device", len(bs))
	}
	return identity.ParseBundle(bs[0])
}
