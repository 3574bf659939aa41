package turnrelay

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// startRelay runs a relay on a loopback port; edit changes the config.
func startRelay(t testing.TB, edit func(*Config)) *Relay {
	t.Helper()
	cfg := Config{Listen: "127.0.0.1:0", Secret: testSecret, AllowPrivate: true}
	if edit != nil {
		edit(&cfg)
	}
	r, err := Listen(cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func issue(t testing.TB, subject string, expires time.Time) Credentials {
	t.Helper()
	c, err := Issue(testSecret, subject, expires)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// turnClient is pion's TURN client talking to r over UDP or TCP.
func turnClient(t testing.TB, r *Relay, user, pass string, tcp bool) *turn.Client {
	t.Helper()
	addr := r.Addr().String()
	var conn net.PacketConn
	if tcp {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	} else {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	tc, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: addr, STUNServerAddr: addr, Conn: conn,
		Username: user, Password: pass,
		RTO: 100 * time.Millisecond, // bounds a refused request's retries
	})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close(); conn.Close() })
	if err := tc.Listen(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// udpPeer is a loopback UDP socket standing for a call's other side.
func udpPeer(t testing.TB) net.PacketConn {
	t.Helper()
	p, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// relayTo sends msg through relay to peer until the peer has it (the
// first sends wait for the permission), a bounded number of times.
func relayTo(t testing.TB, relay, peer net.PacketConn, msg []byte) {
	t.Helper()
	buf := make([]byte, 1500)
	for range 50 {
		if _, err := relay.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatalf("write through the relay: %v", err)
		}
		peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := peer.ReadFrom(buf)
		if err != nil {
			continue
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Fatalf("peer got %q, want %q", buf[:n], msg)
		}
		if from.String() != relay.LocalAddr().String() {
			t.Fatalf("datagram came from %v, not the relayed address %v", from, relay.LocalAddr())
		}
		return
	}
	t.Fatal("the peer never received the relayed datagram")
}

// TestUnauthenticatedAllocateRefused sends a bare Allocate request, as an
// open relay would accept it: the answer is 401 and nothing is allocated.
func TestUnauthenticatedAllocateRefused(t *testing.T) {
	r := startRelay(t, nil)
	conn, err := net.Dial("udp4", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := stun.Build(stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}},
		stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no answer to an unauthenticated Allocate: %v", err)
	}
	var resp stun.Message
	if err := stun.Decode(buf[:n], &resp); err != nil {
		t.Fatal(err)
	}
	var code stun.ErrorCodeAttribute
	if resp.Type.Class != stun.ClassErrorResponse || code.GetFrom(&resp) != nil || code.Code != stun.CodeUnauthorized {
		t.Fatalf("answer %v (%v), want a 401 error response", resp.Type, code)
	}
	if r.Allocations() != 0 {
		t.Fatalf("%d allocations after an unauthenticated request", r.Allocations())
	}
}

// TestRefusedCredentials: pion's client, which answers the 401 challenge,
// still gets no allocation with credentials the relay did not issue.
func TestRefusedCredentials(t *testing.T) {
	now := time.Now()
	valid := issue(t, "dev", now.Add(time.Minute))
	expired := issue(t, "dev", now.Add(-time.Second))
	other, err := Issue([]byte("another deployment's secret"), "dev", now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r := startRelay(t, nil)
	// Valid at issue, expired by the relay's clock.
	late := startRelay(t, func(c *Config) { c.Now = func() time.Time { return now.Add(2 * time.Minute) } })
	for _, tc := range []struct {
		name       string
		r          *Relay
		user, pass string
	}{
		{"no credentials", r, "", ""},
		{"username without expiry", r, "dev", valid.Password},
		{"expired", r, expired.Username, expired.Password},
		{"expired by the relay's clock", late, valid.Username, valid.Password},
		{"wrong password", r, valid.Username, "d3JvbmcgcGFzc3dvcmQ="},
		{"another secret", r, other.Username, other.Password},
		{"expiry changed", r, strings.Replace(valid.Username, ":", "9:", 1), valid.Password},
	} {
		for _, tcp := range []bool{false, true} {
			c := turnClient(t, tc.r, tc.user, tc.pass, tcp)
			if relay, err := c.Allocate(); err == nil {
				relay.Close()
				t.Errorf("%s (tcp %v): allocation made", tc.name, tcp)
			}
		}
		if n := tc.r.Allocations(); n != 0 {
			t.Errorf("%s: %d allocations", tc.name, n)
		}
	}
}

// TestRelayToLoopbackPeer: valid credentials allocate over UDP and over
// TCP, and with AllowPrivate a datagram reaches a loopback peer both ways.
func TestRelayToLoopbackPeer(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := startRelay(t, func(c *Config) { c.Registerer = reg })
	cred := issue(t, "dev", time.Now().Add(time.Minute))
	for _, tcp := range []bool{false, true} {
		c := turnClient(t, r, cred.Username, cred.Password, tcp)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate (tcp %v): %v", tcp, err)
		}
		defer relay.Close()
		if got := relay.LocalAddr().(*net.UDPAddr); !got.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("relayed address %v, want the public (here listen) IP", got)
		}
		peer := udpPeer(t)
		relayTo(t, relay, peer, []byte("to the peer"))
		// And back: the permission lets the peer's answer in.
		if _, err := peer.WriteTo([]byte("to the client"), relay.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		n, from, err := relay.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "to the client" || from.String() != peer.LocalAddr().String() {
			t.Fatalf("client got %q from %v (%v), want the peer's answer", buf[:n], from, err)
		}
	}
	if n := testutil.ToFloat64(r.m.allocationsTotal); n != 2 {
		t.Errorf("hush_turn_allocations_total = %v, want 2", n)
	}
	if n := testutil.ToFloat64(r.m.fromPeers); n < float64(2*len("to the client")) {
		t.Errorf("bytes from peers = %v, want at least %d", n, 2*len("to the client"))
	}
	if n, err := testutil.GatherAndCount(reg, "hush_turn_relayed_bytes_total"); err != nil || n != 2 {
		t.Errorf("registry has %d relayed-bytes series (%v), want 2", n, err)
	}
}

// TestPrivatePeerRefused: without AllowPrivate an allocation is made but
// no permission towards a loopback peer, and nothing reaches it.
func TestPrivatePeerRefused(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.AllowPrivate = false })
	cred := issue(t, "dev", time.Now().Add(time.Minute))
	for _, tcp := range []bool{false, true} {
		c := turnClient(t, r, cred.Username, cred.Password, tcp)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate (tcp %v): %v", tcp, err)
		}
		defer relay.Close()
		peer := udpPeer(t)
		if err := c.CreatePermission(peer.LocalAddr()); err == nil {
			t.Fatalf("permission to a loopback peer granted (tcp %v)", tcp)
		}
		relay.WriteTo([]byte("must not arrive"), peer.LocalAddr())
		peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := peer.ReadFrom(make([]byte, 100)); err == nil {
			t.Fatalf("the loopback peer received %d bytes", n)
		}
	}
	if n := testutil.ToFloat64(r.m.refused.WithLabelValues("peer_address")); n < 2 {
		t.Errorf("peer_address refusals = %v, want at least 2", n)
	}
}

