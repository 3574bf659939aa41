package server

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/sealed"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

func getCertFrame() *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_GetSenderCertificate{GetSenderCertificate: &wire.GetSenderCertificateRequest{}}}
}

// certificate fetches and parses a sender certificate on c.
func certificate(t testing.TB, c *wsClient) *sealed.Certificate {
	t.Helper()
	r := c.do(t, getCertFrame())
	b := r.GetSenderCertificate().GetCertificate()
	if b == nil {
		t.Fatalf("get_sender_certificate: %v", r)
	}
	cert, err := sealed.ParseCertificate(b)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// sealTo seals msg for each listed device of to, with cert inside.
func sealTo(t testing.TB, cert *sealed.Certificate, msg []byte, devs ...*testUser) []*wire.Copy {
	t.Helper()
	var copies []*wire.Copy
	for _, d := range devs {
		env, err := sealed.Seal(d.dev.Identity.Public(), cert, msg)
		if err != nil {
			t.Fatal(err)
		}
		copies = append(copies, &wire.Copy{DeviceId: d.dev.ID, Content: env})
	}
	return copies
}

func sealedReq(to string, token []byte, copies []*wire.Copy) *wire.SealedSendRequest {
	return &wire.SealedSendRequest{MessageId: newMessageID(), Recipient: to, DeliveryToken: token, Copies: copies}
}

// postSealed posts a sealed send and returns the reply or the error.
func (ts *testServer) postSealed(t testing.TB, req *wire.SealedSendRequest) (int, *wire.SendResponse, *wire.Error) {
	t.Helper()
	resp := &wire.SendResponse{}
	status, e := ts.postMsg(t, "/v1/sealed", req, resp)
	if e != nil {
		return status, nil, e
	}
	return status, resp, nil
}

func (ts *testServer) mustPostSealed(t testing.TB, req *wire.SealedSendRequest) {
	t.Helper()
	if status, resp, e := ts.postSealed(t, req); e != nil || !resp.Stored {
		t.Fatalf("sealed send to %s: HTTP %d %v %v", req.Recipient, status, resp, e)
	}
}

func TestSenderCertificate(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, func(c *Config) { c.Now = clock.Now })
	alice := newUser(t, "alice", 0)
	ts.mustRegister(t, alice)
	ac := ts.dial(t, alice)

	cert := certificate(t, ac)
	if cert.Username != "alice" || cert.DeviceID != 1 ||
		!cert.IdentityKey.Equal(alice.dev.Identity.Public()) || !cert.SigningKey.Equal(alice.dev.Signing.Public()) {
		t.Fatalf("certificate %+v does not certify alice's device 1", cert)
	}
	if want := time.Unix(clock.Now().Add(SenderCertificateLifetime).Unix(), 0); !cert.Expires.Equal(want) {
		t.Fatalf("certificate expires %v, want %v", cert.Expires, want)
	}
	if err := cert.Verify(ts.srv.ServerKey(), clock.Now()); err != nil {
		t.Fatalf("certificate does not verify with the server key: %v", err)
	}
	if err := cert.Verify(ts.srv.ServerKey(), clock.Now().Add(SenderCertificateLifetime+time.Second)); !errors.Is(err, sealed.ErrExpiredCertificate) {
		t.Fatalf("certificate after its lifetime: %v", err)
	}
}

func TestSetDeliveryToken(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	wantError(t, ac.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_SetDeliveryToken{SetDeliveryToken: &wire.SetDeliveryTokenRequest{TokenHash: make([]byte, 31)}}}), codeBadRequest)
	wantError(t, ac.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_SetDeliveryToken{SetDeliveryToken: &wire.SetDeliveryTokenRequest{}}}), codeBadRequest)
	token := setToken(t, ac)
	a, err := ts.srv.store.Account(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(token); !bytes.Equal(a.DeliveryTokenHash, h[:]) {
		t.Fatalf("stored hash %x, want SHA-256 of the token", a.DeliveryTokenHash)
	}
	if bytes.Contains(ts.logs.Bytes(), []byte(hexOf(a.DeliveryTokenHash)[:16])) {
		t.Fatal("the token hash was logged")
	}
}

