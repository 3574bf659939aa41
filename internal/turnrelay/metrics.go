package turnrelay

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	allocations      prometheus.Gauge
	allocationsTotal prometheus.Counter
	toPeers          prometheus.Counter
	fromPeers        prometheus.Counter
	refused          *prometheus.CounterVec
	relayed          *prometheus.CounterVec
}

func newMetrics() *metrics {
	relayed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hush_turn_relayed_bytes_total",
		Help: "Bytes relayed between TURN allocations and their peers, by direction.",
	}, []string{"direction"})
	return &metrics{
		allocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hush_turn_allocations",
			Help: "Live TURN allocations.",
		}),
		allocationsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hush_turn_allocations_total",
			Help: "TURN allocations made.",
		}),
		relayed:   relayed,
		toPeers:   relayed.WithLabelValues("to_peer"),
		fromPeers: relayed.WithLabelValues("from_peer"),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hush_turn_refused_total",
			Help: "TURN requests and relayed datagrams refused, by reason (auth, quota, peer_address, own_address).",
		}, []string{"reason"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.allocations, m.allocationsTotal, m.relayed, m.refused}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for i, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				r.Unregister(done)
			}
			return err
		}
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}
