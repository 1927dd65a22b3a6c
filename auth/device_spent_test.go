package auth

import "testing"

// Once a device code is spent, Start asks for a new one, even while the
// person is still being told how the old one ended: they may type connect
// the moment the message arrives.
func TestDeviceStartAfterTheCodeIsSpent(t *testing.T) {
	e := mustEnv(t, envOptions{flow: FlowDevice})
	hold := make(chan struct{})
	e.notes.mu.Lock()
	e.notes.hold = hold
	e.notes.mu.Unlock()
	defer close(hold)
	old := e.mustStartDevice(t, jane)
	w := e.waits.next(t)
	if err := e.sf.DenyDevice(old.UserCode); err != nil {
		t.Fatal(err)
	}
	w.release()
	if how := e.notes.mustEnd(t); how != "denied" {
		t.Fatalf("link ended %q, want denied", how)
	}
	// The poller is still inside LinkFailed.
	fresh := e.mustStartDevice(t, jane)
	if fresh.UserCode == old.UserCode {
		t.Errorf("Start returned the spent code %s again", old.UserCode)
	}
}
