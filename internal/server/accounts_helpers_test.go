package server

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// Helpers for accounts with several devices, and for the plain-HTTP
// endpoints that answer a protobuf or a wire.Error.

// entry is u's device as a device-list entry.
func (u *testUser) entry() identity.Device {
	return identity.Device{ID: u.dev.ID, SigningKey: u.dev.Signing.Public(), IdentityKey: u.dev.Identity.Public()}
}

// newDeviceOf makes another device of u's account: keys of its own, id
// as given, listed under u's account key.
func newDeviceOf(t testing.TB, u *testUser, id uint32, oneTime int) *testUser {
	t.Helper()
	d := newUser(t, u.name, oneTime)
	d.dev.ID = id
	d.dev.Account = u.dev.Account
	return d
}

// listOf signs (with devs[0]'s account key) a device list of devs.
func listOf(t testing.TB, version uint64, devs ...*testUser) []byte {
	t.Helper()
	var entries []identity.Device
	for _, d := range devs {
		entries = append(entries, d.entry())
	}
	slices.SortFunc(entries, func(a, b identity.Device) int { return int(a.ID) - int(b.ID) })
	return devs[0].deviceList(t, version, entries...)
}

// setList installs a device list through c's update_device_list.
func setList(t testing.TB, c *wsClient, list []byte) *wire.AccountResponse {
	t.Helper()
	r := c.do(t, updateList(list))
	if r.GetAccount() == nil {
		t.Fatalf("update_device_list: %v", r)
	}
	return r.GetAccount()
}

func newToken() []byte {
	b := make([]byte, DeliveryTokenSize)
	rand.Read(b)
	return b
}

func setTokenFrame(token []byte) *wire.ClientFrame {
	h := sha256.Sum256(token)
	return &wire.ClientFrame{Body: &wire.ClientFrame_SetDeliveryToken{SetDeliveryToken: &wire.SetDeliveryTokenRequest{TokenHash: h[:]}}}
}

// setToken makes a delivery token for c's account and returns it.
func setToken(t testing.TB, c *wsClient) []byte {
	t.Helper()
	token := newToken()
	if r := c.do(t, setTokenFrame(token)); r.GetOk() == nil {
		t.Fatalf("set_delivery_token: %v", r)
	}
	return token
}

// postBytes posts body to path. A 200 reply is decoded into out; any
// other status must carry a wire.Error, which is returned.
func (ts *testServer) postBytes(t testing.TB, path string, body []byte, out proto.Message) (int, *wire.Error) {
	t.Helper()
	r, err := http.Post(ts.url(path), protobufType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return decodeReply(t, r, out)
}

func (ts *testServer) postMsg(t testing.TB, path string, m, out proto.Message) (int, *wire.Error) {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return ts.postBytes(t, path, b, out)
}

func (ts *testServer) getMsg(t testing.TB, path string, out proto.Message) (int, *wire.Error) {
	t.Helper()
	r, err := http.Get(ts.url(path))
	if err != nil {
		t.Fatal(err)
	}
	return decodeReply(t, r, out)
}

func decodeReply(t testing.TB, r *http.Response, out proto.Message) (int, *wire.Error) {
	t.Helper()
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := r.Header.Get("Content-Type"); ct != protobufType {
		t.Fatalf("reply %d has Content-Type %q", r.StatusCode, ct)
	}
	if r.StatusCode == http.StatusOK {
		if err := proto.Unmarshal(b, out); err != nil {
			t.Fatalf("200 reply is not a %T: %v", out, err)
		}
		return r.StatusCode, nil
	}
	e := &wire.Error{}
	if err := proto.Unmarshal(b, e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("%d reply is not a wire.Error: %q", r.StatusCode, b)
	}
	return r.StatusCode, e
}

// wantHTTPError checks an HTTP reply was the error code with its status.
func wantHTTPError(t testing.TB, status int, e *wire.Error, code string) {
	t.Helper()
	if e == nil || e.Code != code || status != httpStatus(code) {
		t.Fatalf("got HTTP %d %v, want %d %q", status, e, httpStatus(code), code)
	}
}
