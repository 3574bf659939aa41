package bench

import (
	"context"
	"errors"
	"sync"
	"time"
)

// watch samples the server's resident memory during the run and reads
// its CPU time before and after.
type watch struct {
	r *run

	mu       sync.Mutex
	cur      int64
	peak     int64
	ok       bool
	firstErr error
}

func (w *watch) sample(ctx context.Context) {
	var cur, peak int64
	var err error
	if w.r.cfg.RSS != nil {
		cur, peak, err = w.r.cfg.RSS()
	} else {
		var v float64
		v, err = w.metric(ctx, metricsRSSName)
		cur, peak = int64(v), int64(v)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		if w.firstErr == nil {
			w.firstErr = err
		}
		return
	}
	w.cur, w.ok = cur, true
	w.peak = max(w.peak, peak, cur)
}

func (w *watch) metric(ctx context.Context, name string) (float64, error) {
	body, err := fetchMetrics(ctx, w.r.httpc, w.r.baseURL)
	if err != nil {
		return 0, err
	}
	return parseMetric(body, name)
}

// serverCPU is the server's CPU time so far, if its /metrics says.
func (w *watch) serverCPU(ctx context.Context) (float64, bool) {
	v, err := w.metric(ctx, metricsCPUName)
	return v, err == nil
}

// every samples each period until the returned stop is called.
func (w *watch) every(ctx context.Context, period time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				w.sample(ctx)
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// rss is the last sample and the peak, or nil and why they are unknown.
func (w *watch) rss() (cur, peak *int64, note string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ok {
		note = "no sample"
		if w.firstErr != nil {
			note = w.firstErr.Error()
		}
		if errors.Is(w.firstErr, errNoMetric) {
			note = "the server's /metrics has no " + metricsRSSName
		}
		return nil, nil, note
	}
	c, p := w.cur, w.peak
	return &c, &p, ""
}
