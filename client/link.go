package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/crypto/cryptobyte"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/wire"
)

// Linking a new device (docs/protocol.md §9.10).
//
// The new device makes its keys, an ephemeral X25519 key pair E and a
// 16-byte secret S, and opens /v1/provision, where the server gives it a
// relay address A. Its link code carries A, E.pub, S and its two public
// keys; the user carries the code to the primary (typed, pasted or
// scanned), never through the server. The primary signs a device list
// with the new device in it, publishes it, and sends the new device an
// HPKE-sealed LinkPayload through the relay. The info string holds S, so
// only a party that saw the code can make a payload that opens: the new
// device authenticates its primary without trusting the server, and the
// server, which never sees the code, cannot read the payload.

// Link constants.
const (
	// LinkCodePrefix starts every link code.
	LinkCodePrefix = "hush-link:"
	// LinkInfoLabel starts the HPKE info string; S follows it.
	LinkInfoLabel   = "Hush-Link-v1"
	linkCodeVersion = 1
	linkBodyVersion = 1
	linkSecretSize  = 16
	linkAddressSize = 16
	// maxLinkBody is the relay's cap on one payload.
	maxLinkBody = 8 << 20
	// maxLinkHistory bounds the history carried in a payload, leaving
	// room for contacts and the HPKE overhead below maxLinkBody.
	maxLinkHistory = 6 << 20
	// LinkTimeout is how long a new device waits for its payload; the
	// server's relay keeps an address about as long.
	LinkTimeout = 10 * time.Minute
	// awaitDeviceTimeout bounds how long the primary waits for a linked
	// device's first prekeys, to start its session with it right away.
	awaitDeviceTimeout = 30 * time.Second
)

// linkCode is what a link code carries.
type linkCode struct {
	address   [linkAddressSize]byte
	ephemeral [32]byte // X25519 public key
	secret    [linkSecretSize]byte
	signing   keys.DeviceSigningPublic
	identity  keys.IdentityPublic
	name      string
}

// String renders the code: "hush-link:" + base64url-nopad(u8(1) || A ||
// E.pub || S || signing key || identity key || u8-prefixed name).
func (l *linkCode) String() string {
	var b cryptobyte.Builder
	b.AddUint8(linkCodeVersion)
	b.AddBytes(l.address[:])
	b.AddBytes(l.ephemeral[:])
	b.AddBytes(l.secret[:])
	b.AddBytes(l.signing.Bytes())
	b.AddBytes(l.identity.Bytes())
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(l.name)) })
	return LinkCodePrefix + base64.RawURLEncoding.EncodeToString(b.BytesOrPanic())
}

// parseLinkCode parses a link code strictly. Surrounding white space is
// ignored (it is pasted).
func parseLinkCode(s string) (*linkCode, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, LinkCodePrefix)
	if !ok {
		return nil, fmt.Errorf("a link code starts with %q; this does not", LinkCodePrefix)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, errors.New("the link code is damaged (not base64url); copy it again")
	}
	in := cryptobyte.String(raw)
	var l linkCode
	var ver uint8
	var sk, ik []byte
	var name cryptobyte.String
	if !in.ReadUint8(&ver) {
		return nil, errors.New("the link code is empty")
	}
	if ver != linkCodeVersion {
		return nil, fmt.Errorf("link code version %d is not supported (want %d); update hush", ver, linkCodeVersion)
	}
	if !in.CopyBytes(l.address[:]) || !in.CopyBytes(l.ephemeral[:]) || !in.CopyBytes(l.secret[:]) ||
		!in.ReadBytes(&sk, keys.SigningPublicSize) || !in.ReadBytes(&ik, keys.DHPublicSize) ||
		!in.ReadUint8LengthPrefixed(&name) {
		return nil, errors.New("the link code is truncated; copy it again")
	}
	if !in.Empty() {
		return nil, errors.New("the link code has trailing bytes; copy it again")
	}
	if l.signing, err = keys.ParseDeviceSigningPublic(sk); err != nil {
		return nil, fmt.Errorf("link code: %w", err)
	}
	if l.identity, err = keys.ParseIdentityPublic(ik); err != nil {
		return nil, fmt.Errorf("link code: %w", err)
	}
	if _, err := ecdh.X25519().NewPublicKey(l.ephemeral[:]); err != nil {
		return nil, fmt.Errorf("link code: ephemeral key: %v", err)
	}
	l.name = string(name)
	if err := checkDeviceName(l.name); err != nil {
		return nil, fmt.Errorf("link code: %w", err)
	}
	return &l, nil
}

