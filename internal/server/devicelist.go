package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// Device-list changes (docs/protocol.md §9.9). The account key's
// signature is the only authority over the list; the three ways in differ
// in who may ask and which key the list must verify with:
//
//	update_device_list  a listed device, on its WebSocket   the stored account key
//	POST /v1/devicelist anyone (restore from the recovery   the stored account key
//	                    key), with prekeys for new devices
//	reset_account_key   a listed device that stays listed   the new account key,
//	                                                        which replaces the old
//
// In every case the version must grow and a device id that stays must
// keep its keys (its prekeys and queue stay with it). The store applies
// each change only while the account key is still the one it was checked
// against, so a list signed by a key replaced meanwhile never lands.

// newList is a checked device list, ready for the store.
type newList struct {
	user    string
	raw     []byte
	list    *identity.SignedDeviceList
	devices []store.Device // as the store wants them
	old     []store.Device // the devices before the change
}

// added reports whether device id is new in the list (not listed before).
func (n *newList) added(id uint32) bool {
	for _, o := range n.old {
		if o.ID == id {
			return false
		}
	}
	_, ok := n.list.List.Find(id)
	return ok
}

// checkDeviceList parses raw and checks it as the next device list of
// acct, signed by key.
func (s *Server) checkDeviceList(ctx context.Context, acct store.Account, raw []byte, key keys.AccountPublic) (*newList, error) {
	user := acct.Username
	list, err := identity.ParseSignedDeviceList(raw)
	if err != nil {
		return nil, apiErr(codeBadRequest, "device list: %v", err)
	}
	if list.List.Username != user {
		return nil, apiErr(codeBadRequest, "device list is for %q, not %q", clip(list.List.Username), user)
	}
	if err := list.Verify(key); err != nil {
		return nil, apiErr(codeBadRequest, "device list signature does not verify with the account key")
	}
	if list.List.Version <= acct.DeviceListVersion {
		return nil, apiErr(codeVersionConflict, "device list version %d is not newer than %d", list.List.Version, acct.DeviceListVersion)
	}
	old, err := s.store.Devices(ctx, user)
	if err != nil {
		return nil, err
	}
	now := s.now()
	n := &newList{user: user, raw: bytes.Clone(raw), list: list, old: old}
	for _, d := range list.List.Devices {
		sd := store.Device{Username: user, ID: d.ID, SigningKey: d.SigningKey.Bytes(), IdentityKey: d.IdentityKey.Bytes(), Created: now, LastSeen: now}
		for _, o := range old {
			if o.ID == d.ID && (!bytes.Equal(o.SigningKey, sd.SigningKey) || !bytes.Equal(o.IdentityKey, sd.IdentityKey)) {
				return nil, apiErr(codeBadRequest, "device %d changed keys; a new device needs a new id", d.ID)
			}
		}
		n.devices = append(n.devices, sd)
	}
	return n, nil
}

// installDeviceList stores a checked list and disconnects the devices it
// no longer names. from is the session that asked (nil over HTTP): if it
// removed its own device, it is closed after its reply.
func (s *Server) installDeviceList(ctx context.Context, n *newList, c store.DeviceListChange, from *session) (store.Account, error) {
	c.List, c.Version, c.Devices = n.raw, n.list.List.Version, n.devices
	err := s.store.UpdateDeviceList(ctx, n.user, c)
	// Also on failure: the outcome may be unknown.
	s.devices.invalidate(n.user)
	s.publishDevices(n.user)
	switch {
	case errors.Is(err, store.ErrVersionConflict):
		return store.Account{}, apiErr(codeVersionConflict, "device list version %d is not newer than the stored one", n.list.List.Version)
	case errors.Is(err, store.ErrAccountKeyChanged):
		return store.Account{}, apiErr(codeVersionConflict, "the account key changed meanwhile; fetch the account and retry")
	case err != nil:
		return store.Account{}, err
	}
	for _, o := range n.old {
		if _, ok := n.list.List.Find(o.ID); ok {
			continue
		}
		ref := store.DeviceRef{Username: n.user, ID: o.ID}
		s.disconnect(ref, from)
		if from != nil && from.ref == ref {
			from.closeAfterReply = true
		}
	}
	acct, err := s.store.Account(ctx, n.user)
	if err != nil {
		return store.Account{}, err
	}
	return acct, nil
}

// updateDeviceList replaces the account's device list on a listed
// device's request (linking and removing devices).
func (ss *session) updateDeviceList(ctx context.Context, req *wire.UpdateDeviceListRequest) (*wire.ServerFrame, error) {
	acct, err := ss.s.store.Account(ctx, ss.ref.Username)
	if err != nil {
		return nil, err
	}
	ak, err := keys.ParseAccountPublic(acct.AccountKey)
	if err != nil {
		return nil, err
	}
	n, err := ss.s.checkDeviceList(ctx, acct, req.GetDeviceList(), ak)
	if err != nil {
		return nil, err
	}
	acct, err = ss.s.installDeviceList(ctx, n, store.DeviceListChange{ExpectAccountKey: acct.AccountKey}, ss)
	if err != nil {
		return nil, err
	}
	ss.s.log.Info("device list updated", "user", n.user, "device", ss.ref.ID, "version", n.list.List.Version, "devices", len(n.devices))
	return accountFrame(acct), nil
}

