package salesforce_test

import (
	"testing"

	"github.com/forcebind/forcebind/salesforce"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		in, soql, like, sosl string
	}{
		{in: "Acme", soql: "Acme", like: "Acme", sosl: "Acme"},
		{in: "O'Brien", soql: `O\'Brien`, like: `O\'Brien`, sosl: `O\'Brien`},
		{in: `back\slash`, soql: `back\\slash`, like: `back\\slash`, sosl: `back\\slash`},
		{in: "100%_done", soql: "100%_done", like: `100\%\_done`, sosl: "100%_done"},
		{in: "' OR Name LIKE '%", soql: `\' OR Name LIKE \'%`, like: `\' OR Name LIKE \'\%`, sosl: `\' OR Name LIKE \'%`},
		{in: "a\nb\tc\r", soql: `a\nb\tc\r`, like: `a\nb\tc\r`, sosl: "a b c "},
		{in: "nul\x00", soql: `nul\u0000`, like: `nul\u0000`, sosl: "nul "},
		{in: `say "hi"`, soql: `say \"hi\"`, like: `say \"hi\"`, sosl: `say \"hi\"`},
		{in: "x} RETURNING User(Id)", soql: "x} RETURNING User(Id)", like: "x} RETURNING User(Id)", sosl: `x\} RETURNING User\(Id\)`},
		{in: "?&|!{}[]()^~*:+-", soql: "?&|!{}[]()^~*:+-", like: "?&|!{}[]()^~*:+-", sosl: `\?\&\|\!\{\}\[\]\(\)\^\~\*\:\+\-`},
		{in: "Müller 株式", soql: "Müller 株式", like: "Müller 株式", sosl: "Müller 株式"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := salesforce.EscapeSOQL(tt.in); got != tt.soql {
				t.Errorf("EscapeSOQL = %q, want %q", got, tt.soql)
			}
			if got := salesforce.EscapeLike(tt.in); got != tt.like {
				t.Errorf("EscapeLike = %q, want %q", got, tt.like)
			}
			if got := salesforce.EscapeSOSL(tt.in); got != tt.sosl {
				t.Errorf("EscapeSOSL = %q, want %q", got, tt.sosl)
			}
		})
	}
}