func linkInfo(secret []byte) []byte { return append([]byte(LinkInfoLabel), secret...) }

// sealLinkPayload encrypts a payload for the device that made code.
func sealLinkPayload(code *linkCode, p *wire.LinkPayload) ([]byte, error) {
	pt, err := proto.Marshal(p)
	if err != nil {
		return nil, err
	}
	pub, err := ecdh.X25519().NewPublicKey(code.ephemeral[:])
	if err != nil {
		return nil, err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, err
	}
	ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), linkInfo(code.secret[:]), pt)
	if err != nil {
		return nil, err
	}
	return append([]byte{linkBodyVersion}, ct...), nil
}

// ErrLinkPayload: what arrived through the relay is not a payload from a
// device that saw this link code.
var ErrLinkPayload = errors.New("link payload refused")

// linked is a payload that opened and verified.
type linked struct {
	username   string
	deviceID   uint32
	accountPub keys.AccountPublic
	list       *identity.SignedDeviceList
	serverKey  keys.ServerPublic
	contacts   []linkedContact
	groups     [][]*groupState // per group, its states oldest first
	payload    *wire.LinkPayload
}

type linkedContact struct {
	c    *wire.LinkedContact
	key  keys.AccountPublic
	list *identity.SignedDeviceList
}

// openLinkPayload decrypts and checks a payload: it must open with E and
// S, its list must verify with its account key and name this device with
// its keys, and everything it carries must be well formed.
func openLinkPayload(eph *ecdh.PrivateKey, secret []byte, signing keys.DeviceSigningPublic, ik keys.IdentityPublic, body []byte) (*linked, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrLinkPayload, fmt.Sprintf(format, args...))
	}
	if len(body) < 1+32+16 || body[0] != linkBodyVersion {
		return nil, bad("malformed (%d bytes)", len(body))
	}
	sk, err := hpke.NewDHKEMPrivateKey(eph)
	if err != nil {
		return nil, err
	}
	pt, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), linkInfo(secret), body[1:])
	if err != nil {
		return nil, bad("it does not open with this link code's secret, so it was not made by a device that saw the code")
	}
	var p wire.LinkPayload
	if err := proto.Unmarshal(pt, &p); err != nil {
		return nil, bad("malformed: %v", err)
	}
	l := &linked{payload: &p, username: p.GetUsername(), deviceID: p.GetDeviceId()}
	if n, err := identity.NormalizeUsername(l.username); err != nil || n != l.username {
		return nil, bad("username %q", l.username)
	}
	if l.accountPub, err = keys.ParseAccountPublic(p.GetAccountKey()); err != nil {
		return nil, bad("account key: %v", err)
	}
	if l.serverKey, err = keys.ParseServerPublic(p.GetServerKey()); err != nil {
		return nil, bad("server key: %v", err)
	}
	if l.list, err = verifiedList(l.username, l.accountPub, p.GetDeviceList()); err != nil {
		return nil, bad("%v", err)
	}
	d, ok := l.list.List.Find(l.deviceID)
	if !ok || !d.SigningKey.Equal(signing) || !d.IdentityKey.Equal(ik) {
		return nil, bad("its device list does not list this device's keys as device %d", l.deviceID)
	}
	if t := p.GetDeliveryToken(); len(t) != 0 && len(t) != DeliveryTokenSize {
		return nil, bad("delivery token of %d bytes", len(t))
	}
	seen := map[string]bool{l.username: true}
	for _, c := range p.GetContacts() {
		u := c.GetUsername()
		if seen[u] {
			return nil, bad("contact %q twice or is the account itself", u)
		}
		seen[u] = true
		lc := linkedContact{c: c}
		if lc.key, err = keys.ParseAccountPublic(c.GetAccountKey()); err != nil {
			return nil, bad("account key of contact %q: %v", u, err)
		}
		if lc.list, err = verifiedList(u, lc.key, c.GetDeviceList()); err != nil {
			return nil, bad("contact %q: %v", u, err)
		}
		if t := c.GetDeliveryToken(); len(t) != 0 && len(t) != DeliveryTokenSize {
			return nil, bad("delivery token of contact %q has %d bytes", u, len(t))
		}
		l.contacts = append(l.contacts, lc)
	}
	for _, u := range p.GetBlocked() {
		if n, err := identity.NormalizeUsername(u); err != nil || n != u || seen[u] {
			return nil, bad("blocked account %q is malformed, listed twice or a contact or the account itself", u)
		}
		seen[u] = true
	}
	if l.groups, err = parseLinkedGroups(p.GetGroups()); err != nil {
		return nil, bad("%v", err)
	}
	for i, m := range p.GetHistory() {
		if isGroupConv(m.GetPeer()) {
			// A group's message: the group must come with it, and its
			// author is an account.
			if err := linkedGroupConv(l.groups, m.GetPeer()); err != nil {
				return nil, bad("history entry %d: peer %q: %v", i, m.GetPeer(), err)
			}
			if n, err := identity.NormalizeUsername(m.GetFrom()); err != nil || n != m.GetFrom() || m.GetOutgoing() != (n == l.username) {
				return nil, bad("history entry %d: author %q", i, m.GetFrom())
			}
		} else if n, err := identity.NormalizeUsername(m.GetPeer()); err != nil || n != m.GetPeer() || n == l.username {
			return nil, bad("history entry %d: peer %q", i, m.GetPeer())
		}
		if len(m.GetMessageId()) != len(MessageID{}) {
			return nil, bad("history entry %d: message id of %d bytes", i, len(m.GetMessageId()))
		}
		if len(m.GetText()) > MaxTextSize || !utf8.ValidString(m.GetText()) {
			return nil, bad("history entry %d: text too long or not UTF-8", i)
		}
	}
	if len(p.GetDeviceNames()) > identity.MaxDevices {
		return nil, bad("%d device names", len(p.GetDeviceNames()))
	}
	for id, name := range p.GetDeviceNames() {
		if _, ok := l.list.List.Find(id); !ok {
			return nil, bad("a name for device %d, which is not listed", id)
		}
		if err := checkDeviceName(name); err != nil {
			return nil, bad("name of device %d: %v", id, err)
		}
	}
	return l, nil
}

