package call

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/wire"
)

// The fixtures (testdata/media/README.md).
var (
	aOgg = filepath.Join("..", "..", "testdata", "media", "a.ogg")
	bOgg = filepath.Join("..", "..", "testdata", "media", "b.ogg")
	aIVF = filepath.Join("..", "..", "testdata", "media", "a.ivf")
	bIVF = filepath.Join("..", "..", "testdata", "media", "b.ivf")
)

// guard bounds every wait of a test, so a broken call fails the test
// instead of hanging it. It is no measure of speed.
const guard = 90 * time.Second

// startServer runs a real Hush server with its TURN relay on loopback,
// relaying to loopback addresses (TURN's private-range refusal off).
func startServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits:  server.Unlimited(),
		TURN:    server.TURNConfig{Listen: "127.0.0.1:0", AllowPrivate: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t testing.TB, url, name string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Home: t.TempDir(), Warn: func(err error) { t.Logf("warning for %s: %v", name, err) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Register(ctxT(t), url, name); err != nil {
		t.Fatal(err)
	}
	return c
}

// linkDevice adds a device to primary's account.
func linkDevice(t testing.TB, url string, primary *client.Client, name string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Home: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	codes := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := c.Link(ctxT(t), url, name, func(code string) error { codes <- code; return nil })
		done <- err
	}()
	select {
	case code := <-codes:
		if _, err := primary.ApproveLink(ctxT(t), code, false); err != nil {
			t.Fatal(err)
		}
	case err := <-done:
		t.Fatalf("link: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return c
}

func drainInbox(t testing.TB, c *client.Client) {
	t.Helper()
	if err := c.Receive(ctxT(t), 0, func(client.Event) {}); err != nil {
		t.Fatal(err)
	}
}

// befriend makes a and b contacts (a writes, b accepts), with each
// other's delivery tokens, so their signals go sealed.
func befriend(t testing.TB, a *client.Client, b *client.Client, bName string, others ...*client.Client) {
	t.Helper()
	ai, _ := a.Info()
	if _, err := a.Send(ctxT(t), bName, "hi"); err != nil {
		t.Fatal(err)
	}
	drainInbox(t, b)
	if _, err := b.Accept(ctxT(t), ai.Username); err != nil {
		t.Fatal(err)
	}
	drainInbox(t, a)
	for _, o := range others {
		drainInbox(t, o)
	}
}

// device is one client with a Phone fed by a Receive loop.
type device struct {
	t      testing.TB
	name   string
	cl     *client.Client
	phone  *Phone
	events chan Event
	// seen receives every client event the Receive loop handed over.
	seen chan client.Event
}

type devOpts struct {
	ring   time.Duration
	signal func(Signaller) Signaller // wraps the client, for tests that watch signals
	noLoop bool                      // start the Receive loop later (device.listen)
}

func newDevice(t testing.TB, name string, cl *client.Client, o devOpts) *device {
	t.Helper()
	info, err := cl.Info()
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, name: name, cl: cl, events: make(chan Event, 256), seen: make(chan client.Event, 256)}
	var sig Signaller = cl
	if o.signal != nil {
		sig = o.signal(cl)
	}
	d.phone, err = New(Config{
		Self: info.Username, Device: info.DeviceID, Signal: sig,
		ICEServers: TURNServers(cl),
		IsContact: func(ctx context.Context, user string) (bool, error) {
			k, err := cl.ContactInfo(ctx, user)
			return k.State == client.Accepted, err
		},
		RingTimeout: o.ring,
		Loopback:    true,
		Events:      func(e Event) { d.events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.phone.Close)
	if !o.noLoop {
		d.listen()
	}
	return d
}

// listen starts the Receive loop, stopped at the test's end.
func (d *device) listen() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := d.cl.Receive(ctx, client.Forever, func(e client.Event) {
			d.phone.Handle(e)
			select {
			case d.seen <- e:
			default:
			}
		})
		if err != nil && ctx.Err() == nil {
			d.t.Errorf("%s: receive: %v", d.name, err)
		}
	}()
	d.t.Cleanup(func() { cancel(); wg.Wait() })
}

// next returns the device's next call event.
func (d *device) next() Event {
	d.t.Helper()
	select {
	case e := <-d.events:
		return e
	case <-time.After(guard):
		d.t.Fatalf("%s: no call event within %v", d.name, guard)
		return Event{}
	}
}

// until returns the first event in state s, failing on an earlier end.
func (d *device) until(s State) Event {
	d.t.Helper()
	for {
		e := d.next()
		if e.State == s {
			return e
		}
		if e.State == Ended {
			d.t.Fatalf("%s: call ended (%s: %v) before %s", d.name, e.Reason, e.Err, s)
		}
	}
}

// ended returns the Ended event.
func (d *device) ended() Event {
	d.t.Helper()
	for {
		if e := d.next(); e.State == Ended {
			return e
		}
	}
}

// quiet checks that no call event came.
func (d *device) quiet() {
	d.t.Helper()
	select {
	case e := <-d.events:
		d.t.Fatalf("%s: unexpected call event %s (%s: %v)", d.name, e.State, e.Reason, e.Err)
	default:
	}
}

// waitStats waits until the call received what the peer sent, by the
// peer's counts once its files are sent. A lost frame fails the test.
func waitStats(t testing.TB, a, b *Call) {
	t.Helper()
	for _, c := range []*Call{a, b} {
		select {
		case <-c.MediaDone():
		case <-time.After(guard):
			t.Fatal("media not sent in time")
		}
	}
	deadline := time.Now().Add(guard)
	for {
		sa, sb := a.Stats(), b.Stats()
		if sa.AudioReceived == sb.AudioSent && sa.VideoReceived == sb.VideoSent &&
			sb.AudioReceived == sa.AudioSent && sb.VideoReceived == sa.VideoSent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("media lost: a %+v, b %+v", sa, sb)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// oggPackets returns the SHA-256 of each Opus packet of an Ogg file.
func oggPackets(t testing.TB, path string) [][32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][32]byte
	for {
		p, h, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if _, ok := h.HeaderType(p); ok || len(p) == 0 {
			continue
		}
		out = append(out, sha256.Sum256(p))
	}
}

// ivfFrames returns the SHA-256 of each frame of an IVF file.
func ivfFrames(t testing.TB, path string) [][32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][32]byte
	for {
		p, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, sha256.Sum256(p))
	}
}

// sameFrames compares two hash sequences frame by frame.
func sameFrames(t testing.TB, what string, got, want [][32]byte) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: the source has no frames", what)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames recorded, %d sent", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: frame %d differs", what, i)
		}
	}
}

// watched wraps a Signaller and reports each signal sent.
type watched struct {
	Signaller
	sent chan *wire.CallSignal
}

func (w *watched) SendCall(ctx context.Context, to string, sig *wire.CallSignal) error {
	err := w.Signaller.SendCall(ctx, to, sig)
	if err == nil {
		w.sent <- sig
	}
	return err
}
