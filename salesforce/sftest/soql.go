package sftest

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds a small SOQL subset — enough for the client's own queries
// and for injection tests to mean something: string literals are decoded
// with SOQL's escape rules, so an escaped quote stays inside the literal and
// an unescaped one ends it.
//
//	SELECT field, Rel.field, ... FROM Object
//	  [WHERE cond {AND|OR cond}]   cond: field LIKE|=|!=|<> 'literal' | NULL, NOT cond, (cond)
//	  [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
//	  [LIMIT n] [OFFSET n]

// queryError is a Salesforce error answer the REST layer sends as
// 400 [{"message","errorCode"}].
type queryError struct {
	code, msg string
}

func (e *queryError) Error() string { return e.code + ": " + e.msg }

func malformed(format string, args ...any) error {
	return &queryError{code: "MALFORMED_QUERY", msg: fmt.Sprintf(format, args...)}
}

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokString
	tokNumber
	tokSymbol
)

type token struct {
	kind tokenKind
	text string  // identifier, number or symbol text
	lit  literal // decoded string literal
}

// patElem is one element of a LIKE pattern or SOSL term.
type patElem struct {
	r    rune
	kind int // elemRune, elemOne, elemMany
}

const (
	elemRune = iota
	elemOne
	elemMany
)

// literal is a decoded SOQL string literal: its text (wildcards kept as
// characters) and its LIKE pattern (wildcards resolved, \% and \_ literal).
type literal struct {
	text        string
	pattern     []patElem
	likeEscapes bool
}

func tokenize(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		r, size := utf8.DecodeRuneInString(src[i:])
		switch {
		case unicode.IsSpace(r):
			i += size
		case r == '\'':
			lit, n, err := readLiteral(src[i+1:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokString, lit: lit})
			i += 1 + n
		case r == '_' || unicode.IsLetter(r):
			j := i
			for j < len(src) {
				c := src[j]
				if c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
					j++
					continue
				}
				break
			}
			if j == i {
				return nil, malformed("unexpected token: '%c'", r)
			}
			toks = append(toks, token{kind: tokIdent, text: src[i:j]})
			i = j
		case r >= '0' && r <= '9' || r == '-':
			j := i + 1
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			toks = append(toks, token{kind: tokNumber, text: src[i:j]})
			i = j
		case strings.HasPrefix(src[i:], "!=") || strings.HasPrefix(src[i:], "<>") ||
			strings.HasPrefix(src[i:], "<=") || strings.HasPrefix(src[i:], ">="):
			toks = append(toks, token{kind: tokSymbol, text: src[i : i+2]})
			i += 2
		case strings.ContainsRune(",()=<>", r):
			toks = append(toks, token{kind: tokSymbol, text: string(r)})
			i += size
		default:
			return nil, malformed("unexpected token: '%c'", r)
		}
	}
	return append(toks, token{kind: tokEOF}), nil
}

// readLiteral decodes a string literal whose opening quote was consumed and
// returns the literal and the bytes consumed including the closing quote.
func readLiteral(src string) (literal, int, error) {
	var lit literal
	var text strings.Builder
	i := 0
	for i < len(src) {
		r, size := utf8.DecodeRuneInString(src[i:])
		i += size
		switch r {
		case '\'':
			lit.text = text.String()
			return lit, i, nil
		case '%', '_':
			text.WriteRune(r)
			kind := elemMany
			if r == '_' {
				kind = elemOne
			}
			lit.pattern = append(lit.pattern, patElem{kind: kind})
			continue
		case '\\':
		default:
			text.WriteRune(r)
			lit.pattern = append(lit.pattern, patElem{r: r})
			continue
		}
		if i >= len(src) {
			break
		}
		e, size := utf8.DecodeRuneInString(src[i:])
		i += size
		var out rune
		switch e {
		case 'n', 'N':
			out = '\n'
		case 'r', 'R':
			out = '\r'
		case 't', 'T':
			out = '\t'
		case 'b', 'B':
			out = '\b'
		case 'f', 'F':
			out = '\f'
		case '"', '\'', '\\':
			out = e
		case '%', '_':
			out = e
			lit.likeEscapes = true
		case 'u':
			if i+4 > len(src) {
				return lit, 0, malformed("invalid unicode escape in string literal")
			}
			n, err := strconv.ParseUint(src[i:i+4], 16, 32)
			if err != nil {
				return lit, 0, malformed("invalid unicode escape in string literal")
			}
			i += 4
			out = rune(n)
		default:
			return lit, 0, malformed("invalid escape sequence: \\%c", e)
		}
		text.WriteRune(out)
		lit.pattern = append(lit.pattern, patElem{r: out})
	}
	return lit, 0, malformed("unterminated string literal")
}

