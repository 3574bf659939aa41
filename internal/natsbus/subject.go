package natsbus

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hush-chat/hush/internal/store"
)

// Subject layout, under a deployment prefix ("hush" unless Config.Prefix
// says otherwise):
//
//	<prefix>.wake.<hex(username)>.<device id>   wake-up, empty payload
//	<prefix>.ctl.<subject>                      control event, opaque payload
//
// The username is hex-encoded because usernames are not ours to restrict
// here, and '.', '*', '>' or a space in one would change what a subject
// means to NATS.
const (
	defaultPrefix = "hush"
	wakeToken     = "wake"
	ctlToken      = "ctl"
	// emptyUserToken stands for an empty username, which has no hex
	// digits; '_' is not a hex digit, so it cannot collide with a real one.
	emptyUserToken = "_"
	// maxSubjectLen bounds prefixes and control subjects; NATS itself has
	// no small limit, but a subject this long is a bug, not a design.
	maxSubjectLen = 256
)

// wakeSubject returns the subject that carries ref's wake-ups. base is
// "<prefix>.wake.".
func wakeSubject(base string, ref store.DeviceRef) string {
	b := make([]byte, 0, len(base)+2*len(ref.Username)+1+10)
	b = append(b, base...)
	if ref.Username == "" {
		b = append(b, emptyUserToken...)
	} else {
		b = hex.AppendEncode(b, []byte(ref.Username))
	}
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(ref.ID), 10)
	return string(b)
}

// checkSubject accepts dot-separated tokens of ASCII letters, digits, '-'
// and '_'. That excludes NATS wildcards ('*', '>'), whitespace and empty
// tokens, so a checked subject always names exactly one subject.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	if len(s) > maxSubjectLen {
		return fmt.Errorf("subject is %d bytes, more than %d", len(s), maxSubjectLen)
	}
	for i, tok := range strings.Split(s, ".") {
		if tok == "" {
			return fmt.Errorf("subject %q: token %d is empty", s, i+1)
		}
		for j := 0; j < len(tok); j++ {
			if !subjectByte(tok[j]) {
				return fmt.Errorf("subject %q: token %q has byte %q (allowed: ASCII letters, digits, '-', '_')", s, tok, tok[j])
			}
		}
	}
	return nil
}

func subjectByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
