package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts latencies in microseconds in log-linear buckets: exact
// below 256 µs, then 128 buckets per power of two, so a reported
// percentile is within 1% of the true value. Fixed size and lock-free, so
// thousands of receivers can record into one.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64 // µs
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	histMaxUS   = 1<<40 - 1        // about 12 days; longer is clamped
	histBuckets = (40-histSubBits)*histSub + 2*histSub
)

func histBucket(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits - 1 // us>>shift is in [128, 256)
	return shift*histSub + int(us>>shift)
}

// histValue is the middle of bucket i, in µs.
func histValue(i int) float64 {
	if i < 2*histSub {
		return float64(i)
	}
	shift := i/histSub - 1
	low := uint64(i%histSub+histSub) << shift
	return float64(low) + float64(uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	us := max(d.Microseconds(), 0)
	us = min(us, histMaxUS)
	h.counts[histBucket(uint64(us))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// quantile returns the q-quantile (0 < q <= 1) in milliseconds, or 0 when
// nothing was recorded.
func (h *histogram) quantile(q float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(histValue(i), float64(h.max.Load())) / 1000
		}
	}
	return float64(h.max.Load()) / 1000
}

func (h *histogram) maxMs() float64 { return float64(h.max.Load()) / 1000 }
