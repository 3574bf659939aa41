package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// MessageIDSize is the size of a client-chosen message id.
const MessageIDSize = 16

// lookupUser normalizes a username from a request; any name that cannot
// exist is simply not a user.
func lookupUser(name string) (string, error) {
	n, err := identity.NormalizeUsername(name)
	if err != nil {
		return "", apiErr(codeNoUser, "no user %q", clip(name))
	}
	return n, nil
}

func noUser(name string) error { return apiErr(codeNoUser, "no user %q", name) }

// getAccount answers get_account with the account key and signed device
// list, which the client verifies itself.
func (ss *session) getAccount(ctx context.Context, req *wire.GetAccountRequest) (*wire.ServerFrame, error) {
	user, err := lookupUser(req.GetUsername())
	if err != nil {
		return nil, err
	}
	a, err := ss.s.store.Account(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noUser(user)
	}
	if err != nil {
		return nil, err
	}
	return accountFrame(a), nil
}

func accountFrame(a store.Account) *wire.ServerFrame {
	return &wire.ServerFrame{Body: &wire.ServerFrame_Account{Account: accountResponse(a)}}
}

// accountResponse is the public part of an account.
func accountResponse(a store.Account) *wire.AccountResponse {
	return &wire.AccountResponse{Username: a.Username, AccountKey: a.AccountKey, DeviceList: a.DeviceList}
}

// getPrekeys hands out one bundle per requested device, taking one-time
// keys atomically (docs/protocol.md §9.5). The rate limit counts bundles:
// each one may consume a one-time key, which is what a drain attack
// spends.
func (ss *session) getPrekeys(ctx context.Context, req *wire.GetPrekeysRequest) (*wire.ServerFrame, error) {
	user, err := lookupUser(req.GetUsername())
	if err != nil {
		return nil, err
	}
	if len(req.GetDeviceIds()) > identity.MaxDevices {
		return nil, apiErr(codeBadRequest, "at most %d device ids per request", identity.MaxDevices)
	}
	devices, err := ss.s.store.Devices(ctx, user)
	if errors.Is(err, store.ErrNotFound) || err == nil && len(devices) == 0 {
		return nil, noUser(user)
	}
	if err != nil {
		return nil, err
	}
	ids := req.GetDeviceIds()
	if len(ids) == 0 {
		for _, d := range devices {
			ids = append(ids, d.ID)
		}
	}
	for i, id := range ids {
		if slices.Contains(ids[:i], id) {
			return nil, apiErr(codeBadRequest, "device id %d requested twice", id)
		}
		if !slices.ContainsFunc(devices, func(d store.Device) bool { return d.ID == id }) {
			return nil, apiErr(codeDeviceMismatch, "user %q has no device %d", user, id)
		}
	}
	if !ss.s.fetchLimit.AllowN(ss.ref.Username, len(ids)) {
		return nil, apiErr(codeRateLimited, "too many prekey requests; slow down")
	}
	resp := &wire.PrekeysResponse{}
	for _, id := range ids {
		ref := store.DeviceRef{Username: user, ID: id}
		set, err := ss.s.store.TakePrekeys(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			// Removed since Devices, or never uploaded keys: no session
			// can start with it; the client sees the missing bundle.
			ss.s.log.Warn("no prekeys to hand out", "user", user, "device", id)
			continue
		}
		if err != nil {
			return nil, err
		}
		b, err := bundleFor(user, set)
		if err != nil {
			return nil, err
		}
		resp.Bundles = append(resp.Bundles, b)
		if c, err := ss.s.store.PrekeyCounts(ctx, ref); err == nil && isLow(c) {
			ss.s.lowBus.Publish(ref)
		}
	}
	return &wire.ServerFrame{Body: &wire.ServerFrame_Prekeys{Prekeys: resp}}, nil
}

// uploadPrekeys verifies and stores the device's own prekeys.
func (ss *session) uploadPrekeys(ctx context.Context, req *wire.PrekeyUpload) (*wire.ServerFrame, error) {
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
	up, err := checkUpload(dk, req, false)
	if err != nil {
		return nil, err
	}
	before, err := ss.s.store.PrekeyCounts(ctx, ss.ref)
	if err != nil {
		return nil, err
	}
	if before.OneTime+len(up.OneTime) > MaxPrekeysStored || before.KEMOneTime+len(up.KEMOneTime) > MaxPrekeysStored {
		return nil, apiErr(codeBadRequest, "at most %d one-time prekeys of each kind may be stored; %d and %d are",
			MaxPrekeysStored, before.OneTime, before.KEMOneTime)
	}
	if err := ss.s.store.UploadPrekeys(ctx, ss.ref, up); err != nil {
		return nil, err
	}
	after, err := ss.s.store.PrekeyCounts(ctx, ss.ref)
	if err != nil {
		return nil, err
	}
	return &wire.ServerFrame{Body: &wire.ServerFrame_PrekeyCounts{PrekeyCounts: countsFrame(after)}}, nil
}