// TestAllocationCaps: a subject gets MaxAllocsPerSubject live allocations,
// an address MaxAllocsPerIP; one more is refused until one is released.
func TestAllocationCaps(t *testing.T) {
	r := startRelay(t, func(c *Config) { c.MaxAllocsPerSubject = 2; c.MaxAllocsPerIP = 3 })
	exp := time.Now().Add(time.Minute)
	a, b := issue(t, "devA", exp), issue(t, "devB", exp)
	allocate := func(cred Credentials) (net.PacketConn, error) {
		return turnClient(t, r, cred.Username, cred.Password, false).Allocate()
	}
	a1, err := allocate(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(a); err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(a); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("third allocation of one subject: %v, want 486 quota reached", err)
	}
	if _, err := allocate(b); err != nil {
		t.Fatalf("another subject: %v", err)
	}
	if _, err := allocate(b); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("fourth allocation from one IP: %v, want 486 quota reached", err)
	}
	// Releasing one frees a place for its subject and its address.
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := allocate(a); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"short secret":        {Listen: "127.0.0.1:0", Secret: []byte("short")},
		"unspecified no IP":   {Listen: "0.0.0.0:0", Secret: testSecret},
		"host name":           {Listen: "localhost:0", Secret: testSecret},
		"half a port range":   {Listen: "127.0.0.1:0", Secret: testSecret, MinPort: 50000},
		"reversed port range": {Listen: "127.0.0.1:0", Secret: testSecret, MinPort: 50001, MaxPort: 50000},
		"unspecified public":  {Listen: "127.0.0.1:0", Secret: testSecret, PublicIP: net.IPv4zero},
	} {
		if r, err := Listen(cfg); err == nil {
			r.Close()
			t.Errorf("%s: Listen succeeded", name)
		}
	}
	// A taken port is an error, not a silent other port.
	r := startRelay(t, nil)
	if r2, err := Listen(Config{Listen: r.Addr().String(), Secret: testSecret}); err == nil {
		r2.Close()
		t.Errorf("second relay on %v: no error", r.Addr())
	}
}

func TestPortRange(t *testing.T) {
	// A one-port range: the relayed port is that port.
	probe := udpPeer(t)
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	r := startRelay(t, func(c *Config) { c.MinPort, c.MaxPort = uint16(port), uint16(port) })
	cred := issue(t, "dev", time.Now().Add(time.Minute))
	relay, err := turnClient(t, r, cred.Username, cred.Password, false).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if got := relay.LocalAddr().(*net.UDPAddr).Port; got != port {
		t.Fatalf("relayed port %d, want %d", got, port)
	}
}

