package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/store/sqlite"
	"github.com/hush-chat/hush/wire"
)

func TestHealthAndReadiness(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "own.db"))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config) { c.Store = db })
	if s, _ := ts.get(t, "/healthz"); s != http.StatusOK {
		t.Fatalf("/healthz: %d", s)
	}
	if s, _ := ts.get(t, "/readyz"); s != http.StatusOK {
		t.Fatalf("/readyz with a working store: %d", s)
	}
	db.Close()
	if s, _ := ts.get(t, "/readyz"); s != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with a closed store: %d, want 503", s)
	}
	if s, _ := ts.get(t, "/healthz"); s != http.StatusOK {
		t.Fatalf("/healthz must not depend on the store: %d", s)
	}
}

func TestMetrics(t *testing.T) {
	ts := startServer(t)
	_, bob, ac := pair(t, ts)
	ac.send(t, "bob", []byte("x"))
	wantError(t, ac.do(t, sendFrame(newMessageID(), "carol", []byte("x"))), codeNoUser)
	bc := ts.dial(t, bob)
	bc.ack(t, bc.backlog(t)...)

	s, body := ts.get(t, "/metrics")
	if s != http.StatusOK {
		t.Fatalf("/metrics: %d", s)
	}
	for _, want := range []string{
		"hush_websocket_connections 2",
		"hush_messages_stored_total 1",
		"hush_messages_delivered_total 1",
		"hush_messages_acked_total 1",
		`hush_requests_total{code="ok",type="send"} 1`,
		`hush_requests_total{code="no_user",type="send"} 1`,
		`hush_registrations_total{code="ok"} 2`,
		`hush_request_duration_seconds_count{type="send"} 2`,
		"go_goroutines",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestShutdownClosesWebSocketsGoingAway(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	ac.backlog(t)
	unauth := ts.dialRaw(t)
	readFrame(t, unauth)

	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	<-ac.done
	if got := websocket.CloseStatus(ac.readErr); got != websocket.StatusGoingAway {
		t.Fatalf("authenticated connection closed with %v, want going away", ac.readErr)
	}
	wantClosed(t, unauth, websocket.StatusGoingAway)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(ShutdownTimeout):
		t.Fatal("shutdown took longer than its bound")
	}
	if _, err := http.Get(ts.url("/healthz")); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestListenAndServeLogsBoundAddress(t *testing.T) {
	logs := &syncBuffer{}
	srv, err := New(Config{
		Listen:  "127.0.0.1:0",
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	var addr string
	eventually(t, "the listening line is logged", func() bool {
		sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
		for sc.Scan() {
			var line struct{ Msg, Addr, Level string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				if line.Level != "INFO" {
					t.Fatalf("listening logged at %s", line.Level)
				}
				addr = line.Addr
				return true
			}
		}
		return false
	})
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("logged %q, not the bound port", addr)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(logs.Bytes(), []byte(`"msg":"listening"`)); n != 1 {
		t.Fatalf("listening logged %d times", n)
	}
}

func TestDataDirAndServerKeyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ts := startServerIn(t, dir)
	key := ts.srv.ServerKey()
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, serverKeyFile): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	srv, err := New(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !srv.ServerKey().Equal(key) {
		t.Fatal("server key not loaded from the data directory")
	}

	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, serverKeyFile), []byte("garbage"), 0o600)
	if _, err := New(Config{DataDir: bad}); err == nil {
		t.Fatal("a corrupt server key was accepted (or replaced)")
	}
	if b, _ := os.ReadFile(filepath.Join(bad, serverKeyFile)); string(b) != "garbage" {
		t.Fatal("a corrupt server key was overwritten")
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no data dir":       {},
		"cert without key":  {DataDir: t.TempDir(), TLSCert: "x.pem"},
		"missing cert file": {DataDir: t.TempDir(), TLSCert: "/nonexistent/c.pem", TLSKey: "/nonexistent/k.pem"},
		"pow bits too high": {DataDir: t.TempDir(), PowBits: 99},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	ts := startServer(t, func(c *Config) { c.TLSCert, c.TLSKey = certFile, keyFile })

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + ts.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("https /healthz: %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + ts.addr + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("plain HTTP served on a TLS server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+ts.addr+"/v1/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if readFrame(t, c).GetChallenge() == nil {
		t.Fatal("no challenge over WSS")
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// TestLogsHoldNoContentOrKeys sends distinctive content and checks that
// neither it nor any key or signature reaches the log (at Debug level,
// where every request is logged).
func TestLogsHoldNoContentOrKeys(t *testing.T) {
	ts := startServer(t)
	alice, bob, ac := pair(t, ts)
	canary := []byte("CANARY-7f3a9c-content-never-logged")
	ac.send(t, "bob", canary)
	ac.do(t, sendFrame(newMessageID(), "bob", append(canary, make([]byte, MaxContentSize)...)))
	bc := ts.dial(t, bob)
	bc.ack(t, bc.backlog(t)...)
	fetchBundle(t, ac, bob)
	ac.do(t, updateList(bob.deviceList(t, 5))) // refused: not alice's list
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	logs := ts.logs.Bytes()
	if !bytes.Contains(logs, []byte(`"type":"send"`)) {
		t.Fatal("requests were not logged at all; the test proves nothing")
	}
	secrets := map[string][]byte{"content": canary}
	for _, u := range []*testUser{alice, bob} {
		list, _ := identity.ParseSignedDeviceList(u.deviceList(t, 1))
		secrets[u.name+" signing key"] = u.dev.Signing.Public().Raw()
		secrets[u.name+" identity key"] = u.dev.Identity.Public().Bytes()[1:]
		secrets[u.name+" account key"] = u.dev.Account.Public().Raw()
		secrets[u.name+" list signature"] = list.Signature
	}
	for what, s := range secrets {
		for _, form := range encodings(s) {
			if bytes.Contains(logs, form) {
				t.Errorf("log contains %s", what)
			}
		}
	}
}

// encodings are the forms a byte string could take in a log line.
func encodings(b []byte) [][]byte {
	var out [][]byte
	out = append(out, b)
	for _, enc := range []func([]byte) string{
		func(b []byte) string { s, _ := json.Marshal(b); return strings.Trim(string(s), `"`) }, // base64
		func(b []byte) string { return strings.ToLower(hexOf(b)) },
	} {
		s := enc(b)
		if len(s) > 24 {
			s = s[:24]
		}
		out = append(out, []byte(s))
	}
	return out
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}

func TestUpdateDeviceList(t *testing.T) {
	ts := startServer(t)
	alice, _, ac := pair(t, ts)
	second := newUser(t, "alice", 0)
	two := []identity.Device{
		{ID: 1, SigningKey: alice.dev.Signing.Public(), IdentityKey: alice.dev.Identity.Public()},
		{ID: 2, SigningKey: second.dev.Signing.Public(), IdentityKey: second.dev.Identity.Public()},
	}
	r := ac.do(t, updateList(alice.deviceList(t, 2, two...)))
	if a := r.GetAccount(); a == nil || a.Username != "alice" || !bytes.Equal(a.DeviceList, alice.deviceList(t, 2, two...)) {
		t.Fatalf("update: %v", r)
	}
	// Re-reading gives the new list.
	got := ac.do(t, &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: "alice"}}}).GetAccount()
	l, err := identity.ParseSignedDeviceList(got.GetDeviceList())
	if err != nil || l.List.Version != 2 || len(l.List.Devices) != 2 {
		t.Fatalf("get_account after update: %v %v", got, err)
	}

	wantError(t, ac.do(t, updateList(alice.deviceList(t, 2, two[:1]...))), codeVersionConflict)
	wantError(t, ac.do(t, updateList(alice.deviceList(t, 1))), codeVersionConflict)
	forged := newUser(t, "alice", 0).deviceList(t, 9) // signed by another account key
	wantError(t, ac.do(t, updateList(forged)), codeBadRequest)
	wantError(t, ac.do(t, updateList([]byte{1, 2, 3})), codeBadRequest)
	changed := []identity.Device{two[0], {ID: 2, SigningKey: newUser(t, "x12", 0).dev.Signing.Public(), IdentityKey: second.dev.Identity.Public()}}
	wantError(t, ac.do(t, updateList(alice.deviceList(t, 3, changed...))), codeBadRequest)

	// Removing device 2 again: its queue goes with it, and a sync copy
	// for it is refused.
	if r := ac.do(t, updateList(alice.deviceList(t, 4, two[:1]...))); r.GetAccount() == nil {
		t.Fatalf("remove device: %v", r)
	}
	if r := ac.do(t, sendFrame(newMessageID(), "alice", []byte("x"), 2)).GetSent(); r == nil || r.Stored || len(r.ExtraDevices) != 1 {
		t.Fatalf("send to a removed device: %v", r)
	}
}

func TestUnknownAndInvalidFrames(t *testing.T) {
	ts := startServer(t)
	_, _, ac := pair(t, ts)
	wantError(t, ac.do(t, &wire.ClientFrame{}), codeBadRequest)
	// id 0 is reserved for pushes.
	writeFrame(t, ac.conn, &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: "bob"}}})
	select {
	case r := <-ac.replies:
		wantError(t, r, codeBadRequest)
	case <-time.After(waitFor):
		t.Fatal("no reply to id 0")
	}
	writeRaw(t, ac.conn, []byte("\xff\xff\xff"))
	select {
	case r := <-ac.replies:
		wantError(t, r, codeBadRequest)
	case <-time.After(waitFor):
		t.Fatal("no reply to garbage")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ac.conn.Write(ctx, websocket.MessageText, []byte("hello"))
	select {
	case r := <-ac.replies:
		wantError(t, r, codeBadRequest)
	case <-time.After(waitFor):
		t.Fatal("no reply to a text frame")
	}
	// Still usable.
	ac.send(t, "bob", []byte("after the garbage"))
}