// verifiedList parses an encoded list of user and verifies it with key.
func verifiedList(user string, key keys.AccountPublic, enc []byte) (*identity.SignedDeviceList, error) {
	l, err := identity.ParseSignedDeviceList(enc)
	if err != nil {
		return nil, &DeviceListError{Username: user, Reason: fmt.Sprintf("it is malformed: %v", err)}
	}
	if l.List.Username != user {
		return nil, &DeviceListError{Username: user, Reason: fmt.Sprintf("it is the list of %q", l.List.Username)}
	}
	if err := l.Verify(key); err != nil {
		return nil, listError(user, err)
	}
	return l, nil
}

// provisionURL is the relay's WebSocket endpoint.
func provisionURL(server string) (string, error) {
	u, err := wsURL(server)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(u, "/v1/ws") + "/v1/provision", nil
}

// Link makes this empty home a new device of an existing account. It
// opens the server's provisioning relay, calls show with the link code
// (to be approved on the primary with ApproveLink), waits up to
// LinkTimeout for the primary's payload, verifies it, stores the account,
// its contacts and history, and uploads the device's prekeys.
func (c *Client) Link(ctx context.Context, serverURL, name string, show func(code string) error) (Info, error) {
	c.mu.Lock()
	a := c.acct
	c.mu.Unlock()
	if a != nil && a.Registered {
		return Info{}, fmt.Errorf("%w (%s)", ErrHasAccount, a.Username)
	}
	if a != nil {
		return Info{}, errors.New("this home holds an unfinished registration; link in an empty home")
	}
	if err := checkDeviceName(name); err != nil {
		return Info{}, err
	}
	u, err := parseServerURL(serverURL)
	if err != nil {
		return Info{}, err
	}
	serverURL = strings.TrimSuffix(u.String(), "/")
	signing, err := keys.GenerateDeviceSigning()
	if err != nil {
		return Info{}, err
	}
	ik, err := keys.GenerateIdentity()
	if err != nil {
		return Info{}, err
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Info{}, err
	}
	code := &linkCode{signing: signing.Public(), identity: ik.Public(), name: name}
	copy(code.ephemeral[:], eph.PublicKey().Bytes())
	rand.Read(code.secret[:])

	ctx, cancel := context.WithTimeout(ctx, LinkTimeout)
	defer cancel()
	pu, err := provisionURL(serverURL)
	if err != nil {
		return Info{}, err
	}
	ws, resp, err := websocket.Dial(ctx, pu, &websocket.DialOptions{HTTPClient: c.http})
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
			return Info{}, &ServerError{Code: "rate_limited", Message: "the server refuses more links from this address for now"}
		}
		if resp != nil {
			return Info{}, fmt.Errorf("%w: the provisioning relay answered HTTP %d", ErrProtocol, resp.StatusCode)
		}
		return Info{}, &UnreachableError{URL: serverURL, Err: err}
	}
	defer ws.CloseNow()
	ws.SetReadLimit(maxLinkBody + 1024)
	var addr wire.ProvisionAddress
	if err := readProvision(ctx, ws, serverURL, &addr); err != nil {
		return Info{}, err
	}
	a16, err := hex.DecodeString(addr.GetAddress())
	if err != nil || len(a16) != linkAddressSize {
		return Info{}, fmt.Errorf("%w: provisioning address %q", ErrProtocol, addr.GetAddress())
	}
	copy(code.address[:], a16)
	if err := show(code.String()); err != nil {
		return Info{}, err
	}
	var env wire.ProvisionEnvelope
	if err := readProvision(ctx, ws, serverURL, &env); err != nil {
		if ctx.Err() != nil {
			return Info{}, fmt.Errorf("no approval within %v; run link again for a new code", LinkTimeout)
		}
		return Info{}, err
	}
	ws.Close(websocket.StatusNormalClosure, "")
	l, err := openLinkPayload(eph, code.secret[:], signing.Public(), ik.Public(), env.GetBody())
	if err != nil {
		return Info{}, err
	}
	if err := c.storeLinked(ctx, serverURL, name, signing, ik, l); err != nil {
		return Info{}, err
	}
	return c.Info()
}

