package bench

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"time"
)

// Report is the outcome of a run; its JSON form is "hush bench --json".
type Report struct {
	Server    string  `json:"server"` // the URL, or "started (pid N)"
	Users     int     `json:"users"`
	Peers     int     `json:"peers"` // contacts per user
	Rate      float64 `json:"rate"`  // offered, messages/s
	DurationS float64 `json:"duration_s"`
	SetupS    float64 `json:"setup_s"`
	DrainS    float64 `json:"drain_s"`

	Sent      int64 `json:"sent"`
	Stored    int64 `json:"stored"`
	Delivered int64 `json:"delivered"` // distinct messages received
	// DeliveredPerSec is Delivered over the time from the first send to
	// the last delivery (at least the duration): a server that falls
	// behind is not flattered by the drain.
	DeliveredPerSec float64           `json:"delivered_per_sec"`
	Behind          int64             `json:"behind"` // sends that left over 10 ms late
	Lost            int64             `json:"lost"`   // stored, never delivered
	Duplicated      int64             `json:"duplicated"`
	Errors          int64             `json:"errors"`
	ErrorKinds      map[string]int64  `json:"error_kinds"`
	ErrorExamples   map[string]string `json:"error_examples,omitempty"`

	P50Ms  float64 `json:"p50_ms"` // end to end: send to decrypt
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`

	// Nil when unknown (RSSNote says why).
	ServerRSSBytes     *int64 `json:"server_rss_bytes"`
	ServerRSSPeakBytes *int64 `json:"server_rss_peak_bytes"`
	RSSNote            string `json:"rss_note,omitempty"`

	// CPU time used while sending and draining, by the server (from its
	// /metrics) and by the bench itself; nil when unknown. Both share
	// the machine's CPUs.
	ServerCPUS *float64 `json:"server_cpu_s"`
	BenchCPUS  *float64 `json:"bench_cpu_s"`
	CPUs       int      `json:"cpus"`

	EchoCeilingPerSec float64 `json:"echo_ceiling_per_sec"`
	EchoConnections   int     `json:"echo_connections"`
	MessageBytes      int     `json:"message_bytes"` // mean send frame, also the echo size
}

// OK reports a clean run: nothing lost, nothing doubled, no errors.
func (r *Report) OK() bool { return r.Lost == 0 && r.Duplicated == 0 && r.Errors == 0 }

func (r *run) report(loadStart time.Duration, setup, drain time.Duration) *Report {
	t := tallyEdges(r.edges)
	r.errMu.Lock()
	kinds := maps.Clone(r.errKinds)
	examples := maps.Clone(r.errFirst)
	r.errMu.Unlock()
	if t.unanswered > 0 {
		kinds["unanswered"] += t.unanswered
		examples["unanswered"] = fmt.Sprintf("%d sends had no answer from the server by the end", t.unanswered)
	}
	if t.phantom > 0 {
		kinds["phantom"] += t.phantom
		examples["phantom"] = fmt.Sprintf("%d envelopes named messages that were never sent", t.phantom)
	}
	var errs int64
	for _, n := range kinds {
		errs += n
	}
	elapsed := max(time.Duration(r.lastDelivery.Load())-loadStart, r.cfg.Duration)
	rep := &Report{
		Users:           r.cfg.Users,
		Peers:           r.cfg.Peers,
		Rate:            r.cfg.Rate,
		DurationS:       r.cfg.Duration.Seconds(),
		SetupS:          round(setup.Seconds(), 3),
		DrainS:          round(drain.Seconds(), 3),
		Sent:            t.sent,
		Stored:          t.stored,
		Delivered:       t.delivered,
		DeliveredPerSec: round(float64(t.delivered)/elapsed.Seconds(), 1),
		Behind:          r.behind.Load(),
		Lost:            t.lost,
		Duplicated:      t.duplicated,
		Errors:          errs,
		ErrorKinds:      kinds,
		ErrorExamples:   examples,
		P50Ms:           round(r.hist.quantile(0.50), 3),
		P99Ms:           round(r.hist.quantile(0.99), 3),
		P999Ms:          round(r.hist.quantile(0.999), 3),
		MaxMs:           round(r.hist.maxMs(), 3),
	}
	if len(examples) == 0 {
		rep.ErrorExamples = nil
	}
	return rep
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// WriteText writes the report as a table for people.
func (r *Report) WriteText(w io.Writer) error {
	var b []byte
	line := func(format string, args ...any) { b = fmt.Appendf(b, format+"\n", args...) }
	line("hush bench: %d users (%d peers each), %g messages/s offered for %gs, server %s", r.Users, r.Peers, r.Rate, r.DurationS, r.Server)
	line("  setup          %.1f s", r.SetupS)
	line("  sent           %-10d behind schedule %d", r.Sent, r.Behind)
	line("  stored         %d", r.Stored)
	line("  delivered      %-10d %.1f messages/s", r.Delivered, r.DeliveredPerSec)
	line("  lost           %d", r.Lost)
	line("  duplicated     %d", r.Duplicated)
	line("  errors         %d", r.Errors)
	for _, k := range slices.Sorted(maps.Keys(r.ErrorKinds)) {
		line("    %-12s %d  (first: %s)", k, r.ErrorKinds[k], r.ErrorExamples[k])
	}
	line("  latency        p50 %.3f ms   p99 %.3f ms   p99.9 %.3f ms   max %.3f ms", r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	if r.ServerRSSBytes != nil {
		peak := "unknown"
		if r.ServerRSSPeakBytes != nil {
			peak = mib(*r.ServerRSSPeakBytes)
		}
		line("  server RSS     %s   peak %s", mib(*r.ServerRSSBytes), peak)
	} else {
		line("  server RSS     unknown (%s)", r.RSSNote)
	}
	line("  cpu time       server %s   bench %s   (over %.1f s of sending and draining, %d CPUs)", seconds(r.ServerCPUS), seconds(r.BenchCPUS), r.DurationS+r.DrainS, r.CPUs)
	line("  echo ceiling   %.1f round trips/s   (%d connections, %d-byte messages)", r.EchoCeilingPerSec, r.EchoConnections, r.MessageBytes)
	_, err := w.Write(b)
	return err
}

func seconds(v *float64) string {
	if v == nil {
		return "unknown"
	}
	return fmt.Sprintf("%.1f s", *v)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
