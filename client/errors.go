package client

import (
	"errors"
	"fmt"
)

// Errors a caller can tell apart with errors.Is.
var (
	// ErrNoAccount: the home has no registered account yet.
	ErrNoAccount = errors.New("no account in this home; register first")
	// ErrHasAccount: Register was called on a home that already has one.
	ErrHasAccount = errors.New("this home already has an account")
	// ErrUnreachable: the server could not be reached or the connection
	// was lost. Wrapped by *UnreachableError.
	ErrUnreachable = errors.New("server unreachable")
	// ErrTooLarge: the message does not fit in one copy (96 KiB).
	ErrTooLarge = errors.New("message too large")
	// ErrNoUser: the recipient does not exist. Wrapped by *NoUserError.
	ErrNoUser = errors.New("no such user")
	// ErrAccountKeyChanged: a peer's account key differs from the one seen
	// first. Wrapped by *KeyChangedError.
	ErrAccountKeyChanged = errors.New("account key changed")
	// ErrBadBundle: the server served a prekey bundle that does not verify
	// against the peer's signed device list; no session was started.
	ErrBadBundle = errors.New("prekey bundle failed verification")
	// ErrBadDeviceList: the server served a device list that does not
	// verify, or an older version than one already seen.
	ErrBadDeviceList = errors.New("device list failed verification")
	// ErrProtocol: the server sent something that breaks the protocol.
	ErrProtocol = errors.New("protocol violation by the server")
)

// UnreachableError says which server could not be reached.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("server unreachable at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }

// NoUserError names the username that does not exist.
type NoUserError struct{ Username string }

func (e *NoUserError) Error() string { return fmt.Sprintf("no user %q", e.Username) }

func (e *NoUserError) Unwrap() error { return ErrNoUser }

// KeyChangedError names the peer whose account key changed: their safety
// number changed, and nothing is sent to them until the user accepts the
// new key (Client.Trust). Verified says the user had verified the old one.
type KeyChangedError struct {
	Username string
	Verified bool
}

func (e *KeyChangedError) Error() string {
	if e.Verified {
		return fmt.Sprintf("WARNING: %s's verified safety number changed (their account key is not the one you verified)", e.Username)
	}
	return fmt.Sprintf("safety number with %s changed (their account key is not the one you trusted)", e.Username)
}

func (e *KeyChangedError) Unwrap() error { return ErrAccountKeyChanged }

// ServerError is an Error the server answered with. Code is one of the
// codes listed in wire/hush.proto.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string {
	if e.Message == "" {
		return "server error: " + e.Code
	}
	return e.Message
}

// transient reports whether retrying later can succeed.
func (e *ServerError) transient() bool {
	switch e.Code {
	case "rate_limited", "internal", "unavailable":
		return true
	}
	return false
}

// QueuedError is returned by Send when the message could not be stored by
// the server yet but is kept in the outbox; the next Send, FlushOutbox or
// Receive retries it. Err says why.
type QueuedError struct {
	ID  MessageID
	Err error
}

func (e *QueuedError) Error() string { return e.Err.Error() + "; message kept in outbox" }

func (e *QueuedError) Unwrap() error { return e.Err }

// localError is a failure of the local database: transient, so a message
// whose processing hit it is not acknowledged and comes back later.
type localError struct{ err error }

func (e *localError) Error() string { return "local database: " + e.err.Error() }

func (e *localError) Unwrap() error { return e.err }

// isTransient reports whether err may go away by retrying later: the
// server unreachable or overloaded, the local database busy, or the
// caller's context ending.
func isTransient(err error) bool {
	var se *ServerError
	var le *localError
	switch {
	case errors.Is(err, ErrUnreachable), errors.As(err, &le):
		return true
	case errors.As(err, &se):
		return se.transient()
	}
	return false
}