// fieldRef is a selected or compared field: Name on the object itself, or
// Rel.Name through a lookup (Account, Owner).
type fieldRef struct {
	rel  string
	name string
}

type expr interface {
	eval(get func(fieldRef) any) bool
}

type cmpExpr struct {
	field fieldRef
	op    string // LIKE, =, !=
	null  bool
	lit   literal
}

func (c cmpExpr) eval(get func(fieldRef) any) bool {
	v := get(c.field)
	if c.null {
		return (v == nil) == (c.op == "=")
	}
	if v == nil {
		return c.op == "!="
	}
	s := valueText(v)
	switch c.op {
	case "LIKE":
		return matchPattern(c.lit.pattern, s, true)
	case "=":
		return strings.EqualFold(s, c.lit.text)
	default:
		return !strings.EqualFold(s, c.lit.text)
	}
}

type boolExpr struct {
	and  bool
	l, r expr
}

func (b boolExpr) eval(get func(fieldRef) any) bool {
	if b.and {
		return b.l.eval(get) && b.r.eval(get)
	}
	return b.l.eval(get) || b.r.eval(get)
}

type notExpr struct{ e expr }

func (n notExpr) eval(get func(fieldRef) any) bool { return !n.e.eval(get) }

type orderTerm struct {
	field      fieldRef
	desc       bool
	nullsFirst bool
}

type soqlQuery struct {
	object  *objectData
	fields  []fieldRef
	where   expr
	orderBy []orderTerm
	limit   int // -1: none
	offset  int
}

type parser struct {
	toks   []token
	pos    int
	org    *orgData
	hidden hiddenSet // fields the asking user may not read
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *parser) keyword(kw string) bool {
	t := p.peek()
	if t.kind == tokIdent && strings.EqualFold(t.text, kw) {
		p.pos++
		return true
	}
	return false
}

func (p *parser) symbol(s string) bool {
	t := p.peek()
	if t.kind == tokSymbol && t.text == s {
		p.pos++
		return true
	}
	return false
}

func (p *parser) unexpected() error {
	t := p.peek()
	switch t.kind {
	case tokEOF:
		return malformed("unexpected end of query")
	case tokString:
		return malformed("unexpected token: '%s'", t.lit.text)
	default:
		return malformed("unexpected token: '%s'", t.text)
	}
}

// parseSOQL parses src for a user from whom security hides hidden: naming
// one of those fields anywhere refuses the whole query with INVALID_FIELD,
// and naming an object the user may not read with INVALID_TYPE, as
// Salesforce does.
func parseSOQL(org *orgData, hidden hiddenSet, src string) (*soqlQuery, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, org: org, hidden: hidden}
	if !p.keyword("SELECT") {
		return nil, p.unexpected()
	}
	var raw []string
	for {
		t := p.next()
		if t.kind != tokIdent {
			p.pos--
			return nil, p.unexpected()
		}
		raw = append(raw, t.text)
		if !p.symbol(",") {
			break
		}
	}
	if !p.keyword("FROM") {
		return nil, p.unexpected()
	}
	objTok := p.next()
	if objTok.kind != tokIdent {
		p.pos--
		return nil, p.unexpected()
	}
	od, ok := org.object(objTok.text)
	if !ok || hidden.denies(od.name) {
		return nil, unsupportedType(objTok.text)
	}
	q := &soqlQuery{object: od, limit: -1}
	for _, f := range raw {
		ref, err := p.resolveField(od, f)
		if err != nil {
			return nil, err
		}
		q.fields = append(q.fields, ref)
	}
	if err := p.clauses(q); err != nil {
		return nil, err
	}
	if p.peek().kind != tokEOF {
		return nil, p.unexpected()
	}
	return q, nil
}

