package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/sealed"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// Sealed sender, the server's side (docs/protocol.md §9.8). A sealed send
// arrives on plain HTTP with no authentication, so the server learns the
// recipient and never the sender: nothing about the request that could
// name the sender (its IP address, above all) is logged or stored, and
// the stored copies have no sender. What stops strangers from spamming
// anonymously is the recipient's delivery token, which only its contacts
// learn (inside E2EE); the server keeps SHA-256 of it.

// minSealedEnvelope is the shortest well-formed sealed envelope: version
// byte, HPKE encapsulated key, AEAD tag (§7.2). The server cannot open
// one; it only refuses what is not even shaped like one.
const minSealedEnvelope = 1 + 32 + 16

func (s *Server) handleSealed(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSealedBody))
	var req wire.SealedSendRequest
	var resp *wire.SendResponse
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		err = apiErr(codeTooLarge, "sealed send body over %d bytes", maxSealedBody)
	case err != nil:
		err = apiErr(codeBadRequest, "could not read the request body")
	case proto.Unmarshal(body, &req) != nil:
		err = apiErr(codeBadRequest, "body is not a SealedSendRequest protobuf")
	default:
		resp, err = s.sealedSend(ctx, &req, remoteIP(r))
	}
	// The log line names the recipient and the copy count, never the
	// address the request came from.
	recipient := clip(req.GetRecipient())
	if err == nil && resp.Stored {
		s.finishMsg("sealed_send", "sealed send stored", start, nil, "recipient", recipient, "n", len(req.Copies))
	} else {
		s.finish("sealed_send", start, err, "recipient", recipient)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, http.StatusOK, resp)
}

// sealedSend checks a sealed send and stores its copies with no sender.
// ip is used for the rate limit only (in memory, never logged).
func (s *Server) sealedSend(ctx context.Context, req *wire.SealedSendRequest, ip string) (*wire.SendResponse, error) {
	if err := checkCopies(req.GetMessageId(), req.GetCopies()); err != nil {
		return nil, err
	}
	for _, c := range req.Copies {
		if len(c.Content) < minSealedEnvelope || c.Content[0] != sealed.EnvelopeVersion {
			return nil, apiErr(codeBadRequest, "copy for device %d is not a version %d sealed envelope", c.DeviceId, sealed.EnvelopeVersion)
		}
	}
	user, err := lookupUser(req.GetRecipient())
	if err != nil {
		return nil, err
	}
	if !s.sealedLimit.Allow(user + " " + ip) {
		return nil, apiErr(codeRateLimited, "too many sealed messages to %s; slow down", user)
	}
	acct, err := s.store.Account(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noUser(user)
	}
	if err != nil {
		return nil, err
	}
	if !tokenMatches(req.DeliveryToken, acct.DeliveryTokenHash) {
		return nil, apiErr(codeUnauthorized, "wrong or missing delivery token for %s", user)
	}
	// The sender is unknown, so a sealed copy set may leave out one of
	// the recipient's devices: the sender's own, when it syncs its other
	// devices with its own token (§9.8). (A recipient with one device
	// cannot miss it: there is at least one copy, and no extra.)
	fits := func(ids []uint32) bool {
		missing, extra := compareDevices(ids, req.Copies)
		return len(extra) == 0 && len(missing) <= 1
	}
	devices, err := s.recipientDevices(ctx, user, fits)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noUser(user)
	}
	if err != nil {
		return nil, err
	}
	if !fits(devices) {
		missing, extra := compareDevices(devices, req.Copies)
		return &wire.SendResponse{MissingDevices: missing, ExtraDevices: extra}, nil
	}

	now := s.now()
	msgs := make([]store.Message, len(req.Copies))
	for i, c := range req.Copies {
		msgs[i] = store.Message{
			Recipient: store.DeviceRef{Username: user, ID: c.DeviceId},
			MessageID: req.MessageId,
			Content:   c.Content,
			Received:  now,
			Expires:   now.Add(MessageTTL),
		}
	}
	if _, err := s.store.Enqueue(ctx, msgs); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.devices.invalidate(user)
			return nil, apiErr(codeDeviceMismatch, "the recipient's devices changed; fetch the account and retry")
		}
		return nil, err
	}
	s.metrics.stored.Add(float64(len(msgs)))
	for _, m := range msgs {
		s.bus.Publish(m.Recipient)
	}
	return &wire.SendResponse{Stored: true}, nil
}

// tokenMatches compares SHA-256(token) with the stored hash in constant
// time. An account that never set a token accepts no sealed sends.
func tokenMatches(token, hash []byte) bool {
	if len(token) != DeliveryTokenSize || len(hash) != sha256.Size {
		return false
	}
	sum := sha256.Sum256(token)
	return subtle.ConstantTimeCompare(sum[:], hash) == 1
}

// setDeliveryToken stores the hash of the account's delivery token; any
// listed device may set it.
func (ss *session) setDeliveryToken(ctx context.Context, req *wire.SetDeliveryTokenRequest) (*wire.ServerFrame, error) {
	if len(req.GetTokenHash()) != sha256.Size {
		return nil, apiErr(codeBadRequest, "token hash must be %d bytes (SHA-256 of the token)", sha256.Size)
	}
	err := ss.s.store.SetDeliveryTokenHash(ctx, ss.ref.Username, req.TokenHash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiErr(codeUnauthorized, "this account no longer exists")
	}
	if err != nil {
		return nil, err
	}
	ss.s.log.Info("delivery token set", "user", ss.ref.Username, "device", ss.ref.ID)
	return okFrame(), nil
}

// senderCertificate issues a certificate for the requesting device,
// valid for SenderCertificateLifetime (§7.1). The keys come from the
// store, i.e. from the device list the account key signed.
func (ss *session) senderCertificate(ctx context.Context) (*wire.ServerFrame, error) {
	dev, err := ss.s.store.Device(ctx, ss.ref)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiErr(codeUnauthorized, "this device is no longer in the account's device list")
	}
	if err != nil {
		return nil, err
	}
	dk, err := storedDeviceKeys(dev)
	if err != nil {
		return nil, err
	}
	cert, err := sealed.IssueCertificate(ss.s.key, ss.ref.Username, ss.ref.ID, dk.identity, dk.signing,
		ss.s.now().Add(SenderCertificateLifetime))
	if err != nil {
		return nil, err
	}
	b, err := cert.Marshal()
	if err != nil {
		return nil, err
	}
	return &wire.ServerFrame{Body: &wire.ServerFrame_SenderCertificate{SenderCertificate: &wire.SenderCertificateResponse{Certificate: b}}}, nil
}

func okFrame() *wire.ServerFrame {
	return &wire.ServerFrame{Body: &wire.ServerFrame_Ok{Ok: &wire.Ok{}}}
}
