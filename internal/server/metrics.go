package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics live in a registry of their own, so two servers in one process
// (tests) never collide and nothing global is mutated.
type metrics struct {
	reg           *prometheus.Registry
	connections   prometheus.Gauge
	stored        prometheus.Counter
	delivered     prometheus.Counter
	acked         prometheus.Counter
	expired       prometheus.Counter
	dropped       prometheus.Counter
	swept         prometheus.Counter
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	registrations *prometheus.CounterVec

	blobsUploaded, blobsDownloaded         prometheus.Counter
	blobBytesUploaded, blobBytesDownloaded prometheus.Counter
	blobsExpired                           prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hush_websocket_connections",
			Help: "Open WebSocket connections (authenticated or not).",
		}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_messages_stored_total",
			Help: "Message copies accepted into device queues (idempotent retries included).",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_messages_delivered_total",
			Help: "Envelopes pushed to devices (a redelivery after reconnect counts again).",
		}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_messages_acked_total",
			Help: "Queued messages deleted after the device acknowledged them.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_messages_expired_total",
			Help: "Queued messages deleted unread after their expiry.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_messages_dropped_blocked_total",
			Help: "Authenticated sends acknowledged but dropped because the recipient blocks the sender.",
		}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_messages_swept_total",
			Help: "Envelopes pushed by a connection's periodic sweep rather than a wake-up: wake-ups lost between nodes.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hush_requests_total",
			Help: "Requests by type and result code (ok or the error code sent).",
		}, []string{"type", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hush_request_duration_seconds",
			Help:    "Time to handle a request, by type.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"type"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hush_registrations_total",
			Help: "Registration attempts by result code.",
		}, []string{"code"}),
		blobsUploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_blobs_uploaded_total",
			Help: "Encrypted file blobs uploaded.",
		}),
		blobsDownloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_blobs_downloaded_total",
			Help: "Blob downloads started (range requests count each).",
		}),
		blobBytesUploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_blob_bytes_uploaded_total",
			Help: "Ciphertext bytes of blobs uploaded.",
		}),
		blobBytesDownloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_blob_bytes_downloaded_total",
			Help: "Ciphertext bytes of blobs sent to downloaders.",
		}),
		blobsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_blobs_expired_total",
			Help: "Uploaded blobs deleted after their expiry.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connections, m.stored, m.delivered, m.acked, m.expired, m.dropped, m.swept,
		m.requests, m.duration, m.registrations,
		m.blobsUploaded, m.blobsDownloaded, m.blobBytesUploaded, m.blobBytesDownloaded, m.blobsExpired,
	)
	return m
}
