package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// FuzzRegister posts arbitrary bodies to /v1/register on a server with a
// real SQLite store: every answer is a 200 RegisterResponse or a 4xx
// wire.Error; nothing panics and nothing is a 500.
func FuzzRegister(f *testing.F) {
	ts := startServer(f)
	for i, name := range []string{"fuzz1", "fuzz2"} {
		u := newUser(f, name, i+1)
		b, _ := proto.Marshal(u.registerRequest(f))
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x03, 'a', 'b', 'c'})
	h := ts.srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/register", bytes.NewReader(body))
		req.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusOK:
			if proto.Unmarshal(w.Body.Bytes(), &wire.RegisterResponse{}) != nil {
				t.Fatal("200 without a RegisterResponse")
			}
		case w.Code >= 400 && w.Code < 500:
			var e wire.Error
			if proto.Unmarshal(w.Body.Bytes(), &e) != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("%d without a wire.Error", w.Code)
			}
		default:
			t.Fatalf("status %d for %x", w.Code, body)
		}
	})
}

// FuzzCheckUpload feeds arbitrary PrekeyUpload encodings to the prekey
// verifier directly (faster than through a connection).
func FuzzCheckUpload(f *testing.F) {
	u := newUser(f, "fuzz", 2)
	b, _ := proto.Marshal(u.upload())
	f.Add(b)
	f.Add([]byte{})
	dk := deviceKeys{signing: u.dev.Signing.Public(), identity: u.dev.Identity.Public()}
	f.Fuzz(func(t *testing.T, data []byte) {
		var up wire.PrekeyUpload
		if proto.Unmarshal(data, &up) != nil {
			return
		}
		for _, base := range []bool{false, true} {
			out, err := checkUpload(dk, &up, base)
			if err != nil {
				if asAPIError(err).code != codeBadRequest {
					t.Fatalf("upload rejected with %v", err)
				}
				continue
			}
			if base && (out.SignedPrekey == nil || out.KEMLastResort == nil) {
				t.Fatal("base upload accepted without its base keys")
			}
		}
	})
}

// fuzzConn is an authenticated connection reused across fuzz inputs,
// redialled if an input got it closed. It is made without a testing.TB,
// since F methods may not run inside the fuzz function and a T's cleanup
// would close it after one input.
type fuzzConn struct {
	ts   *testServer
	u    *testUser
	conn *websocket.Conn
	id   uint64
}

func (fc *fuzzConn) get() (*websocket.Conn, error) {
	if fc.conn != nil {
		return fc.conn, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+fc.ts.addr+"/v1/ws", nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(maxFrameSize)
	ch, err := tryReadFrame(c)
	if err != nil {
		c.CloseNow()
		return nil, err
	}
	b, _ := proto.Marshal(fc.u.authFrame(ch.GetChallenge().GetNonce()))
	if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
		c.CloseNow()
		return nil, err
	}
	if r, err := tryReadFrame(c); err != nil || r.GetAuthOk() == nil {
		c.CloseNow()
		return nil, fmt.Errorf("fuzz connection: auth failed: %v %v", r, err)
	}
	fc.conn = c
	return c, nil
}

func (fc *fuzzConn) close() {
	if fc.conn != nil {
		fc.conn.CloseNow()
	}
}

// FuzzClientFrame sends arbitrary bytes as one frame on an authenticated
// connection to a real server with a real SQLite store, then a sentinel
// request. Every frame the server sends must decode, and the sentinel
// must be answered: a hostile frame gets an Error (or a reply), never a
// panic, a hang or a dropped connection.
func FuzzClientFrame(f *testing.F) {
	ts := startServer(f)
	u := newUser(f, "fuzzer", 3)
	ts.mustRegister(f, u)
	for _, cf := range []*wire.ClientFrame{
		{Id: 7, Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: "fuzzer"}}},
		{Id: 7, Body: &wire.ClientFrame_GetPrekeys{GetPrekeys: &wire.GetPrekeysRequest{Username: "fuzzer", DeviceIds: []uint32{1}}}},
		{Id: 7, Body: &wire.ClientFrame_UploadPrekeys{UploadPrekeys: u.upload()}},
		sendFrame([]byte("0123456789abcdef"), "fuzzer", []byte("ct")),
		{Id: 7, Body: &wire.ClientFrame_Ack{Ack: &wire.AckRequest{ServerIds: []uint64{1, 2, 3}}}},
		{Id: 7, Body: &wire.ClientFrame_UpdateDeviceList{UpdateDeviceList: &wire.UpdateDeviceListRequest{DeviceList: u.deviceList(f, 2)}}},
		{Id: 7, Body: &wire.ClientFrame_Auth{Auth: &wire.AuthResponse{Username: "fuzzer", DeviceId: 1}}},
		getCertFrame(),
		setTokenFrame(newToken()),
		setBlockedFrame("alice", "bob"),
		provisionFrame("0123456789abcdef0123456789abcdef", []byte("sealed payload")),
		resetFrame(u.dev.Account.Public(), u.deviceList(f, 3)),
		{},
	} {
		if cf.Id == 0 && cf.Body != nil {
			cf.Id = 7
		}
		b, _ := proto.Marshal(cf)
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff})
	fc := &fuzzConn{ts: ts, u: u, id: 1 << 40}
	f.Cleanup(fc.close)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > maxFrameSize {
			return
		}
		c, err := fc.get()
		if err != nil {
			t.Fatal(err)
		}
		fc.id++
		sentinel := &wire.ClientFrame{Id: fc.id, Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: "fuzzer"}}}
		writeRaw(t, c, frame)
		writeFrame(t, c, sentinel)
		for range 10_000 {
			r, err := tryReadFrame(c)
			if err != nil {
				fc.conn = nil
				t.Fatalf("connection lost after frame %x: %v", frame, err)
			}
			if r.Id == fc.id {
				if r.GetAccount() == nil {
					t.Fatalf("sentinel answered with %v", r)
				}
				return
			}
			if e := r.GetError(); e != nil && (e.Code == "" || e.Message == "" || e.Code == codeInternal) {
				t.Fatalf("bad error frame %v for %x", e, frame)
			}
		}
		t.Fatal("sentinel never answered")
	})
}

