package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/internal/sealed"
	"github.com/hush-chat/hush/wire"
)

// Sealed sender, client side (docs/protocol.md §9.8).
const (
	// DeliveryTokenSize is the size of an account's delivery token.
	DeliveryTokenSize = 32
	// certRefresh: a cached sender certificate with less than this left
	// is replaced before use.
	certRefresh = time.Hour
	// sealedPath is the unauthenticated endpoint for sealed sends.
	sealedPath = "/v1/sealed"
	// sealedRateWait bounds how long one sealed send waits for the
	// server's rate limit.
	sealedRateWait = 10 * time.Second
)

// ensureSealedState creates the account's delivery token if there is none
// yet (homes made before sealed sender, or a restored account).
func ensureSealedState(ctx context.Context, x dbExec) error {
	var n int
	if err := x.QueryRowContext(ctx, `SELECT COUNT(*) FROM sealed_state`).Scan(&n); err != nil {
		return &localError{err}
	}
	if n > 0 {
		return nil
	}
	token := make([]byte, DeliveryTokenSize)
	rand.Read(token)
	if _, err := x.ExecContext(ctx, `INSERT INTO sealed_state (id, token) VALUES (1, ?) ON CONFLICT DO NOTHING`, token); err != nil {
		return &localError{err}
	}
	return nil
}

// ownDeliveryToken returns the account's delivery token, making one if
// needed. It is the same on every device of the account.
func (c *Client) ownDeliveryToken(ctx context.Context) ([]byte, error) {
	if err := ensureSealedState(ctx, c.db); err != nil {
		return nil, err
	}
	var token []byte
	if err := c.db.QueryRowContext(ctx, `SELECT token FROM sealed_state WHERE id = 1`).Scan(&token); err != nil {
		return nil, &localError{err}
	}
	return token, nil
}

// storeDeliveryToken replaces the account's delivery token, as a linked
// device does with the one its primary sent. The server is told its hash
// on the next connection (which is harmless if it already has it).
// Call it before the device's first connection, or that connection makes
// a token of its own.
func storeDeliveryToken(ctx context.Context, x dbExec, token []byte) error {
	if len(token) != DeliveryTokenSize {
		return fmt.Errorf("delivery token is %d bytes, want %d", len(token), DeliveryTokenSize)
	}
	if _, err := x.ExecContext(ctx, `INSERT INTO sealed_state (id, token, token_set) VALUES (1, ?, 0)
		ON CONFLICT (id) DO UPDATE SET token = excluded.token, token_set = 0`, token); err != nil {
		return &localError{err}
	}
	return nil
}

// syncSealedState runs on every new connection: it tells the server the
// delivery token's hash and the blocked list if it may lack them.
func (c *Client) syncSealedState(ctx context.Context, cn *conn) error {
	token, err := c.ownDeliveryToken(ctx)
	if err != nil {
		return err
	}
	var set int
	if err := c.db.QueryRowContext(ctx, `SELECT token_set FROM sealed_state WHERE id = 1`).Scan(&set); err != nil {
		return &localError{err}
	}
	if set == 0 {
		sum := sha256.Sum256(token)
		r, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_SetDeliveryToken{SetDeliveryToken: &wire.SetDeliveryTokenRequest{TokenHash: sum[:]}}})
		if err != nil {
			return fmt.Errorf("set delivery token: %w", err)
		}
		if r.GetOk() == nil {
			return fmt.Errorf("%w: expected ok to set_delivery_token", ErrProtocol)
		}
		// Only if the token is still the one whose hash was sent.
		if _, err := c.db.ExecContext(ctx, `UPDATE sealed_state SET token_set = 1 WHERE id = 1 AND token = ?`, token); err != nil {
			return &localError{err}
		}
	}
	return c.syncBlocked(ctx, cn)
}

// senderCertificate returns this device's sender certificate, from the
// cache while it has more than certRefresh left, else a new one from the
// server. A certificate that does not verify with the pinned server key
// or does not name exactly this device is refused: sealing with it would
// only get our messages dropped.
func (c *Client) senderCertificate(ctx context.Context, cn *conn, a *account) (*sealed.Certificate, error) {
	now := c.now()
	var raw []byte
	var exp int64
	err := c.db.QueryRowContext(ctx, `SELECT certificate, cert_expires_ms FROM sealed_state WHERE id = 1`).Scan(&raw, &exp)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, &localError{err}
	}
	if raw != nil && time.UnixMilli(exp).Sub(now) > certRefresh {
		if cert, err := c.checkCertificate(a, raw, now); err == nil {
			return cert, nil
		}
	}
	r, err := c.requestOn(ctx, cn, &wire.ClientFrame{Body: &wire.ClientFrame_GetSenderCertificate{GetSenderCertificate: &wire.GetSenderCertificateRequest{}}})
	if err != nil {
		return nil, err
	}
	raw = r.GetSenderCertificate().GetCertificate()
	cert, err := c.checkCertificate(a, raw, now)
	if err != nil {
		return nil, err
	}
	if err := ensureSealedState(ctx, c.db); err != nil {
		return nil, err
	}
	if _, err := c.db.ExecContext(ctx, `UPDATE sealed_state SET certificate = ?, cert_expires_ms = ? WHERE id = 1`,
		raw, cert.Expires.UnixMilli()); err != nil {
		return nil, &localError{err}
	}
	return cert, nil
}

