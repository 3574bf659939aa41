// Package client is the Hush client SDK: one device's account, sessions,
// local store, outbox and receiving loop. The hush command and, later, the
// web client are built on it, so the protocol is implemented once.
//
// A Client owns one home directory holding one SQLite database (files
// 0600). Every change to ratchet state is committed together with what it
// produced: an outgoing ciphertext is committed with the session that made
// it before it is sent, and an incoming message's session update, prekey
// deletion and history entry are committed in one transaction before the
// server is told to delete it. A crash therefore never loses a message nor
// shows one twice.
//
// The outbox: Send first commits the message (its padded plaintext and its
// id) to the outbox, then delivers the outbox in order. A copy for a
// recipient device is encrypted only while connected, right before its
// first submission, and committed in the same transaction as the ratchet
// state that produced it; every retry resends those exact bytes under the
// same message id. So a chain key is never used twice, a lost answer
// cannot make the two ratchets disagree, and the server's deduplication
// by message id always sees identical copies. Only a device newly listed
// by the recipient gets a fresh copy, from the kept plaintext.
package client

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
)

// Config configures a Client. Only Home is required.
type Config struct {
	// Home is the directory holding this device's database.
	Home string
	// Server overrides the server URL stored at registration.
	Server string
	// HTTPClient is used for HTTP requests and the WebSocket handshake.
	HTTPClient *http.Client
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Warn receives problems that do not belong to the current call, such
	// as an older outbox message failing for good during a later Send.
	Warn func(error)
}

// Client is one device. Its methods are safe for concurrent use.
type Client struct {
	cfg  Config
	db   *sql.DB
	http *http.Client

	mu    sync.Mutex
	acct  *account
	cur   *conn           // the live connection, if any
	fresh map[string]bool // peers whose device list was fetched by this Client
	// failures holds why queued messages were refused, until the Send
	// waiting on one reports it.
	failures map[MessageID]error
	dialMu   sync.Mutex // one dial at a time, so connections are not raced
	flushMu  sync.Mutex // one outbox flush at a time
	recvMu   sync.Mutex // one Receive at a time
	refill   sync.Mutex // one prekey refill at a time
	closed   bool

	// sealedHTTP carries sealed sends only (client/sealed.go).
	sealedOnce sync.Once
	sealedHTTP *http.Client

	// Test hooks simulating a crash at the two points that matter: inside
	// the receiving transaction, and after its commit but before the ack.
	hookBeforeCommit func() error
	hookBeforeAck    func() error
}

// account is the device's own identity, loaded from the database.
type account struct {
	Username  string
	DeviceID  uint32
	ServerURL string
	ServerKey keys.ServerPublic
	// AccountKey is the account's private key, held only by the primary
	// device; zero on a linked device. Use AccountPub for the public half,
	// which every device has.
	AccountKey keys.AccountPrivate
	AccountPub keys.AccountPublic
	Signing    keys.DeviceSigningPrivate
	Identity   keys.IdentityPrivate
	DeviceList *identity.SignedDeviceList
	Registered bool
}

// Open opens (creating if needed) the home directory's database.
func Open(home string) (*Client, error) { return New(Config{Home: home}) }

// New opens a Client with a full configuration.
func New(cfg Config) (*Client, error) {
	if cfg.Home == "" {
		return nil, errors.New("client: no home directory given")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Warn == nil {
		cfg.Warn = func(error) {}
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := openDB(ctx, cfg.Home)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, db: db, http: hc, fresh: map[string]bool{}, failures: map[MessageID]error{}}
	acct, err := loadAccount(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	if acct != nil && acct.Registered {
		// Homes registered before issue 5 lack the own list in peers.
		if err := ensureSelfPeer(ctx, db, acct, cfg.Now()); err != nil {
			db.Close()
			return nil, err
		}
	}
	c.acct = acct
	// Disappearing messages whose time ran out while the home was closed
	// (client/messaging.go).
	if err := c.sweepExpired(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the connection and the database.
func (c *Client) Close() error {
	c.mu.Lock()
	cur := c.cur
	c.cur = nil
	c.closed = true
	c.mu.Unlock()
	if cur != nil {
		cur.close()
	}
	c.closeSealedHTTP()
	return c.db.Close()
}

// Info describes the device's account.
type Info struct {
	Username    string
	DeviceID    uint32
	Server      string
	Fingerprint string // of the account public key
}

// Info returns the registered account, or ErrNoAccount.
func (c *Client) Info() (Info, error) {
	a, err := c.account()
	if err != nil {
		return Info{}, err
	}
	return Info{
		Username:    a.Username,
		DeviceID:    a.DeviceID,
		Server:      c.serverURL(a),
		Fingerprint: Fingerprint(a.AccountPub),
	}, nil
}

// Fingerprint renders an account key for people to compare: SHA-256 of its
// encoding, the first 16 bytes in groups of four hex digits.
func Fingerprint(k keys.AccountPublic) string {
	sum := sha256.Sum256(k.Bytes())
	h := hex.EncodeToString(sum[:16])
	var groups []string
	for i := 0; i < len(h); i += 4 {
		groups = append(groups, h[i:i+4])
	}
	return strings.Join(groups, " ")
}

func (c *Client) account() (*account, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acct == nil || !c.acct.Registered {
		return nil, ErrNoAccount
	}
	return c.acct, nil
}

func (c *Client) serverURL(a *account) string {
	if c.cfg.Server != "" {
		return c.cfg.Server
	}
	return a.ServerURL
}

func (c *Client) now() time.Time { return c.cfg.Now() }

// loadAccount reads the account row; nil if there is none.
func loadAccount(ctx context.Context, db *sql.DB) (*account, error) {
	var a account
	var serverKey, acctKey, signKey, idKey, list []byte
	var registered int
	err := db.QueryRowContext(ctx, `SELECT username, device_id, server_url, server_key, account_key,
		signing_key, identity_key, device_list, registered FROM account WHERE id = 1`).
		Scan(&a.Username, &a.DeviceID, &a.ServerURL, &serverKey, &acctKey, &signKey, &idKey, &list, &registered)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: read account: %w", err)
	}
	a.Registered = registered == 1
	if a.ServerKey, err = keys.ParseServerPublic(serverKey); err != nil {
		return nil, fmt.Errorf("client: stored server key: %w", err)
	}
	if a.AccountKey, a.AccountPub, err = parseStoredAccountKey(acctKey); err != nil {
		return nil, fmt.Errorf("client: stored account key: %w", err)
	}
	if a.Signing, err = keys.ParseDeviceSigningPrivate(signKey); err != nil {
		return nil, fmt.Errorf("client: stored device key: %w", err)
	}
	if a.Identity, err = keys.ParseIdentityPrivate(idKey); err != nil {
		return nil, fmt.Errorf("client: stored identity key: %w", err)
	}
	if a.DeviceList, err = identity.ParseSignedDeviceList(list); err != nil {
		return nil, fmt.Errorf("client: stored device list: %w", err)
	}
	return &a, nil
}
