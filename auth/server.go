package auth

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"
)

// Server is an HTTP listener (the callback listener, or the admin one): an
// http.Server with timeouts, bound at construction so that a taken port is
// an error at start, not later.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr and returns a Server. Call Serve to start answering and
// Shutdown to stop.
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return &Server{ln: ln, srv: &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // a callback waits on Salesforce for up to CallTimeout
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}}, nil
}

// SetErrorLog sends the server's own complaints (failed TLS handshakes from
// scanners, malformed requests) to l instead of the standard logger. Call it
// before Serve.
func (s *Server) SetErrorLog(l *log.Logger) { s.srv.ErrorLog = l }

// Addr is the bound address, useful when addr had port 0.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests with h until Shutdown; it then returns nil. Call it
// once, or ServeTLS instead.
func (s *Server) Serve(h http.Handler) error {
	s.srv.Handler = h
	return served(s.srv.Serve(s.ln))
}

// ServeTLS is Serve over TLS with cert, which may be reloaded while serving.
func (s *Server) ServeTLS(h http.Handler, cert *Certificate) error {
	s.srv.Handler = h
	s.srv.TLSConfig = cert.config()
	return served(s.srv.ServeTLS(s.ln, "", ""))
}

func served(err error) error {
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends, then
// closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	_ = s.ln.Close() // in case Serve never ran
	return err
}
