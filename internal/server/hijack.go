package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// WebSocket buffer sizes. net/http hands a hijacked connection 4 KiB read
// and write buffers; most connections are idle most of the time, so we
// give coder/websocket smaller ones. Larger frames bypass them (bufio
// reads and writes big slices directly), so throughput is unaffected.
const (
	wsReadBuffer  = 1024
	wsWriteBuffer = 1024
)

// smallBuffers wraps a ResponseWriter so that Hijack returns a connection
// with small buffers and releases net/http's.
type smallBuffers struct {
	http.ResponseWriter
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		c.Close()
		return nil, nil, err
	}
	var r io.Reader = c
	if n := brw.Reader.Buffered(); n > 0 {
		// The client may have sent its first frame right behind the
		// upgrade request; keep those bytes.
		b, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(b)), c)
	}
	return c, bufio.NewReadWriter(bufio.NewReaderSize(r, wsReadBuffer), bufio.NewWriterSize(c, wsWriteBuffer)), nil
}

// Unwrap lets http.ResponseController reach the real writer.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }
