package client

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v4"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/wire"
)

// startServerTURN starts a server with its TURN relay on a loopback port,
// allowed to relay to loopback peers (tests run everything on 127.0.0.1).
func startServerTURN(t testing.TB) (url string, srv *server.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err = server.New(server.Config{
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limits:  server.Unlimited(),
		TURN:    server.TURNConfig{Listen: "127.0.0.1:0", AllowPrivate: true},
	})
	if err != nil {
		ln.Close()
		t.Fatalf("server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	return "http://" + ln.Addr().String(), srv
}

// TestTURNCredentialsAllocateAndRelay gets credentials as a registered
// device and uses them with pion's TURN client: the allocation succeeds and
// a datagram sent through it reaches a loopback peer from the relayed
// address.
func TestTURNCredentialsAllocateAndRelay(t *testing.T) {
	url, srv := startServerTURN(t)
	alice := newUser(t, url, "alice")
	cred, err := alice.TURNCredentials(ctxT(t))
	if err != nil {
		t.Fatalf("TURNCredentials: %v", err)
	}
	addr := srv.TURNAddr().String()
	want := []string{"turn:" + addr + "?transport=udp", "turn:" + addr + "?transport=tcp"}
	if strings.Join(cred.URLs, " ") != strings.Join(want, " ") {
		t.Fatalf("URLs = %q, want %q", cred.URLs, want)
	}
	if ttl := time.Until(cred.Expires); ttl <= 0 || ttl > server.DefaultTURNTTL+time.Second {
		t.Errorf("credentials expire in %v, want within %v", ttl, server.DefaultTURNTTL)
	}
	if strings.Contains(cred.Username, "alice") || strings.Contains(cred.String(), cred.Credential) {
		t.Errorf("username %q names the account, or String leaks the credential", cred.Username)
	}

	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: addr, STUNServerAddr: addr, Conn: conn,
		Username: cred.Username, Password: cred.Credential,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := tc.Allocate()
	if err != nil {
		t.Fatalf("allocate with issued credentials: %v", err)
	}
	defer relay.Close()

	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	msg := []byte("through the relay")
	// The first write creates the permission; bounded retries cover the
	// permission's round trip.
	got := make([]byte, 64)
	for range 50 {
		if _, err := relay.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatalf("write through relay: %v", err)
		}
		peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := peer.ReadFrom(got)
		if err != nil {
			continue
		}
		if !bytes.Equal(got[:n], msg) {
			t.Fatalf("peer got %q, want %q", got[:n], msg)
		}
		if from.(*net.UDPAddr).Port != relay.LocalAddr().(*net.UDPAddr).Port {
			t.Fatalf("datagram came from %v, not the relayed address %v", from, relay.LocalAddr())
		}
		return
	}
	t.Fatal("the peer never received the relayed datagram")
}

// TestTURNCredentialsNoRelay: a server without a relay answers ErrNoTURN.
func TestTURNCredentialsNoRelay(t *testing.T) {
	ts := startServer(t)
	alice := newUser(t, ts.URL, "alice")
	if _, err := alice.TURNCredentials(ctxT(t)); !errors.Is(err, ErrNoTURN) {
		t.Fatalf("TURNCredentials without a relay: %v, want ErrNoTURN", err)
	}
}

func TestParseTURNCredentials(t *testing.T) {
	good := func() *wire.TurnCredentials {
		return &wire.TurnCredentials{
			Urls:       []string{"turn:127.0.0.1:3478?transport=udp", "turn:[::1]:3478?transport=tcp", "turns:turn.example.org:443"},
			Username:   "1700000000:abcDEF-_",
			Credential: "c2VjcmV0Cg==",
			ExpiresMs:  1700000000000,
		}
	}
	if _, err := parseTURNCredentials(good()); err != nil {
		t.Fatalf("good credentials refused: %v", err)
	}
	for name, mut := range map[string]func(*wire.TurnCredentials){
		"no URLs":         func(w *wire.TurnCredentials) { w.Urls = nil },
		"http URL":        func(w *wire.TurnCredentials) { w.Urls = []string{"http://127.0.0.1:3478"} },
		"stun URL":        func(w *wire.TurnCredentials) { w.Urls = []string{"stun:127.0.0.1:3478"} },
		"no port":         func(w *wire.TurnCredentials) { w.Urls = []string{"turn:127.0.0.1"} },
		"port 0":          func(w *wire.TurnCredentials) { w.Urls = []string{"turn:127.0.0.1:0"} },
		"odd query":       func(w *wire.TurnCredentials) { w.Urls = []string{"turn:127.0.0.1:3478?transport=sctp"} },
		"bad host":        func(w *wire.TurnCredentials) { w.Urls = []string{"turn:a_b:3478"} },
		"empty username":  func(w *wire.TurnCredentials) { w.Username = "" },
		"space in secret": func(w *wire.TurnCredentials) { w.Credential = "a b" },
		"no expiry":       func(w *wire.TurnCredentials) { w.ExpiresMs = 0 },
		"too many URLs": func(w *wire.TurnCredentials) {
			w.Urls = strings.Split(strings.Repeat("turn:h:1 ", maxTURNURLs+1), " ")[:maxTURNURLs+1]
		},
	} {
		w := good()
		mut(w)
		if _, err := parseTURNCredentials(w); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
	if _, err := parseTURNCredentials(nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("missing credentials: %v, want ErrProtocol", err)
	}
}

// FuzzParseTURNCredentials: whatever the server sends, parsing returns
// credentials or ErrProtocol, and accepted URLs are turn: or turns:.
func FuzzParseTURNCredentials(f *testing.F) {
	seed, _ := proto.Marshal(&wire.TurnCredentials{Urls: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "1:a", Credential: "x", ExpiresMs: 1})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var w wire.TurnCredentials
		if proto.Unmarshal(b, &w) != nil {
			return
		}
		c, err := parseTURNCredentials(&w)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		for _, u := range c.URLs {
			if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				t.Fatalf("accepted URL %q", u)
			}
		}
	})
}
