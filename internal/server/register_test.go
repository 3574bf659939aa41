package server

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/server/pow"
	"github.com/hush-chat/hush/wire"
)

func TestRegisterRejects(t *testing.T) {
	ts := startServer(t)
	taken := newUser(t, "alice", 2)
	ts.mustRegister(t, taken)

	for _, tc := range []struct {
		name   string
		user   string
		mutate func(t *testing.T, u *testUser, r *wire.RegisterRequest)
		code   string
	}{
		{name: "too short", user: "ab", code: codeBadUsername},
		{name: "too long", user: "abcdefghijklmnopqrstuvwxyz0123456", code: codeBadUsername},
		{name: "bad character", user: "al-ice", code: codeBadUsername},
		{name: "reserved", user: "admin", code: codeBadUsername},
		{name: "taken", user: "alice", code: codeUsernameTaken},
		{name: "not lower-case", user: "carol", code: codeBadUsername, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Username = "Carol"
		}},
		{name: "taken in another case", user: "alice", code: codeBadUsername, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Username = "ALICE"
		}},
		{name: "bad account key", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.AccountKey = r.AccountKey[:10]
		}},
		{name: "device list signed by another key", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			other, _ := keys.GenerateAccount()
			r.AccountKey = other.Public().Bytes()
		}},
		{name: "device list signature flipped", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.DeviceList[len(r.DeviceList)-1] ^= 1
		}},
		{name: "device list for another name", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			u.name = "dave"
			r.DeviceList = u.deviceList(t, 1)
			u.name = "carol"
		}},
		{name: "device id not 1", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.DeviceList = u.deviceList(t, 1, identity.Device{ID: 2, SigningKey: u.dev.Signing.Public(), IdentityKey: u.dev.Identity.Public()})
		}},
		{name: "two devices", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			o := newUser(t, "carol", 0)
			r.DeviceList = u.deviceList(t, 1,
				identity.Device{ID: 1, SigningKey: u.dev.Signing.Public(), IdentityKey: u.dev.Identity.Public()},
				identity.Device{ID: 2, SigningKey: o.dev.Signing.Public(), IdentityKey: o.dev.Identity.Public()})
		}},
		{name: "no prekeys", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys = nil
		}},
		{name: "no signed prekey", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.SignedPrekey = nil
		}},
		{name: "no last-resort key", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.KemLastResort = nil
		}},
		{name: "bad signed prekey signature", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.SignedPrekey.Signature[0] ^= 1
		}},
		{name: "signed prekey signed for another id", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.SignedPrekey.Id++
		}},
		{name: "bad one-time KEM signature", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.KemOneTime[1].Signature[5] ^= 1
		}},
		{name: "bad last-resort signature", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.KemLastResort.Signature[63] ^= 1
		}},
		{name: "prekeys signed by another device", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys = newUser(t, "carol", 2).upload()
		}},
		{name: "one-time KEM key in the last-resort slot", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.KemLastResort = r.Prekeys.KemOneTime[0]
		}},
		{name: "malformed one-time key", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.OneTime[0].Key = r.Prekeys.OneTime[0].Key[1:]
		}},
		{name: "duplicate one-time id", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			r.Prekeys.OneTime[1].Id = r.Prekeys.OneTime[0].Id
		}},
		{name: "too many one-time keys", user: "carol", code: codeBadRequest, mutate: func(t *testing.T, u *testUser, r *wire.RegisterRequest) {
			for len(r.Prekeys.OneTime) <= MaxPrekeysUpload {
				r.Prekeys.OneTime = append(r.Prekeys.OneTime, r.Prekeys.OneTime[0])
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUser(t, tc.user, 2)
			if !isValidName(tc.user) {
				// The device list cannot even be signed for a bad name;
				// send a valid list for another name under the bad one.
				v := newUser(t, "valid", 2)
				r := v.registerRequest(t)
				r.Username = tc.user
				wantRegisterError(t, ts, r, tc.code)
				return
			}
			r := u.registerRequest(t)
			if tc.mutate != nil {
				tc.mutate(t, u, r)
			}
			wantRegisterError(t, ts, r, tc.code)
		})
	}
	// None of the rejected attempts created an account.
	c := ts.dial(t, taken)
	for _, name := range []string{"carol", "dave", "valid"} {
		wantError(t, c.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: name}}}), codeNoUser)
	}
}

func isValidName(u string) bool {
	n, err := identity.NormalizeUsername(u)
	return err == nil && n == u && !identity.IsReserved(u)
}

