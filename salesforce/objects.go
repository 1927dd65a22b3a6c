package salesforce

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Object describes one of the Salesforce objects the bot searches and shows:
// its API name, its label, the field that names a record, and the key fields
// shown for each record. Values returned by [Objects] are copies the caller
// may keep and change.
type Object struct {
	Name      string        // API name, e.g. "Account"
	Label     string        // singular label, e.g. "Account"
	NameField string        // field that names a record, e.g. "Name" ("CaseNumber" for Case)
	Fields    []ObjectField // key fields shown per record, besides NameField
}

// ObjectField is one key field of an [Object]. Name may be a relationship
// path such as "Account.Name". It is a plain value.
type ObjectField struct {
	Name  string // API name or relationship path
	Label string // label shown to people
}

// Objects returns the table of supported objects — Account, Contact,
// Opportunity, Lead and Case, in that order. Each call returns a fresh copy,
// so callers cannot change what the client uses.
func Objects() []Object {
	return []Object{
		{Name: "Account", Label: "Account", NameField: "Name", Fields: []ObjectField{
			{"Type", "Type"}, {"Industry", "Industry"}, {"BillingCity", "City"}, {"Phone", "Phone"},
		}},
		{Name: "Contact", Label: "Contact", NameField: "Name", Fields: []ObjectField{
			{"Title", "Title"}, {"Account.Name", "Account"}, {"Email", "Email"}, {"Phone", "Phone"},
		}},
		{Name: "Opportunity", Label: "Opportunity", NameField: "Name", Fields: []ObjectField{
			{"StageName", "Stage"}, {"Amount", "Amount"}, {"CloseDate", "Close Date"}, {"Account.Name", "Account"},
		}},
		{Name: "Lead", Label: "Lead", NameField: "Name", Fields: []ObjectField{
			{"Company", "Company"}, {"Status", "Status"}, {"Email", "Email"},
		}},
		{Name: "Case", Label: "Case", NameField: "CaseNumber", Fields: []ObjectField{
			{"Subject", "Subject"}, {"Status", "Status"}, {"Priority", "Priority"},
		}},
	}
}

// selectFields lists Id, the name field and the key fields of o that info
// says the user may read, for SOQL and SOSL field lists. The names come
// from the object table, never from the answer, so nothing Salesforce sends
// reaches a query. Id and the name field are always asked for: Salesforce
// never hides them.
func (o Object) selectFields(info *objectInfo) []string {
	fields := []string{"Id", o.NameField}
	for _, f := range o.Fields {
		if info.readable(f.Name) {
			fields = append(fields, f.Name)
		}
	}
	return fields
}

// findFields are the fields Find matches the user's text against, of those
// info says the user may read. The name field is always among them:
// Salesforce never hides it.
func (o Object) findFields(info *objectInfo) []string {
	if o.Name == "Case" {
		if info.readable("Subject") {
			return []string{"Subject", "CaseNumber"}
		}
		return []string{"CaseNumber"}
	}
	return []string{"Name"}
}

// Record is one record from a query or a record read. Fields holds the
// fields as Salesforce sent them (without "attributes"): strings,
// json.Number, bool, nil, and map[string]any for relationship fields.
// A Record belongs to the caller.
type Record struct {
	Type   string         // from attributes.type, e.g. "Account"
	ID     string         // the Id field (or the last segment of attributes.url)
	Fields map[string]any // every field as sent
}

// String returns the text of the field at path (e.g. "Name" or
// "Account.Name"), or "" when it is missing or null.
func (r Record) String(path string) string {
	return fieldText(r.Fields, path)
}

// Result is one search or find hit, ready to show: the name, the key fields
// with labels, and a link to the record in Lightning Experience. A Result
// belongs to the caller.
type Result struct {
	Type   string  // object API name
	ID     string  // record id
	Name   string  // value of the object's name field
	Fields []Field // key fields that have a value, in table order
	URL    string  // {instance_url}/lightning/r/{Type}/{Id}/view
}

// Field is one labelled value of a [Result]. It is a plain value.
type Field struct {
	Label string
	Value string
}

// Identity is what the identity URL says about the user behind a token. It
// is a plain value, safe to copy and share.
type Identity struct {
	UserID      string // 005… user id
	OrgID       string // 00D… organization id
	Username    string // login name, e.g. jane@acme.example
	DisplayName string
	Email       string
	// EmailVerified reports whether Salesforce has confirmed that Email
	// belongs to the user (the identity answer's email_verified). It is
	// false when the answer does not say so plainly.
	EmailVerified bool
}

// Usage is the org's API usage as reported by the Sforce-Limit-Info header:
// Used requests of Max in the rolling 24 hours. Used may exceed Max. It is a
// plain value, safe to copy and share.
type Usage struct {
	Used, Max int
}

// fieldText walks a dotted path through nested relationship maps and
// formats the value found.
func fieldText(fields map[string]any, path string) string {
	cur := fields
	for {
		head, rest, nested := strings.Cut(path, ".")
		v, ok := cur[head]
		if !ok || v == nil {
			return ""
		}
		if !nested {
			return formatValue(v)
		}
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		cur, path = m, rest
	}
}

func formatValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	default:
		return ""
	}
}
