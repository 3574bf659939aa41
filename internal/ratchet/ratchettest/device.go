// Package ratchettest provides an in-memory device with a full set of keys
// and prekeys, for tests and benchmarks of the protocol packages.
package ratchettest

import (
	"fmt"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet"
)

// Device is one device's long-term keys and prekeys, held in memory.
type Device struct {
	Username string
	ID       uint32
	Account  keys.AccountPrivate
	Signing  keys.DeviceSigningPrivate
	Identity keys.IdentityPrivate

	SignedPrekeyID uint32
	SPK            keys.SignedPrekeyPrivate
	OneTime        map[uint32]keys.OneTimePrekeyPrivate
	KEM            map[uint32]keys.KEMPrivate
	LastResortID   uint32
	nextID         uint32
}

// NewDevice makes a device with an account key, a signed prekey, a
// last-resort KEM key and n one-time prekeys of each kind.
func NewDevice(user string, id uint32, n int) (*Device, error) {
	d := &Device{Username: user, ID: id, OneTime: map[uint32]keys.OneTimePrekeyPrivate{}, KEM: map[uint32]keys.KEMPrivate{}, nextID: 1}
	var err error
	if d.Account, err = keys.GenerateAccount(); err != nil {
		return nil, err
	}
	if d.Signing, err = keys.GenerateDeviceSigning(); err != nil {
		return nil, err
	}
	if d.Identity, err = keys.GenerateIdentity(); err != nil {
		return nil, err
	}
	if d.SPK, err = keys.GenerateSignedPrekey(); err != nil {
		return nil, err
	}
	d.SignedPrekeyID = d.newID()
	lr, err := keys.GenerateKEM(true)
	if err != nil {
		return nil, err
	}
	d.LastResortID = d.newID()
	d.KEM[d.LastResortID] = lr
	for range n {
		otk, err := keys.GenerateOneTimePrekey()
		if err != nil {
			return nil, err
		}
		d.OneTime[d.newID()] = otk
		k, err := keys.GenerateKEM(false)
		if err != nil {
			return nil, err
		}
		d.KEM[d.newID()] = k
	}
	return d, nil
}

func (d *Device) newID() uint32 { id := d.nextID; d.nextID++; return id }

// DeviceList returns the account-signed list naming this one device.
func (d *Device) DeviceList(version uint64) (*identity.SignedDeviceList, error) {
	return identity.SignDeviceList(identity.DeviceList{
		Username: d.Username,
		Version:  version,
		Devices:  []identity.Device{{ID: d.ID, SigningKey: d.Signing.Public(), IdentityKey: d.Identity.Public()}},
	}, d.Account)
}

// Bundle returns a signed bundle. otk and kem pick the one-time prekeys
// (0: none for otk, last resort for kem); the server's choice in real use.
func (d *Device) Bundle(otk, kem uint32) (*identity.Bundle, error) {
	b := &identity.Bundle{
		Username:    d.Username,
		DeviceID:    d.ID,
		IdentityKey: d.Identity.Public(),
		SigningKey:  d.Signing.Public(),
	}
	spk := d.SPK.Public()
	b.SignedPrekey = identity.SignedPrekey{ID: d.SignedPrekeyID, Key: spk,
		Signature: identity.SignPrekey(d.Signing, b.IdentityKey, d.SignedPrekeyID, spk.Bytes())}
	if otk != 0 {
		k, ok := d.OneTime[otk]
		if !ok {
			return nil, fmt.Errorf("no one-time prekey %d", otk)
		}
		b.OneTimePrekey = &identity.OneTimePrekey{ID: otk, Key: k.Public()}
	}
	if kem == 0 {
		kem = d.LastResortID
	}
	k, ok := d.KEM[kem]
	if !ok {
		return nil, fmt.Errorf("no KEM prekey %d", kem)
	}
	b.KEMPrekey = identity.KEMPrekey{ID: kem, Key: k.Public(),
		Signature: identity.SignPrekey(d.Signing, b.IdentityKey, kem, k.Public().Bytes())}
	return b, nil
}

// AnyOneTime returns some unused one-time X25519 and KEM prekey ids.
func (d *Device) AnyOneTime() (otk, kem uint32) {
	for id := range d.OneTime {
		if otk == 0 || id < otk {
			otk = id
		}
	}
	for id, k := range d.KEM {
		if !k.LastResort() && (kem == 0 || id < kem) {
			kem = id
		}
	}
	return otk, kem
}

// Responder returns the PQXDH responder for this device.
func (d *Device) Responder() *pqxdh.Responder {
	return &pqxdh.Responder{Username: d.Username, Identity: d.Identity, Prekeys: d}
}

// Consume deletes the one-time prekeys a new session used.
func (d *Device) Consume(u *ratchet.PrekeyUse) {
	if u == nil {
		return
	}
	if u.HasOneTime {
		delete(d.OneTime, u.OneTimePrekeyID)
	}
	if k, ok := d.KEM[u.KEMPrekeyID]; ok && !k.LastResort() {
		delete(d.KEM, u.KEMPrekeyID)
	}
}

// SignedPrekey implements pqxdh.PrekeySource.
func (d *Device) SignedPrekey(id uint32) (keys.SignedPrekeyPrivate, error) {
	if id != d.SignedPrekeyID {
		return keys.SignedPrekeyPrivate{}, pqxdh.ErrUnknownPrekey
	}
	return d.SPK, nil
}

// OneTimePrekey implements pqxdh.PrekeySource.
func (d *Device) OneTimePrekey(id uint32) (keys.OneTimePrekeyPrivate, error) {
	k, ok := d.OneTime[id]
	if !ok {
		return k, pqxdh.ErrUnknownPrekey
	}
	return k, nil
}

// KEMPrekey implements pqxdh.PrekeySource.
func (d *Device) KEMPrekey(id uint32) (keys.KEMPrivate, error) {
	k, ok := d.KEM[id]
	if !ok {
		return k, pqxdh.ErrUnknownPrekey
	}
	return k, nil
}
