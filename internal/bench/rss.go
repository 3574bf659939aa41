package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The server's resident memory: from /proc for a server the bench
// started (VmRSS now, VmHWM the peak since it started), else from its
// Prometheus /metrics (process_resident_memory_bytes, sampled during the
// run; the peak is the largest sample).

// procRSS reads VmRSS and VmHWM of pid.
func procRSS(pid int) (cur, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcStatus(b)
}

// parseProcStatus reads the "VmRSS:  1234 kB" and "VmHWM:" lines.
func parseProcStatus(b []byte) (cur, peak int64, err error) {
	found := 0
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("bench: unexpected /proc status line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64/1024 {
			return 0, 0, fmt.Errorf("bench: unexpected /proc status line %q", strings.TrimSpace(line))
		}
		if name == "VmRSS" {
			cur = kb * 1024
		} else {
			peak = kb * 1024
		}
		found++
	}
	if found != 2 {
		return 0, 0, errors.New("bench: /proc status has no VmRSS and VmHWM")
	}
	return cur, peak, nil
}

// Metrics of client_golang's process collector.
const (
	metricsRSSName = "process_resident_memory_bytes"
	metricsCPUName = "process_cpu_seconds_total"
)

// maxMetricsBody bounds what the bench reads from /metrics.
const maxMetricsBody = 8 << 20

// errNoMetric means the server's /metrics lacks a metric (it registers no
// process collector).
var errNoMetric = errors.New("bench: the server's /metrics has no such metric")

// fetchMetrics gets baseURL/metrics.
func fetchMetrics(ctx context.Context, hc *http.Client, baseURL string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxMetricsBody))
}

// parseMetric finds "NAME VALUE" (an unlabelled sample) in the Prometheus
// text format and returns VALUE, which must be finite and not negative.
func parseMetric(body []byte, name string) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		n, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || n != name {
			continue
		}
		value, _, _ = strings.Cut(strings.TrimSpace(value), " ") // a timestamp may follow
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < 0 || v > math.MaxInt64/2 || math.IsNaN(v) {
			return 0, fmt.Errorf("bench: bad %s value %q", name, value)
		}
		return v, nil
	}
	return 0, fmt.Errorf("%w %s", errNoMetric, name)
}
