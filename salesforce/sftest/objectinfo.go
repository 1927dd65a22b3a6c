package sftest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
)

// This file serves the UI API's object info,
// GET /services/data/vNN.N/ui-api/object-info/{Type}, in the shape recorded
// from real orgs: properties in alphabetical order at every level, fields
// keyed by API name, and only the fields the asking user may read, which
// is how a client learns what field-level security hides.

// objectMeta is what object info says about an object besides its fields.
type objectMeta struct {
	keyPrefix   string
	labelPlural string
	nameFields  []string // the object's own nameFields
	color       string   // themeInfo.color
}

func metaFor(object string) objectMeta {
	switch object {
	case "Account":
		return objectMeta{"001", "Accounts", []string{"Name"}, "7F8DE1"}
	case "Contact":
		return objectMeta{"003", "Contacts", []string{"FirstName", "LastName", "Name"}, "A094ED"}
	case "Opportunity":
		return objectMeta{"006", "Opportunities", []string{"Name"}, "FCB95B"}
	case "Lead":
		return objectMeta{"00Q", "Leads", []string{"FirstName", "LastName", "Name"}, "F88962"}
	default: // Case
		return objectMeta{"500", "Cases", []string{"CaseNumber"}, "F2CF5B"}
	}
}

// fieldSpec is the schema of one field as the fake knows it.
type fieldSpec struct {
	dataType     string
	label        string
	length       int
	precision    int
	scale        int
	target       string // the object a lookup points to
	relationship string // the lookup's relationship name
	system       bool   // set by Salesforce: neither createable nor updateable
}

// specFor describes field of object. Fixture fields the table does not
// know are plain text.
func specFor(object, field string) fieldSpec {
	switch field {
	case "Id":
		return fieldSpec{dataType: "String", label: object + " ID", length: 18, system: true}
	case "OwnerId":
		return fieldSpec{dataType: "Reference", label: "Owner ID", length: 18, target: "User", relationship: "Owner"}
	case "AccountId":
		return fieldSpec{dataType: "Reference", label: "Account ID", length: 18, target: "Account", relationship: "Account"}
	case "Name":
		label := object + " Name"
		if object == "Contact" || object == "Lead" {
			label = "Full Name"
		}
		return fieldSpec{dataType: "String", label: label, length: 255}
	case "CaseNumber":
		return fieldSpec{dataType: "String", label: "Case Number", length: 30, system: true}
	case "Type", "Industry", "StageName", "Status", "Priority":
		labels := map[string]string{"Type": object + " Type", "StageName": "Stage", "Status": "Status"}
		label := labels[field]
		if label == "" {
			label = field
		}
		if object == "Lead" && field == "Status" {
			label = "Lead Status"
		}
		return fieldSpec{dataType: "Picklist", label: label, length: 255}
	case "Amount":
		return fieldSpec{dataType: "Currency", label: "Amount", precision: 18, scale: 2}
	case "CloseDate":
		return fieldSpec{dataType: "Date", label: "Close Date"}
	case "Phone":
		label := "Phone"
		switch object {
		case "Account":
			label = "Account Phone"
		case "Contact":
			label = "Business Phone"
		}
		return fieldSpec{dataType: "Phone", label: label, length: 40}
	case "Email":
		return fieldSpec{dataType: "Email", label: "Email", length: 80}
	}
	labels := map[string]string{"BillingCity": "Billing City", "FirstName": "First Name", "LastName": "Last Name"}
	label := labels[field]
	if label == "" {
		label = field
	}
	return fieldSpec{dataType: "String", label: label, length: 255}
}

// handleObjectInfo answers object info for the token's user. An object the
// fake does not have is 404 with the UI API's read-error array; one the
// user may not read (SetObjectDenied) is 403.
func (s *Server) handleObjectInfo(w http.ResponseWriter, r *http.Request, u User, _ string) {
	status, body := s.objectInfo(u, r.PathValue("type"))
	writeBytes(w, status, body)
}

// maxBatchObjects is how many objects one object info batch may name.
const maxBatchObjects = 2000

// handleObjectInfoBatch answers GET …/ui-api/object-info/batch/{A},{B},…
// with the UI API's Simplified Batch Results: {"results":[…]}, one item
// per object in the order asked, each {"result":…,"statusCode":…} holding
// what the single-object resource would have answered, error arrays
// included. The request itself succeeds (200) whatever the items say.
func (s *Server) handleObjectInfoBatch(w http.ResponseWriter, r *http.Request, u User, _ string) {
	names := strings.Split(r.PathValue("types"), ",")
	if len(names) > maxBatchObjects {
		writeAPIError(w, http.StatusBadRequest, "INVALID_INPUT", "You can request up to 2000 objects in a batch.")
		return
	}
	type item struct {
		Result     json.RawMessage `json:"result"`
		StatusCode int             `json:"statusCode"`
	}
	results := make([]item, len(names))
	for i, name := range names {
		status, body := s.objectInfo(u, name)
		results[i] = item{Result: body, StatusCode: status}
	}
	body, _ := json.Marshal(map[string]any{"results": results}) // only plain values: cannot fail
	writeBytes(w, http.StatusOK, body)
}

