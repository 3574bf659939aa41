package client

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// impostorDevice is a device the server would like to slip into a list.
func impostorDevice(t *testing.T, id uint32) identity.Device {
	t.Helper()
	sk, err := keys.GenerateDeviceSigning()
	if err != nil {
		t.Fatal(err)
	}
	ik, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return identity.Device{ID: id, SigningKey: sk.Public(), IdentityKey: ik.Public()}
}

// serveList makes the proxy answer every get_account for user with enc.
func serveList(m *mitm, user string, enc []byte) {
	m.set(func(f *wire.ServerFrame) [][]byte {
		if a := f.GetAccount(); a != nil && a.Username == user {
			a.DeviceList = enc
		}
		return raw(f)
	})
}

// forget makes c fetch user's list again, as a new process would.
func forget(c *Client, user string) {
	c.mu.Lock()
	delete(c.fresh, user)
	c.mu.Unlock()
}

func TestHostileServerDeviceListsRefused(t *testing.T) {
	srv, m, alice, bob := hostileSetup(t)
	befriend(t, alice, "alice", bob, "bob")
	bobAcct, _ := bob.account()
	v1 := bobAcct.DeviceList
	v1enc, _ := v1.Marshal()
	bob2 := linkDevice(t, m.URL, bob, "Phone", true)
	events(t, alice)
	mustSend(t, alice, "bob", "v2 is known now")
	events(t, bob)
	events(t, bob2)
	v2, err := bob.knownPeer(ctxT(t), "bob")
	if err != nil || v2.List.Version != 2 {
		t.Fatalf("bob's own list: %v %v", v2, err)
	}

	// An extra device appended to the real, signed list.
	withExtra := *v2
	withExtra.List.Devices = append(append([]identity.Device(nil), v2.List.Devices...), impostorDevice(t, 3))
	extraEnc, err := withExtra.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// A bad signature on the real list.
	badSig, _ := v2.Marshal()
	badSig[len(badSig)-1] ^= 1
	// The same version, signed by bob's real key, with other contents.
	eq := v2.List
	eq.Devices = []identity.Device{eq.Devices[0], impostorDevice(t, 2)}
	eqSigned, err := identity.SignDeviceList(eq, bobAcct.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	eqEnc, _ := eqSigned.Marshal()

	for _, tc := range []struct {
		name string
		list []byte
		why  string
	}{
		{"extra unsigned device", extraEnc, "its signature does not verify"},
		{"bad signature", badSig, "its signature does not verify"},
		{"older version", v1enc, "older than one already accepted"},
		{"same version, other devices", eqEnc, "differs from one already accepted under the same version"},
	} {
		serveList(m, "bob", tc.list)
		forget(alice, "bob")
		_, err := alice.Send(ctxT(t), "bob", "must not go out")
		var dl *DeviceListError
		if !errors.As(err, &dl) || dl.Username != "bob" || !errors.Is(err, ErrBadDeviceList) ||
			!strings.HasPrefix(err.Error(), "device list of bob refused: ") || !strings.Contains(err.Error(), tc.why) {
			t.Fatalf("%s: send returned %v", tc.name, err)
		}
		if n := count(t, alice, `SELECT COUNT(*) FROM sessions WHERE peer = 'bob' AND device NOT IN (1, 2)`); n != 0 {
			t.Fatalf("%s: a session with an unlisted device of bob", tc.name)
		}
		// The list alice accepted stays the real one.
		if l, _ := alice.knownPeer(ctxT(t), "bob"); l.List.Version != 2 || len(l.List.Devices) != 2 {
			t.Fatalf("%s: alice's stored list of bob changed to %+v", tc.name, l.List)
		}
	}
	m.set(nil)
	if got := events(t, bob); len(got) != 0 {
		t.Fatalf("bob got %q from refused sends", got)
	}
	_ = srv
}

func TestHostileServerListRefusedAfterDeviceNotice(t *testing.T) {
	_, m, alice, bob := hostileSetup(t)
	befriend(t, alice, "alice", bob, "bob")
	var mu sync.Mutex
	var warnings []string
	alice.cfg.Warn = func(err error) {
		mu.Lock()
		warnings = append(warnings, err.Error())
		mu.Unlock()
	}
	// Bob really adds a device; the server then shows alice a list with
	// one more, unsigned, when she refetches after the notice.
	linkDevice(t, m.URL, bob, "Phone", true)
	bobList, _ := bob.knownPeer(ctxT(t), "bob")
	forged := *bobList
	forged.List.Devices = append(append([]identity.Device(nil), bobList.List.Devices...), impostorDevice(t, 3))
	enc, _ := forged.Marshal()
	serveList(m, "bob", enc)
	want(t, "alice", events(t, alice), "device bob added 2 (Phone)")
	mu.Lock()
	ws := strings.Join(warnings, "\n")
	mu.Unlock()
	if !strings.Contains(ws, "device list of bob refused: its signature does not verify") {
		t.Fatalf("alice was not told the list was refused: %q", ws)
	}
}

func TestHostileServerClaimsAnUnlistedDevice(t *testing.T) {
	// A first message goes out authenticated over the WebSocket, where the
	// hostile server answers it.
	_, m, alice, _ := hostileSetup(t)
	// Every send is answered "bob also has device 7": the client refetches
	// the signed list, which has no device 7, and never encrypts to it.
	m.set(func(f *wire.ServerFrame) [][]byte {
		if s := f.GetSent(); s != nil && s.Stored {
			s.Stored, s.MissingDevices = false, []uint32{7}
		}
		return raw(f)
	})
	_, err := alice.Send(ctxT(t), "bob", "to device 7?")
	if err == nil || !strings.Contains(err.Error(), "kept changing") {
		t.Fatalf("send: %v", err)
	}
	if n := count(t, alice, `SELECT COUNT(*) FROM sessions WHERE peer = 'bob' AND device = 7`); n != 0 {
		t.Fatal("a session with the unlisted device 7")
	}
}

func TestHostileLinkPayloadWithoutTheCodesSecretRefused(t *testing.T) {
	srv := startServer(t)
	mallory := newUser(t, srv.URL, "mallory")
	ma, _ := mallory.account()
	for _, tc := range []struct {
		name string
		// payload builds what mallory relays to the device that showed code.
		seal func(code *linkCode) []byte
		why  string
	}{
		{"sealed without the secret", func(code *linkCode) []byte {
			wrong := *code
			rand.Read(wrong.secret[:])
			body, err := sealLinkPayload(&wrong, malloryPayload(t, ma, code, true))
			if err != nil {
				t.Fatal(err)
			}
			return body
		}, "does not open with this link code's secret"},
		{"list without the device", func(code *linkCode) []byte {
			body, err := sealLinkPayload(code, malloryPayload(t, ma, code, false))
			if err != nil {
				t.Fatal(err)
			}
			return body
		}, "does not list this device's keys"},
		{"garbage", func(*linkCode) []byte { return []byte{1, 2, 3} }, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh := newHome(t, "victim")
			codes := make(chan string, 1)
			done := make(chan error, 1)
			go func() {
				_, err := fresh.Link(ctxT(t), srv.URL, "victim", func(code string) error { codes <- code; return nil })
				done <- err
			}()
			code, err := parseLinkCode(<-codes)
			if err != nil {
				t.Fatal(err)
			}
			cn, err := mallory.connection(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cn.request(ctxT(t), &wire.ClientFrame{Body: &wire.ClientFrame_ProvisionSend{ProvisionSend: &wire.ProvisionSendRequest{
				Address: hex.EncodeToString(code.address[:]), Body: tc.seal(code),
			}}}); err != nil {
				t.Fatal(err)
			}
			err = <-done
			if !errors.Is(err, ErrLinkPayload) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("link accepted or failed otherwise: %v", err)
			}
			if _, err := fresh.Info(); !errors.Is(err, ErrNoAccount) {
				t.Fatalf("the home has an account after a refused payload: %v", err)
			}
		})
	}
}

// malloryPayload is a well-formed payload for mallory's account, listing
// the linking device (or not).
func malloryPayload(t *testing.T, ma *account, code *linkCode, includeDevice bool) *wire.LinkPayload {
	t.Helper()
	l := identity.DeviceList{Username: ma.Username, Version: 2, Devices: ma.DeviceList.List.Devices}
	dev := identity.Device{ID: 2, SigningKey: code.signing, IdentityKey: code.identity}
	if !includeDevice {
		dev = impostorDevice(t, 2)
	}
	l.Devices = withDevice(&l, dev)
	signed, err := identity.SignDeviceList(l, ma.AccountKey)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := signed.Marshal()
	return &wire.LinkPayload{Username: ma.Username, DeviceId: 2, AccountKey: ma.AccountPub.Bytes(), DeviceList: enc, ServerKey: ma.ServerKey.Bytes()}
}
