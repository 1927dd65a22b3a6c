package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Query runs a SOQL query and follows nextRecordsUrl until the result is
// complete or MaxRecords records are collected. The query text must already
// be safe: build literals with [EscapeSOQL] or [EscapeLike].
func (c *Client) Query(ctx context.Context, soql string) ([]Record, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	recs, err := c.query(ctx, "query", soql, c.maxRecords)
	if err != nil {
		return nil, fmt.Errorf("salesforce query: %w", err)
	}
	return recs, nil
}

type queryPage struct {
	Done           bool
	NextRecordsURL string
	Records        []Record
}

// decodeQueryPage decodes one page of a SOQL answer.
func decodeQueryPage(data []byte) (queryPage, error) {
	top, err := leanObject(data)
	if err != nil {
		return queryPage{}, err
	}
	var p queryPage
	switch v := top["done"].(type) {
	case bool:
		p.Done = v
	case nil:
	default:
		return queryPage{}, errors.New("done is not a boolean")
	}
	switch v := top["nextRecordsUrl"].(type) {
	case string:
		p.NextRecordsURL = v
	case nil:
	default:
		return queryPage{}, errors.New("nextRecordsUrl is not a string")
	}
	if p.Records, err = recordList(top["records"]); err != nil {
		return queryPage{}, fmt.Errorf("records: %w", err)
	}
	return p, nil
}