// readProvision reads one relay message into m.
func readProvision(ctx context.Context, ws *websocket.Conn, server string, m proto.Message) error {
	typ, data, err := ws.Read(ctx)
	if err != nil {
		return &UnreachableError{URL: server, Err: err}
	}
	if typ != websocket.MessageBinary {
		return fmt.Errorf("%w: text frame from the provisioning relay", ErrProtocol)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("%w: malformed relay message: %v", ErrProtocol, err)
	}
	return nil
}

// storeLinked commits the linked account, then uploads the prekeys.
func (c *Client) storeLinked(ctx context.Context, serverURL, name string, signing keys.DeviceSigningPrivate, ik keys.IdentityPrivate, l *linked) error {
	a := &account{
		Username: l.username, DeviceID: l.deviceID, ServerURL: serverURL, ServerKey: l.serverKey,
		AccountPub: l.accountPub, Signing: signing, Identity: ik, DeviceList: l.list, Registered: true,
	}
	list, err := l.list.Marshal()
	if err != nil {
		return err
	}
	batch, err := newPrekeyBatch(1, PrekeyTarget, PrekeyTarget, true, true)
	if err != nil {
		return err
	}
	now := c.now()
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO account (id, username, device_id, server_url, server_key,
			account_key, signing_key, identity_key, device_list, next_prekey_id, registered, created_ms)
			VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1, ?)`,
			a.Username, a.DeviceID, a.ServerURL, a.ServerKey.Bytes(), a.AccountPub.Bytes(), a.Signing.Bytes(),
			a.Identity.Bytes(), list, now.UnixMilli()); err != nil {
			return &localError{err}
		}
		if err := batch.save(ctx, tx, now); err != nil {
			return err
		}
		if err := ensureSelfPeer(ctx, tx, a, now); err != nil {
			return err
		}
		for id, n := range l.payload.GetDeviceNames() {
			if err := setDeviceName(ctx, tx, id, n, now); err != nil {
				return err
			}
		}
		if err := setDeviceName(ctx, tx, a.DeviceID, name, now); err != nil {
			return err
		}
		for _, lc := range l.contacts {
			enc, err := lc.list.Marshal()
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO peers (username, account_key, device_list, version, updated_ms) VALUES (?, ?, ?, ?, ?)`,
				lc.c.GetUsername(), lc.key.Bytes(), enc, lc.list.List.Version, now.UnixMilli()); err != nil {
				return &localError{err}
			}
		}
		if err := importTrust(ctx, tx, l, now); err != nil {
			return err
		}
		if err := storeLinkedGroups(ctx, tx, a.Username, l.groups, now); err != nil {
			return err
		}
		for _, m := range l.payload.GetHistory() {
			state := 1 // handed over (incoming) or stored (outgoing)
			var author any
			if isGroupConv(m.GetPeer()) && !m.GetOutgoing() {
				author = m.GetFrom()
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO history (peer, outgoing, message_id, device, sent_ms, received_ms, body, state, author)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, m.GetPeer(), m.GetOutgoing(), m.GetMessageId(), m.GetDevice(),
				m.GetSentMs(), m.GetReceivedMs(), m.GetText(), state, author); err != nil {
				return &localError{err}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.acct = a
	c.mu.Unlock()
	// The first upload carries the signed and last-resort keys; a plain
	// connection's refill would only add one-time keys.
	var lastErr error
	for range 3 {
		cn, err := dial(ctx, c.http, serverURL, a, false)
		if err == nil {
			for _, up := range batch.uploads(a.Signing, a.Identity.Public()) {
				if _, err = cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_UploadPrekeys{UploadPrekeys: up}}); err != nil {
					break
				}
			}
			cn.close()
			if err == nil {
				return nil
			}
		}
		lastErr = err
		if !isTransient(err) {
			break
		}
	}
	return fmt.Errorf("linked as %s (device %d), but uploading its prekeys failed, so nobody can start a session with it: %w", a.Username, a.DeviceID, lastErr)
}

