package server

import (
	"errors"
	"time"
)

// finish records a handled request in the metrics and the log, and
// returns its result code. Success logs at Debug (one line per message
// would swamp Info), a rejection at Warn with its code, an internal
// failure at Error with the cause. attrs name who asked (user, device);
// never content, keys or signatures.
func (s *Server) finish(typ string, start time.Time, err error, attrs ...any) string {
	return s.finishMsg(typ, "request", start, err, attrs...)
}

// finishMsg is finish with the message a success is logged under.
func (s *Server) finishMsg(typ, okMsg string, start time.Time, err error, attrs ...any) string {
	d := time.Since(start)
	code := codeOK
	var e *apiError
	if err != nil {
		e = asAPIError(err)
		code = e.code
	}
	s.metrics.requests.WithLabelValues(typ, code).Inc()
	s.metrics.duration.WithLabelValues(typ).Observe(d.Seconds())
	attrs = append(attrs, "type", typ, "dur", d)
	switch {
	case err == nil:
		s.log.Debug(okMsg, attrs...)
	case code == codeInternal:
		s.log.Error("request failed", append(attrs, "code", code, "err", err)...)
	default:
		s.log.Warn("request rejected", append(attrs, "code", code, "reason", e.msg)...)
	}
	return code
}

// asAPIError returns err's apiError, or the internal error for anything
// else (whose text stays in the log).
func asAPIError(err error) *apiError {
	var e *apiError
	if errors.As(err, &e) {
		return e
	}
	return errInternal
}