// TestSealedSendStoredWithoutSender is the whole path: bob publishes a
// token hash, alice (who learned the token) seals with a certificate and
// posts without authentication; bob gets Envelope{sealed}, no sender, and
// opens it to find alice's certificate inside.
func TestSealedSendStoredWithoutSender(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	bc := ts.dial(t, bob)
	if n := len(bc.backlog(t)); n != 0 {
		t.Fatalf("%d unexpected messages", n)
	}
	token := setToken(t, bc)
	cert := certificate(t, ac)

	req := sealedReq("bob", token, sealTo(t, cert, []byte("ratchet message"), bob))
	ts.mustPostSealed(t, req)
	// A retry with the same message id is stored once.
	ts.mustPostSealed(t, req)

	e := bc.envelope(t)
	if !e.Sealed || e.Sender != "" || e.SenderDevice != 0 || !bytes.Equal(e.MessageId, req.MessageId) {
		t.Fatalf("envelope %v: want sealed, with no sender", e)
	}
	o, err := sealed.Open(bob.dev.Identity, e.Content, ts.srv.ServerKey(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if o.Certificate.Username != alice.name || string(o.Message) != "ratchet message" {
		t.Fatalf("opened %q from %q", o.Message, o.Certificate.Username)
	}
	bc.ack(t, e)
	// Authenticated messages are still delivered with their sender.
	ac.send(t, "bob", []byte("authenticated"))
	if e := bc.envelope(t); e.Sealed || e.Sender != "alice" || e.SenderDevice != 1 {
		t.Fatalf("authenticated envelope %v", e)
	}
	bc.close()
	if envs := ts.dial(t, bob).backlog(t); len(envs) != 1 || envs[0].Sealed {
		t.Fatalf("backlog %v: the sealed message came back after its ack (or was stored twice)", envs)
	}
}

func TestSealedSendRejects(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	carol := newUser(t, "carol", 0) // never sets a token
	ts.mustRegister(t, carol)
	token := setToken(t, ts.dial(t, bob))
	cert := certificate(t, ac)
	good := func() *wire.SealedSendRequest { return sealedReq("bob", token, sealTo(t, cert, []byte("m"), bob)) }
	wrong := bytes.Clone(token)
	wrong[0] ^= 1

	for _, tc := range []struct {
		name string
		edit func(r *wire.SealedSendRequest)
		code string
	}{
		{"no token", func(r *wire.SealedSendRequest) { r.DeliveryToken = nil }, codeUnauthorized},
		{"wrong token", func(r *wire.SealedSendRequest) { r.DeliveryToken = wrong }, codeUnauthorized},
		{"short token", func(r *wire.SealedSendRequest) { r.DeliveryToken = token[:31] }, codeUnauthorized},
		{"the hash instead of the token", func(r *wire.SealedSendRequest) { h := sha256.Sum256(token); r.DeliveryToken = h[:] }, codeUnauthorized},
		{"account without a token", func(r *wire.SealedSendRequest) {
			r.Recipient = "carol"
			r.Copies = sealTo(t, cert, []byte("m"), carol)
		}, codeUnauthorized},
		{"unknown recipient", func(r *wire.SealedSendRequest) { r.Recipient = "dave" }, codeNoUser},
		{"invalid recipient", func(r *wire.SealedSendRequest) { r.Recipient = "Not A Name!" }, codeNoUser},
		{"short message id", func(r *wire.SealedSendRequest) { r.MessageId = r.MessageId[:15] }, codeBadRequest},
		{"no copies", func(r *wire.SealedSendRequest) { r.Copies = nil }, codeBadRequest},
		{"two copies for a device", func(r *wire.SealedSendRequest) { r.Copies = append(r.Copies, r.Copies[0]) }, codeBadRequest},
		{"empty copy", func(r *wire.SealedSendRequest) { r.Copies[0].Content = nil }, codeBadRequest},
		{"not a sealed envelope", func(r *wire.SealedSendRequest) { r.Copies[0].Content[0] = 2 }, codeBadRequest},
		{"truncated envelope", func(r *wire.SealedSendRequest) { r.Copies[0].Content = r.Copies[0].Content[:minSealedEnvelope-1] }, codeBadRequest},
		{"copy too large", func(r *wire.SealedSendRequest) {
			r.Copies[0].Content = append([]byte{sealed.EnvelopeVersion}, make([]byte, MaxContentSize)...)
		}, codeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.edit(r)
			status, resp, e := ts.postSealed(t, r)
			if resp != nil {
				t.Fatalf("accepted: %v", resp)
			}
			wantHTTPError(t, status, e, tc.code)
			if bytes.Contains([]byte(e.Message), token) || bytes.Contains([]byte(e.Message), []byte(hexOf(token)[:16])) {
				t.Fatal("error message echoes the token")
			}
		})
	}

	status, e := ts.postBytes(t, "/v1/sealed", []byte("\xff\xff not protobuf"), &wire.SendResponse{})
	wantHTTPError(t, status, e, codeBadRequest)
	status, e = ts.postBytes(t, "/v1/sealed", make([]byte, maxSealedBody+1), &wire.SendResponse{})
	wantHTTPError(t, status, e, codeTooLarge)
	if r, err := http.Get(ts.url("/v1/sealed")); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/sealed: %v %v", r.StatusCode, err)
	}

	// Exactly at the size cap is fine, and nothing refused was queued.
	big := append([]byte{sealed.EnvelopeVersion}, make([]byte, MaxContentSize-1)...)
	ts.mustPostSealed(t, sealedReq("bob", token, []*wire.Copy{{DeviceId: 1, Content: big}}))
	if envs := ts.dial(t, bob).backlog(t); len(envs) != 1 || len(envs[0].Content) != MaxContentSize {
		t.Fatalf("bob's queue holds %d messages, want only the one at the cap", len(envs))
	}
	_ = alice
}

