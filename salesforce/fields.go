package salesforce

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Defaults of a FieldCache.
const (
	// DefaultFieldCacheTTL is how long a user's readable fields are
	// trusted: a few minutes, so that a field an administrator shows again
	// appears soon, while a busy person's searches read no metadata.
	DefaultFieldCacheTTL = 5 * time.Minute
	// DefaultFieldCacheEntries bounds the cache: one entry per org, user
	// and object, so 2000 people searching five objects.
	DefaultFieldCacheEntries = 10000
)

// codeInvalidField is what Salesforce answers, for a whole query or
// search, when it names a column the user cannot see: one that does not
// exist, or one field-level security hides.
const codeInvalidField = "INVALID_FIELD"

// FieldCache remembers, per org, user and object, which fields that user
// may read, as the UI API's object info reported them with the user's own
// token. Search and Find ask only for those: Salesforce refuses a whole
// query or search that names a field hidden from the user.
//
// Entries live for the TTL, the least recently used go first when the
// cache is full, and an entry is dropped as soon as Salesforce says a
// column it allowed does not exist. Concurrent misses for one key share a
// single object info request. A FieldCache is safe for concurrent use;
// make one per process and give it to every [Config] (see Config.Fields).
type FieldCache struct {
	ttl time.Duration
	max int
	now func() time.Time

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
	// again. Zero means DefaultFieldCacheTTL. An administrator's change to
	// field-level security shows within it; a field hidden meanwhile is
	// noticed at once, through INVALID_FIELD.
	TTL time.Duration
	// MaxEntries bounds the entries kept (one per org, user and object).
	// Zero means DefaultFieldCacheEntries.
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewFieldCache returns an empty cache. It does no I/O.
func NewFieldCache(cfg FieldCacheConfig) *FieldCache {
	fc := &FieldCache{
		ttl:     cfg.TTL,
		max:     cfg.MaxEntries,
		now:     cfg.Now,
		entries: make(map[infoKey]*list.Element),
		lru:     list.New(),
		flights: make(map[infoKey]*infoFlight),
	}
	if fc.ttl <= 0 {
		fc.ttl = DefaultFieldCacheTTL
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

// get returns the entry for key, calling fetch when there is none. Callers
// that miss together wait for one fetch. A waiter whose leader gave up
// because the leader's own context ended tries again itself, so one
// person's cancelled request does not fail another's.
func (fc *FieldCache) get(ctx context.Context, key infoKey, fetch func(context.Context) (*objectInfo, error)) (*infoEntry, error) {
	for {
		fc.mu.Lock()
		if e, ok := fc.liveLocked(key); ok {
			fc.mu.Unlock()
			return e, nil
		}
		if f, ok := fc.flights[key]; ok {
			fc.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if f.err != nil && isContextError(f.err) && ctx.Err() == nil {
				continue
			}
			return f.entry, f.err
		}
		f := &infoFlight{done: make(chan struct{})}
		fc.flights[key] = f
		fc.mu.Unlock()
		return fc.lead(ctx, key, f, fetch)
	}
}

// lead runs the fetch for a flight and publishes its outcome, also when
// fetch panics, so that no waiter is left hanging.
func (fc *FieldCache) lead(ctx context.Context, key infoKey, f *infoFlight, fetch func(context.Context) (*objectInfo, error)) (e *infoEntry, err error) {
	var info *objectInfo
	err = errors.New("salesforce: object info request did not finish") // what waiters see after a panic
	defer func() {
		fc.mu.Lock()
		delete(fc.flights, key)
		if err == nil {
			fc.gen++
			e = &infoEntry{key: key, info: info, expires: fc.now().Add(fc.ttl), gen: fc.gen}
			fc.storeLocked(e)
		}
		f.entry, f.err = e, err
		fc.mu.Unlock()
		close(f.done)
	}()
	info, err = fetch(ctx)
	return nil, err // the deferred publish fills in the entry
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

// objectInfo is what the client keeps of an object info answer: the
// fields the user may read, and for each lookup among them the name fields
// of what it points to.
type objectInfo struct {
	fields  map[string]bool      // lower-case API names of the readable fields
	lookups map[string][]refInfo // lower-case relationship name → targets
}

type refInfo struct {
	object     string
	nameFields []string
}

// readable reports whether the user may read path, a field or a
// relationship path such as "Account.Name". A path is readable when its
// lookup field is and the field at its end is one of the target's name
// fields, which Salesforce never hides; other paths are left out rather
// than guessed at.
func (oi *objectInfo) readable(path string) bool {
	rel, field, nested := strings.Cut(path, ".")
	if !nested {
		return oi.fields[strings.ToLower(path)]
	}
	for _, t := range oi.lookups[strings.ToLower(rel)] {
		for _, nf := range t.nameFields {
			if strings.EqualFold(nf, field) {
				return true
			}
		}
	}
	return false
}

// decodeObjectInfo reads the UI API's object info for object.
func decodeObjectInfo(object string, data []byte) (*objectInfo, error) {
	var wire struct {
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
	if err := json.Unmarshal(data, &wire); err != nil {
		return nil, fmt.Errorf("decode object info: %w", err)
	}
	if !strings.EqualFold(wire.APIName, object) || wire.Fields == nil {
		return nil, fmt.Errorf("object info for %s names %q and lists no fields", object, wire.APIName)
	}
	oi := &objectInfo{fields: make(map[string]bool, len(wire.Fields)), lookups: make(map[string][]refInfo)}
	for key, f := range wire.Fields {
		name := f.APIName
		if name == "" {
			name = key
		}
		oi.fields[strings.ToLower(name)] = true
		if f.RelationshipName == "" {
			continue
		}
		rel := strings.ToLower(f.RelationshipName)
		for _, r := range f.ReferenceToInfos {
			oi.lookups[rel] = append(oi.lookups[rel], refInfo{object: r.APIName, nameFields: r.NameFields})
		}
	}
	return oi, nil
}

// infoFor returns the cached object info of object for the client's user,
// reading it from Salesforce on a miss.
func (c *Client) infoFor(ctx context.Context, object string) (*infoEntry, error) {
	return c.fields.get(ctx, c.infoKey(object), func(ctx context.Context) (*objectInfo, error) {
		data, err := c.send(ctx, "object_info", http.MethodGet, c.dataURL("ui-api/object-info/"+object), nil)
		if err != nil {
			return nil, fmt.Errorf("object info of %s: %w", object, err)
		}
		return decodeObjectInfo(object, data)
	})
}

func (c *Client) infoKey(object string) infoKey {
	return infoKey{org: c.orgID, user: c.userID, object: object}
}

// schema returns the object info of each of objects, in order. Cached ones
// cost nothing; of the others, one is read first, then the rest in
// parallel.
func (c *Client) schema(ctx context.Context, objects []Object) ([]*infoEntry, error) {
	out := make([]*infoEntry, len(objects))
	var missing []int
	for i, o := range objects {
		if e, ok := c.fields.peek(c.infoKey(o.Name)); ok {
			out[i] = e
		} else {
			missing = append(missing, i)
		}
	}
	errs := make([]error, len(objects))
	if len(missing) == 0 {
		return out, nil
	}
	// The first read goes alone: if the session has expired, it alone
	// meets the 401 and refreshes, and the others then use the fresh token.
	// Sent together, each would meet the 401, and a refresh that failed
	// (an IP restriction, say) would be tried again by every one of them.
	first := missing[0]
	if out[first], errs[first] = c.infoFor(ctx, objects[first].Name); errs[first] != nil {
		return nil, errs[first]
	}
	var wg sync.WaitGroup
	for _, i := range missing[1:] {
		wg.Go(func() { out[i], errs[i] = c.infoFor(ctx, objects[i].Name) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withReadable sends the request build makes from what the user may read
// of objects. When Salesforce answers INVALID_FIELD anyway (field-level
// security changed since the metadata was read), it forgets that metadata,
// reads it again and, if the request changes, sends it once more. It never
// loops.
func (c *Client) withReadable(ctx context.Context, objects []Object, build func([]*objectInfo) string, send func(string) error) error {
	entries, err := c.schema(ctx, objects)
	if err != nil {
		return err
	}
	text := build(infos(entries))
	err = send(text)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != codeInvalidField {
		return err
	}
	c.fields.drop(entries...)
	fresh, ferr := c.schema(ctx, objects)
	if ferr != nil {
		return fmt.Errorf("%w (re-reading what may be read after: %v)", ferr, err)
	}
	retry := build(infos(fresh))
	if retry == text {
		return err
	}
	return send(retry)
}

func infos(entries []*infoEntry) []*objectInfo {
	out := make([]*objectInfo, len(entries))
	for i, e := range entries {
		out[i] = e.info
	}
	return out
}