// ApproveLink adds the device that showed code to the account (primary
// only): it signs and publishes a list with the new device, sends it the
// account's public data, contacts and (with history) the conversations
// through the relay, and tells contacts and the own devices.
func (c *Client) ApproveLink(ctx context.Context, code string, history bool) (DeviceInfo, error) {
	a, err := c.account()
	if err != nil {
		return DeviceInfo{}, err
	}
	if !a.primary() {
		return DeviceInfo{}, fmt.Errorf("only the primary device can approve; this is device %d, a linked one", a.DeviceID)
	}
	lc, err := parseLinkCode(code)
	if err != nil {
		return DeviceInfo{}, err
	}
	cn, err := c.connection(ctx)
	if err != nil {
		return DeviceInfo{}, err
	}
	cur, err := c.fetchPeer(ctx, cn, a.Username)
	if err != nil {
		return DeviceInfo{}, err
	}
	for _, d := range cur.List.Devices {
		if d.SigningKey.Equal(lc.signing) || d.IdentityKey.Equal(lc.identity) {
			return DeviceInfo{}, fmt.Errorf("the device with this code is already linked (device %d)", d.ID)
		}
	}
	if len(cur.List.Devices) >= identity.MaxDevices {
		return DeviceInfo{}, fmt.Errorf("%s already has %d devices, the most an account can have; remove one first (hush devices remove ID)", a.Username, identity.MaxDevices)
	}
	dev := identity.Device{ID: nextDeviceID(&cur.List), SigningKey: lc.signing, IdentityKey: lc.identity}
	next := identity.DeviceList{Username: a.Username, Version: cur.List.Version + 1, Devices: withDevice(&cur.List, dev)}
	signed, err := c.publishOwnList(ctx, cn, a, next)
	if err != nil {
		return DeviceInfo{}, err
	}
	now := c.now()
	if err := setDeviceName(ctx, c.db, dev.ID, lc.name, now); err != nil {
		return DeviceInfo{}, err
	}
	payload, err := c.linkPayload(ctx, a, signed, dev.ID, history)
	if err == nil {
		var body []byte
		if body, err = sealLinkPayload(lc, payload); err == nil {
			_, err = cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_ProvisionSend{ProvisionSend: &wire.ProvisionSendRequest{
				Address: hex.EncodeToString(lc.address[:]), Body: body,
			}}})
		}
	}
	if err != nil {
		// The new device never got its account: take it out of the list
		// again rather than leave a device nobody holds.
		back := identity.DeviceList{Username: a.Username, Version: signed.List.Version + 1, Devices: cur.List.Devices}
		if _, rerr := c.publishOwnList(ctx, cn, a, back); rerr != nil {
			c.cfg.Warn(fmt.Errorf("device %d could not be removed again: %w; remove it with \"hush devices remove %d\"", dev.ID, rerr, dev.ID))
		}
		var se *ServerError
		if errors.As(err, &se) && se.Code == "no_such_address" {
			return DeviceInfo{}, errors.New("the new device is no longer waiting (its link code expired or hush link stopped); run hush link again for a new code")
		}
		return DeviceInfo{}, err
	}
	if err := c.awaitDevice(ctx, cn, a, signed, dev.ID); err != nil {
		c.cfg.Warn(fmt.Errorf("device %d has not uploaded its prekeys yet (%v); messages to it wait until it has", dev.ID, err))
	}
	if err := c.queueDeviceNotice(ctx, a, wire.DeviceNotice_ADDED, dev.ID, lc.name); err != nil {
		return DeviceInfo{}, err
	}
	if err := c.flushNotices(ctx); err != nil {
		return DeviceInfo{}, err
	}
	return DeviceInfo{ID: dev.ID, Name: lc.name, Added: now}, nil
}