func TestPublicPeer(t *testing.T) {
	for ip, want := range map[string]bool{
		"8.8.8.8":                  true,
		"2606:4700:4700::1111":     true,
		"64:ff9b::808:808":         true, // NAT64 of 8.8.8.8
		"127.0.0.1":                false,
		"10.1.2.3":                 false,
		"172.16.0.1":               false,
		"192.168.1.1":              false,
		"100.64.0.1":               false,
		"169.254.169.254":          false, // cloud metadata
		"0.0.0.0":                  false,
		"224.0.0.1":                false,
		"255.255.255.255":          false,
		"198.18.0.1":               false,
		"::":                       false,
		"::1":                      false,
		"fe80::1":                  false,
		"fc00::1":                  false,
		"fd12::1":                  false,
		"ff02::1":                  false,
		"::ffff:127.0.0.1":         false,
		"::ffff:10.0.0.1":          false,
		"64:ff9b::a00:1":           false, // NAT64 of 10.0.0.1
		"64:ff9b::7f00:1":          false, // NAT64 of 127.0.0.1
		"2002:a00:1::1":            false, // 6to4 of 10.0.0.1
		"2001:db8::1":              false,
		"2001:0:4136:e378::1":      false, // Teredo
		"fec0::1":                  false,
		"::127.0.0.1":              false,
		"192.0.0.8":                false,
		"203.0.113.5":              false,
		"2001:4860:4860::8888":     true,
		"2001:4860:4860:0:0:0:0:1": true,
	} {
		if got := publicPeer(net.ParseIP(ip)); got != want {
			t.Errorf("publicPeer(%s) = %v, want %v", ip, got, want)
		}
	}
	if publicPeer(nil) {
		t.Error("publicPeer(nil) = true")
	}
}

// TestLogsHoldNoSecret: at Debug, with refused and accepted requests,
// the relay's log holds neither the secret nor a password.
func TestLogsHoldNoSecret(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	r := startRelay(t, func(c *Config) {
		c.AllowPrivate = false
		c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	cred := issue(t, "dev", time.Now().Add(time.Minute))
	turnClient(t, r, cred.Username, "d3JvbmcgcGFzc3dvcmQ=", false).Allocate()
	c := turnClient(t, r, cred.Username, cred.Password, false)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	c.CreatePermission(udpPeer(t).LocalAddr())
	relay.Close()
	r.Close()
	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	if !strings.Contains(out, "TURN") {
		t.Fatalf("nothing logged; the check below would prove nothing:\n%s", out)
	}
	for _, s := range []string{string(testSecret), cred.Password, "d3JvbmcgcGFzc3dvcmQ="} {
		if strings.Contains(out, s) {
			t.Errorf("log contains %q", s)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRelayRefusesItsOwnTURNPort: an allocation may not send to the
// relay's own TURN port (the relay would be its own client), even with
// AllowPrivate; a peer on the same address is reached as before.
func TestRelayRefusesItsOwnTURNPort(t *testing.T) {
	r := startRelay(t, nil)
	cred := issue(t, "dev", time.Now().Add(time.Minute))
	c := turnClient(t, r, cred.Username, cred.Password, false)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := relay.WriteTo(req.Raw, r.Addr()); err != nil {
		t.Fatal(err)
	}
	// The relay handles a client's datagrams in order: once the peer has
	// this one, the one before was dealt with.
	relayTo(t, relay, udpPeer(t), []byte("to the peer"))
	if n := testutil.ToFloat64(r.m.refused.WithLabelValues("own_address")); n != 1 {
		t.Fatalf("own_address refusals = %v, want 1", n)
	}
}

// TestSelfGuard: without AllowPrivate a relayed socket reaches the host's
// own addresses only at live relayed ports (relay to relay); with it,
// everything but the TURN port.
func TestSelfGuard(t *testing.T) {
	own := net.ParseIP("203.0.113.7")
	addr := func(s string, port int) net.Addr { return &net.UDPAddr{IP: net.ParseIP(s), Port: port} }
	strict := newSelfGuard(3478, true, net.IPv4zero, own)
	strict.opened(50000)
	for _, c := range []struct {
		dst  net.Addr
		want bool
	}{
		{addr("203.0.113.7", 3478), false},
		{addr("203.0.113.7", 50000), true},
		{addr("203.0.113.7", 53), false},
		{addr("::ffff:203.0.113.7", 53), false},
		{addr("::ffff:203.0.113.7", 50000), true},
		{addr("0.0.0.0", 3478), false},
		{addr("::", 53), false},
		{addr("198.51.100.1", 3478), true},
		{addr("198.51.100.1", 53), true},
		{&net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 53}, false},
	} {
		if got := strict.allow(c.dst); got != c.want {
			t.Errorf("strict: allow(%v) = %v, want %v", c.dst, got, c.want)
		}
	}
	strict.closed(50000)
	if strict.allow(addr("203.0.113.7", 50000)) {
		t.Error("strict: a closed relayed port is still allowed")
	}
	loose := newSelfGuard(3478, false, own)
	if !loose.allow(addr("203.0.113.7", 53)) || loose.allow(addr("203.0.113.7", 3478)) || loose.allow(addr("0.0.0.0", 3478)) {
		t.Error("AllowPrivate: want every own port but the TURN port")
	}
}
