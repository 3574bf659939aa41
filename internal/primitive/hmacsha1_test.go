package primitive

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestHMACSHA1RFC2202 checks the first two test cases of RFC 2202 §3.
func TestHMACSHA1RFC2202(t *testing.T) {
	for _, tc := range []struct{ key, msg, mac string }{
		{"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", hex.EncodeToString([]byte("Hi There")), "b617318655057264e28bc0b6fb378c8ef146be00"},
		{hex.EncodeToString([]byte("Jefe")), hex.EncodeToString([]byte("what do ya want for nothing?")), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"},
	} {
		key, _ := hex.DecodeString(tc.key)
		msg, _ := hex.DecodeString(tc.msg)
		want, _ := hex.DecodeString(tc.mac)
		if got := HMACSHA1(key, msg); !bytes.Equal(got, want) {
			t.Errorf("HMACSHA1(%s, %s) = %x, want %x", tc.key, tc.msg, got, want)
		}
	}
}
