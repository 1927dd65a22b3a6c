package salesforce

import (
	"fmt"
	"strings"
)

// EscapeSOQL returns s escaped for use between single quotes in a SOQL
// string literal: backslash, both quotes and the control characters SOQL
// names get their backslash escapes, other control characters become a \u
// escape of four hex digits.
// It is safe for concurrent use.
func EscapeSOQL(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		writeSOQLRune(&b, r)
	}
	return b.String()
}

// EscapeLike returns s escaped for use between single quotes as a literal
// part of a SOQL LIKE pattern: it applies [EscapeSOQL] and also escapes the
// wildcards % and _. Do not apply EscapeSOQL to its result again. It is safe
// for concurrent use.
func EscapeLike(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch r {
		case '%', '_':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			writeSOQLRune(&b, r)
		}
	}
	return b.String()
}

func writeSOQLRune(b *strings.Builder, r rune) {
	switch r {
	case '\\':
		b.WriteString(`\\`)
	case '\'':
		b.WriteString(`\'`)
	case '"':
		b.WriteString(`\"`)
	case '\n':
		b.WriteString(`\n`)
	case '\r':
		b.WriteString(`\r`)
	case '\t':
		b.WriteString(`\t`)
	case '\b':
		b.WriteString(`\b`)
	case '\f':
		b.WriteString(`\f`)
	default:
		if r < 0x20 || r == 0x7f {
			fmt.Fprintf(b, `\u%04x`, r)
			return
		}
		b.WriteRune(r)
	}
}

// soslReserved are the characters SOSL reserves inside FIND {...}.
const soslReserved = `?&|!{}[]()^~*:\"'+-`

// EscapeSOSL returns s escaped for use inside the braces of a SOSL
// FIND {...} clause: every reserved character (? & | ! { } [ ] ( ) ^ ~ * : \
// " ' + -) gets a backslash, and control characters become spaces. The words
// AND, OR and NOT keep their SOSL meaning; they cannot leave the FIND clause.
// It is safe for concurrent use.
func EscapeSOSL(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		switch {
		case strings.ContainsRune(soslReserved, r):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
