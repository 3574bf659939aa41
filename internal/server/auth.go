package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// Device authentication (docs/protocol.md §9.4).
const (
	AuthLabel     = "Hush-Auth-v1"
	AuthNonceSize = 32
)

// AuthMessage is what a device signs to authenticate a WebSocket:
// "Hush-Auth-v1" || nonce || uint8(len(username)) || username ||
// uint32be(device id). username must be a valid (at most 32-byte) name.
func AuthMessage(nonce []byte, username string, deviceID uint32) []byte {
	b := make([]byte, 0, len(AuthLabel)+len(nonce)+1+len(username)+4)
	b = append(b, AuthLabel...)
	b = append(b, nonce...)
	b = append(b, byte(len(username)))
	b = append(b, username...)
	return binary.BigEndian.AppendUint32(b, deviceID)
}

// errAuth is the one answer to every failed authentication, so the reply
// does not tell an unknown device from a bad signature.
var errAuth = apiErr(codeUnauthorized, "authentication failed: unknown device or bad signature")

// authenticate runs the challenge-response. On success the device is
// known and auth_ok has been sent. On failure the error frame has been
// sent; the caller closes.
func (ss *session) authenticate() error {
	ctx, cancel := context.WithTimeout(context.Background(), ss.s.authTimeout)
	defer cancel()
	start := time.Now()
	nonce := make([]byte, AuthNonceSize)
	rand.Read(nonce)
	if err := ss.write(&wire.ServerFrame{Body: &wire.ServerFrame_Challenge{Challenge: &wire.AuthChallenge{Nonce: nonce}}}); err != nil {
		return err
	}
	// Reading with ctx closes the connection when the deadline passes.
	typ, data, err := ss.conn.Read(ctx)
	if err != nil {
		ss.s.log.Debug("connection closed before authentication", "err", err)
		return err
	}
	var f wire.ClientFrame
	var a *wire.AuthResponse
	switch {
	case typ != websocket.MessageBinary:
		err = apiErr(codeBadRequest, "frames must be binary protobuf ClientFrames")
	case proto.Unmarshal(data, &f) != nil:
		err = apiErr(codeBadRequest, "frame is not a ClientFrame")
	default:
		if a = f.GetAuth(); a == nil {
			err = apiErr(codeUnauthorized, "the first frame must be auth")
		} else {
			err = ss.checkAuth(ctx, nonce, a)
		}
	}
	user := clip(a.GetUsername())
	ss.s.finish("auth", start, err, "user", user, "device", a.GetDeviceId())
	if err != nil {
		e := asAPIError(err)
		ss.write(&wire.ServerFrame{Id: f.Id, Body: &wire.ServerFrame_Error{Error: &wire.Error{Code: e.code, Message: e.msg}}})
		return err
	}
	counts, err := ss.s.store.PrekeyCounts(ctx, ss.ref)
	if err != nil {
		ss.s.log.Error("prekey counts", "user", user, "device", ss.ref.ID, "err", err)
		ss.write(&wire.ServerFrame{Id: f.Id, Body: &wire.ServerFrame_Error{Error: &wire.Error{Code: errInternal.code, Message: errInternal.msg}}})
		return err
	}
	if err := ss.s.store.TouchDevice(ctx, ss.ref, ss.s.now()); err != nil {
		ss.s.log.Warn("touch device", "user", user, "device", ss.ref.ID, "err", err)
	}
	return ss.write(&wire.ServerFrame{Id: f.Id, Body: &wire.ServerFrame_AuthOk{AuthOk: &wire.AuthOK{
		PrekeyCounts: countsFrame(counts),
		ServerTimeMs: ss.s.now().UnixMilli(),
	}}})
}

// checkAuth verifies the signature and sets ss.ref.
func (ss *session) checkAuth(ctx context.Context, nonce []byte, a *wire.AuthResponse) error {
	if n, err := identity.NormalizeUsername(a.Username); err != nil || n != a.Username {
		return errAuth
	}
	ref := store.DeviceRef{Username: a.Username, ID: a.DeviceId}
	dev, err := ss.s.store.Device(ctx, ref)
	if errors.Is(err, store.ErrNotFound) {
		return errAuth
	}
	if err != nil {
		return err
	}
	pk, err := keys.ParseDeviceSigningPublic(dev.SigningKey)
	if err != nil {
		return err
	}
	if !pk.Verify(AuthMessage(nonce, a.Username, a.DeviceId), a.Signature) {
		return errAuth
	}
	ss.ref = ref
	ss.authed.Store(true)
	return nil
}
