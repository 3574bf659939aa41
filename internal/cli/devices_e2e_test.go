package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// linkCLI runs "hush link --json" for dev in a subprocess, reads the code
// from its first line, approves it on primary with extra arguments and
// waits for the link to finish. It returns approve's output.
func linkCLI(t *testing.T, primary, dev *user, name string, approveArgs ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := dev.command(ctx, "link", "--name", name, "--json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(out)
	first, err := rd.ReadString('\n')
	if err != nil {
		cmd.Wait()
		t.Fatalf("hush link printed no code: %v\nstderr: %s", err, stderr.String())
	}
	var code struct{ Code string }
	if err := json.Unmarshal([]byte(first), &code); err != nil || !strings.HasPrefix(code.Code, "hush-link:") {
		t.Fatalf("first line of hush link --json is %q: %v", first, err)
	}
	approved := primary.ok(append([]string{"devices", "approve", code.Code}, approveArgs...)...)
	rest, _ := rd.ReadString('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatalf("hush link: %v\nstderr: %s", err, stderr.String())
	}
	var done struct {
		Linked   bool
		Username string
		Device   uint32
	}
	if err := json.Unmarshal([]byte(rest), &done); err != nil || !done.Linked {
		t.Fatalf("hush link's last line %q: %v", rest, err)
	}
	return approved
}

// recvJSON runs recv --json and decodes every line.
func recvJSON(t *testing.T, u *user) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(u.ok("recv", "--json")), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("recv --json printed %q: %v", l, err)
		}
		if m["type"] == "receipt" {
			continue // every message sent comes back delivered
		}
		out = append(out, m)
	}
	return out
}

