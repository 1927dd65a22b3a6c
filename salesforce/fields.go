package salesforce

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of a FieldCache.
const (
	// DefaultFieldCacheTTL is how long what a user may read is trusted.
	// A stale entry that matters fixes itself: when a field was hidden
	// since, Salesforce answers INVALID_FIELD and the entry is read again
	// at once. What a long TTL delays is only a field (or object) shown
	// again, which appears within it; so the TTL is long enough that a
	// busy person's searches read metadata a few times an hour, not once
	// every few minutes.
	DefaultFieldCacheTTL = 15 * time.Minute
	// DefaultDeniedTTL is how long an object the user may not read at all
	// is remembered as such. Nothing tells forcebind when an administrator
	// grants access, so it is short: access granted shows within a
	// minute, while a search by someone who may not read Leads still
	// reads Lead's metadata at most once a minute, not every time.
	DefaultDeniedTTL = time.Minute
	// DefaultFieldCacheEntries bounds the cache: one entry per org, user
	// and object, so 2000 people searching five objects. An entry keeps
	// only what the object table can ask about (a few hundred bytes), so
	// a full cache holds a few megabytes.
	DefaultFieldCacheEntries = 10000
)

// Error codes Salesforce sends for a query or a search that names what the
// user cannot see: INVALID_FIELD for a field (one that does not exist, or
// one field-level security hides), INVALID_TYPE for an object (one the
// user has no access to at all). Either may mean that what the cache holds
// is stale.
const (
	codeInvalidField = "INVALID_FIELD"
	codeInvalidType  = "INVALID_TYPE"
)

// batchAPIVersion is the first API version with the UI API's object info
// batch resource; older versions read one object per request.
const batchAPIVersion = 49

// FieldCache remembers, per org, user and object, which of the object
// table's fields that user may read, as the UI API's object info reported
// them with the user's own token, or that the user may not read the object
// at all. Search and Find ask only for those: Salesforce refuses a whole
// query or search that names a field or an object hidden from the user.
//
// Entries live for the TTL (DeniedTTL for an object the user may not
// read), the least recently used go first when the cache is full, and an
// entry is dropped as soon as Salesforce says a column or object it
// allowed does not exist. Concurrent misses for one key share a single
// request, and the misses of one search are read in one request. A
// FieldCache is safe for concurrent use; make one per process and give it
// to every [Config] (see Config.Fields).
type FieldCache struct {
	ttl       time.Duration
	deniedTTL time.Duration
	max       int
	now       func() time.Time

	mu      sync.Mutex
	entries map[infoKey]*list.Element // each holds an *infoEntry
	lru     *list.List                // most recently used at the front
	flights map[infoKey]*infoFlight
	gen     uint64
}

// FieldCacheConfig configures a [FieldCache]. The zero value gives the
// defaults.
type FieldCacheConfig struct {
	// TTL is how long what a user may read is trusted before it is read
	// again. Zero means DefaultFieldCacheTTL. A field shown to the user
	// again appears within it; a field hidden meanwhile is noticed at
	// once, through INVALID_FIELD.
	TTL time.Duration
	// DeniedTTL is how long an object the user may not read at all is
	// left out before its metadata is read again. Zero means
	// DefaultDeniedTTL.
	DeniedTTL time.Duration
	// MaxEntries bounds the entries kept (one per org, user and object).
	// Zero means DefaultFieldCacheEntries.
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewFieldCache returns an empty cache. It does no I/O.
func NewFieldCache(cfg FieldCacheConfig) *FieldCache {
	fc := &FieldCache{
		ttl:       cfg.TTL,
		deniedTTL: cfg.DeniedTTL,
		max:       cfg.MaxEntries,
		now:       cfg.Now,
		entries:   make(map[infoKey]*list.Element),
		lru:       list.New(),
		flights:   make(map[infoKey]*infoFlight),
	}
	if fc.ttl <= 0 {
		fc.ttl = DefaultFieldCacheTTL
	}
	if fc.deniedTTL <= 0 {
		fc.deniedTTL = DefaultDeniedTTL
	}
	if fc.max <= 0 {
		fc.max = DefaultFieldCacheEntries
	}
	if fc.now == nil {
		fc.now = time.Now
	}
	return fc
}

// Len returns how many entries the cache holds, expired ones included
// until they are next looked at or pushed out.
func (fc *FieldCache) Len() int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return len(fc.entries)
}