// objectInfo is the answer to object info of name for u: its status and
// body.
func (s *Server) objectInfo(u User, name string) (int, []byte) {
	od, ok := s.org.object(name)
	if !ok {
		return http.StatusNotFound, []byte(`[{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]`)
	}
	hidden := s.hiddenFor(u)
	if hidden.denies(od.name) {
		// What Salesforce answers here is not recorded anywhere public
		// (see the UI API reference's object info errors); this is the
		// UI API read-error array with the status and code of a user
		// without access. The client treats any 403 (other than the API
		// limit's), a 404 and a 400 INVALID_TYPE alike.
		return http.StatusForbidden, []byte(`[{"errorCode":"INSUFFICIENT_ACCESS","message":"You don't have access to this object."}]`)
	}
	fields := make(map[string]any)
	for _, name := range od.fields {
		if !hidden.has(od.name, name) {
			fields[name] = fieldInfo(od.name, name, hidden)
		}
	}
	meta := metaFor(od.name)
	info := map[string]any{
		"apiName":               od.name,
		"associateEntityType":   nil,
		"associateParentEntity": nil,
		"childRelationships":    []any{},
		"createable":            true,
		"custom":                false,
		"defaultRecordTypeId":   masterRecordType,
		"deletable":             true,
		"dependentFields":       map[string]any{},
		"feedEnabled":           true,
		"fields":                fields,
		"keyPrefix":             meta.keyPrefix,
		"label":                 od.name,
		"labelPlural":           meta.labelPlural,
		"layoutable":            true,
		"mruEnabled":            true,
		"nameFields":            meta.nameFields,
		"queryable":             true,
		"recordTypeInfos": map[string]any{masterRecordType: map[string]any{
			"available": true, "defaultRecordTypeMapping": true, "master": true, "name": "Master", "recordTypeId": masterRecordType,
		}},
		"searchable": true,
		"themeInfo": map[string]any{
			"color":   meta.color,
			"iconUrl": s.URL + "/img/icon/t4v35/standard/" + strings.ToLower(od.name) + "_120.png",
		},
		"updateable": true,
	}
	// The eTag changes with what the user may see, as a real one does
	// when an administrator changes field-level security.
	body, _ := json.Marshal(info) // only plain values: cannot fail
	sum := md5.Sum(body)
	info["eTag"] = hex.EncodeToString(sum[:])
	body, _ = json.Marshal(info)
	return http.StatusOK, body
}

// masterRecordType is the id of the master record type in every org.
const masterRecordType = "012000000000000AAA"

// fieldInfo renders one field of object info. json.Marshal writes map keys
// in order, which gives the alphabetical order Salesforce uses. A lookup
// to an object the user may not read leaves that object out of its
// referenceToInfos.
func fieldInfo(object, name string, hidden hiddenSet) map[string]any {
	spec := specFor(object, name)
	refs := []any{}
	var rel any
	if spec.target != "" {
		rel = spec.relationship
	}
	if spec.target != "" && !hidden.denies(spec.target) {
		nameFields := []string{"FirstName", "LastName", "Name"}
		if spec.target != "User" {
			nameFields = metaFor(spec.target).nameFields
		}
		refs = append(refs, map[string]any{"apiName": spec.target, "nameFields": nameFields})
	}
	isName := name == nameField(object)
	return map[string]any{
		"apiName":               name,
		"calculated":            false,
		"compound":              false,
		"compoundComponentName": nil,
		"compoundFieldName":     nil,
		"controllerName":        nil,
		"controllingFields":     []any{},
		"createable":            !spec.system,
		"custom":                false,
		"dataType":              spec.dataType,
		"extraTypeInfo":         nil,
		"filterable":            true,
		"filteredLookupInfo":    nil,
		"highScaleNumber":       false,
		"htmlFormatted":         false,
		"inlineHelpText":        nil,
		"label":                 spec.label,
		"length":                spec.length,
		"nameField":             isName,
		"polymorphicForeignKey": false,
		"precision":             spec.precision,
		"reference":             spec.target != "",
		"referenceTargetField":  nil,
		"referenceToInfos":      refs,
		"relationshipName":      rel,
		"required":              name == "Id" || isName || name == "OwnerId",
		"scale":                 spec.scale,
		"searchPrefilterable":   false,
		"sortable":              true,
		"unique":                false,
		"updateable":            !spec.system && name != "Id",
	}
}
