package sftest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// cursor holds the rest of a paged query result for nextRecordsUrl.
type cursor struct {
	userID string
	rows   []json.RawMessage
}

type restHandler func(w http.ResponseWriter, r *http.Request, u User, version string)

// rest wraps a REST handler: version check, Sforce-Limit-Info, bearer token.
func (s *Server) rest(ep Endpoint, h restHandler) http.HandlerFunc {
	return s.endpoint(ep, func(w http.ResponseWriter, r *http.Request) {
		version, ok := strings.CutPrefix(r.PathValue("version"), "v")
		if !ok || !validVersion(version) {
			writeAPIError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
			return
		}
		u, authed := s.sessionFor(r)
		s.mu.Lock()
		if authed {
			s.used++
		}
		w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", s.used, s.limit))
		s.mu.Unlock()
		if !authed {
			writeRaw(w, http.StatusUnauthorized, BodyInvalidSession)
			return
		}
		h(w, r, u, version)
	})
}

func validVersion(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	if !ok || minor != "0" || len(major) == 0 || len(major) > 3 {
		return false
	}
	_, err := strconv.Atoi(major)
	return err == nil && major[0] != '0'
}

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request, u User, version string) {
	src := r.URL.Query().Get("q")
	q, err := parseSOQL(s.org, s.hiddenFor(u), src)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	recs := s.run(u, q.object, q.where, q.orderBy)
	if q.offset > 0 {
		recs = recs[min(q.offset, len(recs)):]
	}
	if q.limit >= 0 && len(recs) > q.limit {
		recs = recs[:q.limit]
	}
	rows := make([]json.RawMessage, len(recs))
	for i, rec := range recs {
		rows[i] = s.render(rec, q.fields, u, version)
	}
	s.page(w, u, version, "01g"+randomToken(12), rows, 0)
}

func (s *Server) handleQueryMore(w http.ResponseWriter, r *http.Request, u User, version string) {
	locator := r.PathValue("locator")
	i := strings.LastIndexByte(locator, '-')
	offset, err := strconv.Atoi(locator[i+1:])
	if i < 0 || err != nil || offset < 0 {
		writeAPIError(w, http.StatusBadRequest, "INVALID_QUERY_LOCATOR", "invalid query locator")
		return
	}
	id := locator[:i]
	s.mu.Lock()
	c, ok := s.cursors[id]
	s.mu.Unlock()
	if !ok || c.userID != u.ID || offset > len(c.rows) {
		writeAPIError(w, http.StatusBadRequest, "INVALID_QUERY_LOCATOR", "invalid query locator")
		return
	}
	s.page(w, u, version, id, c.rows, offset)
}

// page answers rows[offset:] one page at a time, keeping a cursor while
// more pages remain.
func (s *Server) page(w http.ResponseWriter, u User, version, id string, rows []json.RawMessage, offset int) {
	end := min(offset+s.opts.PageSize, len(rows))
	done := end == len(rows)
	s.mu.Lock()
	if done {
		delete(s.cursors, id)
	} else {
		s.cursors[id] = &cursor{userID: u.ID, rows: rows}
	}
	s.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"totalSize":%d,"done":%t,`, len(rows), done)
	if !done {
		fmt.Fprintf(&b, `"nextRecordsUrl":"/services/data/v%s/query/%s-%d",`, version, id, end)
	}
	b.WriteString(`"records":[`)
	for i, row := range rows[offset:end] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(row)
	}
	b.WriteString("]}")
	writeBytes(w, http.StatusOK, b.Bytes())
}

func (s *Server) handleSearch(w http.ResponseWriter, r *http.Request, u User, version string) {
	q, err := parseSOSL(s.org, s.hiddenFor(u), r.URL.Query().Get("q"))
	if err != nil {
		writeQueryError(w, err)
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"searchRecords":[`)
	n := 0
	for _, spec := range q.returns {
		matched := 0
		for _, rec := range s.run(u, spec.object, nil, nil) {
			if q.limit >= 0 && n >= q.limit || spec.limit >= 0 && matched >= spec.limit {
				break
			}
			if !matchesWords(rec, q.words) {
				continue
			}
			if n > 0 {
				b.WriteByte(',')
			}
			b.Write(s.render(rec, spec.fields, u, version))
			n++
			matched++
		}
	}
	b.WriteString("]}")
	writeBytes(w, http.StatusOK, b.Bytes())
}

