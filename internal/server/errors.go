package server

import (
	"fmt"
	"net/http"
)

// Error codes on the wire (wire.Error.code, docs/protocol.md §9).
const (
	codeOK              = "ok" // metrics label only, never sent
	codeBadRequest      = "bad_request"
	codeUnauthorized    = "unauthorized"
	codeNoUser          = "no_user"
	codeUsernameTaken   = "username_taken"
	codeBadUsername     = "bad_username"
	codeBadPow          = "bad_pow"
	codeTooLarge        = "too_large"
	codeRateLimited     = "rate_limited"
	codeDeviceMismatch  = "device_mismatch"
	codeVersionConflict = "version_conflict"
	codeNoSuchAddress   = "no_such_address"  // provision_send: no linking device waits there
	codeNotFound        = "not_found"        // GET/PUT /v1/blobs/{id}: no such blob (§9.13)
	codeAlreadyUploaded = "already_uploaded" // PUT /v1/blobs/{id} a second time
	codeQuotaExceeded   = "quota_exceeded"   // blob_upload over the account's quota
	codeNoTURN          = "no_turn"          // turn_credentials on a server without a relay (§13.3)
	codeInternal        = "internal"
)

// apiError is an error the client is told about. Its message is written
// for a person and must never contain key material or message content.
type apiError struct {
	code string
	msg  string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func apiErr(code, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

// errInternal is what the client sees for a failure on our side; the real
// cause goes to the log only.
var errInternal = &apiError{code: codeInternal, msg: "internal server error; try again later"}

// httpStatus maps an error code to the HTTP status of the HTTP endpoints.
func httpStatus(code string) int {
	switch code {
	case codeBadRequest, codeBadUsername, codeBadPow:
		return http.StatusBadRequest
	case codeUnauthorized:
		return http.StatusUnauthorized
	case codeNoUser, codeNoSuchAddress, codeNotFound:
		return http.StatusNotFound
	case codeUsernameTaken, codeVersionConflict, codeDeviceMismatch, codeAlreadyUploaded:
		return http.StatusConflict
	case codeTooLarge, codeQuotaExceeded:
		return http.StatusRequestEntityTooLarge
	case codeRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// clip shortens client-supplied strings before they go into a message or
// a log line.
func clip(s string) string {
	const n = 40
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
