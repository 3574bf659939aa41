package cli

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/internal/call"
)

// hush call and hush answer (docs/protocol.md §13): one call, its state
// changes printed as they happen, media from and to files.

func (c *cmd) callCmd(ctx context.Context, args []string) error {
	fs := newFlags("call")
	video := fs.Bool("video", false, "a video call")
	f := callFlags(fs)
	duration := fs.Duration("duration", 0, "hang up this long after connecting (0: when the other side does)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// "call USERNAME --video ..." too.
	if fs.NArg() > 0 {
		peer := fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			return usagef("call takes one USERNAME")
		}
		args = []string{peer}
	} else {
		return usagef("call takes USERNAME")
	}
	if *duration < 0 {
		return usagef("call: --duration must not be negative")
	}
	s, err := c.startPhone(ctx, f)
	if err != nil {
		return err
	}
	defer s.close()
	cl, err := s.phone.Dial(ctx, args[0], call.Options{Video: *video, RelayOnly: *f.relay, Media: f.media()})
	if err != nil {
		return err
	}
	return s.follow(ctx, cl, *duration)
}

func (c *cmd) answer(ctx context.Context, args []string) error {
	fs := newFlags("answer")
	auto := fs.Bool("auto", false, "answer the first call without asking")
	wait := fs.Duration("wait", 0, "give up if no call comes within this long (0: wait until interrupted)")
	f := callFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("answer takes no arguments besides its flags")
	}
	if *wait < 0 {
		return usagef("answer: --wait must not be negative")
	}
	if !*auto && !c.env.Interactive {
		return usagef("answer: stdin is not a terminal to ask on; use --auto")
	}
	s, err := c.startPhone(ctx, f)
	if err != nil {
		return err
	}
	defer s.close()
	var timeout <-chan time.Time
	if *wait > 0 {
		t := time.NewTimer(*wait)
		defer t.Stop()
		timeout = t.C
	}
	in := bufio.NewReader(c.env.Stdin)
	for {
		var cl *call.Call
		select {
		case cl = <-s.incoming:
		case <-timeout:
			return fmt.Errorf("no call came within %v", *wait)
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.recvErr:
			return err
		}
		if !*auto {
			kind := "voice"
			if cl.Video() {
				kind = "video"
			}
			fmt.Fprintf(c.env.Stdout, "answer the %s call from %s? [y/n] ", kind, cl.Peer())
			line, _ := in.ReadString('\n')
			if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
				cl.Decline()
				<-cl.Done()
				continue
			}
		}
		if err := cl.Answer(f.media()); err != nil {
			// It ended first (the caller gave up, another device
			// answered: that is printed), or answering failed (say
			// why); wait for the next call.
			c.warn(fmt.Errorf("could not answer the call from %s: %w", cl.Peer(), err))
			<-cl.Done()
			continue
		}
		return s.follow(ctx, cl, 0)
	}
}

// callOpts are the flags call and answer share.
type callOpts struct {
	audioIn, videoIn, recordDir *string
	ring                        *time.Duration
	json, relay                 *bool
}

func callFlags(fs interface {
	String(name, value, usage string) *string
	Bool(name string, value bool, usage string) *bool
	Duration(name string, value time.Duration, usage string) *time.Duration
}) *callOpts {
	return &callOpts{
		audioIn:   fs.String("audio-in", "", "send this Ogg/Opus file as the microphone"),
		videoIn:   fs.String("video-in", "", "send this IVF/VP8 file as the camera"),
		recordDir: fs.String("record-dir", "", "record what the other side sends to this directory"),
		ring:      fs.Duration("ring-timeout", call.DefaultRingTimeout, "how long to ring, and to connect after the answer"),
		json:      fs.Bool("json", false, "one JSON object per event"),
		relay:     fs.Bool("relay-only", false, "media only through the server's TURN relay (the other side never learns your address)"),
	}
}

func (f *callOpts) media() call.Media {
	return call.Media{AudioIn: *f.audioIn, VideoIn: *f.videoIn, RecordDir: *f.recordDir}
}

// phoneSession is a Phone fed by a Receive loop for the command's life.
type phoneSession struct {
	c        *cmd
	cl       *client.Client
	phone    *call.Phone
	json     bool
	incoming chan *call.Call
	up       chan *call.Call // calls that connected
	recvErr  chan error
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

func (c *cmd) startPhone(ctx context.Context, f *callOpts) (*phoneSession, error) {
	if *f.ring <= 0 {
		return nil, usagef("--ring-timeout must be positive")
	}
	// A missing recording directory is made, and wrong media files are
	// reported now, not when a call is already ringing.
	if d := *f.recordDir; d != "" {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("--record-dir: %w", err)
		}
	}
	if err := f.media().Check(); err != nil {
		return nil, err
	}
	cl, info, err := c.openAccount()
	if err != nil {
		return nil, err
	}
	s := &phoneSession{c: c, cl: cl, json: *f.json, incoming: make(chan *call.Call, 8), up: make(chan *call.Call, 8), recvErr: make(chan error, 1)}
	s.phone, err = call.New(call.Config{
		Self: info.Username, Device: info.DeviceID, Signal: cl,
		ICEServers: call.TURNServers(cl),
		IsContact: func(ctx context.Context, user string) (bool, error) {
			k, err := cl.ContactInfo(ctx, user)
			return k.State == client.Accepted, err
		},
		RingTimeout: *f.ring,
		AlwaysRelay: *f.relay,
		Loopback:    loopbackServer(info.Server),
		Events:      s.event,
	})
	if err != nil {
		cl.Close()
		return nil, err
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	p := printer{c: c, json: *f.json, ctx: rctx, cl: cl}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := cl.Receive(rctx, client.Forever, func(e client.Event) {
			s.phone.Handle(e)
			if _, ok := e.(*client.CallEvent); !ok {
				p.event(e) // a message during a call is shown, not lost
			}
		})
		if err != nil && rctx.Err() == nil {
			s.recvErr <- err
		}
	}()
	return s, nil
}

