package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/client"
)

func TestSanitizeNeutralizesTerminalControl(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                   "plain",
		"tab\tok":                 "tab\tok",
		"\x1b[2Jclear":            "\uFFFD[2Jclear",
		"two\nlines":              "two\n    lines",
		"bell\a and \r return":    "bell\uFFFD and \uFFFD return",
		"rtl \u202e override":     "rtl \uFFFD override",
		"csi \u009b8m":            "csi \uFFFD8m",
		"[2026-01-01 00:00] a: b": "[2026-01-01 00:00] a: b",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatText(t *testing.T) {
	when := time.Date(2026, 11, 23, 15, 4, 59, 0, time.Local)
	if got := formatText(when, "alice", "hello"); got != "[2026-11-23 15:04] alice: hello" {
		t.Fatalf("got %q", got)
	}
}

func TestFormatJSONTimesAreUTC(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	m := &client.MessageEvent{From: "bob", Device: 2, Text: "x",
		Sent: time.Date(2026, 1, 2, 3, 4, 5, 6e6, loc), Received: time.Date(2026, 1, 2, 3, 4, 6, 0, loc)}
	got := formatJSON(m)
	want := `{"id":"00000000000000000000000000000000","from":"bob","device":2,"sent":"2026-01-02T02:04:05.006Z","received":"2026-01-02T02:04:06.000Z","type":"text","text":"x"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestDefaultHome(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HUSH_HOME": "/h", "XDG_DATA_HOME": "/x", "HOME": "/home/u"}, "/h"},
		{map[string]string{"XDG_DATA_HOME": "/x", "HOME": "/home/u"}, "/x/hush"},
		{map[string]string{"HOME": "/home/u"}, "/home/u/.local/share/hush"},
	} {
		if got := defaultHome(env(tc.env)); got != tc.want {
			t.Errorf("defaultHome(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestReadTextFromStdin(t *testing.T) {
	if s, err := readText(strings.NewReader("line one\nline two\n")); err != nil || s != "line one\nline two" {
		t.Fatalf("got %q, %v", s, err)
	}
	if _, err := readText(strings.NewReader(strings.Repeat("x", client.MaxTextSize+1))); err == nil {
		t.Fatal("oversized stdin accepted")
	}
}