func (c *Client) checkCertificate(a *account, raw []byte, now time.Time) (*sealed.Certificate, error) {
	cert, err := sealed.ParseCertificate(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: sender certificate: %v", ErrProtocol, err)
	}
	if err := cert.Verify(a.ServerKey, now); err != nil {
		return nil, fmt.Errorf("%w: sender certificate: %v", ErrProtocol, err)
	}
	if cert.Username != a.Username || cert.DeviceID != a.DeviceID ||
		!cert.IdentityKey.Equal(a.Identity.Public()) || !cert.SigningKey.Equal(a.Signing.Public()) {
		return nil, fmt.Errorf("%w: the sender certificate names another device than this one", ErrProtocol)
	}
	return cert, nil
}

// deliveryToken returns the token to seal messages to user with: our own
// for our own devices, a contact's if they shared it; nil if unknown.
func (c *Client) deliveryToken(ctx context.Context, a *account, user string) ([]byte, error) {
	if user == a.Username {
		return c.ownDeliveryToken(ctx)
	}
	r, err := loadContact(ctx, c.db, user)
	if err != nil {
		return nil, err
	}
	if r.blocked == 1 || len(r.token) != DeliveryTokenSize {
		return nil, nil
	}
	return r.token, nil
}

// submit hands one message's copies to the server: sealed when the
// recipient's delivery token is known, else over the authenticated
// connection. The answer is a ServerFrame holding the SendResponse, as
// for an authenticated send.
func (c *Client) submit(ctx context.Context, cn *conn, a *account, id MessageID, to string, copies []*wire.Copy, list *identity.SignedDeviceList) (*wire.ServerFrame, error) {
	token, err := c.deliveryToken(ctx, a, to)
	if err != nil {
		return nil, err
	}
	if token != nil {
		resp, err := c.sendSealed(ctx, cn, a, id, to, token, copies, list)
		var se *ServerError
		if !errors.As(err, &se) || se.Code != "unauthorized" {
			if err != nil {
				return nil, err
			}
			return &wire.ServerFrame{Body: &wire.ServerFrame_Sent{Sent: resp}}, nil
		}
		// The token is stale (they made a new one, e.g. after restoring):
		// forget it and send authenticated until they share the new one.
		if _, err := c.db.ExecContext(ctx, `UPDATE contacts SET delivery_token = NULL WHERE username = ? AND delivery_token = ?`, to, token); err != nil {
			return nil, &localError{err}
		}
		c.cfg.Warn(fmt.Errorf("the server refused the delivery token of %s; this message goes unsealed", to))
	}
	return c.requestOn(ctx, cn, &wire.ClientFrame{Body: &wire.ClientFrame_Send{Send: &wire.SendRequest{
		MessageId: id[:], Recipient: to, Copies: copies,
	}}})
}

// requestOn sends a request on cn, or, if cn was replaced meanwhile (a
// Receive redials while a Send uses the connection, and the old one is
// closed between two requests), once more on the current connection.
// Every request here is safe to repeat: the server deduplicates sends by
// message id.
func (c *Client) requestOn(ctx context.Context, cn *conn, f *wire.ClientFrame) (*wire.ServerFrame, error) {
	r, err := cn.request(ctx, f)
	if err == nil || cn.alive() || ctx.Err() != nil || !errors.Is(err, ErrUnreachable) {
		return r, err
	}
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur == nil || cur == cn || !cur.alive() {
		return r, err
	}
	return cur.request(ctx, f)
}

