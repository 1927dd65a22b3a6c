package sftest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
)

//go:embed testdata/org.json
var defaultFixtures []byte

// DefaultFixtures returns a copy of the embedded fixture file, for callers
// that want to edit it before passing it in Options.Fixtures.
func DefaultFixtures() []byte {
	return bytes.Clone(defaultFixtures)
}

// User is a fixture user as the fake knows it. Values handed out are
// copies, safe to keep and share.
type User struct {
	ID          string // 005… id
	Username    string // login name, e.g. jane@acme.example
	DisplayName string
	FirstName   string
	LastName    string
	Email       string
	Profile     string // e.g. "System Administrator"
	ViewAll     bool   // sees every record, private or not
	// OwnRecordsOnly makes the user see only the records they own, as
	// in an org whose sharing model is private (unless ViewAll).
	OwnRecordsOnly bool
	// HiddenFields are the fields field-level security hides from the
	// user ("Opportunity.Amount"), as the fixtures set them; see
	// Server.SetFieldHidden for the ones hidden now.
	HiddenFields []string
	// DeniedObjects are the objects the user may not read at all
	// ("Lead"), as the fixtures set them; see Server.SetObjectDenied for
	// the ones denied now.
	DeniedObjects []string
}

type fixtureFile struct {
	Org struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"org"`
	Users []struct {
		ID             string   `json:"id"`
		Username       string   `json:"username"`
		DisplayName    string   `json:"display_name"`
		FirstName      string   `json:"first_name"`
		LastName       string   `json:"last_name"`
		Email          string   `json:"email"`
		Profile        string   `json:"profile"`
		ViewAll        bool     `json:"view_all"`
		OwnRecordsOnly bool     `json:"own_records_only"`
		HiddenFields   []string `json:"hidden_fields"`
		DeniedObjects  []string `json:"denied_objects"`
	} `json:"users"`
	Records map[string][]map[string]any `json:"records"`
}

// objectOrder is the order objects are searched and listed in.
func objectOrder() []string {
	return []string{"Account", "Contact", "Opportunity", "Lead", "Case"}
}

// nameFields are the fields SOSL's IN NAME FIELDS matches, per object.
func nameFields(object string) []string {
	switch object {
	case "Lead":
		return []string{"Name", "Company"}
	case "Case":
		return []string{"Subject", "CaseNumber"}
	default:
		return []string{"Name"}
	}
}

type record struct {
	object  string
	id      string
	owner   string
	private bool
	fields  map[string]any // canonical field names, includes Id and OwnerId
}

type objectData struct {
	name    string
	fields  map[string]string // lower-case name → canonical name
	records []*record
}

type orgData struct {
	id      string
	name    string
	users   []User
	objects map[string]*objectData // by canonical name
	byID    map[string]*record     // by 18-char id
}

func loadFixtures(data []byte, orgID string) (*orgData, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var f fixtureFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode fixtures: %w", err)
	}
	o := &orgData{id: f.Org.ID, name: f.Org.Name, objects: make(map[string]*objectData), byID: make(map[string]*record)}
	if orgID != "" {
		o.id = orgID
	}
	if len(o.id) != 18 {
		return nil, fmt.Errorf("fixtures: org id %q is not an 18-character id", o.id)
	}
	for _, u := range f.Users {
		if len(u.ID) != 18 || u.Username == "" {
			return nil, fmt.Errorf("fixtures: user %q needs an 18-character id and a username", u.Username)
		}
		o.users = append(o.users, User(u))
	}
	if len(o.users) == 0 {
		return nil, fmt.Errorf("fixtures: no users")
	}
	for _, name := range objectOrder() {
		od := &objectData{name: name, fields: map[string]string{"id": "Id", "ownerid": "OwnerId"}}
		for _, nf := range nameFields(name) {
			od.fields[strings.ToLower(nf)] = nf
		}
		o.objects[name] = od
		for _, raw := range f.Records[name] {
			rec := &record{object: name, fields: make(map[string]any)}
			for k, v := range raw {
				if k == "_private" {
					rec.private, _ = v.(bool)
					continue
				}
				rec.fields[k] = v
				od.fields[strings.ToLower(k)] = k
			}
			rec.id, _ = raw["Id"].(string)
			rec.owner, _ = raw["OwnerId"].(string)
			if len(rec.id) != 18 {
				return nil, fmt.Errorf("fixtures: %s record %q needs an 18-character Id", name, rec.id)
			}
			if _, dup := o.byID[rec.id]; dup {
				return nil, fmt.Errorf("fixtures: duplicate id %s", rec.id)
			}
			od.records = append(od.records, rec)
			o.byID[rec.id] = rec
		}
	}
	for name := range f.Records {
		if _, ok := o.objects[name]; !ok {
			return nil, fmt.Errorf("fixtures: unsupported object %q", name)
		}
	}
	for _, u := range o.users {
		for _, path := range u.HiddenFields {
			object, field, _ := strings.Cut(path, ".")
			if _, _, err := o.hideable(object, field); err != nil {
				return nil, fmt.Errorf("fixtures: user %s: %w", u.Username, err)
			}
		}
		for _, name := range u.DeniedObjects {
			if _, ok := o.object(name); !ok {
				return nil, fmt.Errorf("fixtures: user %s: unknown object %q in denied_objects", u.Username, name)
			}
		}
	}
	return o, nil
}

// hideable checks that field-level security could hide object.field and
// returns both names as the schema spells them. Salesforce never hides a
// record's Id or its name field, and neither does the fake.
func (o *orgData) hideable(object, field string) (string, string, error) {
	od, ok := o.object(object)
	if !ok {
		return "", "", fmt.Errorf("unknown object %q", object)
	}
	canon, ok := od.fields[strings.ToLower(field)]
	if !ok {
		return "", "", fmt.Errorf("no field %q on %s", field, od.name)
	}
	if canon == "Id" || canon == nameField(od.name) {
		return "", "", fmt.Errorf("%s.%s cannot be hidden", od.name, canon)
	}
	return od.name, canon, nil
}

// nameField is the field that names a record of object, as object info's
// nameFields and nameField say.
func nameField(object string) string {
	if object == "Case" {
		return "CaseNumber"
	}
	return "Name"
}

func (o *orgData) user(username string) (User, bool) {
	for _, u := range o.users {
		if strings.EqualFold(u.Username, username) {
			return u, true
		}
	}
	return User{}, false
}

func (o *orgData) userByID(id string) (User, bool) {
	for _, u := range o.users {
		if u.ID == id {
			return u, true
		}
	}
	return User{}, false
}

// visible applies the fake's sharing model: users with "view all" see
// everything; users who see only their own records see those; everyone
// else sees public records and their own private ones.
func (o *orgData) visible(u User, rec *record) bool {
	switch {
	case u.ViewAll:
		return true
	case u.OwnRecordsOnly:
		return rec.owner == u.ID
	}
	return !rec.private || rec.owner == u.ID
}

// object finds an object by name, case-insensitively.
func (o *orgData) object(name string) (*objectData, bool) {
	for _, n := range objectOrder() {
		if strings.EqualFold(n, name) {
			return o.objects[n], true
		}
	}
	return nil, false
}
