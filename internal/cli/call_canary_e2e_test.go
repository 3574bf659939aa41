package cli_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/internal/call"
	"github.com/hush-chat/hush/wire"
)

// sdpSecret matches what a session description holds that the server
// must never see: the DTLS certificate's fingerprint (whoever holds it can
// sit in the middle of the media) and the ICE credentials.
var sdpSecret = regexp.MustCompile(`(?m)^a=(?:fingerprint:\S+ (\S+)|ice-ufrag:(\S+)|ice-pwd:(\S+))\r?$`)

// watchedSignals records every call signal a Phone sends.
type watchedSignals struct {
	call.Signaller
	mu   sync.Mutex
	sent []*wire.CallSignal
}

func (w *watchedSignals) SendCall(ctx context.Context, to string, sig *wire.CallSignal) error {
	w.mu.Lock()
	w.sent = append(w.sent, sig)
	w.mu.Unlock()
	return w.Signaller.SendCall(ctx, to, sig)
}

// TestCallE2ECanaryNeverReachesServer makes a relay-only video call over
// a real hush serve and searches the server's data directory and log for
// what the call's end-to-end encryption hides: both sides' DTLS
// fingerprints and ICE credentials (from the offer and answer), the call
// id, and media payload bytes in both directions. Alice runs in this
// process, so the test sees the signals she sends and receives; bob is
// the hush command.
func TestCallE2ECanaryNeverReachesServer(t *testing.T) {
	s := startServe(t)
	bob := register(t, s, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl, err := client.New(client.Config{Home: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Register(ctx, s.URL, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Send(ctx, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	bob.ok("recv")
	bob.ok("accept", "alice")
	if err := cl.Receive(ctx, 0, func(client.Event) {}); err != nil { // bob's delivery token
		t.Fatal(err)
	}
	info, err := cl.Info()
	if err != nil {
		t.Fatal(err)
	}

	sig := &watchedSignals{Signaller: cl}
	var mu sync.Mutex
	var received []*wire.CallSignal
	events := make(chan call.Event, 64)
	phone, err := call.New(call.Config{
		Self: info.Username, Device: info.DeviceID, Signal: sig,
		ICEServers: call.TURNServers(cl),
		IsContact:  func(context.Context, string) (bool, error) { return true, nil },
		Loopback:   true,
		Events:     func(e call.Event) { events <- e },
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl.Receive(rctx, client.Forever, func(e client.Event) {
			if ce, ok := e.(*client.CallEvent); ok {
				mu.Lock()
				received = append(received, ce.Signal)
				mu.Unlock()
			}
			phone.Handle(e)
		})
	}()
	defer func() { stop(); wg.Wait() }()
	defer phone.Close()

	aDir, bDir := t.TempDir(), t.TempDir()
	wait := bob.background("answer", "--auto", "--json", "--audio-in", fixture("b.ogg"), "--video-in", fixture("b.ivf"), "--record-dir", bDir)
	ac, err := phone.Dial(ctx, "bob", call.Options{Video: true, RelayOnly: true,
		Media: call.Media{AudioIn: fixture("a.ogg"), VideoIn: fixture("a.ivf"), RecordDir: aDir}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		e := <-events
		if e.State == call.Ended {
			t.Fatalf("the call ended before connecting: %s %v", e.Reason, e.Err)
		}
		if e.State == call.Connected {
			if e.Local != "relay" || e.Remote != "relay" && e.Remote != "prflx" {
				t.Fatalf("relay-only call connected over %s/%s", e.Local, e.Remote)
			}
			break
		}
	}
	<-ac.MediaDone()
	ac.Hangup()
	var ended call.Event
	for ended.State != call.Ended {
		ended = <-events
	}
	if br := wait(); br.code != 0 {
		t.Fatalf("answer exit %d: %s%s", br.code, br.stdout, br.stderr)
	}

	// The canaries: SDP secrets of both sides, the call id, and a slice
	// from the middle of early frames and packets each way (early, so
	// they arrived before the hangup).
	type canary struct {
		what string
		b    []byte
	}
	var canaries []canary
	mu.Lock()
	sigs := append(append([]*wire.CallSignal(nil), received...), sig.sent...)
	mu.Unlock()
	sdps := 0
	for _, sg := range sigs {
		sdp := sg.GetOffer().GetSdp() + sg.GetAnswer().GetSdp()
		if sdp == "" {
			continue
		}
		sdps++
		for _, m := range sdpSecret.FindAllStringSubmatch(sdp, -1) {
			switch {
			case m[1] != "":
				canaries = append(canaries, canary{"DTLS fingerprint", []byte(m[1])})
				raw, err := hex.DecodeString(strings.ReplaceAll(m[1], ":", ""))
				if err != nil {
					t.Fatalf("fingerprint %q: %v", m[1], err)
				}
				canaries = append(canaries, canary{"DTLS fingerprint (binary)", raw})
			case m[2] != "":
				canaries = append(canaries, canary{"ICE ufrag", []byte(m[2])})
			case m[3] != "":
				canaries = append(canaries, canary{"ICE password", []byte(m[3])})
			}
		}
	}
	if sdps != 2 || len(canaries) < 8 {
		t.Fatalf("%d session descriptions with %d secrets, want the offer and the answer with a fingerprint and ICE credentials each", sdps, len(canaries))
	}
	id, _ := hex.DecodeString(ac.ID())
	canaries = append(canaries, canary{"call id", id}, canary{"call id (hex)", []byte(ac.ID())})
	var media []canary
	for _, f := range []string{"a.ogg", "a.ivf", "b.ogg", "b.ivf"} {
		ps := payloads(t, fixture(f))
		for _, i := range []int{3, 8} {
			p := ps[i]
			if len(p) < 40 {
				t.Fatalf("%s: packet %d has %d bytes, too few for a canary", f, i, len(p))
			}
			media = append(media, canary{f + " payload", p[len(p)/2-16 : len(p)/2+16]})
		}
	}
	canaries = append(canaries, media...)

	// Self-check: the media canaries are in the recordings, so the search
	// below would find them where they were.
	recorded := map[string][]byte{}
	for _, dir := range []string{aDir, bDir} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			recorded[filepath.Ext(f)] = append(recorded[filepath.Ext(f)], b...)
		}
	}
	for _, c := range media {
		ext := ".ogg"
		if strings.Contains(c.what, ".ivf") {
			ext = ".ivf"
		}
		if !bytes.Contains(recorded[ext], c.b) {
			t.Fatalf("the recordings lack the %s canary: the search is blind", c.what)
		}
	}

	check := func(when string) {
		t.Helper()
		files := 0
		err := filepath.Walk(s.data, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			files++
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, c := range canaries {
				if bytes.Contains(b, c.b) {
					t.Errorf("%s: %s holds the %s", when, path, c.what)
				}
			}
			return nil
		})
		if err != nil || files == 0 {
			t.Fatalf("%s: walked %d files: %v", when, files, err)
		}
		log := []byte(s.stderr.String())
		for _, c := range canaries {
			if bytes.Contains(log, c.b) {
				t.Errorf("%s: the server log holds the %s", when, c.what)
			}
		}
	}
	check("after the call")
	s.stop()
	check("after shutdown")
}