// query runs soql for op (see Observer.Request), following the pages.
func (c *Client) query(ctx context.Context, op, soql string, limit int) ([]Record, error) {
	u := c.dataURL("query") + "?" + url.Values{"q": {soql}}.Encode()
	var out []Record
	for {
		data, err := c.send(ctx, op, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		page, err := decodeQueryPage(data)
		if err != nil {
			return nil, fmt.Errorf("decode query result: %w", err)
		}
		out = append(out, page.Records...)
		if len(out) >= limit {
			return out[:limit], nil
		}
		if page.Done || page.NextRecordsURL == "" {
			return out, nil
		}
		if len(page.Records) == 0 {
			return nil, errors.New("query page has no records but is not done")
		}
		if u, err = c.nextURL(page.NextRecordsURL); err != nil {
			return nil, err
		}
	}
}

// nextURL accepts only a relative /services/data/ path, which is what
// Salesforce sends, and resolves it against the instance. Anything else
// (another host, a scheme-relative URL, dot segments) is refused so the
// token never goes elsewhere. Salesforce's paths (…/query/01gXX-2000) are
// never percent-encoded, so any escape in the path is refused too: a server
// or proxy that decodes twice would turn %252e%252e into "..".
func (c *Client) nextURL(next string) (string, error) {
	refused := errors.New("refusing nextRecordsUrl that is not a relative /services/data/ path on the instance")
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "", refused
	}
	if !strings.HasPrefix(u.Path, "/services/data/v") || path.Clean(u.Path) != u.Path ||
		strings.ContainsAny(u.Path, `\`) || strings.Contains(u.EscapedPath(), "%") {
		return "", refused
	}
	return c.inst.Load().base + u.EscapedPath() + queryPart(u), nil
}

func queryPart(u *url.URL) string {
	if u.RawQuery == "" {
		return ""
	}
	return "?" + u.RawQuery
}

// Search runs a SOSL search for text in the name fields of objects (all
// supported objects when none are given) and returns typed results. The text
// is escaped with [EscapeSOSL]; it must have at least two characters. It
// asks only for the fields the user may read (see [FieldCache]), so a field
// hidden from them is missing from the results instead of failing the
// search, and it leaves out the objects the user may not read at all
// (a *[NotReadableError] only when none is left).
func (c *Client) Search(ctx context.Context, text string, objects ...string) ([]Result, error) {
	term := strings.TrimSpace(text)
	if utf8.RuneCountInString(term) < 2 {
		return nil, fmt.Errorf("salesforce search: %w: search text needs at least two characters", ErrInvalidInput)
	}
	names := objects
	if len(names) == 0 {
		names = c.order
	}
	objs := make([]Object, 0, len(names))
	for _, name := range names {
		o, ok := c.object(name)
		if !ok {
			return nil, fmt.Errorf("salesforce search: %w: unsupported object %q", ErrInvalidInput, name)
		}
		objs = append(objs, o)
	}
	build := func(objs []Object, infos []*objectInfo) string {
		returning := make([]string, len(objs))
		for i, o := range objs {
			returning[i] = o.Name + "(" + strings.Join(o.selectFields(infos[i]), ", ") + ")"
		}
		return "FIND {" + EscapeSOSL(term) + "} IN NAME FIELDS RETURNING " + strings.Join(returning, ", ") +
			" LIMIT " + strconv.Itoa(min(c.maxRecords, maxSOSLLimit))
	}

	ctx, cancel := c.bound(ctx)
	defer cancel()
	var data []byte
	err := c.withReadable(ctx, objs, build, func(sosl string) (err error) {
		data, err = c.send(ctx, "search", http.MethodGet, c.dataURL("search")+"?"+url.Values{"q": {sosl}}.Encode(), nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("salesforce search: %w", err)
	}
	recs, err := decodeSearch(data)
	if err != nil {
		return nil, fmt.Errorf("salesforce search: %w", err)
	}
	results := make([]Result, 0, len(recs))
	for _, rec := range recs {
		results = append(results, c.result(rec))
	}
	return results, nil
}

// decodeSearch decodes a SOSL answer's records in one pass.
func decodeSearch(data []byte) ([]Record, error) {
	top, err := leanObject(data)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	list, err := recordList(top["searchRecords"])
	if err != nil {
		return nil, fmt.Errorf("decode: searchRecords: %w", err)
	}
	return list, nil
}

// leanObject decodes data, which must be one JSON object.
func leanObject(data []byte) (map[string]any, error) {
	v, err := leanDecode(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// recordList makes Records of a decoded list of sObjects; a missing list
// (nil) is no records.
func recordList(v any) ([]Record, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New("not a list")
	}
	recs := make([]Record, 0, len(list))
	for _, item := range list {
		fields, ok := item.(map[string]any)
		if !ok && item != nil {
			return nil, errors.New("a record is not an object")
		}
		rec, err := recordOf(fields)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// Find looks up records of one object whose name (for Case: subject or case
// number) contains text, ordered by name, at most limit of them (limit <= 0
// means 10). The text is matched literally: quotes, backslashes and the LIKE
// wildcards % and _ are escaped. Like Search, it asks only for the fields
// the user may read; for an object the user may not read at all it
// returns a *[NotReadableError], which matches [ErrNotReadable].
func (c *Client) Find(ctx context.Context, object, text string, limit int) ([]Result, error) {
	o, ok := c.object(object)
	if !ok {
		return nil, fmt.Errorf("salesforce find: %w: unsupported object %q", ErrInvalidInput, object)
	}
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, fmt.Errorf("salesforce find: %w: empty search text", ErrInvalidInput)
	}
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, c.maxRecords)
	pattern := "'%" + EscapeLike(text) + "%'"
	build := func(_ []Object, infos []*objectInfo) string {
		var where []string
		for _, f := range o.findFields(infos[0]) {
			where = append(where, f+" LIKE "+pattern)
		}
		return "SELECT " + strings.Join(o.selectFields(infos[0]), ", ") + " FROM " + o.Name +
			" WHERE " + strings.Join(where, " OR ") + " ORDER BY " + o.NameField + " LIMIT " + strconv.Itoa(limit)
	}

	ctx, cancel := c.bound(ctx)
	defer cancel()
	var recs []Record
	err := c.withReadable(ctx, []Object{o}, build, func(soql string) (err error) {
		recs, err = c.query(ctx, "find", soql, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("salesforce find: %w", err)
	}
	results := make([]Result, 0, len(recs))
	for _, rec := range recs {
		results = append(results, c.result(rec))
	}
	return results, nil
}

// Get reads one record by object name and 15- or 18-character id. Both are
// validated before anything is sent.
func (c *Client) Get(ctx context.Context, object, id string) (Record, error) {
	if !validObjectName(object) {
		return Record{}, fmt.Errorf("salesforce get: %w: malformed object name %q", ErrInvalidInput, object)
	}
	if !ValidID(id) {
		return Record{}, fmt.Errorf("salesforce get: %w: malformed record id %q", ErrInvalidInput, id)
	}
	if o, ok := c.object(object); ok {
		object = o.Name
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	data, err := c.send(ctx, "get", http.MethodGet, c.dataURL("sobjects/"+object+"/"+id), nil)
	if err != nil {
		return Record{}, fmt.Errorf("salesforce get: %w", err)
	}
	rec, err := decodeRecord(data)
	if err != nil {
		return Record{}, fmt.Errorf("salesforce get: %w", err)
	}
	return rec, nil
}

// Identity fetches the identity URL (the "id" of a token response) with the
// binding's token and returns who the token belongs to. The caller must have
// checked that the URL's host is one it trusts; here it only has to be an
// absolute https URL without userinfo (plain http only to a loopback host,
// for local fakes).
func (c *Client) Identity(ctx context.Context, idURL string) (Identity, error) {
	u, err := url.Parse(idURL)
	if err != nil || u.Hostname() == "" || u.User != nil || !SecureScheme(u) {
		return Identity{}, fmt.Errorf("salesforce identity: %w: identity URL must be an absolute https URL", ErrInvalidInput)
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	data, err := c.send(ctx, "identity", http.MethodGet, u.String(), nil)
	if err != nil {
		return Identity{}, fmt.Errorf("salesforce identity: %w", err)
	}
	var wire struct {
		UserID      string `json:"user_id"`
		OrgID       string `json:"organization_id"`
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
		Email       string `json:"email"`
		// Only a JSON true counts: an answer without it, or with
		// anything else there, is read as unverified rather than refused.
		EmailVerified json.RawMessage `json:"email_verified"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return Identity{}, fmt.Errorf("salesforce identity: decode: %w", err)
	}
	if !ValidID(wire.UserID) || !ValidID(wire.OrgID) {
		return Identity{}, errors.New("salesforce identity: answer lacks a valid user_id or organization_id")
	}
	return Identity{
		UserID:        wire.UserID,
		OrgID:         wire.OrgID,
		Username:      wire.Username,
		DisplayName:   wire.DisplayName,
		Email:         wire.Email,
		EmailVerified: string(wire.EmailVerified) == "true",
	}, nil
}

