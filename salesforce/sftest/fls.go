package sftest

import (
	"fmt"
	"sort"
	"strings"
)

// hiddenSet is what security hides from one user: fields field-level
// security hides, keyed "Object.Field" as the schema spells both, and
// whole objects the user has no access to, keyed by the object's name.
// The zero value hides nothing. A set handed out by hiddenFor is a copy:
// reading it needs no lock.
type hiddenSet map[string]bool

// newHiddenSet builds a set from "Object.Field" paths and object names
// that loadFixtures has already checked.
func newHiddenSet(org *orgData, paths, objects []string) hiddenSet {
	h := make(hiddenSet)
	for _, p := range paths {
		object, field, _ := strings.Cut(p, ".")
		if object, field, err := org.hideable(object, field); err == nil {
			h[object+"."+field] = true
		}
	}
	for _, name := range objects {
		if od, ok := org.object(name); ok {
			h[od.name] = true
		}
	}
	return h
}

// has reports whether field (canonical spelling) of object is hidden,
// the object itself included.
func (h hiddenSet) has(object, field string) bool {
	return h[object+"."+field] || h[object]
}

// denies reports whether the user may not read object (canonical
// spelling) at all.
func (h hiddenSet) denies(object string) bool {
	return h[object]
}

// list returns the hidden fields in order, or nil when none are.
func (h hiddenSet) list() []string {
	return h.keys(true)
}

// deniedList returns the objects denied in order, or nil when none are.
func (h hiddenSet) deniedList() []string {
	return h.keys(false)
}

func (h hiddenSet) keys(fields bool) []string {
	var out []string
	for p := range h {
		if strings.Contains(p, ".") == fields {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// SetFieldHidden hides object.field from the fixture user username, or
// shows it again, as an administrator changing field-level security on
// that user's profile would. It takes effect with the next request: object
// info leaves the field out, a query or search that names it is refused
// with 400 INVALID_FIELD, and a record read omits it. A record's Id and
// its name field cannot be hidden, as in Salesforce.
func (s *Server) SetFieldHidden(username, object, field string, hidden bool) error {
	u, ok := s.org.user(username)
	if !ok {
		return fmt.Errorf("sftest: no fixture user %q", username)
	}
	object, field, err := s.org.hideable(object, field)
	if err != nil {
		return fmt.Errorf("sftest: %w", err)
	}
	s.setHidden(u, object+"."+field, hidden)
	return nil
}

// SetObjectDenied takes away from the fixture user username all access to
// object, or gives it back, as an administrator removing Read on the
// object from that user's profile and permission sets would. It takes
// effect with the next request: object info for it answers 403
// [{"errorCode":"INSUFFICIENT_ACCESS","message":"You don't have access to this object."}]
// (in a batch, as that result with statusCode 403), lookups to it leave
// it out of their referenceToInfos, a query or a search that names it
// (FROM, RETURNING) is refused with 400 INVALID_TYPE ("sObject type 'Lead'
// is not supported."), a relationship path into it with 400
// INVALID_FIELD, and a record read of it answers 404 NOT_FOUND.
func (s *Server) SetObjectDenied(username, object string, denied bool) error {
	u, ok := s.org.user(username)
	if !ok {
		return fmt.Errorf("sftest: no fixture user %q", username)
	}
	od, ok := s.org.object(object)
	if !ok {
		return fmt.Errorf("sftest: unknown object %q", object)
	}
	s.setHidden(u, od.name, denied)
	return nil
}

// setHidden adds key to the set of what is hidden from u, or takes it
// out.
func (s *Server) setHidden(u User, key string, hidden bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Copy on write: sets handed out by hiddenFor stay as they were.
	next := make(hiddenSet, len(s.hidden[u.ID])+1)
	for p := range s.hidden[u.ID] {
		next[p] = true
	}
	if hidden {
		next[key] = true
	} else {
		delete(next, key)
	}
	s.hidden[u.ID] = next
}

// hiddenFor returns what is hidden from u now. The set is never changed
// after it is handed out (SetFieldHidden replaces it), so callers read it
// without the lock.
func (s *Server) hiddenFor(u User) hiddenSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hidden[u.ID]
}
