package auth

import (
	"testing"

	"github.com/forcebind/forcebind/salesforce/sftest"
	"github.com/forcebind/forcebind/store"
)

// Every message gets a fresh client, and all of them share what each
// Salesforce user may read: a person's second search reads no metadata,
// and another person's reads their own.
func TestClientsShareWhatUsersMayRead(t *testing.T) {
	e := mustEnv(t, envOptions{})
	bj := e.mustBind(t, jane, janeSF)
	bs := e.mustBind(t, sam, samSF)
	steps := []struct {
		name    string
		binding store.Binding
		want    int // object info calls so far (one batch of the five objects per person)
	}{{"jane", bj, 1}, {"jane again", bj, 1}, {"sam", bs, 2}, {"sam again", bs, 2}}
	for _, s := range steps {
		if _, err := e.search(t, s.binding); err != nil {
			t.Fatalf("%s: search: %v", s.name, err)
		}
		if n := e.sf.Calls(sftest.EndpointObjectInfo); n != s.want {
			t.Errorf("%s: %d object info calls so far, want %d", s.name, n, s.want)
		}
	}
}
