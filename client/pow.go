package client

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// maxPowBits bounds the work a server can ask for: 2^32 hashes is already
// minutes on one core, so more is a misconfigured or hostile server.
const maxPowBits = 32

// solvePow finds a nonce such that SHA-256(challenge || username ||
// uint64be(nonce)) starts with at least n zero bits (docs/protocol.md
// §9.2). It checks ctx every few thousand hashes.
func solvePow(ctx context.Context, challenge []byte, username string, n uint32) (uint64, error) {
	if n == 0 {
		return 0, nil
	}
	if n > maxPowBits {
		return 0, fmt.Errorf("server asks for a %d-bit proof of work; refusing more than %d", n, maxPowBits)
	}
	buf := make([]byte, 0, len(challenge)+len(username)+8)
	buf = append(buf, challenge...)
	buf = append(buf, username...)
	buf = append(buf, make([]byte, 8)...)
	tail := buf[len(buf)-8:]
	for nonce := uint64(0); ; nonce++ {
		if nonce%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		binary.BigEndian.PutUint64(tail, nonce)
		if powOK(sha256.Sum256(buf), n) {
			return nonce, nil
		}
	}
}

// powOK reports whether sum starts with at least n zero bits.
func powOK(sum [32]byte, n uint32) bool {
	var zeros uint32
	for _, b := range sum {
		if b != 0 {
			zeros += uint32(bits.LeadingZeros8(b))
			break
		}
		zeros += 8
		if zeros >= n {
			break
		}
	}
	return zeros >= n
}
