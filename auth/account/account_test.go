package account

import (
	"reflect"
	"strings"
	"testing"
)

// Nothing the bot is given has room for a credential: no field of these
// values, however deep, is named for a token, a secret or a verifier, or
// holds an interface or a function that could hand one out.
func TestValuesHoldNoCredential(t *testing.T) {
	var walk func(t *testing.T, path string, typ reflect.Type)
	walk = func(t *testing.T, path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Interface, reflect.Func, reflect.Chan, reflect.Pointer, reflect.Map, reflect.Slice:
			t.Errorf("%s is a %s, which could carry anything", path, typ.Kind())
		case reflect.Struct:
			if typ.PkgPath() == "time" {
				return
			}
			for i := range typ.NumField() {
				f := typ.Field(i)
				name := strings.ToLower(f.Name)
				for _, bad := range []string{"token", "secret", "verifier", "password"} {
					if strings.Contains(name, bad) {
						t.Errorf("%s.%s is named for a %s", path, f.Name, bad)
					}
				}
				walk(t, path+"."+f.Name, f.Type)
			}
		}
	}
	for _, v := range []any{Account{}, Requester{}, Link{}, Unlinked{}, RelinkError{}} {
		typ := reflect.TypeOf(v)
		walk(t, typ.Name(), typ)
	}
}