func lines(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// stripTime drops recv's "[2026-01-02 15:04] " prefix.
var stampRE = regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d\] `)

func stripTimes(out string) []string {
	var got []string
	for _, l := range lines(out) {
		if eventLineRE.MatchString(l) {
			continue // delivery receipts
		}
		got = append(got, stampRE.ReplaceAllString(l, ""))
	}
	return got
}

func TestCLILinkedDevicesSyncRemovalAndRecovery(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	alice.ok("send", "bob", "hello bob")
	bob.ok("recv") // a message request
	bob.ok("accept", "alice")
	alice.ok("recv")

	laptop := newHome(t, s.URL)
	if out := linkCLI(t, alice, laptop, "Laptop"); out != "approved device 2 (Laptop)\n" {
		t.Fatalf("approve printed %q", out)
	}
	tablet := newHome(t, s.URL)
	linkCLI(t, alice, tablet, "Tablet", "--no-history")

	devs := alice.ok("devices")
	for _, w := range []string{"ID", "NAME", "LAST SEEN", "Laptop", "Tablet", "this device (primary)"} {
		if !strings.Contains(devs, w) {
			t.Fatalf("hush devices printed %q, lacking %q", devs, w)
		}
	}
	if got := len(lines(devs)); got != 4 {
		t.Fatalf("hush devices printed %d lines: %q", got, devs)
	}
	if r := laptop.run("", "devices", "approve", "hush-link:AQ"); r.code != 1 || !strings.Contains(r.stderr, "only the primary device can approve") {
		t.Fatalf("approve on a linked device: %+v", r)
	}
	want := func(who string, got []string, w ...string) {
		t.Helper()
		if !slices.Equal(got, w) {
			t.Fatalf("%s: got %q, want %q", who, got, w)
		}
	}
	want("bob", stripTimes(bob.ok("recv")), "alice added a device (Laptop)", "alice added a device (Tablet)")
	tablet.ok("recv")
	laptop.ok("recv")

	// A message from the laptop reaches bob, and the other devices of
	// alice as a sync copy.
	laptop.ok("send", "bob", "from the laptop")
	want("bob", stripTimes(bob.ok("recv")), "alice: from the laptop")
	want("tablet", stripTimes(tablet.ok("recv")), "alice -> bob: from the laptop")
	js := recvJSON(t, alice)
	if len(js) != 1 || js[0]["from"] != "alice" || js[0]["to"] != "bob" || js[0]["text"] != "from the laptop" || js[0]["type"] != "text" || js[0]["device"] != 2.0 {
		t.Fatalf("alice's recv --json: %v", js)
	}
	bob.ok("send", "alice", "hi all")
	for name, u := range map[string]*user{"alice": alice, "laptop": laptop, "tablet": tablet} {
		want(name, stripTimes(u.ok("recv")), "bob: hi all")
	}

	// Removal: the tablet gets nothing more; bob is told.
	if out := alice.ok("devices", "remove", "3"); out != "removed device 3\n" {
		t.Fatalf("remove printed %q", out)
	}
	js = recvJSON(t, bob)
	if len(js) != 1 || js[0]["type"] != "device" || js[0]["from"] != "alice" || js[0]["change"] != "removed" || js[0]["device_id"] != 3.0 {
		t.Fatalf("bob's recv --json after the removal: %v", js)
	}
	bob.ok("send", "alice", "after the removal")
	if r := tablet.run("", "recv"); r.code != 1 || r.stdout != "" {
		t.Fatalf("the removed tablet received: %+v", r)
	}
	want("laptop", stripTimes(laptop.ok("recv")), "alice removed a device", "bob: after the removal")

	// Recovery onto a fresh home: it becomes the primary, the old one is
	// removed.
	key := strings.TrimSpace(alice.ok("recovery-key"))
	if r := laptop.run("", "recovery-key"); r.code != 1 {
		t.Fatalf("a linked device printed the recovery key: %+v", r)
	}
	phone := newHome(t, s.URL)
	out := phone.ok("restore", "alice", "--recovery-key", key, "--name", "Phone")
	if !strings.HasPrefix(out, "restored alice (device 3, now the primary)") {
		t.Fatalf("restore printed %q", out)
	}
	if r := alice.run("", "recv"); r.code != 1 {
		t.Fatalf("the old primary still receives: %+v", r)
	}
	want("laptop", stripTimes(laptop.ok("recv")), "alice removed a device", "alice added a device (Phone)")
	phone.ok("send", "bob", "from the restored phone")
	// A restored home knows no contacts yet, so bob hears of the change
	// only through the list his client fetches for the new device.
	want("bob", stripTimes(bob.ok("recv")), "alice: from the restored phone")
	bob.ok("send", "alice", "welcome back")
	want("phone", stripTimes(phone.ok("recv")), "bob: welcome back")
	want("laptop", stripTimes(laptop.ok("recv")), "alice -> bob: from the restored phone", "bob: welcome back")
	if r := newHome(t, s.URL).run("", "restore", "alice", "--recovery-key", strings.Repeat("ab", 32)); r.code != 1 || !strings.Contains(r.stderr, "hush: the recovery key does not match alice") {
		t.Fatalf("restore with a wrong key: %+v", r)
	}
}

// tamperProxy sits in front of a server and, once armed, flips the last
// byte (the signature's) of every device list of victim the server sends.
type tamperProxy struct {
	URL   string
	armed atomic.Bool
}

func newTamperProxy(t *testing.T, upstream, victim string) *tamperProxy {
	t.Helper()
	p := &tamperProxy{}
	up, _ := url.Parse(upstream)
	rp := httputil.NewSingleHostReverseProxy(up)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/ws" {
			rp.ServeHTTP(w, r)
			return
		}
		down, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer down.CloseNow()
		upc, _, err := websocket.Dial(r.Context(), "ws://"+up.Host+"/v1/ws", nil)
		if err != nil {
			return
		}
		defer upc.CloseNow()
		down.SetReadLimit(16 << 20)
		upc.SetReadLimit(16 << 20)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			defer cancel()
			for {
				typ, data, err := down.Read(ctx)
				if err != nil || upc.Write(ctx, typ, data) != nil {
					return
				}
			}
		}()
		for {
			typ, data, err := upc.Read(ctx)
			if err != nil {
				return
			}
			var f wire.ServerFrame
			if p.armed.Load() && proto.Unmarshal(data, &f) == nil && f.GetAccount().GetUsername() == victim {
				f.GetAccount().DeviceList[len(f.GetAccount().DeviceList)-1] ^= 1
				data, _ = proto.Marshal(&f)
			}
			if down.Write(ctx, typ, data) != nil {
				return
			}
		}
	}))
	t.Cleanup(hs.Close)
	p.URL = hs.URL
	return p
}

func TestCLIRefusesATamperedDeviceList(t *testing.T) {
	s := startServe(t)
	p := newTamperProxy(t, s.URL, "bob")
	alice := newHome(t, p.URL)
	alice.ok("register", "alice")
	bob := register(t, s, "bob")
	alice.ok("send", "bob", "before")
	bob.ok("recv")
	p.armed.Store(true)
	r := alice.run("", "send", "bob", "after")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "hush: device list of bob refused: its signature does not verify with the account key") {
		t.Fatalf("send with a tampered list: %+v", r)
	}
	if out := bob.ok("recv"); out != "" {
		t.Fatalf("bob received %q", out)
	}
}