// sendSealed seals each copy to its device's identity key, with this
// device's sender certificate inside, and posts them without
// authentication, on a connection of their own.
func (c *Client) sendSealed(ctx context.Context, cn *conn, a *account, id MessageID, to string, token []byte, copies []*wire.Copy, list *identity.SignedDeviceList) (*wire.SendResponse, error) {
	cert, err := c.senderCertificate(ctx, cn, a)
	if err != nil {
		return nil, err
	}
	out := make([]*wire.Copy, 0, len(copies))
	for _, cp := range copies {
		d, ok := list.List.Find(cp.GetDeviceId())
		if !ok {
			return nil, &localError{fmt.Errorf("copy for %s/%d, a device not in the list", to, cp.GetDeviceId())}
		}
		env, err := sealed.Seal(d.IdentityKey, cert, cp.GetContent())
		if err != nil {
			return nil, err
		}
		if len(env) > MaxCopySize {
			return nil, &TooLargeError{Size: len(env)}
		}
		out = append(out, &wire.Copy{DeviceId: cp.GetDeviceId(), Content: env})
	}
	req := &wire.SealedSendRequest{MessageId: id[:], Recipient: to, DeliveryToken: token, Copies: out}
	// The server limits sealed sends per recipient and address: wait for
	// room a little (a long outbox, a pasted text in chat) rather than
	// fail at once; past sealedRateWait the message stays queued.
	wait, waited := 100*time.Millisecond, time.Duration(0)
	for {
		var resp wire.SendResponse
		err := c.postAnonymous(ctx, a, sealedPath, req, &resp)
		var se *ServerError
		if !errors.As(err, &se) || se.Code != "rate_limited" || waited >= sealedRateWait {
			if err != nil {
				return nil, err
			}
			return &resp, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		waited += wait
		wait = min(2*wait, time.Second)
	}
}

// postAnonymous posts a request that must not be linkable to this
// device's identity: no cookies, no authentication, and connections of
// its own, never one that carried an authenticated or identifying
// request (sealedClient).
func (c *Client) postAnonymous(ctx context.Context, a *account, path string, in, out proto.Message) error {
	body, err := proto.Marshal(in)
	if err != nil {
		return err
	}
	server := c.serverURL(a)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	return doProto(c.sealedClient(), req, server, out)
}

// sealedClient is the configured HTTP client with a connection pool of
// its own, so a sealed send never rides a connection the server saw
// registering or looking up this account. Sealed sends of one Client may
// share a connection: the server can tell they come from one client (as
// it can from the address) but not whose.
func (c *Client) sealedClient() *http.Client {
	c.sealedOnce.Do(func() {
		hc := *c.http
		hc.Jar = nil
		switch t := hc.Transport.(type) {
		case nil:
			hc.Transport = http.DefaultTransport.(*http.Transport).Clone()
		case *http.Transport:
			hc.Transport = t.Clone()
		}
		c.sealedHTTP = &hc
	})
	return c.sealedHTTP
}

func (c *Client) closeSealedHTTP() {
	c.sealedOnce.Do(func() {}) // none made later
	if c.sealedHTTP != nil {
		c.sealedHTTP.CloseIdleConnections()
	}
}

// unsealed holds the sealed envelopes of a batch, opened.
type unsealed struct {
	opened map[uint64]*sealed.Opened // by server id
	failed map[uint64]error
}

// unseal opens the batch's sealed envelopes with this device's identity
// key and the pinned server key. Each one that opens is replaced by an
// envelope naming the certified sender, holding the inner ratchet
// message; one that does not keeps no sender and its error is kept, so
// it is dropped and acknowledged.
func (c *Client) unseal(a *account, envs []*wire.Envelope) ([]*wire.Envelope, *unsealed) {
	u := &unsealed{opened: map[uint64]*sealed.Opened{}, failed: map[uint64]error{}}
	var out []*wire.Envelope
	for i, e := range envs {
		if !e.GetSealed() {
			continue
		}
		if out == nil {
			out = append([]*wire.Envelope(nil), envs...)
		}
		o, err := sealed.Open(a.Identity, e.GetContent(), a.ServerKey, c.now())
		if err != nil {
			u.failed[e.GetServerId()] = fmt.Errorf("sealed message refused: %w", err)
			out[i] = &wire.Envelope{ServerId: e.GetServerId(), MessageId: e.GetMessageId(), ServerTimeMs: e.GetServerTimeMs(), Sealed: true}
			continue
		}
		u.opened[e.GetServerId()] = o
		out[i] = &wire.Envelope{
			ServerId: e.GetServerId(), MessageId: e.GetMessageId(), ServerTimeMs: e.GetServerTimeMs(), Sealed: true,
			Sender: o.Certificate.Username, SenderDevice: o.Certificate.DeviceID, Content: o.Message,
		}
	}
	if out == nil {
		return envs, u
	}
	return out, u
}

// failure is why e, a sealed envelope, could not be opened; nil if it
// opened or was not sealed.
func (u *unsealed) failure(e *wire.Envelope) error { return u.failed[e.GetServerId()] }

// decrypt decrypts e's ratchet message from dev, the listed device of the
// sender. For a sealed envelope the certificate's keys must also be that
// listed device's (sealed.Opened.Decrypt), so a forged certificate cannot
// name someone else.
func (u *unsealed) decrypt(e *wire.Envelope, rec *ratchet.Record, responder *pqxdh.Responder, dev identity.Device) (*ratchet.Decrypted, error) {
	if o := u.opened[e.GetServerId()]; o != nil {
		return o.Decrypt(rec, responder, &identity.DeviceList{Username: e.GetSender(), Devices: []identity.Device{dev}})
	}
	return rec.DecryptFrom(responder, e.GetSender(), dev.IdentityKey, e.GetContent())
}