func matchesWords(rec *record, words [][]patElem) bool {
	for _, w := range words {
		found := false
		for _, f := range nameFields(rec.object) {
			if s, ok := rec.fields[f].(string); ok && matchPattern(w, s, true) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *Server) handleSObject(w http.ResponseWriter, r *http.Request, u User, version string) {
	od, ok := s.org.object(r.PathValue("type"))
	id := r.PathValue("id")
	if !ok || s.hiddenFor(u).denies(od.name) {
		writeAPIError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	var rec *record
	for _, cand := range od.records {
		if cand.id == id || len(id) == 15 && cand.id[:15] == id {
			rec = cand
			break
		}
	}
	if rec == nil || !s.org.visible(u, rec) {
		writeAPIError(w, http.StatusNotFound, "NOT_FOUND", "The requested resource does not exist")
		return
	}
	// Like Salesforce, a record read leaves out what field-level security
	// hides from the user, without an error.
	hidden := s.hiddenFor(u)
	names := make([]string, 0, len(rec.fields))
	for k := range rec.fields {
		if k != "Id" && !hidden.has(od.name, k) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	refs := []fieldRef{{name: "Id"}}
	for _, n := range names {
		refs = append(refs, fieldRef{name: n})
	}
	writeBytes(w, http.StatusOK, s.render(rec, refs, u, version))
}

// run returns the records of od visible to u that satisfy where, sorted.
func (s *Server) run(u User, od *objectData, where expr, orderBy []orderTerm) []*record {
	var out []*record
	for _, rec := range od.records {
		if !s.org.visible(u, rec) {
			continue
		}
		if where != nil && !where.eval(func(f fieldRef) any { return s.value(rec, f, u) }) {
			continue
		}
		out = append(out, rec)
	}
	if len(orderBy) > 0 {
		sort.SliceStable(out, func(i, j int) bool {
			for _, t := range orderBy {
				c := compareValues(s.value(out[i], t.field, u), s.value(out[j], t.field, u), t.nullsFirst)
				if c == 0 {
					continue
				}
				if t.desc {
					return c > 0
				}
				return c < 0
			}
			return false
		})
	}
	return out
}

// value reads a field, following a lookup when the parent is visible.
func (s *Server) value(rec *record, f fieldRef, u User) any {
	if f.rel == "" {
		return rec.fields[f.name]
	}
	parentID, _ := rec.fields[f.rel+"Id"].(string)
	if f.rel == "Owner" {
		owner, ok := s.org.userByID(parentID)
		if !ok {
			return nil
		}
		return map[string]any{"Id": owner.ID, "Name": owner.DisplayName, "Username": owner.Username, "Email": owner.Email}[f.name]
	}
	parent, ok := s.org.byID[parentID]
	if !ok || !s.org.visible(u, parent) {
		return nil
	}
	return parent.fields[f.name]
}

// render writes a record as the REST API does: attributes first, then the
// fields in the order asked, lookups as nested objects.
func (s *Server) render(rec *record, fields []fieldRef, u User, version string) json.RawMessage {
	var b bytes.Buffer
	writeAttributes(&b, rec.object, rec.id, version)
	done := make(map[string]bool)
	for _, f := range fields {
		if f.rel == "" {
			if done[f.name] {
				continue
			}
			done[f.name] = true
			writeKV(&b, f.name, rec.fields[f.name])
			continue
		}
		if done[f.rel+"."] {
			continue
		}
		done[f.rel+"."] = true
		b.WriteString(",")
		writeString(&b, f.rel)
		b.WriteByte(':')
		parentID, _ := rec.fields[f.rel+"Id"].(string)
		var parentFields []fieldRef
		for _, g := range fields {
			if g.rel == f.rel {
				parentFields = append(parentFields, fieldRef{name: g.name})
			}
		}
		if f.rel == "Owner" {
			owner, ok := s.org.userByID(parentID)
			if !ok {
				b.WriteString("null")
				continue
			}
			writeAttributes(&b, "User", owner.ID, version)
			vals := map[string]any{"Id": owner.ID, "Name": owner.DisplayName, "Username": owner.Username, "Email": owner.Email}
			for _, g := range parentFields {
				writeKV(&b, g.name, vals[g.name])
			}
			b.WriteByte('}')
			continue
		}
		parent, ok := s.org.byID[parentID]
		if !ok || !s.org.visible(u, parent) {
			b.WriteString("null")
			continue
		}
		writeAttributes(&b, parent.object, parent.id, version)
		for _, g := range parentFields {
			writeKV(&b, g.name, parent.fields[g.name])
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.Bytes()
}

func writeAttributes(b *bytes.Buffer, object, id, version string) {
	fmt.Fprintf(b, `{"attributes":{"type":%q,"url":"/services/data/v%s/sobjects/%s/%s"}`, object, version, object, id)
}

func writeKV(b *bytes.Buffer, k string, v any) {
	b.WriteByte(',')
	writeString(b, k)
	b.WriteByte(':')
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte("null")
	}
	b.Write(data)
}

func writeString(b *bytes.Buffer, s string) {
	data, _ := json.Marshal(s)
	b.Write(data)
}

// valueText formats a field value for comparison.
func valueText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	default:
		return fmt.Sprint(v)
	}
}

// compareValues orders two field values: nulls by nullsFirst, numbers
// numerically, everything else as case-insensitive text.
func compareValues(a, b any, nullsFirst bool) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		if nullsFirst {
			return -1
		}
		return 1
	case b == nil:
		if nullsFirst {
			return 1
		}
		return -1
	}
	if na, ok := a.(json.Number); ok {
		if nb, ok := b.(json.Number); ok {
			fa, _ := na.Float64()
			fb, _ := nb.Float64()
			switch {
			case fa < fb:
				return -1
			case fa > fb:
				return 1
			}
			return 0
		}
	}
	return strings.Compare(strings.ToLower(valueText(a)), strings.ToLower(valueText(b)))
}

// writeQueryError answers a refused query or search as Salesforce does:
// 400 with [{"message":…,"errorCode":…}], message first and no "fields".
func writeQueryError(w http.ResponseWriter, err error) {
	var qe *queryError
	if errors.As(err, &qe) {
		var b bytes.Buffer
		b.WriteString(`[{"message":`)
		writeString(&b, qe.msg)
		b.WriteString(`,"errorCode":`)
		writeString(&b, qe.code)
		b.WriteString(`}]`)
		writeBytes(w, http.StatusBadRequest, b.Bytes())
		return
	}
	writeAPIError(w, http.StatusInternalServerError, "UNKNOWN_EXCEPTION", "An unexpected error occurred.")
}

// writeAPIError answers Salesforce's REST error array.
func writeAPIError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, []map[string]any{{"message": msg, "errorCode": code, "fields": []string{}}})
}

func writeBytes(w http.ResponseWriter, status int, data []byte) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
