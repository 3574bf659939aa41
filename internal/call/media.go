package call

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// Media says what a call sends and where it records what it receives.
// Files stand in for a microphone and a camera, so calls are scriptable.
type Media struct {
	// AudioIn is an Ogg file of Opus packets, one packet per page (as
	// ffmpeg writes with -page_duration 20000); "" sends no audio.
	AudioIn string
	// VideoIn is an IVF file of VP8 frames; "" sends no video.
	VideoIn string
	// RecordDir receives PEER-CALLID-audio.ogg and PEER-CALLID-video.ivf;
	// "" records nothing.
	RecordDir string
	// RecordLimit bounds the media bytes recorded per file (zero:
	// DefaultRecordLimit): the peer decides how much it sends, so a
	// recording that would pass it fails the call instead of filling the
	// disk.
	RecordLimit int64
}

// DefaultRecordLimit is Media.RecordLimit's default: hours of a call at
// the rates a real one uses.
const DefaultRecordLimit = 4 << 30

// Check opens the input files and reads their headers, so a wrong file is
// reported before a call starts.
func (m Media) Check() error {
	if m.AudioIn != "" {
		f, err := os.Open(m.AudioIn)
		if err != nil {
			return err
		}
		_, _, err = oggreader.NewWith(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s is not an Ogg/Opus file: %v", m.AudioIn, err)
		}
	}
	if m.VideoIn != "" {
		f, err := os.Open(m.VideoIn)
		if err != nil {
			return err
		}
		_, h, err := ivfreader.NewWith(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s is not an IVF file: %v", m.VideoIn, err)
		}
		if h.FourCC != "VP80" {
			return fmt.Errorf("%s holds %q video, not VP8", m.VideoIn, h.FourCC)
		}
	}
	if m.RecordDir != "" {
		if st, err := os.Stat(m.RecordDir); err != nil {
			return err
		} else if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", m.RecordDir)
		}
	}
	return nil
}

// opusClock is Opus's RTP clock and the unit of Ogg/Opus granule
// positions (RFC 7845 §4).
const opusClock = 48000

// sendOgg sends the Opus packets of an Ogg file on track, each at the time
// its granule position says, relative to the start.
// It counts the packets sent in n.
func sendOgg(ctx context.Context, track *webrtc.TrackLocalStaticSample, path string, n *atomic.Int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	start := time.Now()
	var last uint64 // granule position at the end of the previous packet
	for {
		payload, h, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if _, ok := h.HeaderType(payload); ok || len(payload) == 0 {
			continue // OpusTags, or an empty end-of-stream page
		}
		if h.GranulePosition < last {
			return fmt.Errorf("%s: granule position goes backwards", path)
		}
		samples := h.GranulePosition - last
		max, err := opusSamples(payload)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		// The last page may end early (trimmed), never late.
		if samples > max {
			return fmt.Errorf("%s: an Ogg page holds more than one Opus packet; remux with ffmpeg -page_duration 20000", path)
		}
		if err := sleepUntil(ctx, start.Add(samplesDuration(last))); err != nil {
			return nil
		}
		if err := track.WriteSample(media.Sample{Data: payload, Duration: samplesDuration(samples)}); err != nil {
			return err
		}
		n.Add(1)
		last = h.GranulePosition
	}
}

func samplesDuration(n uint64) time.Duration {
	return time.Duration(n) * time.Second / opusClock
}

// opusSamples is the number of 48 kHz samples an Opus packet decodes to,
// from its TOC byte (RFC 6716 §3.1).
func opusSamples(p []byte) (uint64, error) {
	if len(p) == 0 {
		return 0, errors.New("an empty Opus packet")
	}
	config := p[0] >> 3
	var frame uint64 // samples per frame
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]uint64{480, 960, 1920, 2880}[config%4]
	case config < 16: // hybrid: 10, 20 ms
		frame = [2]uint64{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]uint64{120, 240, 480, 960}[config%4]
	}
	var frames uint64
	switch p[0] & 3 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 0, errors.New("an Opus packet too short for its frame count")
		}
		frames = uint64(p[1] & 0x3f)
	}
	if n := frames * frame; n > 0 && n <= 5760 { // at most 120 ms
		return n, nil
	}
	return 0, errors.New("an Opus packet of an invalid duration")
}

// sendIVF sends the VP8 frames of an IVF file on track, each at its
// presentation time, counting them in n.
func sendIVF(ctx context.Context, track *webrtc.TrackLocalStaticSample, path string, n *atomic.Int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, h, err := ivfreader.NewWith(f)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	// ivfreader's Timestamp is pts·den/num, and pts counts num/den
	// seconds: undo both.
	scale := float64(h.TimebaseNumerator) * float64(h.TimebaseNumerator) / (float64(h.TimebaseDenominator) * float64(h.TimebaseDenominator))
	at := func(ts uint64) time.Duration { return time.Duration(float64(ts) * scale * float64(time.Second)) }
	start := time.Now()
	frame, fh, err := r.ParseNextFrame()
	for err == nil {
		next, nh, nerr := r.ParseNextFrame()
		// A frame lasts until the next one; the last as long as the one before.
		d := time.Second / 30
		if nerr == nil {
			d = at(nh.Timestamp) - at(fh.Timestamp)
		}
		if d < 0 {
			return fmt.Errorf("%s: frame times go backwards", path)
		}
		if err := sleepUntil(ctx, start.Add(at(fh.Timestamp))); err != nil {
			return nil
		}
		if err := track.WriteSample(media.Sample{Data: frame, Duration: d}); err != nil {
			return err
		}
		n.Add(1)
		frame, fh, err = next, nh, nerr
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return fmt.Errorf("%s: %v", path, err)
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// rtpWriter is what oggwriter and ivfwriter have in common.
type rtpWriter interface {
	media.Writer
}

// record writes a received track to path ("": nowhere) until the track
// ends, counting in n its packets (audio) or frames (video: packets that
// end one).
func record(track *webrtc.TrackRemote, path string, limit int64, n *atomic.Int64) error {
	video := track.Kind() == webrtc.RTPCodecTypeVideo
	if path == "" {
		for {
			p, _, err := track.ReadRTP()
			if err != nil {
				return nil
			}
			if !video || p.Marker {
				n.Add(1)
			}
		}
	}
	// What the other side said is private: the file is made readable by
	// this user only (the writers then open it again, keeping the mode),
	// and never written over an existing one.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	var w rtpWriter
	switch track.Kind() {
	case webrtc.RTPCodecTypeAudio:
		w, err = oggwriter.New(path, opusClock, track.Codec().Channels)
	case webrtc.RTPCodecTypeVideo:
		w, err = ivfwriter.New(path, ivfwriter.WithCodec(track.Codec().MimeType))
	default:
		err = fmt.Errorf("a track of unknown kind %v", track.Kind())
	}
	if err != nil {
		return err
	}
	if limit <= 0 {
		limit = DefaultRecordLimit
	}
	var size int64
	for {
		p, _, err := track.ReadRTP()
		if err != nil {
			break // the call ended
		}
		if size += int64(len(p.Payload)); size > limit {
			w.Close()
			return fmt.Errorf("recording %s: the peer sent more than %d bytes of media to record", path, limit)
		}
		if err := w.WriteRTP(p); err != nil {
			w.Close()
			return fmt.Errorf("recording %s: %v", path, err)
		}
		if !video || p.Marker {
			n.Add(1)
		}
	}
	return w.Close()
}