type infoKey struct{ org, user, object string }

// infoEntry is one cached object info. It never changes once stored, so
// it is read without the lock.
type infoEntry struct {
	key     infoKey
	info    *objectInfo
	expires time.Time
	gen     uint64 // tells a replaced entry from its successor
}

// infoFlight is one object info request that concurrent misses wait for.
type infoFlight struct {
	done  chan struct{}
	entry *infoEntry
	err   error
}

// peek returns the live entry for key, if there is one.
func (fc *FieldCache) peek(key infoKey) (*infoEntry, bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.liveLocked(key)
}

func (fc *FieldCache) liveLocked(key infoKey) (*infoEntry, bool) {
	el, ok := fc.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*infoEntry)
	if !fc.now().Before(e.expires) {
		fc.lru.Remove(el)
		delete(fc.entries, key)
		return nil, false
	}
	fc.lru.MoveToFront(el)
	return e, true
}

// get returns the entry for key, calling fetch when there is none; see
// lookup.
func (fc *FieldCache) get(ctx context.Context, key infoKey, fetch func(context.Context) (*objectInfo, error)) (*infoEntry, error) {
	out, err := fc.lookup(ctx, []infoKey{key}, func(ctx context.Context, _ []infoKey) ([]*objectInfo, error) {
		info, err := fetch(ctx)
		return []*objectInfo{info}, err
	})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// lookup returns the entry for each of keys, in order. Those neither
// cached nor being read by another caller are read with one call of
// fetch, which returns their infos in the order of the keys it was given;
// callers that miss together wait for one read. A waiter whose leader gave
// up because the leader's own context ended reads again itself, so one
// person's cancelled request does not fail another's.
func (fc *FieldCache) lookup(ctx context.Context, keys []infoKey, fetch func(context.Context, []infoKey) ([]*objectInfo, error)) ([]*infoEntry, error) {
	out := make([]*infoEntry, len(keys))
	for {
		var (
			lead  []int // indexes of the keys this call reads
			flts  []*infoFlight
			waits = make(map[int]*infoFlight)
		)
		fc.mu.Lock()
		for i, k := range keys {
			if out[i] != nil {
				continue
			}
			if e, ok := fc.liveLocked(k); ok {
				out[i] = e
				continue
			}
			if f, ok := fc.flights[k]; ok {
				waits[i] = f // another caller's, or this one's for a key listed twice
				continue
			}
			f := &infoFlight{done: make(chan struct{})}
			fc.flights[k] = f
			lead, flts = append(lead, i), append(flts, f)
		}
		fc.mu.Unlock()

		if len(lead) > 0 {
			mine := make([]infoKey, len(lead))
			for j, i := range lead {
				mine[j] = keys[i]
			}
			entries, err := fc.lead(ctx, mine, flts, fetch)
			if err != nil {
				return nil, err
			}
			for j, i := range lead {
				out[i] = entries[j]
			}
		}
		again := false
		for i, f := range waits {
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if f.err != nil {
				if isContextError(f.err) && ctx.Err() == nil {
					again = true
					continue
				}
				return nil, f.err
			}
			out[i] = f.entry
		}
		if !again {
			return out, nil
		}
	}
}

// lead runs the fetch for the flights of keys and publishes its outcome,
// also when fetch panics, so that no waiter is left hanging.
func (fc *FieldCache) lead(ctx context.Context, keys []infoKey, flights []*infoFlight, fetch func(context.Context, []infoKey) ([]*objectInfo, error)) (entries []*infoEntry, err error) {
	var infos []*objectInfo
	err = errors.New("salesforce: object info request did not finish") // what waiters see after a panic
	defer func() {
		if err == nil && (len(infos) != len(keys) || slices.Contains(infos, nil)) {
			err = fmt.Errorf("salesforce: object info: no answer for some of %d objects", len(keys))
		}
		fc.mu.Lock()
		if err == nil {
			entries = make([]*infoEntry, len(keys))
		}
		now := fc.now()
		for j, k := range keys {
			delete(fc.flights, k)
			f := flights[j]
			if err == nil {
				ttl := fc.ttl
				if infos[j].denied {
					ttl = fc.deniedTTL
				}
				fc.gen++
				e := &infoEntry{key: k, info: infos[j], expires: now.Add(ttl), gen: fc.gen}
				fc.storeLocked(e)
				entries[j] = e
				f.entry = e
			}
			f.err = err
			close(f.done)
		}
		fc.mu.Unlock()
	}()
	infos, err = fetch(ctx, keys)
	return nil, err // the deferred publish fills in the entries
}

func (fc *FieldCache) storeLocked(e *infoEntry) {
	if el, ok := fc.entries[e.key]; ok {
		fc.lru.Remove(el)
	}
	fc.entries[e.key] = fc.lru.PushFront(e)
	for len(fc.entries) > fc.max {
		last := fc.lru.Back()
		fc.lru.Remove(last)
		delete(fc.entries, last.Value.(*infoEntry).key)
	}
}

// drop forgets the given entries, unless they were already replaced: when
// twenty searches hit the same INVALID_FIELD, the first drop makes the one
// re-read and the others leave its answer alone.
func (fc *FieldCache) drop(entries ...*infoEntry) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, e := range entries {
		if el, ok := fc.entries[e.key]; ok && el.Value.(*infoEntry).gen == e.gen {
			fc.lru.Remove(el)
			delete(fc.entries, e.key)
		}
	}
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// objectInfo is what the client keeps of one object's info for one user:
// which of the object table's fields and relationship paths that user may
// read, or that the user may not read the object at all. It holds names
// from the object table only (never strings from the answer), so an entry
// costs a few dozen bytes per field of the table, whatever the size of
// the org's schema.
type objectInfo struct {
	paths  []string // the table's fields and paths the user may read, in table order
	denied bool     // the user may not read the object at all
	reason string   // for a denied object, Salesforce's answer, for the log
}

// readable reports whether the user may read path, a field or a
// relationship path such as "Account.Name", as decodeObjectInfo decided.
func (oi *objectInfo) readable(path string) bool {
	for _, p := range oi.paths {
		if strings.EqualFold(p, path) {
			return true
		}
	}
	return false
}

// wireObjectInfo is the part of an object info answer the client reads.
type wireObjectInfo struct {
	APIName string `json:"apiName"`
	Fields  map[string]struct {
		APIName          string `json:"apiName"`
		RelationshipName string `json:"relationshipName"`
		ReferenceToInfos []struct {
			APIName    string   `json:"apiName"`
			NameFields []string `json:"nameFields"`
		} `json:"referenceToInfos"`
	} `json:"fields"`
}

// decodeObjectInfo reads the UI API's object info for o and keeps which of
// o's key fields and relationship paths the user may read: a field when
// the answer lists it, a path such as "Account.Name" when its lookup field
// is listed and the field at its end is one of the target's name fields,
// which Salesforce never hides. Other paths are left out rather than
// guessed at.
func decodeObjectInfo(o Object, data []byte) (*objectInfo, error) {
	var wire wireObjectInfo
	if err := json.Unmarshal(data, &wire); err != nil {
		return nil, fmt.Errorf("decode object info: %w", err)
	}
	if !strings.EqualFold(wire.APIName, o.Name) || wire.Fields == nil {
		return nil, fmt.Errorf("object info for %s names %q and lists no fields", o.Name, wire.APIName)
	}
	fields := make(map[string]bool, len(wire.Fields))
	names := make(map[string]map[string]bool) // lower-case relationship → lower-case name fields of its targets
	for key, f := range wire.Fields {
		name := f.APIName
		if name == "" {
			name = key
		}
		fields[strings.ToLower(name)] = true
		if f.RelationshipName == "" {
			continue
		}
		rel := strings.ToLower(f.RelationshipName)
		for _, r := range f.ReferenceToInfos {
			for _, nf := range r.NameFields {
				if names[rel] == nil {
					names[rel] = make(map[string]bool)
				}
				names[rel][strings.ToLower(nf)] = true
			}
		}
	}
	oi := &objectInfo{}
	for _, f := range o.Fields {
		rel, field, nested := strings.Cut(f.Name, ".")
		if nested && names[strings.ToLower(rel)][strings.ToLower(field)] || !nested && fields[strings.ToLower(f.Name)] {
			oi.paths = append(oi.paths, f.Name)
		}
	}
	return oi, nil
}

// deniesObject reports whether an object info answer of status with
// errorCode code says that the user may not read the object at all. What
// Salesforce sends then is not documented: a 403 (INSUFFICIENT_ACCESS and
// the like), a 404 NOT_FOUND or a 400 INVALID_TYPE ("Object Lead is not
// supported in UI API", as for an object the UI API does not serve) all
// mean that this user gets nothing of it. A 403 for the org's API limit,
// or for API access turned off, is about every request, not this object.
func deniesObject(status int, code string) bool {
	switch status {
	case http.StatusForbidden:
		switch code {
		case codeRequestLimit, "API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED":
			return false
		}
		return true
	case http.StatusNotFound:
		return true
	case http.StatusBadRequest:
		return code == codeInvalidType
	}
	return false
}

// deniedInfo is the entry of an object the user may not read, with
// Salesforce's answer for the log.
func deniedInfo(e *APIError) *objectInfo {
	return &objectInfo{denied: true, reason: e.Error()}
}

// decodeBatch reads the UI API's object info batch answer for objects: one
// result per object, in the order asked, each with its own status.
func decodeBatch(objects []Object, data []byte) ([]*objectInfo, error) {
	var wire struct {
		Results []struct {
			StatusCode int             `json:"statusCode"`
			Result     json.RawMessage `json:"result"`
		} `json:"results"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return nil, fmt.Errorf("decode object info batch: %w", err)
	}
	if len(wire.Results) != len(objects) {
		return nil, fmt.Errorf("object info batch: %d results for %d objects", len(wire.Results), len(objects))
	}
	out := make([]*objectInfo, len(objects))
	for i, r := range wire.Results {
		o := objects[i]
		if r.StatusCode >= 200 && r.StatusCode <= 299 {
			info, err := decodeObjectInfo(o, r.Result)
			if err != nil {
				return nil, fmt.Errorf("object info of %s: %w", o.Name, err)
			}
			out[i] = info
			continue
		}
		e := ParseError(r.StatusCode, nil, r.Result)
		if !deniesObject(e.StatusCode, e.ErrorCode) {
			return nil, fmt.Errorf("object info of %s: %w", o.Name, e)
		}
		out[i] = deniedInfo(e)
	}
	return out, nil
}

// infoKey is the cache key of object for the client's user.
func (c *Client) infoKey(object string) infoKey {
	return infoKey{org: c.orgID, user: c.userID, object: object}
}

// schema returns the object info of each of objects, in order. Cached ones
// cost nothing; the others are read together, in one request.
func (c *Client) schema(ctx context.Context, objects []Object) ([]*infoEntry, error) {
	keys := make([]infoKey, len(objects))
	for i, o := range objects {
		keys[i] = c.infoKey(o.Name)
	}
	return c.fields.lookup(ctx, keys, func(ctx context.Context, missing []infoKey) ([]*objectInfo, error) {
		objs := make([]Object, len(missing))
		for i, k := range missing {
			objs[i], _ = c.object(k.object) // keys are made from the table
		}
		return c.readInfos(ctx, objs)
	})
}

// readInfos reads the object info of objects from Salesforce: with one
// batch request, or, before API version 49.0, one request per object.
func (c *Client) readInfos(ctx context.Context, objects []Object) ([]*objectInfo, error) {
	if !c.hasBatch() {
		return c.readInfosOneByOne(ctx, objects)
	}
	names := make([]string, len(objects))
	for i, o := range objects {
		names[i] = o.Name // from the table: letters only, nothing to escape
	}
	data, err := c.send(ctx, "object_info", http.MethodGet, c.dataURL("ui-api/object-info/batch/"+strings.Join(names, ",")), nil)
	if err != nil {
		return nil, fmt.Errorf("object info of %s: %w", strings.Join(names, ", "), err)
	}
	return decodeBatch(objects, data)
}

// readInfosOneByOne reads the object info of each of objects with its own
// request. The first goes alone: if the session has expired, it alone
// meets the 401 and refreshes, and the others then use the fresh token.
// Sent together, each would meet the 401, and a refresh that failed (an IP
// restriction, say) would be tried again by every one of them.
func (c *Client) readInfosOneByOne(ctx context.Context, objects []Object) ([]*objectInfo, error) {
	out := make([]*objectInfo, len(objects))
	errs := make([]error, len(objects))
	read := func(i int) {
		o := objects[i]
		data, err := c.send(ctx, "object_info", http.MethodGet, c.dataURL("ui-api/object-info/"+o.Name), nil)
		var apiErr *APIError
		switch {
		case errors.As(err, &apiErr) && deniesObject(apiErr.StatusCode, apiErr.ErrorCode):
			out[i] = deniedInfo(apiErr)
		case err != nil:
			errs[i] = fmt.Errorf("object info of %s: %w", o.Name, err)
		default:
			out[i], errs[i] = decodeObjectInfo(o, data)
		}
	}
	if read(0); errs[0] != nil {
		return nil, errs[0]
	}
	var wg sync.WaitGroup
	for i := 1; i < len(objects); i++ {
		wg.Go(func() { read(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// hasBatch reports whether the client's API version has the object info
// batch resource. New has checked that the version is of the form 62.0.
func (c *Client) hasBatch() bool {
	major, _, _ := strings.Cut(c.version, ".")
	n, _ := strconv.Atoi(major)
	return n >= batchAPIVersion
}

// withReadable sends the request build makes from the objects the user may
// read and what they may read of each; objects the user may not read at
// all are left out, and when none is left it returns a *NotReadableError
// for the first. When Salesforce answers INVALID_FIELD or INVALID_TYPE
// anyway (field-level security or object access changed since the
// metadata was read), it forgets that metadata, reads it again and, if the
// request changes, sends it once more. It never loops.
func (c *Client) withReadable(ctx context.Context, objects []Object, build func([]Object, []*objectInfo) string, send func(string) error) error {
	entries, err := c.schema(ctx, objects)
	if err != nil {
		return err
	}
	text, err := buildReadable(objects, entries, build)
	if err != nil {
		return err
	}
	err = send(text)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != codeInvalidField && apiErr.ErrorCode != codeInvalidType {
		return err
	}
	c.fields.drop(entries...)
	fresh, ferr := c.schema(ctx, objects)
	if ferr != nil {
		return fmt.Errorf("%w (re-reading what may be read after: %v)", ferr, err)
	}
	retry, rerr := buildReadable(objects, fresh, build)
	if rerr != nil {
		return rerr
	}
	if retry == text {
		return err
	}
	return send(retry)
}

// buildReadable calls build with the objects of entries the user may read.
func buildReadable(objects []Object, entries []*infoEntry, build func([]Object, []*objectInfo) string) (string, error) {
	var (
		objs  []Object
		infos []*objectInfo
	)
	for i, e := range entries {
		if !e.info.denied {
			objs, infos = append(objs, objects[i]), append(infos, e.info)
		}
	}
	if len(objs) == 0 {
		o := objects[0]
		return "", &NotReadableError{Object: o.Name, Label: o.Label, Reason: entries[0].info.reason}
	}
	return build(objs, infos), nil
}
