package auth

import "testing"

// sameEmail trims, lowers ASCII letters only, then compares bytes: Unicode
// case folding would let a look-alike address match.
func TestSameEmail(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"identical", "kim@acme.com", "kim@acme.com", true},
		{"ASCII case", "Kim@ACME.com", "kim@acme.com", true},
		{"surrounding space", " kim@acme.com\t", "kim@acme.com", true},
		{"other address", "kim@acme.com", "kim@acme.org", false},
		{"Kelvin sign", "\u212Aim@acme.com", "kim@acme.com", false},
		{"Kelvin sign, upper", "\u212Aim@acme.com", "KIM@acme.com", false},
		{"long s", "\u017Fam@acme.com", "sam@acme.com", false},
		{"long s, upper", "\u017Fam@acme.com", "SAM@acme.com", false},
		{"non-ASCII, same bytes", "jürgen@acme.de", "jürgen@acme.de", true},
		{"non-ASCII, ASCII case only", "Jürgen@ACME.de", "jürgen@acme.de", true},
		{"non-ASCII, other case", "JÜRGEN@acme.de", "jürgen@acme.de", false},
		{"dotless i", "\u0131an@acme.com", "ian@acme.com", false},
		{"both empty", "", "", false},
		{"both blank", " ", "\t", false},
		{"one empty", "", "kim@acme.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameEmail(tt.a, tt.b); got != tt.want {
				t.Errorf("sameEmail(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := sameEmail(tt.b, tt.a); got != tt.want {
				t.Errorf("sameEmail(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
			}
		})
	}
}
