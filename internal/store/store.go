// Package store is the server's persistence behind one narrow interface.
// Implementations: SQLite (package sqlite, the default) and PostgreSQL (a
// later issue); both must pass the conformance suite in storetest.
//
// The store holds only what the server may see: usernames, public keys,
// signed device lists, public prekeys and opaque message ciphertexts.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors every implementation returns (wrapped or bare), so callers can
// use errors.Is.
var (
	ErrNotFound        = errors.New("store: not found")
	ErrUsernameTaken   = errors.New("store: username taken")
	ErrVersionConflict = errors.New("store: device list version is not newer")
	// ErrAccountKeyChanged: a conditional device-list change found another
	// account key than the one its list was verified with.
	ErrAccountKeyChanged = errors.New("store: account key changed")
)

// Account is a registered username.
type Account struct {
	Username          string // normalized (lower-case)
	AccountKey        []byte // keys.AccountPublic encoding
	DeviceList        []byte // identity.SignedDeviceList encoding, verified by the server
	DeviceListVersion uint64
	Created           time.Time
	// DeliveryTokenHash is SHA-256 of the account's delivery token, empty
	// until a device sets one. Sealed sends must present the token.
	DeliveryTokenHash []byte
}

// Device is one device of an account, as named by the current device list.
type Device struct {
	Username    string
	ID          uint32
	SigningKey  []byte // keys.DeviceSigningPublic encoding
	IdentityKey []byte // keys.IdentityPublic encoding
	Created     time.Time
	LastSeen    time.Time
}

// DeviceRef names one device.
type DeviceRef struct {
	Username string
	ID       uint32
}

// SignedPrekey is a device's current signed prekey.
type SignedPrekey struct {
	ID        uint32
	Key       []byte
	Signature []byte
}

// OneTimePrekey is a one-time X25519 prekey.
type OneTimePrekey struct {
	ID  uint32
	Key []byte
}

// KEMPrekey is a signed ML-KEM prekey (one-time or last-resort).
type KEMPrekey struct {
	ID        uint32
	Key       []byte
	Signature []byte
}

// PrekeyUpload is what a device uploads; nil/empty fields leave the stored
// values alone. Uploading a one-time key id that already exists is ignored.
type PrekeyUpload struct {
	SignedPrekey  *SignedPrekey
	OneTime       []OneTimePrekey
	KEMOneTime    []KEMPrekey
	KEMLastResort *KEMPrekey
}

// PrekeySet is what TakePrekeys hands out for one device. OneTime is nil
// when none remain; KEM is a one-time KEM key if one remains, else the
// last-resort key (KEMLastResort is then true).
type PrekeySet struct {
	Device        Device
	SignedPrekey  SignedPrekey
	OneTime       *OneTimePrekey
	KEM           KEMPrekey
	KEMLastResort bool
}

// PrekeyCounts are the one-time keys a device has left on the server.
type PrekeyCounts struct {
	OneTime    int
	KEMOneTime int
}

// Message is one queued copy for one recipient device.
type Message struct {
	Seq          uint64 // assigned by the store, increasing per store
	Recipient    DeviceRef
	MessageID    []byte // client-chosen, 16 bytes; unique per recipient device
	Sender       string // empty for sealed-sender messages: the server does not know it
	SenderDevice uint32 // 0 for sealed-sender messages
	Content      []byte
	Received     time.Time
	Expires      time.Time
}

// DeviceListChange is a new device list for UpdateDeviceList.
type DeviceListChange struct {
	List    []byte // identity.SignedDeviceList encoding, verified by the caller
	Version uint64
	Devices []Device
	// Prekeys for listed devices, stored in the same transaction, so a
	// device added without a connection of its own (restore) is reachable
	// as soon as the list is. A key for an unlisted device fails the
	// change with ErrNotFound.
	Prekeys map[uint32]PrekeyUpload
	// ExpectAccountKey, if not nil, makes the change conditional: it
	// applies only while the stored account key equals it (else
	// ErrAccountKeyChanged). The caller passes the key it verified List
	// with, so a list signed by a key replaced meanwhile never lands.
	ExpectAccountKey []byte
	// NewAccountKey, if not nil, replaces the account key in the same
	// transaction (an identity reset: List is signed by the new key).
	NewAccountKey []byte
}

// Store is the server's database. All methods are safe for concurrent use.
type Store interface {
	// CreateAccount stores a new account with its devices and their
	// initial prekeys in one transaction. ErrUsernameTaken if the
	// username exists.
	CreateAccount(ctx context.Context, a Account, devices []Device, prekeys map[uint32]PrekeyUpload) error
	// Account returns an account by normalized username.
	Account(ctx context.Context, username string) (Account, error)
	// Devices returns the account's current devices, ordered by id.
	Devices(ctx context.Context, username string) ([]Device, error)
	// Device returns one device.
	Device(ctx context.Context, ref DeviceRef) (Device, error)
	// UpdateDeviceList replaces the device list if c.Version is greater
	// than the stored one (else ErrVersionConflict), all in one
	// transaction with c's prekeys and account key (see DeviceListChange).
	// Devices no longer listed are deleted with their prekeys and queued
	// messages; new devices are added; existing ones keep their prekeys
	// and queues. On any error nothing changes.
	UpdateDeviceList(ctx context.Context, username string, c DeviceListChange) error
	// TouchDevice records that a device was seen at t.
	TouchDevice(ctx context.Context, ref DeviceRef, t time.Time) error
	// SetDeliveryTokenHash replaces the account's delivery token hash
	// (Account.DeliveryTokenHash).
	SetDeliveryTokenHash(ctx context.Context, username string, hash []byte) error
	// SetBlocked replaces the list of usernames the account blocks
	// (normalized by the caller; duplicates are stored once).
	SetBlocked(ctx context.Context, username string, blocked []string) error
	// Blocked returns the usernames the account blocks, sorted. All three
	// return ErrNotFound for an unknown account.
	Blocked(ctx context.Context, username string) ([]string, error)

	// UploadPrekeys adds or replaces a device's prekeys.
	UploadPrekeys(ctx context.Context, ref DeviceRef, up PrekeyUpload) error
	// TakePrekeys atomically removes and returns one one-time X25519 key
	// and one one-time KEM key (or the last-resort KEM key) for a device;
	// no key is ever returned twice. ErrNotFound if the device has no
	// signed prekey or no KEM key at all.
	TakePrekeys(ctx context.Context, ref DeviceRef) (PrekeySet, error)
	// PrekeyCounts returns how many one-time keys a device has left.
	PrekeyCounts(ctx context.Context, ref DeviceRef) (PrekeyCounts, error)

	// Enqueue stores copies atomically: all or none. A copy whose
	// (recipient, message id) is already stored is skipped, so retries
	// are idempotent. Returns the stored messages with Seq assigned
	// (including the existing ones for skipped duplicates).
	Enqueue(ctx context.Context, msgs []Message) ([]Message, error)
	// Pending returns up to limit queued messages for a device with
	// Seq > after, in Seq order, excluding expired ones at now.
	Pending(ctx context.Context, ref DeviceRef, after uint64, limit int, now time.Time) ([]Message, error)
	// Ack deletes the given messages of this device; unknown seqs are
	// ignored. Returns how many were deleted.
	Ack(ctx context.Context, ref DeviceRef, seqs []uint64) (int, error)
	// DeleteExpired removes messages whose Expires is before now.
	DeleteExpired(ctx context.Context, now time.Time) (int, error)

	// Ping checks the database is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}