// clauses parses WHERE, ORDER BY, LIMIT and OFFSET.
func (p *parser) clauses(q *soqlQuery) error {
	if p.keyword("WHERE") {
		e, err := p.orExpr(q.object)
		if err != nil {
			return err
		}
		q.where = e
	}
	if p.keyword("ORDER") {
		if !p.keyword("BY") {
			return p.unexpected()
		}
		for {
			t := p.next()
			if t.kind != tokIdent {
				p.pos--
				return p.unexpected()
			}
			ref, err := p.resolveField(q.object, t.text)
			if err != nil {
				return err
			}
			term := orderTerm{field: ref}
			if p.keyword("DESC") {
				term.desc = true
			} else {
				p.keyword("ASC")
			}
			term.nullsFirst = !term.desc
			if p.keyword("NULLS") {
				switch {
				case p.keyword("FIRST"):
					term.nullsFirst = true
				case p.keyword("LAST"):
					term.nullsFirst = false
				default:
					return p.unexpected()
				}
			}
			q.orderBy = append(q.orderBy, term)
			if !p.symbol(",") {
				break
			}
		}
	}
	if p.keyword("LIMIT") {
		n, err := p.count()
		if err != nil {
			return err
		}
		q.limit = n
	}
	if p.keyword("OFFSET") {
		n, err := p.count()
		if err != nil {
			return err
		}
		q.offset = n
	}
	return nil
}

func (p *parser) count() (int, error) {
	t := p.next()
	n, err := strconv.Atoi(t.text)
	if t.kind != tokNumber || err != nil || n < 0 {
		p.pos--
		return 0, p.unexpected()
	}
	return n, nil
}

func (p *parser) orExpr(od *objectData) (expr, error) {
	l, err := p.andExpr(od)
	if err != nil {
		return nil, err
	}
	for p.keyword("OR") {
		r, err := p.andExpr(od)
		if err != nil {
			return nil, err
		}
		l = boolExpr{l: l, r: r}
	}
	return l, nil
}

func (p *parser) andExpr(od *objectData) (expr, error) {
	l, err := p.unary(od)
	if err != nil {
		return nil, err
	}
	for p.keyword("AND") {
		r, err := p.unary(od)
		if err != nil {
			return nil, err
		}
		l = boolExpr{and: true, l: l, r: r}
	}
	return l, nil
}

func (p *parser) unary(od *objectData) (expr, error) {
	if p.keyword("NOT") {
		e, err := p.unary(od)
		return notExpr{e}, err
	}
	if p.symbol("(") {
		e, err := p.orExpr(od)
		if err != nil {
			return nil, err
		}
		if !p.symbol(")") {
			return nil, p.unexpected()
		}
		return e, nil
	}
	t := p.next()
	if t.kind != tokIdent {
		p.pos--
		return nil, p.unexpected()
	}
	ref, err := p.resolveField(od, t.text)
	if err != nil {
		return nil, err
	}
	c := cmpExpr{field: ref}
	switch {
	case p.keyword("LIKE"):
		c.op = "LIKE"
	case p.symbol("="):
		c.op = "="
	case p.symbol("!="), p.symbol("<>"):
		c.op = "!="
	default:
		return nil, p.unexpected()
	}
	v := p.next()
	switch {
	case v.kind == tokString:
		c.lit = v.lit
		if c.op != "LIKE" && v.lit.likeEscapes {
			return nil, malformed("invalid escape sequence outside a LIKE expression")
		}
	case v.kind == tokIdent && strings.EqualFold(v.text, "NULL") && c.op != "LIKE":
		c.null = true
	case v.kind == tokNumber && c.op != "LIKE":
		c.lit = literal{text: v.text}
	default:
		p.pos--
		return nil, p.unexpected()
	}
	return c, nil
}

