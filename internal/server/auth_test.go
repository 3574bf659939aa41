package server

import (
	"context"
	"errors"
	"testing"

	"github.com/coder/websocket"

	"github.com/hush-chat/hush/wire"
)

// wantClosed checks the server closed the connection with the code.
func wantClosed(t *testing.T, c *websocket.Conn, code websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != code {
		t.Fatalf("connection ended with %v (status %d), want status %d", err, got, code)
	}
}

func TestAuthFailures(t *testing.T) {
	ts := startServer(t)
	alice := newUser(t, "alice", 1)
	ts.mustRegister(t, alice)
	mallory := newUser(t, "alice", 1) // same name, other keys

	for _, tc := range []struct {
		name  string
		frame func(nonce []byte) *wire.ClientFrame
		code  string
	}{
		{"signature by another key", mallory.authFrame, codeUnauthorized},
		{"signature over another nonce", func(nonce []byte) *wire.ClientFrame {
			return alice.authFrame(make([]byte, AuthNonceSize))
		}, codeUnauthorized},
		{"unknown device", func(nonce []byte) *wire.ClientFrame {
			f := alice.authFrame(nonce)
			f.GetAuth().DeviceId = 2
			return f
		}, codeUnauthorized},
		{"unknown user", func(nonce []byte) *wire.ClientFrame {
			f := alice.authFrame(nonce)
			f.GetAuth().Username = "nobody1"
			return f
		}, codeUnauthorized},
		{"upper-case name", func(nonce []byte) *wire.ClientFrame {
			f := alice.authFrame(nonce)
			f.GetAuth().Username = "ALICE"
			return f
		}, codeUnauthorized},
		{"not an auth frame", func(nonce []byte) *wire.ClientFrame {
			return &wire.ClientFrame{Id: 1, Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: "alice"}}}
		}, codeUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dialRaw(t)
			nonce := readFrame(t, c).GetChallenge().GetNonce()
			writeFrame(t, c, tc.frame(nonce))
			wantError(t, readFrame(t, c), tc.code)
			wantClosed(t, c, websocket.StatusPolicyViolation)
		})
	}

	t.Run("garbage frame", func(t *testing.T) {
		c := ts.dialRaw(t)
		readFrame(t, c)
		writeRaw(t, c, []byte{0xff, 0x01})
		wantError(t, readFrame(t, c), codeBadRequest)
		wantClosed(t, c, websocket.StatusPolicyViolation)
	})

	t.Run("replayed signature", func(t *testing.T) {
		// A signature observed on one connection is useless on the next:
		// the nonce differs.
		c := ts.dialRaw(t)
		nonce := readFrame(t, c).GetChallenge().GetNonce()
		old := alice.authFrame(nonce)
		writeFrame(t, c, old)
		if readFrame(t, c).GetAuthOk() == nil {
			t.Fatal("valid auth refused")
		}
		c2 := ts.dialRaw(t)
		readFrame(t, c2)
		writeFrame(t, c2, old)
		wantError(t, readFrame(t, c2), codeUnauthorized)
	})
}

func TestAuthOKReportsPrekeyCounts(t *testing.T) {
	ts := startServer(t)
	u := newUser(t, "alice", 3)
	ts.mustRegister(t, u)
	c := ts.dial(t, u)
	pc := c.authOK.GetPrekeyCounts()
	if pc.GetOneTime() != 3 || pc.GetKemOneTime() != 3 || !pc.GetLow() {
		t.Fatalf("auth_ok counts %v, want 3/3 low", pc)
	}
	if c.authOK.ServerTimeMs == 0 {
		t.Fatal("auth_ok without server time")
	}
}

func TestSecondAuthIsRejected(t *testing.T) {
	ts := startServer(t)
	u := newUser(t, "alice", 1)
	ts.mustRegister(t, u)
	c := ts.dial(t, u)
	wantError(t, c.do(t, u.authFrame(make([]byte, AuthNonceSize))), codeBadRequest)
	// The connection still works.
	if c.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: "alice"}}}).GetAccount() == nil {
		t.Fatal("get_account after a rejected request failed")
	}
}

func TestClosedPeerDuringAuth(t *testing.T) {
	ts := startServer(t)
	c := ts.dialRaw(t)
	readFrame(t, c)
	c.Close(websocket.StatusNormalClosure, "")
	// The server must not hang on to it; a fresh connection still works.
	u := newUser(t, "alice", 1)
	ts.mustRegister(t, u)
	ts.dial(t, u).close()
	if err := ts.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