// resetAccountKey replaces the account key and the device list together
// (§9.9, after a compromise of the old key). The new list must verify
// with the new key and keep the requesting device.
func (ss *session) resetAccountKey(ctx context.Context, req *wire.ResetAccountKeyRequest) (*wire.ServerFrame, error) {
	newKey, err := keys.ParseAccountPublic(req.GetAccountKey())
	if err != nil {
		return nil, apiErr(codeBadRequest, "account key: %v", err)
	}
	acct, err := ss.s.store.Account(ctx, ss.ref.Username)
	if err != nil {
		return nil, err
	}
	n, err := ss.s.checkDeviceList(ctx, acct, req.GetDeviceList(), newKey)
	if err != nil {
		return nil, err
	}
	if _, ok := n.list.List.Find(ss.ref.ID); !ok {
		return nil, apiErr(codeBadRequest, "the new device list must include the device resetting the key (%d)", ss.ref.ID)
	}
	acct, err = ss.s.installDeviceList(ctx, n, store.DeviceListChange{
		ExpectAccountKey: acct.AccountKey,
		NewAccountKey:    newKey.Bytes(),
	}, ss)
	if err != nil {
		return nil, err
	}
	ss.s.log.Info("account key replaced", "user", n.user, "device", ss.ref.ID, "version", n.list.List.Version, "devices", len(n.devices))
	return accountFrame(acct), nil
}

// handleDeviceList is POST /v1/devicelist: a device-list change with no
// listed device to ask for it (restore from the recovery key). It is
// authorized by the stored account key's signature alone.
func (s *Server) handleDeviceList(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDeviceListBody))
	var req wire.DeviceListUpdate
	var resp *wire.AccountResponse
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		err = apiErr(codeTooLarge, "device list update over %d bytes", maxDeviceListBody)
	case err != nil:
		err = apiErr(codeBadRequest, "could not read the request body")
	case proto.Unmarshal(body, &req) != nil:
		err = apiErr(codeBadRequest, "body is not a DeviceListUpdate protobuf")
	case !s.listLimit.Allow(remoteIP(r)):
		err = apiErr(codeRateLimited, "too many device-list updates from your address; try again later")
	default:
		resp, err = s.postDeviceList(ctx, &req)
	}
	s.finish("devicelist", start, err, "user", clip(req.GetUsername()))
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, http.StatusOK, resp)
}

func (s *Server) postDeviceList(ctx context.Context, req *wire.DeviceListUpdate) (*wire.AccountResponse, error) {
	user, err := lookupUser(req.Username)
	if err != nil {
		return nil, err
	}
	acct, err := s.store.Account(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return nil, noUser(user)
	}
	if err != nil {
		return nil, err
	}
	ak, err := keys.ParseAccountPublic(acct.AccountKey)
	if err != nil {
		return nil, err
	}
	n, err := s.checkDeviceList(ctx, acct, req.DeviceList, ak)
	if err != nil {
		return nil, err
	}
	// Nobody can upload prekeys for a device added here before it
	// connects, so every new device brings them, checked as at
	// registration (§9.3).
	prekeys := make(map[uint32]store.PrekeyUpload, len(req.Prekeys))
	for id := range req.Prekeys {
		if !n.added(id) {
			return nil, apiErr(codeBadRequest, "prekeys for device %d, which is not new in the list", id)
		}
	}
	for _, d := range n.list.List.Devices {
		if !n.added(d.ID) {
			continue
		}
		up, ok := req.Prekeys[d.ID]
		if !ok {
			return nil, apiErr(codeBadRequest, "device %d is new in the list and needs prekeys", d.ID)
		}
		if prekeys[d.ID], err = checkUpload(deviceKeys{signing: d.SigningKey, identity: d.IdentityKey}, up, true); err != nil {
			return nil, err
		}
	}
	acct, err = s.installDeviceList(ctx, n, store.DeviceListChange{Prekeys: prekeys, ExpectAccountKey: acct.AccountKey}, nil)
	if err != nil {
		return nil, err
	}
	s.log.Info("device list replaced with the account key", "user", user, "version", n.list.List.Version, "devices", len(n.devices))
	return accountResponse(acct), nil
}

// handleAccount is GET /v1/account/{username}: the public account data
// (account key and signed device list) for a client that has no device
// to ask with yet (restore). Rate-limited per IP.
func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	name := r.PathValue("username")
	var acct store.Account
	err := func() error {
		if !s.lookupLimit.Allow(remoteIP(r)) {
			return apiErr(codeRateLimited, "too many account lookups from your address; slow down")
		}
		user, err := lookupUser(name)
		if err != nil {
			return err
		}
		acct, err = s.store.Account(ctx, user)
		if errors.Is(err, store.ErrNotFound) {
			return noUser(user)
		}
		return err
	}()
	s.finish("account", start, err, "user", clip(name))
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, http.StatusOK, accountResponse(acct))
}