// linkPayload gathers what a new device needs.
func (c *Client) linkPayload(ctx context.Context, a *account, list *identity.SignedDeviceList, id uint32, history bool) (*wire.LinkPayload, error) {
	enc, err := list.Marshal()
	if err != nil {
		return nil, err
	}
	p := &wire.LinkPayload{
		Username: a.Username, DeviceId: id, AccountKey: a.AccountPub.Bytes(), DeviceList: enc,
		ServerKey: a.ServerKey.Bytes(), DeviceNames: map[uint32]string{},
	}
	rs, err := c.db.QueryContext(ctx, `SELECT device_id, name FROM own_devices`)
	if err != nil {
		return nil, &localError{err}
	}
	for rs.Next() {
		var d uint32
		var n string
		if err := rs.Scan(&d, &n); err != nil {
			rs.Close()
			return nil, &localError{err}
		}
		if _, ok := list.List.Find(d); ok && n != "" {
			p.DeviceNames[d] = n
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	rs, err = c.db.QueryContext(ctx, `SELECT username, account_key, device_list FROM peers WHERE username != ? ORDER BY username`, a.Username)
	if err != nil {
		return nil, &localError{err}
	}
	for rs.Next() {
		lc := &wire.LinkedContact{}
		if err := rs.Scan(&lc.Username, &lc.AccountKey, &lc.DeviceList); err != nil {
			rs.Close()
			return nil, &localError{err}
		}
		p.Contacts = append(p.Contacts, lc)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	if err := c.exportTrust(ctx, p); err != nil {
		return nil, err
	}
	groups, size, err := c.linkGroups(ctx)
	if err != nil {
		return nil, err
	}
	p.Groups = groups
	if history {
		if p.History, err = c.linkHistory(ctx, a, maxLinkHistory-size, groups); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// linkHistory returns the newest conversation entries that fit in
// maxLinkHistory, oldest first. Queued and failed outgoing messages stay
// behind: they were never delivered. So do deleted messages and
// disappearing ones (which would outlive their timer on the new device;
// §12.3), and the messages of groups the payload does not carry (all of
// them are, unless their states outgrew maxLinkGroups).
func (c *Client) linkHistory(ctx context.Context, a *account, budget int, groups []*wire.LinkedGroup) ([]*wire.LinkedMessage, error) {
	carried := map[string]bool{}
	for _, g := range groups {
		if s, err := parseGroupState(g.GetStates()[0]); err == nil {
			carried[groupConv(s.id[:])] = true
		}
	}
	rs, err := c.db.QueryContext(ctx, `SELECT peer, outgoing, message_id, device, sent_ms, received_ms, body, author FROM history
		WHERE (outgoing = 0 OR state = ?) AND deleted = 0 AND expires_ms = 0 ORDER BY seq DESC`, stateStored)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []*wire.LinkedMessage
	size := 0
	for rs.Next() {
		m := &wire.LinkedMessage{}
		var author sql.NullString
		if err := rs.Scan(&m.Peer, &m.Outgoing, &m.MessageId, &m.Device, &m.SentMs, &m.ReceivedMs, &m.Text, &author); err != nil {
			return nil, &localError{err}
		}
		if isGroupConv(m.Peer) && (!carried[m.Peer] || !m.Outgoing && !author.Valid) {
			continue
		}
		m.From = m.Peer
		switch {
		case m.Outgoing:
			m.From = a.Username
		case isGroupConv(m.Peer):
			m.From = author.String
		}
		size += proto.Size(m) + 4
		if size > budget {
			break
		}
		out = append(out, m)
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// awaitDevice waits (bounded) until a just-linked own device has uploaded
// its prekeys and starts the session with it, so the notices that follow
// reach it at once.
func (c *Client) awaitDevice(ctx context.Context, cn *conn, a *account, list *identity.SignedDeviceList, id uint32) error {
	ctx, cancel := context.WithTimeout(ctx, awaitDeviceTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		r, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_GetPrekeys{GetPrekeys: &wire.GetPrekeysRequest{Username: a.Username, DeviceIds: []uint32{id}}}})
		if err != nil {
			return err
		}
		if raw := r.GetPrekeys().GetBundles(); len(raw) == 1 {
			b, err := identity.ParseBundle(raw[0])
			if err != nil {
				return fmt.Errorf("%w: %v", ErrBadBundle, err)
			}
			if b.Username != a.Username || b.DeviceID != id {
				return fmt.Errorf("%w: asked for %s/%d, got %s/%d", ErrBadBundle, a.Username, id, b.Username, b.DeviceID)
			}
			if err := b.VerifyAgainst(&list.List); err != nil {
				return fmt.Errorf("%w: %v", ErrBadBundle, err)
			}
			return inTx(ctx, c.db, func(tx *sql.Tx) error {
				rec, err := loadRecord(ctx, tx, a.Username, id)
				if err != nil {
					return err
				}
				d, _ := list.List.Find(id)
				if sessionMatches(rec, d) {
					return nil
				}
				rec = &ratchet.Record{}
				if err := rec.Initiate(a.Username, a.Identity, b); err != nil {
					return fmt.Errorf("%w: %v", ErrBadBundle, err)
				}
				return saveRecord(ctx, tx, a.Username, id, rec)
			})
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// exportTrust adds what the contacts table knows (client/contacts.go) and
// the account's delivery token to a payload. Blocked accounts whose keys
// this device never learned (blocked by name) go too: without them the
// new device would, on its first block, send the server a list lacking
// them (docs/protocol.md §9.11).
func (c *Client) exportTrust(ctx context.Context, p *wire.LinkPayload) error {
	listed := map[string]bool{}
	for _, lc := range p.Contacts {
		r, err := loadContact(ctx, c.db, lc.Username)
		if err != nil {
			return err
		}
		lc.Accepted = r.state == stateContact
		lc.Blocked = r.blocked == 1
		lc.Verified = r.verified == 1
		lc.DeliveryToken = bytes.Clone(r.token)
		listed[lc.Username] = true
	}
	blocked, err := blockedList(ctx, c.db)
	if err != nil {
		return err
	}
	for _, u := range blocked {
		if !listed[u] && u != p.Username {
			p.Blocked = append(p.Blocked, u)
		}
	}
	token, err := c.ownDeliveryToken(ctx)
	if err != nil {
		return err
	}
	p.DeliveryToken = token
	return nil
}

// importTrust stores a payload's contact states and delivery token.
func importTrust(ctx context.Context, tx *sql.Tx, l *linked, now time.Time) error {
	for _, lc := range l.contacts {
		state := stateStranger
		if lc.c.GetAccepted() {
			state = stateContact
		}
		var token []byte
		if len(lc.c.GetDeliveryToken()) == DeliveryTokenSize {
			token = lc.c.GetDeliveryToken()
		}
		if err := setContact(ctx, tx, lc.c.GetUsername(), now, `state = ?, blocked = ?, verified = ?, delivery_token = ?`,
			state, boolInt(lc.c.GetBlocked()), boolInt(lc.c.GetVerified()), token); err != nil {
			return err
		}
	}
	for _, u := range l.payload.GetBlocked() {
		if err := setContact(ctx, tx, u, now, `blocked = 1`); err != nil {
			return err
		}
	}
	if t := l.payload.GetDeliveryToken(); len(t) == DeliveryTokenSize {
		return storeDeliveryToken(ctx, tx, t)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
