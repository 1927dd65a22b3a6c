package sftest

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds a small SOSL subset:
//
//	FIND {term} [IN ALL|NAME|EMAIL|PHONE FIELDS]
//	  [RETURNING Object[(field, ... [LIMIT n])], ...] [LIMIT n]
//
// The term is decoded with SOSL's escapes (a backslash before a reserved
// character makes it literal). Unescaped * and ? are wildcards; other
// unescaped reserved characters and spaces separate words, and the words
// AND, OR and NOT are dropped. A record matches when every word occurs in
// one of its name fields, ignoring case.

const soslReserved = `?&|!{}[]()^~*:\"'+-`

type soslSpec struct {
	object *objectData
	fields []fieldRef
	limit  int // -1: none
}

type soslQuery struct {
	words   [][]patElem // each wrapped in leading and trailing "many"
	returns []soslSpec
	limit   int
}

func malformedSearch(format string, args ...any) error {
	return &queryError{code: "MALFORMED_SEARCH", msg: fmt.Sprintf(format, args...)}
}

// parseSOSL parses src for a user from whom security hides hidden: a
// RETURNING list that names one of those fields refuses the whole search
// with INVALID_FIELD, and one that names an object the user may not read
// with INVALID_TYPE, as Salesforce does.
func parseSOSL(org *orgData, hidden hiddenSet, src string) (*soslQuery, error) {
	rest := strings.TrimLeftFunc(src, unicode.IsSpace)
	if len(rest) < 4 || !strings.EqualFold(rest[:4], "FIND") {
		return nil, malformedSearch("search query must start with FIND")
	}
	rest = strings.TrimLeftFunc(rest[4:], unicode.IsSpace)
	if !strings.HasPrefix(rest, "{") {
		return nil, malformedSearch("missing '{' after FIND")
	}
	words, n, err := readTerm(rest[1:])
	if err != nil {
		return nil, err
	}
	q := &soslQuery{words: words, limit: -1}
	significant := 0
	for _, w := range words {
		for _, e := range w {
			if e.kind == elemRune {
				significant++
			}
		}
	}
	if significant < 2 {
		return nil, &queryError{code: "INVALID_SEARCH", msg: "search term must be longer than one character"}
	}
	toks, err := tokenize(rest[1+n:])
	if err != nil {
		return nil, malformedSearch("%s", err.(*queryError).msg)
	}
	p := &parser{toks: toks, org: org, hidden: hidden}
	if p.keyword("IN") {
		if !(p.keyword("ALL") || p.keyword("NAME") || p.keyword("EMAIL") || p.keyword("PHONE")) || !p.keyword("FIELDS") {
			return nil, malformedSearch("expected IN ALL|NAME|EMAIL|PHONE FIELDS")
		}
	}
	if p.keyword("RETURNING") {
		for {
			spec, err := p.returning()
			if err != nil {
				return nil, err
			}
			q.returns = append(q.returns, spec)
			if !p.symbol(",") {
				break
			}
		}
	} else {
		for _, name := range objectOrder() {
			if !hidden.denies(name) { // a search covers only what the user may read
				q.returns = append(q.returns, soslSpec{object: org.objects[name], fields: []fieldRef{{name: "Id"}}, limit: -1})
			}
		}
	}
	if p.keyword("LIMIT") {
		if q.limit, err = p.count(); err != nil {
			return nil, err
		}
	}
	if p.peek().kind != tokEOF {
		return nil, malformedSearch("unexpected token after search clauses")
	}
	return q, nil
}

func (p *parser) returning() (soslSpec, error) {
	t := p.next()
	if t.kind != tokIdent {
		return soslSpec{}, malformedSearch("expected an object after RETURNING")
	}
	od, ok := p.org.object(t.text)
	if !ok || p.hidden.denies(od.name) {
		return soslSpec{}, unsupportedType(t.text)
	}
	spec := soslSpec{object: od, fields: []fieldRef{{name: "Id"}}, limit: -1}
	if !p.symbol("(") {
		return spec, nil
	}
	spec.fields = nil
	for {
		f := p.next()
		if f.kind != tokIdent {
			return soslSpec{}, malformedSearch("expected a field name")
		}
		ref, err := p.resolveField(od, f.text)
		if err != nil {
			return soslSpec{}, err
		}
		spec.fields = append(spec.fields, ref)
		if !p.symbol(",") {
			break
		}
	}
	if p.keyword("LIMIT") {
		n, err := p.count()
		if err != nil {
			return soslSpec{}, err
		}
		spec.limit = n
	}
	if !p.symbol(")") {
		return soslSpec{}, malformedSearch("expected ')'")
	}
	return spec, nil
}

// readTerm decodes the FIND term after '{' and returns its words and the
// bytes consumed including the closing '}'.
func readTerm(src string) ([][]patElem, int, error) {
	var words [][]patElem
	var cur []patElem
	flush := func() {
		if len(cur) == 0 {
			return
		}
		if w := patText(cur); w != "and" && w != "or" && w != "not" {
			word := append([]patElem{{kind: elemMany}}, cur...)
			words = append(words, append(word, patElem{kind: elemMany}))
		}
		cur = nil
	}
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRuneInString(src[i:])
		i += size
		switch {
		case r == '}':
			flush()
			return words, i, nil
		case r == '\\':
			if i >= len(src) {
				return nil, 0, malformedSearch("unterminated escape in search term")
			}
			e, size := utf8.DecodeRuneInString(src[i:])
			i += size
			if !strings.ContainsRune(soslReserved, e) {
				return nil, 0, malformedSearch("invalid escape sequence in search term: \\%c", e)
			}
			cur = append(cur, patElem{r: e})
		case r == '{':
			return nil, 0, malformedSearch("unexpected '{' in search term")
		case r == '*':
			cur = append(cur, patElem{kind: elemMany})
		case r == '?':
			cur = append(cur, patElem{kind: elemOne})
		case unicode.IsSpace(r) || strings.ContainsRune(soslReserved, r):
			flush()
		default:
			cur = append(cur, patElem{r: r})
		}
	}
	return nil, 0, malformedSearch("missing '}' after search term")
}

// patText is the lower-case literal text of a word, for operator checks.
func patText(p []patElem) string {
	var b strings.Builder
	for _, e := range p {
		if e.kind != elemRune {
			return ""
		}
		b.WriteRune(unicode.ToLower(e.r))
	}
	return b.String()
}
