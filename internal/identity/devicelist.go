package identity

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/hush-chat/hush/internal/keys"
)

// Device-list constants (docs/protocol.md §3.2).
const (
	DeviceListVersion        = 1
	DeviceListLabel          = "Hush-DeviceList-v1"
	MaxDevices               = 6
	MaxDeviceID       uint32 = 1<<31 - 1
)

// Errors a caller can tell apart.
var (
	ErrMalformed    = errors.New("identity: malformed encoding")
	ErrBadSignature = errors.New("identity: bad signature")
	ErrRollback     = errors.New("identity: device list rolled back to an older version")
	ErrEquivocation = errors.New("identity: two different device lists with the same version")
	ErrNoDevice     = errors.New("identity: device is not in the signed device list")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Device is one entry of a device list: the device's id and both of its
// long-term public keys, certified by the account key's signature.
type Device struct {
	ID          uint32
	SigningKey  keys.DeviceSigningPublic
	IdentityKey keys.IdentityPublic
}

// DeviceList is {username, version, devices[]} (docs/protocol.md §3.2).
type DeviceList struct {
	Username string
	Version  uint64
	Devices  []Device
}

// SignedDeviceList is a device list with the account key's signature.
type SignedDeviceList struct {
	List      DeviceList
	Signature []byte
}

// Find returns the device with the given id.
func (l *DeviceList) Find(id uint32) (Device, bool) {
	for _, d := range l.Devices {
		if d.ID == id {
			return d, true
		}
	}
	return Device{}, false
}

// validate checks the structural rules every list must meet.
func (l *DeviceList) validate() error {
	if err := checkCanonical(l.Username); err != nil {
		return err
	}
	if l.Version == 0 {
		return malformed("device list version 0")
	}
	if len(l.Devices) == 0 || len(l.Devices) > MaxDevices {
		return malformed("device list has %d devices, want 1 to %d", len(l.Devices), MaxDevices)
	}
	seen := map[uint32]bool{}
	for i, d := range l.Devices {
		if d.ID == 0 || d.ID > MaxDeviceID {
			return malformed("device id %d out of range", d.ID)
		}
		if seen[d.ID] {
			return malformed("device id %d listed twice", d.ID)
		}
		seen[d.ID] = true
		if i > 0 && l.Devices[i-1].ID > d.ID {
			return malformed("device ids not in ascending order")
		}
		if d.SigningKey.IsZero() || d.IdentityKey.IsZero() {
			return malformed("device %d has an empty key", d.ID)
		}
		for _, e := range l.Devices[:i] {
			if e.SigningKey.Equal(d.SigningKey) || e.IdentityKey.Equal(d.IdentityKey) {
				return malformed("devices %d and %d share a key", e.ID, d.ID)
			}
		}
	}
	return nil
}

// marshalBody is the signed part of the encoding.
func (l *DeviceList) marshalBody() ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddUint8(DeviceListVersion)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(l.Username)) })
	b.AddUint64(l.Version)
	b.AddUint8(uint8(len(l.Devices)))
	for _, d := range l.Devices {
		b.AddUint32(d.ID)
		b.AddBytes(d.SigningKey.Bytes())
		b.AddBytes(d.IdentityKey.Bytes())
	}
	return b.Bytes()
}

func signedMessage(label string, body []byte) []byte {
	return append([]byte(label), body...)
}

// SignDeviceList signs l with the account key.
func SignDeviceList(l DeviceList, account keys.AccountPrivate) (*SignedDeviceList, error) {
	body, err := l.marshalBody()
	if err != nil {
		return nil, err
	}
	return &SignedDeviceList{List: l, Signature: account.Sign(signedMessage(DeviceListLabel, body))}, nil
}

// Marshal encodes the signed list: body || signature.
func (s *SignedDeviceList) Marshal() ([]byte, error) {
	body, err := s.List.marshalBody()
	if err != nil {
		return nil, err
	}
	if len(s.Signature) != keys.SignatureSize {
		return nil, malformed("signature is %d bytes", len(s.Signature))
	}
	return append(body, s.Signature...), nil
}

// ParseSignedDeviceList parses an encoded signed device list strictly. It
// does not verify the signature; call Verify.
func ParseSignedDeviceList(data []byte) (*SignedDeviceList, error) {
	s := cryptobyte.String(data)
	var ver, n uint8
	var user cryptobyte.String
	var l DeviceList
	if !s.ReadUint8(&ver) {
		return nil, malformed("device list is empty")
	}
	if ver != DeviceListVersion {
		return nil, malformed("device list format version %d, want %d", ver, DeviceListVersion)
	}
	if !s.ReadUint8LengthPrefixed(&user) || !s.ReadUint64(&l.Version) || !s.ReadUint8(&n) {
		return nil, malformed("device list header truncated")
	}
	l.Username = string(user)
	if n == 0 || n > MaxDevices {
		return nil, malformed("device list has %d devices, want 1 to %d", n, MaxDevices)
	}
	for range n {
		var d Device
		var sk, ik []byte
		if !s.ReadUint32(&d.ID) || !s.ReadBytes(&sk, keys.SigningPublicSize) || !s.ReadBytes(&ik, keys.DHPublicSize) {
			return nil, malformed("device entry truncated")
		}
		var err error
		if d.SigningKey, err = keys.ParseDeviceSigningPublic(sk); err != nil {
			return nil, err
		}
		if d.IdentityKey, err = keys.ParseIdentityPublic(ik); err != nil {
			return nil, err
		}
		l.Devices = append(l.Devices, d)
	}
	var sig []byte
	if !s.ReadBytes(&sig, keys.SignatureSize) {
		return nil, malformed("device list signature truncated")
	}
	if !s.Empty() {
		return nil, malformed("%d trailing bytes after device list", len(s))
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	return &SignedDeviceList{List: l, Signature: bytes.Clone(sig)}, nil
}

// Verify checks the account key's signature.
func (s *SignedDeviceList) Verify(account keys.AccountPublic) error {
	body, err := s.List.marshalBody()
	if err != nil {
		return err
	}
	if !account.Verify(signedMessage(DeviceListLabel, body), s.Signature) {
		return fmt.Errorf("%w on device list for %q", ErrBadSignature, s.List.Username)
	}
	return nil
}

// CheckSuccessor decides whether next may replace prev, a list already
// accepted for the same account: a lower version is a rollback; the same
// version with different contents is equivocation. Both must be verified.
func CheckSuccessor(prev, next *SignedDeviceList) error {
	if prev.List.Username != next.List.Username {
		return fmt.Errorf("identity: device list for %q where %q was expected", next.List.Username, prev.List.Username)
	}
	switch {
	case next.List.Version < prev.List.Version:
		return fmt.Errorf("%w: version %d after %d", ErrRollback, next.List.Version, prev.List.Version)
	case next.List.Version == prev.List.Version:
		a, err1 := prev.Marshal()
		b, err2 := next.Marshal()
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			return fmt.Errorf("%w: version %d", ErrEquivocation, next.List.Version)
		}
	}
	return nil
}