func TestRemovedDeviceIsDisconnected(t *testing.T) {
	ts := startServer(t)
	alice := newUser(t, "alice", 1)
	ts.mustRegister(t, alice)
	second := newUser(t, "alice", 0)
	second.dev.ID = 2
	one := identity.Device{ID: 1, SigningKey: alice.dev.Signing.Public(), IdentityKey: alice.dev.Identity.Public()}
	two := identity.Device{ID: 2, SigningKey: second.dev.Signing.Public(), IdentityKey: second.dev.Identity.Public()}
	c1 := ts.dial(t, alice)
	if r := c1.do(t, updateList(alice.deviceList(t, 2, one, two))); r.GetAccount() == nil {
		t.Fatal(r)
	}
	c2 := ts.dial(t, second)
	// Device 1 removes device 2: device 2's connection ends.
	if r := c1.do(t, updateList(alice.deviceList(t, 3, one))); r.GetAccount() == nil {
		t.Fatal(r)
	}
	<-c2.done
	if websocket.CloseStatus(c2.readErr) != websocket.StatusPolicyViolation {
		t.Fatalf("removed device's connection ended with %v", c2.readErr)
	}
	// Device 1 removes itself (with device 2 back): it gets the reply,
	// then its connection ends.
	if r := c1.do(t, updateList(alice.deviceList(t, 4, two))); r.GetAccount() == nil {
		t.Fatal(r)
	}
	<-c1.done
	if websocket.CloseStatus(c1.readErr) != websocket.StatusPolicyViolation {
		t.Fatalf("self-removed device's connection ended with %v", c1.readErr)
	}
	// And it can no longer authenticate.
	c := ts.dialRaw(t)
	writeFrame(t, c, alice.authFrame(readFrame(t, c).GetChallenge().GetNonce()))
	wantError(t, readFrame(t, c), codeUnauthorized)
}

func TestAuthDeadline(t *testing.T) {
	ts := startServer(t, serverOpt(func(s *Server) { s.authTimeout = 100 * time.Millisecond }))
	c := ts.dialRaw(t)
	readFrame(t, c)
	// Say nothing: the server must hang up on its own.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("silent client not disconnected: %v", err)
	}
}
