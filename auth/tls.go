package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Certificate is the listener's TLS certificate and key, read from PEM
// files. Reload reads them again, so a renewed certificate (from ACME or a
// company CA) is taken up on SIGHUP without dropping connections. It is safe
// for concurrent use.
type Certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertificate reads a PEM certificate chain and its private key. It
// fails on a missing or unreadable file, a key that does not match, or a
// certificate that has expired.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again. On any error the certificate in use is kept,
// so a half-written renewal never takes the listener down.
func (c *Certificate) Reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		// The error names files and PEM problems, never key material.
		return fmt.Errorf("tls certificate: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("tls certificate %s: %w", c.certFile, err)
		}
	}
	if time.Now().After(pair.Leaf.NotAfter) {
		return fmt.Errorf("tls certificate %s: %w on %s", c.certFile, ErrCertExpired, pair.Leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	c.cur.Store(&pair)
	return nil
}

// ErrCertExpired is returned by LoadCertificate and Reload for a
// certificate past its NotAfter; the error says when it expired.
var ErrCertExpired = errors.New("expired")

// Leaf is the certificate in use, parsed; for logs and checks.
func (c *Certificate) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// TLSConfig is the server side TLS configuration for an http.Server's
// ServeTLS: TLS 1.2 or later, with the certificate looked up per handshake,
// so that Reload takes effect at once.
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.cur.Load(), nil
		},
	}
}
