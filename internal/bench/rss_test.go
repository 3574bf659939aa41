package bench

import (
	"errors"
	"os"
	"runtime"
	"testing"
)

func TestParseProcStatus(t *testing.T) {
	status := "Name:\thush\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t5\n"
	cur, peak, err := parseProcStatus([]byte(status))
	if err != nil || cur != 1024*1024 || peak != 2048*1024 {
		t.Fatalf("cur %d peak %d err %v", cur, peak, err)
	}
	for _, bad := range []string{"", "VmRSS:\t1 kB\n", "VmRSS:\t1 MB\nVmHWM:\t1 kB\n", "VmRSS:\t-1 kB\nVmHWM:\t1 kB\n", "VmRSS:\t99999999999999999999 kB\nVmHWM:\t1 kB\n"} {
		if _, _, err := parseProcStatus([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestProcRSSOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	cur, peak, err := procRSS(os.Getpid())
	if err != nil || cur <= 0 || peak < cur {
		t.Fatalf("cur %d peak %d err %v", cur, peak, err)
	}
}

func TestParseMetricsRSS(t *testing.T) {
	body := "# HELP process_resident_memory_bytes Resident memory size in bytes.\n" +
		"# TYPE process_resident_memory_bytes gauge\n" +
		"process_resident_memory_bytes_other 5\n" +
		"process_resident_memory_bytes 2.5165824e+07\n"
	if n, err := parseMetric([]byte(body), metricsRSSName); err != nil || n != 25165824 {
		t.Fatalf("%g, %v", n, err)
	}
	if n, err := parseMetric([]byte("process_resident_memory_bytes 1024 1700000000000\n"), metricsRSSName); err != nil || n != 1024 {
		t.Fatalf("with a timestamp: %g, %v", n, err)
	}
	if n, err := parseMetric([]byte("process_cpu_seconds_total 12.5\n"), metricsCPUName); err != nil || n != 12.5 {
		t.Fatalf("cpu: %g, %v", n, err)
	}
	if _, err := parseMetric([]byte("go_goroutines 5\n"), metricsRSSName); !errors.Is(err, errNoMetric) {
		t.Fatalf("no metric: %v", err)
	}
	for _, bad := range []string{"process_resident_memory_bytes NaN\n", "process_resident_memory_bytes -1\n", "process_resident_memory_bytes 1e300\n", "process_resident_memory_bytes x\n"} {
		if _, err := parseMetric([]byte(bad), metricsRSSName); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