// FuzzAuthFrame sends arbitrary bytes as the answer to the challenge:
// the server must answer with an Error and close, never authenticate.
func FuzzAuthFrame(f *testing.F) {
	ts := startServer(f)
	u := newUser(f, "fuzzer", 0)
	ts.mustRegister(f, u)
	good, _ := proto.Marshal(u.authFrame(make([]byte, AuthNonceSize)))
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x00})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > maxFrameSize {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws://"+ts.addr+"/v1/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		readFrame(t, c)
		writeRaw(t, c, frame)
		r, err := tryReadFrame(c)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		if e := r.GetError(); e == nil || (e.Code != codeUnauthorized && e.Code != codeBadRequest) {
			t.Fatalf("answer %v to %x", r, frame)
		}
		if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("connection not closed after a failed auth: %v", err)
		}
	})
}

// fuzzHTTP serves one request to h and checks the answer.
func fuzzHTTP(t *testing.T, h http.Handler, req *http.Request, out proto.Message) {
	req.RemoteAddr = "192.0.2.1:1234"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	checkHTTPAnswer(t, w, out)
}

// checkHTTPAnswer checks an answer is a 200 with a reply of out's type or
// a 4xx wire.Error: never a panic, never a 500.
func checkHTTPAnswer(t *testing.T, w *httptest.ResponseRecorder, out proto.Message) {
	switch {
	case w.Code == http.StatusOK:
		if proto.Unmarshal(w.Body.Bytes(), out) != nil {
			t.Fatalf("200 without a %T", out)
		}
	case w.Code >= 400 && w.Code < 500:
		var e wire.Error
		if proto.Unmarshal(w.Body.Bytes(), &e) != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("%d without a wire.Error", w.Code)
		}
	default:
		t.Fatalf("status %d", w.Code)
	}
}

// FuzzSealedSend posts arbitrary bodies to /v1/sealed on a server with a
// real SQLite store and an account that has a delivery token.
func FuzzSealedSend(f *testing.F) {
	ts := startServer(f)
	u := newUser(f, "fuzzer", 0)
	ts.mustRegister(f, u)
	token := newToken()
	h := sha256.Sum256(token)
	if err := ts.srv.store.SetDeliveryTokenHash(f.Context(), "fuzzer", h[:]); err != nil {
		f.Fatal(err)
	}
	env := append([]byte{1}, make([]byte, 100)...)
	for _, r := range []*wire.SealedSendRequest{
		{MessageId: []byte("0123456789abcdef"), Recipient: "fuzzer", DeliveryToken: token, Copies: []*wire.Copy{{DeviceId: 1, Content: env}}},
		{MessageId: []byte("0123456789abcdef"), Recipient: "fuzzer", DeliveryToken: token, Copies: []*wire.Copy{{DeviceId: 2, Content: env}}},
		{MessageId: []byte("0123456789abcdef"), Recipient: "nobody", DeliveryToken: token},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte{})
	handler := ts.srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzHTTP(t, handler, httptest.NewRequest(http.MethodPost, "/v1/sealed", bytes.NewReader(body)), &wire.SendResponse{})
	})
}

// FuzzDeviceListPost posts arbitrary bodies to /v1/devicelist. The seeds
// include a valid restore, so the fuzzer starts from the deep path.
func FuzzDeviceListPost(f *testing.F) {
	ts := startServer(f)
	u := newUser(f, "fuzzer", 0)
	ts.mustRegister(f, u)
	fresh := newDeviceOf(f, u, 2, 1)
	for _, r := range []*wire.DeviceListUpdate{
		{Username: "fuzzer", DeviceList: listOf(f, 2, fresh), Prekeys: map[uint32]*wire.PrekeyUpload{2: fresh.upload()}},
		{Username: "fuzzer", DeviceList: listOf(f, 3, u, fresh), Prekeys: map[uint32]*wire.PrekeyUpload{2: fresh.upload()}},
		{Username: "fuzzer", DeviceList: listOf(f, 4, u)},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte{})
	handler := ts.srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		fuzzHTTP(t, handler, httptest.NewRequest(http.MethodPost, "/v1/devicelist", bytes.NewReader(body)), &wire.AccountResponse{})
	})
}

// FuzzAccountLookup asks GET /v1/account/{username} for arbitrary names.
func FuzzAccountLookup(f *testing.F) {
	ts := startServer(f)
	ts.mustRegister(f, newUser(f, "fuzzer", 0))
	for _, s := range []string{"fuzzer", "FUZZER", "nobody", "", "a/b", "%ff", "..", strings.Repeat("x", 100)} {
		f.Add(s)
	}
	handler := ts.srv.Handler()
	f.Fuzz(func(t *testing.T, name string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = &url.URL{Path: "/v1/account/" + name}
		req.RemoteAddr = "192.0.2.1:1234"
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		// A name with a slash or dots may be redirected or not match the
		// route; the router answers those, not the handler.
		if w.Code >= 300 && w.Code < 400 || w.Header().Get("Content-Type") != protobufType {
			return
		}
		checkHTTPAnswer(t, w, &wire.AccountResponse{})
	})
}
