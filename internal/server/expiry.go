package server

import (
	"context"
	"time"
)

// expiryLoop deletes expired messages, blobs and unused blob grants at
// start and every expirySweepPeriod, and forgets spent proof-of-work
// challenges.
// Pending already hides expired messages; this reclaims their space.
func (s *Server) expiryLoop(ctx context.Context) {
	t := time.NewTicker(expirySweepPeriod)
	defer t.Stop()
	for {
		s.sweepExpired(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) sweepExpired(ctx context.Context) {
	s.pow.Forget()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Blobs first: they live on disk, not in the store, and a store
	// failure must not keep disk space from being reclaimed.
	if b, err := s.sweepBlobs(ctx); err != nil {
		if ctx.Err() == nil {
			s.log.Error("delete expired blobs", "err", err)
		}
	} else if b > 0 {
		s.metrics.blobsExpired.Add(float64(b))
		s.log.Info("deleted expired blobs", "count", b)
	}
	n, err := s.store.DeleteExpired(ctx, s.now())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("delete expired messages", "err", err)
		}
		return
	}
	s.metrics.expired.Add(float64(n))
	if n > 0 {
		s.log.Info("deleted expired messages", "count", n)
	}
}