// loopbackServer reports whether the server is on this machine: then so
// is every peer reaching it, and calls use loopback addresses.
func loopbackServer(server string) bool {
	u, err := url.Parse(server)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

func (s *phoneSession) close() {
	s.phone.Close()
	s.stop()
	s.wg.Wait()
	s.cl.Close()
}

// follow waits for the call to end, hanging up after duration (if > 0)
// from connecting, or when ctx ends. The call must have connected for
// the command to succeed.
func (s *phoneSession) follow(ctx context.Context, cl *call.Call, duration time.Duration) error {
	var hang <-chan time.Time
	connected := false
	for {
		select {
		case <-cl.Done():
			reason, err := cl.Result()
			switch {
			case err != nil:
				return fmt.Errorf("the call %s: %w", reason, err)
			case !connected && reason != call.ReasonHangup:
				return fmt.Errorf("the call ended unanswered: %s", strings.ReplaceAll(string(reason), "_", " "))
			}
			return nil
		case <-ctx.Done():
			cl.Hangup()
			<-cl.Done()
			return ctx.Err()
		case err := <-s.recvErr:
			cl.Hangup()
			<-cl.Done()
			return err
		case <-hang:
			cl.Hangup()
			hang = nil
		case up := <-s.up:
			if up == cl && !connected {
				connected = true
				if duration > 0 {
					hang = time.After(duration)
				}
			}
		}
	}
}

// jsonCallEvent is one line of call/answer --json output.
type jsonCallEvent struct {
	Event      string   `json:"event"`
	CallID     string   `json:"call_id"`
	Peer       string   `json:"peer"`
	Incoming   bool     `json:"incoming"`
	Video      bool     `json:"video"`
	RelayOnly  bool     `json:"relay_only"`
	Local      string   `json:"local,omitempty"`
	Remote     string   `json:"remote,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Error      string   `json:"error,omitempty"`
	Recordings []string `json:"recordings,omitempty"`
}

// event prints a state change.
func (s *phoneSession) event(e call.Event) {
	cl := e.Call
	if e.State == call.Connected {
		s.up <- cl
	}
	if e.State == call.Ringing && cl.Incoming() {
		select {
		case s.incoming <- cl:
		default:
			cl.Decline() // more calls at once than anyone can answer
		}
	}
	if s.json {
		j := jsonCallEvent{Event: e.State.String(), CallID: cl.ID(), Peer: cl.Peer(), Incoming: cl.Incoming(), Video: cl.Video(),
			RelayOnly: cl.RelayOnly(), Local: e.Local, Remote: e.Remote, Reason: string(e.Reason), Recordings: e.Recordings}
		if e.Err != nil {
			j.Error = e.Err.Error()
		}
		b, _ := json.Marshal(j)
		fmt.Fprintln(s.c.stdout, string(b))
		return
	}
	var line string
	switch e.State {
	case call.Calling:
		line = "calling " + cl.Peer() + callKind(cl)
	case call.Ringing:
		line = "ringing"
		if cl.Incoming() {
			line = "ringing: " + cl.Peer() + " is calling" + callKind(cl)
		}
	case call.Connecting:
		line = "connecting"
	case call.Connected:
		line = fmt.Sprintf("connected via %s (remote %s)", e.Local, e.Remote)
	case call.Ended:
		line = "ended: " + strings.ReplaceAll(string(e.Reason), "_", " ")
		if e.Err != nil {
			line += ": " + e.Err.Error()
		}
	}
	fmt.Fprintln(s.c.stdout, sanitize(line))
	for _, r := range e.Recordings {
		fmt.Fprintln(s.c.stdout, "recorded "+sanitize(r))
	}
}

func callKind(cl *call.Call) string {
	var k []string
	if cl.Video() {
		k = append(k, "video")
	}
	if cl.RelayOnly() {
		k = append(k, "relay-only")
	}
	if len(k) == 0 {
		return ""
	}
	return " (" + strings.Join(k, ", ") + ")"
}

// missedCall is the line recv and chat show for a call's offer, which
// they cannot answer: "[2026-11-23 15:04] missed call from bob (video)".
// Any other call signal shows nothing ("").
func missedCall(e *client.CallEvent) string {
	o := e.Signal.GetOffer()
	if o == nil {
		return ""
	}
	line := fmt.Sprintf("[%s] missed call from %s", e.Sent.Local().Format(textTime), e.From)
	if o.GetVideo() {
		line += " (video)"
	}
	return line
}

// jsonMissedCall is recv --json's line for a call's offer.
type jsonMissedCall struct {
	Type     string `json:"type"` // "call"
	From     string `json:"from"`
	Device   uint32 `json:"device"`
	Sent     string `json:"sent"`
	Received string `json:"received"`
	Video    bool   `json:"video"`
	CallID   string `json:"call_id"`
}

// call prints a call's offer as a missed call.
func (p printer) call(e *client.CallEvent) {
	line := missedCall(e)
	if line == "" {
		return
	}
	if p.json {
		b, _ := json.Marshal(jsonMissedCall{Type: "call", From: e.From, Device: e.Device, Sent: e.Sent.UTC().Format(jsonTime),
			Received: e.Received.UTC().Format(jsonTime), Video: e.Signal.GetOffer().GetVideo(), CallID: hex.EncodeToString(e.Signal.GetCallId())})
		line = string(b)
	}
	fmt.Fprintln(p.c.stdout, line)
}
