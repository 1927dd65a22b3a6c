package store

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KeySize is the length in bytes of every key in a [Keyring] (AES-256).
const KeySize = 32

const (
	keyIDLen     = 4
	keyIDContext = "forcebind key id v1"
	envKey       = "FORCEBIND_KEY"
	envKeyFile   = "FORCEBIND_KEY_FILE"
	maxKeyFile   = 1 << 20
)

// A Keyring holds the keys that seal and open records. The first key is the
// primary: it seals every new record. Every key in the ring opens records
// sealed under it. A Keyring keeps no raw key bytes, only the expanded AES
// state; it is immutable after construction and safe for concurrent use.
type Keyring struct {
	keys []ringKey // keys[0] is the primary

	// source says where the keys came from, for messages that tell the
	// operator what to change: "FORCEBIND_KEY", "FORCEBIND_KEY_FILE
	// /path", or empty for NewKeyring.
	source string
}

type ringKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// NewKeyring returns a keyring of the given keys, the first one primary. Each
// key must be exactly [KeySize] bytes and appear once. The keyring does not
// keep the slices; the caller may clear them afterwards. Errors name keys by
// position ("key 2"), never by content.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	labels := make([]string, len(keys))
	for i := range keys {
		labels[i] = fmt.Sprintf("key %d", i+1)
	}
	kr, err := newKeyring(keys, labels)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return kr, nil
}

// KeyringFromEnv parses the value of FORCEBIND_KEY: comma-separated base64
// keys (standard or URL alphabet, padded or not; spaces around each key are
// ignored), the first one primary. The caller reads the environment; this
// function only parses. Errors name the variable and the key's position, as
// in "FORCEBIND_KEY: key 2: not base64 of exactly 32 bytes", and never
// contain key material.
func KeyringFromEnv(value string) (*Keyring, error) {
	if strings.TrimSpace(value) == "" {
		return nil, fmt.Errorf("%s: no keys", envKey)
	}
	parts := strings.Split(value, ",")
	keys := make([][]byte, 0, len(parts))
	labels := make([]string, 0, len(parts))
	for i, p := range parts {
		label := fmt.Sprintf("key %d", i+1)
		k, err := decodeKey(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", envKey, label, err)
		}
		keys = append(keys, k)
		labels = append(labels, label)
	}
	kr, err := newKeyring(keys, labels)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envKey, err)
	}
	kr.source = envKey
	return kr, nil
}

// KeyringFromFile reads the file named by FORCEBIND_KEY_FILE: one base64 key
// a line, the first one primary; blank lines and everything from a '#' to the
// end of a line are ignored, and CRLF line ends are accepted. The file is
// refused unless only its owner can read or write it (mode 0600 or
// stricter). Errors name the variable, the path and the line number, and
// never contain key material. It is safe to call from any goroutine.
func KeyringFromFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envKeyFile, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envKeyFile, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s: not a regular file", envKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s %s: mode %#o lets group or others read or write the keys; run chmod 600 %s", envKeyFile, path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", envKeyFile, path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s %s: larger than %d bytes, not a key file", envKeyFile, path, maxKeyFile)
	}
	var (
		keys   [][]byte
		labels []string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxKeyFile)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(line) == "" {
			continue
		}
		label := fmt.Sprintf("line %d", n)
		k, err := decodeKey(line)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %s: %w", envKeyFile, path, label, err)
		}
		keys = append(keys, k)
		labels = append(labels, label)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", envKeyFile, path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s %s: no keys", envKeyFile, path)
	}
	kr, err := newKeyring(keys, labels)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", envKeyFile, path, err)
	}
	kr.source = envKeyFile + " " + path
	return kr, nil
}

// GenerateKey returns a new random key as standard padded base64, the form
// FORCEBIND_KEY and FORCEBIND_KEY_FILE expect. It is safe for concurrent use.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// PrimaryID returns the id of the primary key as 8 hex digits. The id is
// derived from the key by a one-way hash, so it is safe to log and print.
func (k *Keyring) PrimaryID() string {
	return hex.EncodeToString(k.keys[0].id[:])
}

// Source says where the keys came from, in the words an operator changes:
// "FORCEBIND_KEY", "FORCEBIND_KEY_FILE /etc/forcebind/keys", or "" for a
// keyring made with NewKeyring. It holds no key material.
func (k *Keyring) Source() string {
	return k.source
}

// Name is the keyring as messages call it: its Source, such as
// "FORCEBIND_KEY_FILE /path", or "the keyring" when that is unknown. It
// holds no key material.
func (k *Keyring) Name() string {
	if k.source == "" {
		return "the keyring"
	}
	return k.source
}

// holds reports whether the ring has the key with the given id.
func (k *Keyring) holds(id [keyIDLen]byte) bool {
	return k.lookup(id[:]) != nil
}

// ids lists the ids of every key in the ring, for error messages.
func (k *Keyring) ids() string {
	s := make([]string, len(k.keys))
	for i, rk := range k.keys {
		s[i] = hex.EncodeToString(rk.id[:])
	}
	return strings.Join(s, ", ")
}

// lookup returns the key with the given id, or nil.
func (k *Keyring) lookup(id []byte) *ringKey {
	for i := range k.keys {
		if bytes.Equal(k.keys[i].id[:], id) {
			return &k.keys[i]
		}
	}
	return nil
}

func newKeyring(keys [][]byte, labels []string) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	kr := &Keyring{keys: make([]ringKey, 0, len(keys))}
	for i, raw := range keys {
		if len(raw) != KeySize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", labels[i], len(raw), KeySize)
		}
		rk := ringKey{id: keyID(raw)}
		// Comparing ids rather than keys also refuses the (astronomically
		// unlikely) distinct keys whose ids collide, which would make the
		// id in a record ambiguous.
		for j := range kr.keys {
			if kr.keys[j].id == rk.id {
				return nil, fmt.Errorf("%s: same key as %s", labels[i], labels[j])
			}
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", labels[i], err)
		}
		rk.aead, err = cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", labels[i], err)
		}
		kr.keys = append(kr.keys, rk)
	}
	return kr, nil
}

// keyID derives a key's public id. The context string keeps the id from
// being equal to any other hash of the key someone might compute.
func keyID(key []byte) [keyIDLen]byte {
	h := sha256.New()
	h.Write([]byte(keyIDContext))
	h.Write([]byte{0})
	h.Write(key)
	var id [keyIDLen]byte
	copy(id[:], h.Sum(nil))
	return id
}

// decodeKey accepts any of the four base64 forms, as long as the result is
// exactly one key. The error deliberately says nothing about the input.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("not base64 of exactly %d bytes", KeySize)
}
