package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// mustCert writes a self-signed certificate for 127.0.0.1 with the given
// serial and validity to dir, and returns the two file names and the
// certificate.
func mustCert(tb testing.TB, dir string, serial int64, notAfter time.Time) (certFile, keyFile string, cert *x509.Certificate) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "forcebind test"},
		NotBefore:    notAfter.Add(-60 * 24 * time.Hour),
		NotAfter:     notAfter,
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile, cert
}

// servedSerial connects to addr trusting only trust and returns the serial
// number of the certificate the server presented, after a GET that must
// answer 200.
func servedSerial(t *testing.T, addr string, trust *x509.Certificate) int64 {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(trust)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true, // every call is a new handshake
	}}
	resp, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

func TestServeTLSAndReload(t *testing.T) {
	dir := t.TempDir()
	later := time.Now().Add(30 * 24 * time.Hour)
	certFile, keyFile, first := mustCert(t, dir, 1, later)
	cert, err := LoadCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		TLSConfig:         cert.TLSConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // the plain-HTTP probe below makes it complain
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	addr := ln.Addr().String()
	if got := servedSerial(t, addr, first); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	// Plain HTTP on a TLS listener is refused, not served.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP was answered 200 by the TLS listener")
		}
	}

	// A renewed pair is served after Reload, without restarting.
	_, _, second := mustCert(t, dir, 2, later)
	if got := servedSerial(t, addr, first); got != 1 {
		t.Fatalf("before Reload: serial %d, want 1 (files are read only on Reload)", got)
	}
	if err := cert.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, second); got != 2 {
		t.Fatalf("after Reload: serial %d, want 2", got)
	}

	// A half-written renewal keeps the certificate in use.
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cert.Reload(); err == nil {
		t.Fatal("Reload of a garbage certificate succeeded")
	}
	if got := servedSerial(t, addr, second); got != 2 {
		t.Fatalf("after a failed Reload: serial %d, want 2", got)
	}
}

func TestLoadCertificateRefuses(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := mustCert(t, dir, 1, time.Now().Add(-time.Hour))
	if _, err := LoadCertificate(certFile, keyFile); err == nil {
		t.Error("an expired certificate was loaded")
	}
	if _, err := LoadCertificate(filepath.Join(dir, "missing.pem"), keyFile); err == nil {
		t.Error("a missing certificate file was loaded")
	}
	other := t.TempDir()
	okCert, _, _ := mustCert(t, other, 2, time.Now().Add(time.Hour))
	_, wrongKey, _ := mustCert(t, t.TempDir(), 3, time.Now().Add(time.Hour))
	if _, err := LoadCertificate(okCert, wrongKey); err == nil {
		t.Error("a certificate with another's key was loaded")
	}
}
