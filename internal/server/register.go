package server

import (
	"context"
	"errors"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/server/pow"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// firstDeviceID is the id of the device that registers an account
// (docs/protocol.md §9.3).
const firstDeviceID = 1

// register checks a registration (docs/protocol.md §9.3) and creates the
// account. Cheap checks come first; the rate limit is charged only once
// the proof of work holds and the name is free, so a client that made an
// honest mistake is not locked out by it.
func (s *Server) register(ctx context.Context, req *wire.RegisterRequest, ip string) (*wire.RegisterResponse, error) {
	user := req.Username
	norm, err := identity.NormalizeUsername(user)
	if err != nil {
		return nil, apiErr(codeBadUsername, "%v", err)
	}
	if norm != user {
		return nil, apiErr(codeBadUsername, "username %q must be sent lower-case, as %q", clip(user), norm)
	}
	if identity.IsReserved(user) {
		return nil, apiErr(codeBadUsername, "username %q is reserved", user)
	}
	if s.pow.Bits() > 0 {
		if err := s.pow.Verify(req.PowChallenge, user, req.PowNonce); err != nil {
			if errors.Is(err, pow.ErrBusy) {
				return nil, apiErr(codeRateLimited, "too many registrations in progress; try again in a few minutes")
			}
			return nil, apiErr(codeBadPow, "%v; fetch a new challenge from /v1/pow", err)
		}
		s.publishPowSpent(req.PowChallenge)
	}
	switch _, err := s.store.Account(ctx, user); {
	case err == nil:
		return nil, apiErr(codeUsernameTaken, "username %q is taken", user)
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	if !s.regLimit.Allow(ip) {
		s.log.Warn("registration rate limit", "ip", ip)
		return nil, apiErr(codeRateLimited, "too many registrations from your address; try again later")
	}

	accountKey, err := keys.ParseAccountPublic(req.AccountKey)
	if err != nil {
		return nil, apiErr(codeBadRequest, "account key: %v", err)
	}
	list, err := identity.ParseSignedDeviceList(req.DeviceList)
	if err != nil {
		return nil, apiErr(codeBadRequest, "device list: %v", err)
	}
	if err := list.Verify(accountKey); err != nil {
		return nil, apiErr(codeBadRequest, "device list signature does not verify with the account key")
	}
	if list.List.Username != user {
		return nil, apiErr(codeBadRequest, "device list is for %q, not %q", list.List.Username, user)
	}
	if len(list.List.Devices) != 1 || list.List.Devices[0].ID != firstDeviceID {
		return nil, apiErr(codeBadRequest, "a new account's device list must hold exactly one device, with id %d", firstDeviceID)
	}
	d := list.List.Devices[0]
	up, err := checkUpload(deviceKeys{signing: d.SigningKey, identity: d.IdentityKey}, req.Prekeys, true)
	if err != nil {
		return nil, err
	}

	now := s.now()
	err = s.store.CreateAccount(ctx,
		store.Account{
			Username:          user,
			AccountKey:        accountKey.Bytes(),
			DeviceList:        req.DeviceList,
			DeviceListVersion: list.List.Version,
			Created:           now,
		},
		[]store.Device{{
			Username:    user,
			ID:          d.ID,
			SigningKey:  d.SigningKey.Bytes(),
			IdentityKey: d.IdentityKey.Bytes(),
			Created:     now,
			LastSeen:    now,
		}},
		map[uint32]store.PrekeyUpload{d.ID: up})
	if errors.Is(err, store.ErrUsernameTaken) {
		return nil, apiErr(codeUsernameTaken, "username %q is taken", user)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("registered", "user", user, "device", d.ID)
	return &wire.RegisterResponse{ServerKey: s.pub.Bytes()}, nil
}
