package server

import (
	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// deviceKeys are the keys a device's prekey signatures are checked with.
type deviceKeys struct {
	signing  keys.DeviceSigningPublic
	identity keys.IdentityPublic
}

func storedDeviceKeys(d store.Device) (deviceKeys, error) {
	var k deviceKeys
	var err error
	if k.signing, err = keys.ParseDeviceSigningPublic(d.SigningKey); err != nil {
		return k, err
	}
	k.identity, err = keys.ParseIdentityPublic(d.IdentityKey)
	return k, err
}

// checkUpload verifies every key and signature of an upload and converts
// it for the store (docs/protocol.md §3.3). base requires the keys a
// device cannot work without: a signed prekey and a last-resort KEM key
// (registration). Bad input is a bad_request naming the offending key id.
func checkUpload(dk deviceKeys, up *wire.PrekeyUpload, base bool) (store.PrekeyUpload, error) {
	var out store.PrekeyUpload
	if up == nil {
		if base {
			return out, apiErr(codeBadRequest, "prekeys are missing")
		}
		return out, nil
	}
	if len(up.OneTime) > MaxPrekeysUpload || len(up.KemOneTime) > MaxPrekeysUpload {
		return out, apiErr(codeBadRequest, "at most %d one-time prekeys of each kind per upload", MaxPrekeysUpload)
	}
	sig := func(id uint32, tagged, s []byte, what string) error {
		if len(s) != keys.SignatureSize || !dk.signing.Verify(identity.PrekeySignatureMessage(dk.identity, id, tagged), s) {
			return apiErr(codeBadRequest, "signature of %s %d does not verify with the device signing key", what, id)
		}
		return nil
	}
	if spk := up.SignedPrekey; spk != nil {
		k, err := keys.ParseSignedPrekeyPublic(spk.Key)
		if err != nil {
			return out, apiErr(codeBadRequest, "signed prekey %d: %v", spk.Id, err)
		}
		if err := sig(spk.Id, k.Bytes(), spk.Signature, "signed prekey"); err != nil {
			return out, err
		}
		out.SignedPrekey = &store.SignedPrekey{ID: spk.Id, Key: k.Bytes(), Signature: spk.Signature}
	} else if base {
		return out, apiErr(codeBadRequest, "signed prekey is missing")
	}
	if lr := up.KemLastResort; lr != nil {
		k, err := keys.ParseKEMPublic(lr.Key)
		if err != nil {
			return out, apiErr(codeBadRequest, "last-resort KEM prekey %d: %v", lr.Id, err)
		}
		if !k.LastResort() {
			return out, apiErr(codeBadRequest, "KEM prekey %d is one-time, not last-resort", lr.Id)
		}
		if err := sig(lr.Id, lr.Key, lr.Signature, "last-resort KEM prekey"); err != nil {
			return out, err
		}
		out.KEMLastResort = &store.KEMPrekey{ID: lr.Id, Key: lr.Key, Signature: lr.Signature}
	} else if base {
		return out, apiErr(codeBadRequest, "last-resort KEM prekey is missing")
	}
	seen := make(map[uint32]bool, len(up.OneTime))
	for _, p := range up.OneTime {
		if seen[p.Id] {
			return out, apiErr(codeBadRequest, "one-time prekey id %d appears twice", p.Id)
		}
		seen[p.Id] = true
		if _, err := keys.ParseOneTimePrekeyPublic(p.Key); err != nil {
			return out, apiErr(codeBadRequest, "one-time prekey %d: %v", p.Id, err)
		}
		out.OneTime = append(out.OneTime, store.OneTimePrekey{ID: p.Id, Key: p.Key})
	}
	clear(seen)
	for _, p := range up.KemOneTime {
		if seen[p.Id] {
			return out, apiErr(codeBadRequest, "one-time KEM prekey id %d appears twice", p.Id)
		}
		seen[p.Id] = true
		k, err := keys.ParseKEMPublic(p.Key)
		if err != nil {
			return out, apiErr(codeBadRequest, "one-time KEM prekey %d: %v", p.Id, err)
		}
		if k.LastResort() {
			return out, apiErr(codeBadRequest, "KEM prekey %d is last-resort, not one-time", p.Id)
		}
		if err := sig(p.Id, p.Key, p.Signature, "one-time KEM prekey"); err != nil {
			return out, err
		}
		out.KEMOneTime = append(out.KEMOneTime, store.KEMPrekey{ID: p.Id, Key: p.Key, Signature: p.Signature})
	}
	return out, nil
}

// bundleFor turns what the store handed out into a signed bundle
// encoding. The keys were verified on upload; a parse failure here means
// the database was altered, and is an internal error.
func bundleFor(username string, set store.PrekeySet) ([]byte, error) {
	dk, err := storedDeviceKeys(set.Device)
	if err != nil {
		return nil, err
	}
	b := identity.Bundle{
		Username:    username,
		DeviceID:    set.Device.ID,
		IdentityKey: dk.identity,
		SigningKey:  dk.signing,
	}
	b.SignedPrekey.ID = set.SignedPrekey.ID
	b.SignedPrekey.Signature = set.SignedPrekey.Signature
	if b.SignedPrekey.Key, err = keys.ParseSignedPrekeyPublic(set.SignedPrekey.Key); err != nil {
		return nil, err
	}
	if set.OneTime != nil {
		otk := &identity.OneTimePrekey{ID: set.OneTime.ID}
		if otk.Key, err = keys.ParseOneTimePrekeyPublic(set.OneTime.Key); err != nil {
			return nil, err
		}
		b.OneTimePrekey = otk
	}
	b.KEMPrekey.ID = set.KEM.ID
	b.KEMPrekey.Signature = set.KEM.Signature
	if b.KEMPrekey.Key, err = keys.ParseKEMPublic(set.KEM.Key); err != nil {
		return nil, err
	}
	return b.Marshal()
}

// countsFrame reports a device's one-time prekeys and whether to refill.
func countsFrame(c store.PrekeyCounts) *wire.PrekeyCounts {
	return &wire.PrekeyCounts{
		OneTime:    uint32(c.OneTime),
		KemOneTime: uint32(c.KEMOneTime),
		Low:        isLow(c),
	}
}

func isLow(c store.PrekeyCounts) bool {
	return c.OneTime < PrekeyLowWater || c.KEMOneTime < PrekeyLowWater
}
