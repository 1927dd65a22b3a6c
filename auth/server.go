package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is the callback listener: an http.Server with timeouts, bound at
// construction so that a taken port is an error at start, not later.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr and returns a Server. Call Serve to start answering and
// Shutdown to stop.
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("callback listener: %w", err)
	}
	return &Server{ln: ln, srv: &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // a callback waits on Salesforce for up to CallTimeout
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}}, nil
}

// Addr is the bound address, useful when addr had port 0.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests with h until Shutdown; it then returns nil. Call it
// once.
func (s *Server) Serve(h http.Handler) error {
	s.srv.Handler = h
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("callback listener: %w", err)
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
