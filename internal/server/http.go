package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

const protobufType = "application/x-protobuf"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", s.handleInfo)
	mux.HandleFunc("GET /v1/pow", s.handlePow)
	mux.HandleFunc("POST /v1/register", s.handleRegister)
	mux.HandleFunc("GET /v1/ws", s.handleWS)
	mux.HandleFunc("POST /v1/sealed", s.handleSealed)
	mux.HandleFunc("POST /v1/devicelist", s.handleDeviceList)
	mux.HandleFunc("GET /v1/account/{username}", s.handleAccount)
	mux.HandleFunc("GET /v1/provision", s.handleProvision)
	mux.HandleFunc("PUT /v1/blobs/{id}", s.handleBlobPut)
	mux.HandleFunc("GET /v1/blobs/{id}", s.handleBlobGet)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	writeProto(w, http.StatusOK, &wire.ServerInfo{
		ServerKey: s.pub.Bytes(),
		PowBits:   uint32(s.pow.Bits()),
		Version:   version(),
	})
}

func (s *Server) handlePow(w http.ResponseWriter, r *http.Request) {
	writeProto(w, http.StatusOK, &wire.PowChallenge{Challenge: s.pow.New(), Bits: uint32(s.pow.Bits())})
}

// handleReady answers 200 only while the store answers (for PostgreSQL:
// a connection can be had and answers a ping) and the server is not
// shutting down, so a load balancer sends new connections elsewhere.
// It does not look at the bus: a node cut off from NATS still serves its
// own devices, and its sweeps deliver what wake-ups would have.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readyz: store unreachable", "err", err)
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegisterBody))
	var req wire.RegisterRequest
	var resp *wire.RegisterResponse
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		err = apiErr(codeTooLarge, "registration body over %d bytes", maxRegisterBody)
	case err != nil:
		err = apiErr(codeBadRequest, "could not read the request body")
	case proto.Unmarshal(body, &req) != nil:
		err = apiErr(codeBadRequest, "body is not a RegisterRequest protobuf")
	default:
		resp, err = s.register(r.Context(), &req, remoteIP(r))
	}
	code := s.finish("register", start, err, "user", clip(req.GetUsername()))
	s.metrics.registrations.WithLabelValues(code).Inc()
	if err != nil {
		writeError(w, err)
		return
	}
	writeProto(w, http.StatusOK, resp)
}

// writeError writes err as a protobuf wire.Error with its HTTP status.
func writeError(w http.ResponseWriter, err error) {
	e := asAPIError(err)
	writeProto(w, httpStatus(e.code), &wire.Error{Code: e.code, Message: e.msg})
}

func writeProto(w http.ResponseWriter, status int, m proto.Message) {
	b, err := proto.Marshal(m)
	if err != nil {
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", protobufType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

// remoteIP is the peer's address without the port: the key for per-IP
// limits. Behind a reverse proxy every client shares the proxy's address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// version is the module version from the build, for ServerInfo.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return "hush " + bi.Main.Version
	}
	return "hush (devel)"
}
