package salesforce

import (
	"fmt"
	"strings"
	"testing"
)

// searchAnswer is a SOSL answer as Salesforce sends it: five records of
// mixed types, each with its attributes, a nested relationship and a few
// fields.
func searchAnswer() []byte {
	var b strings.Builder
	b.WriteString(`{"searchRecords":[`)
	for i, typ := range []string{"Account", "Contact", "Opportunity", "Lead", "Case"} {
		if i > 0 {
			b.WriteByte(',')
		}
		id := fmt.Sprintf("%s00000000000%dAAA", map[string]string{"Account": "001", "Contact": "003", "Opportunity": "006", "Lead": "00Q", "Case": "500"}[typ], i)
		fmt.Fprintf(&b, `{"attributes":{"type":%q,"url":"/services/data/v62.0/sobjects/%s/%s"},"Id":%q,"Name":"Acme %s %d",`+
			`"Phone":"+1 415 555 010%d","Industry":"Manufacturing","Amount":120000.5,"CloseDate":"2026-12-31",`+
			`"Owner":{"attributes":{"type":"User","url":"/services/data/v62.0/sobjects/User/005000000000001AAA"},"Name":"Jane Doe"}}`,
			typ, typ, id, id, typ, i, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func TestDecodeSearch(t *testing.T) {
	recs, err := decodeSearch(searchAnswer())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[2].Type != "Opportunity" || recs[2].ID != "006000000000002AAA" || recs[2].String("Amount") != "120000.5" {
		t.Fatalf("decoded %+v", recs)
	}
	if _, ok := recs[0].Fields["attributes"]; ok {
		t.Error("attributes kept in the fields")
	}
	for _, bad := range []string{`{"searchRecords":[null]}`, `{"searchRecords":[1]}`, `{"searchRecords":[]} x`, `[`} {
		if _, err := decodeSearch([]byte(bad)); err == nil {
			t.Errorf("decodeSearch(%s) = nil error", bad)
		}
	}
}

// BenchmarkSearchDecode: decoding a five-record SOSL answer, once per
// search. A second pass over the answer (a list of raw records decoded
// again each) shows here as ns/op and allocs/op.
func BenchmarkSearchDecode(b *testing.B) {
	data := searchAnswer()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeSearch(data); err != nil {
			b.Fatal(err)
		}
	}
}