// send checks one message (docs/protocol.md §9.6) and hands it to the
// connection's send queue, which stores all its copies atomically and
// replies once they are durable. Checks that fail are answered at once.
func (ss *session) send(ctx context.Context, id uint64, start time.Time, req *wire.SendRequest) (*wire.ServerFrame, error) {
	if err := checkCopies(req.GetMessageId(), req.GetCopies()); err != nil {
		return nil, err
	}
	if !ss.s.sendLimit.Allow(ss.ref.Username) {
		return nil, apiErr(codeRateLimited, "too many messages; slow down")
	}
	user, err := lookupUser(req.Recipient)
	if err != nil {
		return nil, err
	}
	self := user == ss.ref.Username
	recipients := func(ids []uint32) []uint32 {
		if self {
			// A sync copy to the sender's own other devices: the sending
			// device never sends to itself (§9.8).
			return slices.DeleteFunc(slices.Clone(ids), func(d uint32) bool { return d == ss.ref.ID })
		}
		return ids
	}
	devices, err := ss.s.recipientDevices(ctx, user, func(ids []uint32) bool {
		missing, extra := compareDevices(recipients(ids), req.Copies)
		return len(missing)+len(extra) == 0
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, noUser(user)
	}
	if err != nil {
		return nil, err
	}
	devices = recipients(devices)
	if missing, extra := compareDevices(devices, req.Copies); len(missing)+len(extra) > 0 {
		return &wire.ServerFrame{Body: &wire.ServerFrame_Sent{Sent: &wire.SendResponse{
			MissingDevices: missing, ExtraDevices: extra,
		}}}, nil
	}
	p := pendingSend{id: id, start: start, recipient: user}
	// A blocked sender is told its message was stored, exactly as if it
	// had been (after the same checks, in the same order, answered by the
	// same queue), so it cannot tell it is blocked (§9.11); nothing is
	// stored or delivered.
	blocked := false
	if !self {
		if blocked, err = ss.s.blocks.blocks(ctx, ss.s.store, user, ss.ref.Username); err != nil {
			return nil, err
		}
	}
	if blocked {
		ss.s.metrics.dropped.Inc()
	} else {
		now := ss.s.now()
		p.msgs = make([]store.Message, len(req.Copies))
		for i, c := range req.Copies {
			p.msgs[i] = store.Message{
				Recipient:    store.DeviceRef{Username: user, ID: c.DeviceId},
				MessageID:    req.MessageId,
				Sender:       ss.ref.Username,
				SenderDevice: ss.ref.ID,
				Content:      c.Content,
				Received:     now,
				Expires:      now.Add(MessageTTL),
			}
		}
	}
	ss.sends.submit(p)
	return nil, errReplyLater
}

// checkCopies checks what authenticated and sealed sends share: the
// message id and the copies' count, sizes and device ids.
func checkCopies(messageID []byte, copies []*wire.Copy) error {
	if len(messageID) != MessageIDSize {
		return apiErr(codeBadRequest, "message id must be %d bytes", MessageIDSize)
	}
	if n := len(copies); n == 0 || n > identity.MaxDevices {
		return apiErr(codeBadRequest, "a message needs 1 to %d copies, got %d", identity.MaxDevices, n)
	}
	for i, c := range copies {
		if len(c.Content) == 0 {
			return apiErr(codeBadRequest, "copy for device %d is empty", c.DeviceId)
		}
		if len(c.Content) > MaxContentSize {
			return apiErr(codeTooLarge, "copy for device %d is %d bytes; the limit is %d", c.DeviceId, len(c.Content), MaxContentSize)
		}
		for _, o := range copies[:i] {
			if o.DeviceId == c.DeviceId {
				return apiErr(codeBadRequest, "two copies for device %d", c.DeviceId)
			}
		}
	}
	return nil
}

// compareDevices returns the recipient's devices without a copy and the
// copies for devices it does not have, both in ascending order.
func compareDevices(devices []uint32, copies []*wire.Copy) (missing, extra []uint32) {
	for _, d := range devices {
		if !slices.ContainsFunc(copies, func(c *wire.Copy) bool { return c.DeviceId == d }) {
			missing = append(missing, d)
		}
	}
	for _, c := range copies {
		if !slices.Contains(devices, c.DeviceId) {
			extra = append(extra, c.DeviceId)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

// ack deletes delivered messages; unknown ids are ignored, so a repeated
// ack is harmless.
func (ss *session) ack(ctx context.Context, req *wire.AckRequest) (*wire.ServerFrame, error) {
	if len(req.GetServerIds()) > MaxAckIDs {
		return nil, apiErr(codeBadRequest, "at most %d server ids per ack", MaxAckIDs)
	}
	if len(req.GetServerIds()) > 0 {
		n, err := ss.s.store.Ack(ctx, ss.ref, req.ServerIds)
		if err != nil {
			return nil, err
		}
		ss.s.metrics.acked.Add(float64(n))
	}
	return &wire.ServerFrame{Body: &wire.ServerFrame_Acked{Acked: &wire.AckResponse{}}}, nil
}