// relationships maps a lookup name to the id field that holds it.
func relationship(rel string) (idField, target string, ok bool) {
	switch strings.ToLower(rel) {
	case "account":
		return "AccountId", "Account", true
	case "owner":
		return "OwnerId", "User", true
	}
	return "", "", false
}

func userFields() map[string]string {
	return map[string]string{"id": "Id", "name": "Name", "username": "Username", "email": "Email"}
}

// resolveField checks a field name against the object's schema, as the
// asking user sees it, and returns it with canonical spelling. A field
// hidden from the user does not exist for them: Salesforce answers the
// same INVALID_FIELD as for a misspelt one.
func (p *parser) resolveField(od *objectData, name string) (fieldRef, error) {
	rel, field, nested := strings.Cut(name, ".")
	if !nested {
		canon, ok := od.fields[strings.ToLower(name)]
		if !ok || p.hidden.has(od.name, canon) {
			return fieldRef{}, noSuchColumn(name, od.name)
		}
		return fieldRef{name: canon}, nil
	}
	idField, target, ok := relationship(rel)
	if !ok || strings.Contains(field, ".") {
		return fieldRef{}, noSuchRelationship(rel)
	}
	if _, has := od.fields[strings.ToLower(idField)]; !has || p.hidden.has(od.name, idField) {
		return fieldRef{}, noSuchRelationship(rel)
	}
	relName := strings.TrimSuffix(idField, "Id")
	if p.hidden.denies(target) {
		return fieldRef{}, noSuchRelationship(rel)
	}
	var canon string
	if target == "User" {
		canon, ok = userFields()[strings.ToLower(field)]
	} else {
		canon, ok = p.org.objects[target].fields[strings.ToLower(field)]
		ok = ok && !p.hidden.has(target, canon)
	}
	if !ok {
		return fieldRef{}, noSuchColumn(field, target)
	}
	return fieldRef{rel: relName, name: canon}, nil
}

// noSuchColumn is Salesforce's answer to a field the user cannot see,
// whether it does not exist or field-level security hides it.
func noSuchColumn(name, object string) error {
	return &queryError{code: "INVALID_FIELD", msg: fmt.Sprintf("No such column '%s' on entity '%s'. "+
		"If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "+
		"Please reference your WSDL or the describe call for the appropriate names.", name, object)}
}

// unsupportedType is Salesforce's answer to a query or search that names
// an object the user may not read at all, as for one that does not exist.
func unsupportedType(name string) error {
	return &queryError{code: "INVALID_TYPE", msg: fmt.Sprintf("sObject type '%s' is not supported. "+
		"If you are attempting to use a custom object, be sure to append the '__c' after the entity name. "+
		"Please reference your WSDL or the describe call for the appropriate names.", name)}
}

// noSuchRelationship is Salesforce's answer to a relationship path whose
// lookup field the user cannot see.
func noSuchRelationship(rel string) error {
	return &queryError{code: "INVALID_FIELD", msg: fmt.Sprintf("Didn't understand relationship '%s' in field path. "+
		"If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. "+
		"Please reference your WSDL or the describe call for the appropriate names.", rel)}
}

// matchPattern reports whether s matches pattern in full; with fold it
// ignores case. It is the classic wildcard match with one backtrack point.
func matchPattern(pattern []patElem, s string, fold bool) bool {
	text := []rune(s)
	pi, ti := 0, 0
	star, mark := -1, 0
	for ti < len(text) {
		switch {
		case pi < len(pattern) && pattern[pi].kind == elemMany:
			star, mark = pi, ti
			pi++
		case pi < len(pattern) && (pattern[pi].kind == elemOne || runeEq(pattern[pi].r, text[ti], fold)):
			pi++
			ti++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi].kind == elemMany {
		pi++
	}
	return pi == len(pattern)
}

func runeEq(a, b rune, fold bool) bool {
	if a == b {
		return true
	}
	return fold && unicode.ToLower(a) == unicode.ToLower(b)
}
