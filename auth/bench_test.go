package auth

import (
	"sync"
	"testing"

	"github.com/forcebind/forcebind/salesforce/sftest"
)

// BenchmarkRefreshUnderContention: each iteration expires the session and
// sends 20 concurrent searches, which share one refresh (rotation on, so the
// new refresh token is committed to the store each time).
func BenchmarkRefreshUnderContention(b *testing.B) {
	e := mustEnv(b, envOptions{})
	e.sf.SetRotation(true)
	e.mustBind(b, jane, janeSF)
	b.ReportAllocs()
	tokenCalls := e.sf.Calls(sftest.EndpointToken)
	for b.Loop() {
		e.sf.ExpireAccessTokens()
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				sf, _, err := e.svc.Client(b.Context(), jane)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := sf.Search(b.Context(), "acme"); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(e.sf.Calls(sftest.EndpointToken)-tokenCalls)/float64(b.N), "refreshes/op")
}