func wantRegisterError(t *testing.T, ts *testServer, r *wire.RegisterRequest, code string) {
	t.Helper()
	status, _, e := ts.register(t, r)
	if e == nil || e.Code != code {
		t.Fatalf("got %d %v, want error %q", status, e, code)
	}
	if status != httpStatus(code) {
		t.Fatalf("status %d for %s, want %d", status, code, httpStatus(code))
	}
	if e.Message == "" {
		t.Fatal("error without a message")
	}
}

func TestRegisterMalformedBodies(t *testing.T) {
	ts := startServer(t)
	status, _, e := ts.postRegister(t, []byte{0xff, 0xff, 0xff})
	if status != http.StatusBadRequest || e.Code != codeBadRequest {
		t.Fatalf("garbage body: %d %v", status, e)
	}
	status, _, e = ts.postRegister(t, bytes.Repeat([]byte{0}, maxRegisterBody+1))
	if status != http.StatusRequestEntityTooLarge || e.Code != codeTooLarge {
		t.Fatalf("oversized body: %d %v", status, e)
	}
	resp, err := http.Get(ts.url("/v1/register"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/register: %d", resp.StatusCode)
	}
}

func TestRegisterReturnsServerKey(t *testing.T) {
	ts := startServer(t)
	_, resp, e := ts.register(t, newUser(t, "alice", 1).registerRequest(t))
	if e != nil {
		t.Fatal(e)
	}
	if !bytes.Equal(resp.ServerKey, ts.srv.ServerKey().Bytes()) {
		t.Fatal("RegisterResponse.server_key is not the server's key")
	}
	status, b := ts.get(t, "/v1/info")
	var info wire.ServerInfo
	if status != http.StatusOK || proto.Unmarshal(b, &info) != nil {
		t.Fatalf("/v1/info: %d", status)
	}
	if !bytes.Equal(info.ServerKey, resp.ServerKey) || info.PowBits != 0 || info.Version == "" {
		t.Fatalf("/v1/info: %v", &info)
	}
}

// fetchPow gets a challenge from the server.
func fetchPow(t *testing.T, ts *testServer) *wire.PowChallenge {
	t.Helper()
	status, b := ts.get(t, "/v1/pow")
	var pc wire.PowChallenge
	if status != http.StatusOK || proto.Unmarshal(b, &pc) != nil {
		t.Fatalf("/v1/pow: %d", status)
	}
	return &pc
}

func TestRegisterProofOfWork(t *testing.T) {
	const bits = 10
	ts := startServer(t, func(c *Config) { c.PowBits = bits })
	u := newUser(t, "alice", 1)

	// No proof at all.
	wantRegisterError(t, ts, u.registerRequest(t), codeBadPow)

	pc := fetchPow(t, ts)
	if pc.Bits != bits || len(pc.Challenge) != pow.ChallengeSize {
		t.Fatalf("challenge: %d bits, %d bytes", pc.Bits, len(pc.Challenge))
	}
	r := u.registerRequest(t)
	r.PowChallenge = pc.Challenge
	// A nonce solved for another name does not count for this one.
	n, err := pow.Solve(context.Background(), pc.Challenge, "mallory", bits)
	if err != nil {
		t.Fatal(err)
	}
	for pow.Valid(pc.Challenge, "alice", n, bits) {
		n, _ = pow.Solve(context.Background(), pc.Challenge, "mallory"+string(rune('a'+n%26)), bits)
	}
	r.PowNonce = n
	wantRegisterError(t, ts, r, codeBadPow)

	if r.PowNonce, err = pow.Solve(context.Background(), pc.Challenge, "alice", bits); err != nil {
		t.Fatal(err)
	}
	if status, _, e := ts.register(t, r); e != nil {
		t.Fatalf("solved registration refused: %d %v", status, e)
	}
	// The same challenge cannot register a second name.
	b := newUser(t, "bob", 1)
	r2 := b.registerRequest(t)
	r2.PowChallenge = pc.Challenge
	r2.PowNonce, _ = pow.Solve(context.Background(), pc.Challenge, "bob", bits)
	wantRegisterError(t, ts, r2, codeBadPow)
}

func TestRegisterRateLimitPerIP(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.Limits.RegistrationsPerHour, c.Limits.RegistrationBurst = 1, 2
	})
	ts.mustRegister(t, newUser(t, "user1", 0))
	// A refused attempt that fails before the limit is not charged.
	wantRegisterError(t, ts, newUser(t, "user1", 0).registerRequest(t), codeUsernameTaken)
	ts.mustRegister(t, newUser(t, "user2", 0))
	wantRegisterError(t, ts, newUser(t, "user3", 0).registerRequest(t), codeRateLimited)
}
