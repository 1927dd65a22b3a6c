package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/forcebind/forcebind/auth"
	"github.com/forcebind/forcebind/salesforce"
)

// The checks of what reaches forcebind: the callback URL against the
// listener plan, the TLS certificate, and the listen addresses.

// checkCallback compares the callback URL with the listener of the plan
// that must receive it, and checks the TLS certificate the listeners would
// serve.
func (d doctor) checkCallback() []checkResult {
	c := d.cfg
	var rs []checkResult
	cb, err := url.Parse(c.CallbackURL)
	usable := err == nil && cb.Host != "" && (cb.Scheme == "http" || cb.Scheme == "https")
	tlsOn := c.TLSCertFile != "" && c.TLSKeyFile != ""
	host := "" // the name the certificate must have
	for _, l := range listenerPlan(c) {
		if !l.callback {
			continue
		}
		lhost, lport, err := net.SplitHostPort(l.addr)
		switch {
		case !usable:
			rs = append(rs, skipped("callback URL", "FORCEBIND_CALLBACK_URL unusable (see configuration)"))
		case err != nil:
			rs = append(rs, skipped("callback URL", "%s unusable (see configuration)", l.setting))
		default:
			rs = append(rs, callbackChecks(cb, lhost, lport, l.addr, tlsOn)...)
		}
		if usable {
			host = cb.Hostname()
		}
	}
	if tlsOn {
		rs = append(rs, d.checkCert(host))
	}
	return rs
}

// callbackChecks finds where a browser sent to the callback URL ends up
// with respect to the listener at listen.
func callbackChecks(cb *url.URL, lhost, lport, listen string, tlsOn bool) []checkResult {
	const name = "callback URL"
	port := cb.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[cb.Scheme]
	}
	cbLoop, listenLoop := salesforce.IsLoopback(cb.Hostname()), salesforce.IsLoopback(lhost)
	var rs []checkResult
	switch {
	case cbLoop && port != lport:
		rs = append(rs, failed(name, fmt.Sprintf("%s is on this machine, port %s, but FORCEBIND_LISTEN is %s: the browser's redirect misses the listener", cb, port, listen),
			fmt.Sprintf("set FORCEBIND_LISTEN to 127.0.0.1:%s, or use port %s in FORCEBIND_CALLBACK_URL and in the connected app", port, lport)))
	case cbLoop && cb.Scheme == "https" && !tlsOn:
		rs = append(rs, failed(name, fmt.Sprintf("%s is https, but the listener on this machine serves plain HTTP", cb),
			"set FORCEBIND_TLS_CERT_FILE and FORCEBIND_TLS_KEY_FILE, or use http://localhost in FORCEBIND_CALLBACK_URL and the connected app"))
	case cbLoop && cb.Scheme == "http" && tlsOn:
		rs = append(rs, failed(name, fmt.Sprintf("%s is http, but the listener serves TLS", cb),
			"use https in FORCEBIND_CALLBACK_URL and in the connected app"))
	case cbLoop:
		rs = append(rs, passed(name, "%s reaches the listener %s (from a browser on this machine only)", cb, listen))
	case listenLoop:
		rs = append(rs, warned(name, "FORCEBIND_LISTEN %s is loopback but the callback host is %s: reachable only through a reverse proxy on this machine", listen, cb.Hostname()))
	default:
		rs = append(rs, passed(name, "%s should reach the listener %s (through DNS, a load balancer or a reverse proxy)", cb, listen))
	}
	// Plain http on a network host is a configuration problem, reported
	// with the others.
	if !cbLoop && cb.Scheme == "https" && !tlsOn {
		rs = append(rs, warned(name, "%s is https and the listener serves plain HTTP: TLS must be terminated by a reverse proxy", cb))
	}
	return rs
}

// checkCert loads the listener's certificate and key as the daemon does,
// and checks that the certificate is current and, when host is set, names
// the callback host.
func (d doctor) checkCert(host string) checkResult {
	const name = "TLS certificate"
	c := d.cfg
	renew := "renew it, then reload forcebind (SIGHUP: systemctl reload forcebind)"
	cert, err := auth.LoadCertificate(c.TLSCertFile, c.TLSKeyFile)
	switch {
	case errors.Is(err, auth.ErrCertExpired):
		return failed(name, err.Error(), renew)
	case err != nil:
		// The error names files and PEM problems, never key material.
		return failed(name, err.Error(), "FORCEBIND_TLS_CERT_FILE must hold the PEM chain (leaf first) and FORCEBIND_TLS_KEY_FILE its private key, both readable by forcebind")
	}
	leaf, now := cert.Leaf(), d.now()
	if now.Before(leaf.NotBefore) {
		return failed(name, fmt.Sprintf("%s is not valid before %s", c.TLSCertFile, leaf.NotBefore.UTC().Format(time.DateTime)), "check the clock of this machine, or use a certificate valid now")
	}
	names := certNames(leaf)
	if host != "" {
		if err := leaf.VerifyHostname(host); err != nil {
			return failed(name, fmt.Sprintf("%s is for %s, not the callback host %s", c.TLSCertFile, names, host),
				fmt.Sprintf("use a certificate whose subject alternative names include %s, or change FORCEBIND_CALLBACK_URL", host))
		}
	}
	left := leaf.NotAfter.Sub(now)
	if left < certWarnBefore {
		return warned(name, "%s for %s expires in %d days (%s): %s", c.TLSCertFile, names, int(left.Hours()/24), leaf.NotAfter.UTC().Format(time.DateOnly), renew)
	}
	return passed(name, "%s for %s, valid until %s", c.TLSCertFile, names, leaf.NotAfter.UTC().Format(time.DateOnly))
}

// certNames lists the names a certificate is for.
func certNames(c *x509.Certificate) string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

// checkListen binds each address of the listener plan, and lets go at
// once.
func (d doctor) checkListen() []checkResult {
	var rs []checkResult
	for _, l := range listenerPlan(d.cfg) {
		name := "listen"
		if l.admin {
			name = "admin listen"
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			rs = append(rs, skipped(name, "%s unusable (see configuration)", l.setting))
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		switch {
		case err == nil:
			ln.Close()
			rs = append(rs, passed(name, "%s can be bound", l.addr))
		case errors.Is(err, syscall.EADDRINUSE):
			rs = append(rs, warned(name, "%s is in use; a running forcebind may hold it", l.addr))
		case errors.Is(err, syscall.EACCES):
			rs = append(rs, failed(name, err.Error(), fmt.Sprintf("use a port above 1023 in %s (a reverse proxy can serve 443)", l.setting)))
		default:
			rs = append(rs, failed(name, err.Error(), fmt.Sprintf("set %s to an address of this machine, e.g. 127.0.0.1:8787 or 0.0.0.0:8787", l.setting)))
		}
	}
	return rs
}

// networkProblem says in a few words why a request got no answer.
func networkProblem(err error, timeout time.Duration) string {
	var dns *net.DNSError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("no answer within %s", timeout)
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve %s", dns.Name)
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he):
		return fmt.Sprintf("TLS verification failed: %v", err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
