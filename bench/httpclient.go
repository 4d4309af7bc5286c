package main

// A lean HTTP/1.1 client for loopback load. On this two-core machine the
// load generator shares the CPUs with the server it measures, so its cost
// per request is part of every result: net/http's client spends about
// 70 µs of CPU per request here (about 15,000 requests/s with two whole
// cores), while a minimal Go server can answer about 40,000 (wrk). This
// client writes one pre-formatted request per call on a keep-alive
// connection and reads the status, Content-Length (or chunked) body and
// Connection header, which is all a JSON API answer needs.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// httpConn is one keep-alive connection.
type httpConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// rawClient sends HTTP/1.1 requests to one host over a pool of keep-alive
// connections: a busy worker takes an idle connection or dials a new one,
// so the pool grows to the highest concurrency seen and no further.
type rawClient struct {
	addr    string
	timeout time.Duration

	mu   sync.Mutex
	idle []*httpConn
}

// newRawClient returns a client for base, e.g. http://127.0.0.1:8080.
func newRawClient(base string) (*rawClient, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("load client: want an http:// base URL, got %q", base)
	}
	return &rawClient{addr: u.Host, timeout: 15 * time.Second}, nil
}

func (rc *rawClient) get(ctx context.Context) (*httpConn, bool, error) {
	rc.mu.Lock()
	if n := len(rc.idle); n > 0 {
		hc := rc.idle[n-1]
		rc.idle = rc.idle[:n-1]
		rc.mu.Unlock()
		return hc, true, nil
	}
	rc.mu.Unlock()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", rc.addr)
	if err != nil {
		return nil, false, err
	}
	return &httpConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

func (rc *rawClient) put(hc *httpConn) {
	rc.mu.Lock()
	rc.idle = append(rc.idle, hc)
	rc.mu.Unlock()
}

// closeIdle closes every idle connection.
func (rc *rawClient) closeIdle() {
	rc.mu.Lock()
	idle := rc.idle
	rc.idle = nil
	rc.mu.Unlock()
	for _, hc := range idle {
		hc.c.Close()
	}
}

// errStale means a reused connection was closed by the server before it
// answered anything: the request can safely be sent again.
var errStale = errors.New("stale keep-alive connection")

// do sends one request and returns the status and body.
func (rc *rawClient) do(ctx context.Context, method, path, auth string, body []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		hc, reused, err := rc.get(ctx)
		if err != nil {
			return 0, nil, err
		}
		status, resp, keep, err := rc.exchange(ctx, hc, method, path, auth, body, reused)
		if err != nil || !keep {
			hc.c.Close()
		} else {
			rc.put(hc)
		}
		if errors.Is(err, errStale) && attempt == 0 {
			continue
		}
		if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		return status, resp, err
	}
}

func (rc *rawClient) exchange(ctx context.Context, hc *httpConn, method, path, auth string, body []byte, reused bool) (status int, resp []byte, keep bool, err error) {
	deadline := time.Now().Add(rc.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	hc.c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { hc.c.SetDeadline(time.Unix(1, 0)) }) // unblock on cancel
	defer stop()

	w := hc.bw
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(rc.addr)
	if auth != "" {
		w.WriteString("\r\nX-Service-Auth: ")
		w.WriteString(auth)
	}
	if body != nil {
		w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
		w.WriteString(strconv.Itoa(len(body)))
	}
	w.WriteString("\r\n\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		if reused {
			return 0, nil, false, errStale
		}
		return 0, nil, false, err
	}
	status, resp, keep, err = readResponse(hc.br)
	if err != nil && reused && (errors.Is(err, io.EOF) || errors.Is(err, errNoStatus)) {
		err = errStale
	}
	return status, resp, keep, err
}

// errNoStatus means the connection ended before a status line.
var errNoStatus = errors.New("connection closed before a response")

// readResponse reads one HTTP/1.1 response: it returns the status, the
// body (Content-Length or chunked) and whether the connection may be reused.
func readResponse(br *bufio.Reader) (status int, body []byte, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF && len(line) == 0 {
			return 0, nil, false, errNoStatus
		}
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, fmt.Errorf("malformed status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, nil, false, fmt.Errorf("malformed status line %q", line)
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection by default
	length, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, nil, false, fmt.Errorf("malformed header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, fmt.Errorf("malformed Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case chunked:
		body, err = readChunked(br)
	case length >= 0:
		body = make([]byte, length)
		_, err = io.ReadFull(br, body)
	case status == 204 || status == 304 || status/100 == 1:
	default: // no length: the body runs to the end of the connection
		body, err = io.ReadAll(io.LimitReader(br, 1<<20))
		keep = false
	}
	if err != nil {
		return 0, nil, false, err
	}
	return status, body, keep, nil
}

// readChunked reads a chunked body and its (empty) trailer.
func readChunked(br *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		size, err := strconv.ParseInt(string(bytes.TrimSpace(sizeText)), 16, 32)
		if err != nil || size < 0 || len(body)+int(size) > 1<<20 {
			return nil, fmt.Errorf("malformed chunk size %q", line)
		}
		if size == 0 {
			for { // trailer lines up to the empty one
				line, err := br.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, size)...)
		if _, err := io.ReadFull(br, body[start:]); err != nil {
			return nil, err
		}
		if _, err := br.Discard(2); err != nil { // CRLF after the chunk
			return nil, err
		}
	}
}
