package sftest

import (
	"fmt"
	"sort"
	"strings"
)

// hiddenSet is the set of fields field-level security hides from one user,
// keyed "Object.Field" as the schema spells both. The zero value hides
// nothing. A set handed out by hiddenFor is a copy: reading it needs no lock.
type hiddenSet map[string]bool

// newHiddenSet builds a set from "Object.Field" paths that loadFixtures has
// already checked.
func newHiddenSet(org *orgData, paths []string) hiddenSet {
	h := make(hiddenSet)
	for _, p := range paths {
		object, field, _ := strings.Cut(p, ".")
		if object, field, err := org.hideable(object, field); err == nil {
			h[object+"."+field] = true
		}
	}
	return h
}

// has reports whether field (canonical spelling) of object is hidden.
func (h hiddenSet) has(object, field string) bool {
	return h[object+"."+field]
}

// list returns the hidden fields in order, or nil when none are.
func (h hiddenSet) list() []string {
	if len(h) == 0 {
		return nil
	}
	out := make([]string, 0, len(h))
	for p := range h {
		out = append(out, p)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	// Copy on write: sets handed out by hiddenFor stay as they were.
	next := make(hiddenSet, len(s.hidden[u.ID])+1)
	for p := range s.hidden[u.ID] {
		next[p] = true
	}
	if hidden {
		next[object+"."+field] = true
	} else {
		delete(next, object+"."+field)
	}
	s.hidden[u.ID] = next
	return nil
}

// hiddenFor returns the fields hidden from u now. The set is never changed
// after it is handed out (SetFieldHidden replaces it), so callers read it
// without the lock.
func (s *Server) hiddenFor(u User) hiddenSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hidden[u.ID]
}
