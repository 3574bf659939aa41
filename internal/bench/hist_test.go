package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	var h histogram
	rng := rand.New(rand.NewPCG(1, 2))
	var all []float64
	for range 100_000 {
		// Log-uniform from 10 µs to 10 s.
		us := math.Exp(math.Log(10) + rng.Float64()*math.Log(1e6))
		d := time.Duration(us * float64(time.Microsecond))
		h.record(d)
		all = append(all, float64(d.Microseconds())/1000)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := all[int(math.Ceil(q*float64(len(all))))-1]
		got := h.quantile(q)
		if math.Abs(got-want) > want/100+0.001 {
			t.Errorf("q%g = %g ms, want %g ms within 1%%", q, got, want)
		}
	}
	if h.maxMs() != all[len(all)-1] {
		t.Errorf("max %g, want %g", h.maxMs(), all[len(all)-1])
	}
}

func TestHistogramEdges(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram has a median")
	}
	h.record(-time.Second)          // a clock oddity: counted as 0
	h.record(1000 * 24 * time.Hour) // clamped, not out of range
	if h.n.Load() != 2 || h.quantile(0.5) != 0 {
		t.Fatalf("n=%d median=%g", h.n.Load(), h.quantile(0.5))
	}
	for us := uint64(0); us < 1<<20; us += 7 {
		i := histBucket(us)
		if v := histValue(i); math.Abs(v-float64(us)) > float64(us)/128+1 {
			t.Fatalf("%d µs lands in bucket %d worth %g", us, i, v)
		}
	}
	if histBucket(histMaxUS) >= histBuckets {
		t.Fatal("the largest value has no bucket")
	}
}