// TestSealedSendDeviceSet pins the device-set rule of §9.8: the copies
// must cover the recipient's devices, except that one may be missing (the
// sender's own device, on a sync) when the recipient has more than one.
func TestSealedSendDeviceSet(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	bc := ts.dial(t, bob)
	bob2, bob3 := newDeviceOf(t, bob, 2, 0), newDeviceOf(t, bob, 3, 0)
	setList(t, bc, listOf(t, 2, bob, bob2, bob3))
	token := setToken(t, bc)
	cert := certificate(t, ac)
	other := newUser(t, "bob", 0)

	for _, tc := range []struct {
		devs           []*testUser
		extraID        uint32
		stored         bool
		missing, extra []uint32
	}{
		{devs: []*testUser{bob, bob2, bob3}, stored: true},
		{devs: []*testUser{bob, bob2}, stored: true},
		{devs: []*testUser{bob3, bob2}, stored: true},
		{devs: []*testUser{bob}, missing: []uint32{2, 3}},
		{devs: []*testUser{bob, bob2, bob3}, extraID: 4, extra: []uint32{4}},
		{devs: []*testUser{bob, bob2}, extraID: 9, missing: []uint32{3}, extra: []uint32{9}},
	} {
		copies := sealTo(t, cert, []byte("m"), tc.devs...)
		if tc.extraID != 0 {
			other.dev.ID = tc.extraID
			copies = append(copies, sealTo(t, cert, []byte("m"), other)...)
		}
		_, resp, e := ts.postSealed(t, sealedReq("bob", token, copies))
		if e != nil || resp.Stored != tc.stored || !slices.Equal(resp.MissingDevices, tc.missing) || !slices.Equal(resp.ExtraDevices, tc.extra) {
			t.Errorf("%d copies (+%d): got %v %v, want stored=%v missing %v extra %v",
				len(tc.devs), tc.extraID, resp, e, tc.stored, tc.missing, tc.extra)
		}
	}
}

// TestSealedSelfSync: a device syncs its other devices sealed, with its
// own account's token, leaving itself out; the copies carry no sender.
func TestSealedSelfSync(t *testing.T) {
	ts := startServer(t)
	alice, _, ac := pair(t, ts)
	alice2 := newDeviceOf(t, alice, 2, 0)
	setList(t, ac, listOf(t, 2, alice, alice2))
	token := setToken(t, ac)
	cert := certificate(t, ac)
	ts.mustPostSealed(t, sealedReq("alice", token, sealTo(t, cert, []byte("sync"), alice2)))
	e := ts.dial(t, alice2).envelope(t)
	if !e.Sealed || e.Sender != "" || e.SenderDevice != 0 {
		t.Fatalf("sync copy %v", e)
	}
	if msgs, err := ts.srv.store.Pending(t.Context(), store.DeviceRef{Username: "alice", ID: 1}, 0, 10, time.Now()); err != nil || len(msgs) != 0 {
		t.Fatalf("the syncing device has %d queued messages (%v), want none", len(msgs), err)
	}
}

func TestSealedSendRateLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Limits.SealedSendsPerMinute, c.Limits.SealedSendBurst = 1, 2 })
	_, bob, ac := pair(t, ts)
	carol := newUser(t, "carol", 0)
	ts.mustRegister(t, carol)
	bobToken := setToken(t, ts.dial(t, bob))
	carolToken := setToken(t, ts.dial(t, carol))
	cert := certificate(t, ac)
	for range 2 {
		ts.mustPostSealed(t, sealedReq("bob", bobToken, sealTo(t, cert, []byte("m"), bob)))
	}
	status, _, e := ts.postSealed(t, sealedReq("bob", bobToken, sealTo(t, cert, []byte("m"), bob)))
	wantHTTPError(t, status, e, codeRateLimited)
	// The limit is per recipient: carol is still reachable.
	ts.mustPostSealed(t, sealedReq("carol", carolToken, sealTo(t, cert, []byte("m"), carol)))
}
