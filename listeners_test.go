package main

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/forcebind/forcebind/auth"
)

// The plan that run binds and doctor checks: FORCEBIND_LISTEN for the
// callback in the web flow and for the operator's endpoints unless
// FORCEBIND_ADMIN_LISTEN takes them.
func TestListenerPlan(t *testing.T) {
	const listen, admin = "127.0.0.1:8787", "127.0.0.1:9090"
	front := func(name string, callback, ops bool) listener {
		return listener{name: name, setting: "FORCEBIND_LISTEN", addr: listen, callback: callback, ops: ops}
	}
	adminListener := listener{name: "admin listener", setting: "FORCEBIND_ADMIN_LISTEN", addr: admin, ops: true, admin: true}
	tests := []struct {
		name  string
		flow  auth.Flow
		admin string
		want  []listener
	}{
		{"web", auth.FlowWeb, "", []listener{front("callback listener", true, true)}},
		{"web, admin apart", auth.FlowWeb, admin, []listener{front("callback listener", true, false), adminListener}},
		{"device", auth.FlowDevice, "", []listener{front("listener", false, true)}},
		{"device, admin apart", auth.FlowDevice, admin, []listener{adminListener}},
		{"unreadable flow counts as web", "implicit", "", []listener{front("callback listener", true, true)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := listenerPlan(Config{ConnectFlow: tt.flow, Listen: listen, AdminListen: tt.admin})
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(listener{})); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// servers stops what it served and what it only bound, last bound first,
// running each one's closed hook, so no error path leaves a port taken.
func TestServersShutdown(t *testing.T) {
	srvs := newServers(zerolog.Nop())
	served, err := srvs.listen("served", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unserved, err := srvs.listen("unserved", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	served.closed = func() error { order = append(order, "served"); return nil }
	unserved.closed = func() error { order = append(order, "unserved"); return nil }
	srvs.serve(served, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), nil)
	addr := served.ln.Addr().String()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}

	srvs.shutdown(5 * time.Second)
	if diff := cmp.Diff([]string{"unserved", "served"}, order); diff != "" {
		t.Errorf("shutdown order mismatch (-want +got):\n%s", diff)
	}
	for _, sv := range []*server{served, unserved} {
		ln, err := net.Listen("tcp", sv.ln.Addr().String())
		if err != nil {
			t.Errorf("%s: the port is still taken after shutdown: %v", sv.name, err)
			continue
		}
		ln.Close()
	}
	select {
	case err := <-srvs.failed:
		t.Errorf("a clean shutdown reported a failure: %v", err)
	default:
	}
}