// ValidID reports whether id is a well-formed Salesforce record id: 15
// case-sensitive alphanumerics, or 18 whose last three characters are the
// correct case-insensitive checksum of the first 15. Safe for concurrent use.
func ValidID(id string) bool {
	if len(id) != 15 && len(id) != 18 || !isAlnum(id) {
		return false
	}
	if len(id) == 15 {
		return true
	}
	return strings.EqualFold(id[15:], idChecksum(id[:15]))
}

// validObjectName accepts sObject API names: a letter, then letters, digits
// and underscores (custom objects end in __c), at most 80 characters.
func validObjectName(s string) bool {
	if s == "" || len(s) > 80 || !isAlnum(s[:1]) || s[0] >= '0' && s[0] <= '9' || strings.Contains(s, "___") {
		return false
	}
	return isAlnum(strings.ReplaceAll(s, "_", "a"))
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// idChecksum computes the 3-character suffix that turns a 15-character id
// into its 18-character form: one character per 5-character chunk, encoding
// which of its letters are upper case.
func idChecksum(id15 string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	var out [3]byte
	for chunk := range 3 {
		n := 0
		for i := range 5 {
			if ch := id15[chunk*5+i]; ch >= 'A' && ch <= 'Z' {
				n |= 1 << i
			}
		}
		out[chunk] = alphabet[n]
	}
	return string(out[:])
}

// object looks up a supported object case-insensitively.
func (c *Client) object(name string) (Object, bool) {
	if o, ok := c.objects[name]; ok {
		return o, true
	}
	for _, n := range c.order {
		if strings.EqualFold(n, name) {
			return c.objects[n], true
		}
	}
	return Object{}, false
}

// result turns a record into a Result using the object table.
func (c *Client) result(rec Record) Result {
	r := Result{Type: rec.Type, ID: rec.ID}
	if validObjectName(rec.Type) && ValidID(rec.ID) {
		r.URL = c.inst.Load().base + "/lightning/r/" + rec.Type + "/" + rec.ID + "/view"
	}
	o, ok := c.objects[rec.Type]
	if !ok {
		r.Name = rec.String("Name")
		return r
	}
	r.Name = rec.String(o.NameField)
	for _, f := range o.Fields {
		if v := rec.String(f.Name); v != "" {
			if r.Fields == nil {
				r.Fields = make([]Field, 0, len(o.Fields)) // one allocation, not one per growth
			}
			r.Fields = append(r.Fields, Field{Label: f.Label, Value: v})
		}
	}
	return r
}

// decodeRecord decodes one sObject as the REST API sends it.
func decodeRecord(raw []byte) (Record, error) {
	v, err := leanDecode(raw)
	if err != nil {
		return Record{}, fmt.Errorf("decode record: %w", err)
	}
	fields, ok := v.(map[string]any)
	if !ok && v != nil {
		return Record{}, errors.New("decode record: not an object")
	}
	return recordOf(fields)
}

// recordOf makes a Record of one decoded sObject.
func recordOf(fields map[string]any) (Record, error) {
	if fields == nil {
		return Record{}, errors.New("decode record: null record")
	}
	var rec Record
	if attrs, ok := fields["attributes"].(map[string]any); ok {
		rec.Type, _ = attrs["type"].(string)
		if u, ok := attrs["url"].(string); ok {
			rec.ID = path.Base(u)
		}
	}
	if id, ok := fields["Id"].(string); ok && id != "" {
		rec.ID = id
	}
	stripAttributes(fields)
	rec.Fields = fields
	return rec, nil
}

func stripAttributes(m map[string]any) {
	delete(m, "attributes")
	for _, v := range m {
		if nested, ok := v.(map[string]any); ok {
			stripAttributes(nested)
		}
	}
}
