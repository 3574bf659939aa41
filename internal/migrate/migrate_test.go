package migrate

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadChecksNamesAndNumbering(t *testing.T) {
	ok := fstest.MapFS{
		"migrations/0001_init.sql": {Data: []byte("CREATE TABLE a (x INT);")},
		"migrations/0002_more.sql": {Data: []byte("CREATE TABLE b (x INT);")},
	}
	ms, err := Load(ok)
	if err != nil || len(ms) != 2 || ms[1].Version != 2 || ms[1].Name != "0002_more.sql" || !strings.Contains(ms[0].SQL, "TABLE a") {
		t.Fatalf("Load = %+v, %v", ms, err)
	}
	for name, bad := range map[string]fstest.MapFS{
		"gap":       {"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
		"no number": {"migrations/init.sql": {}},
		"short":     {"migrations/1_init.sql": {}},
		"not sql":   {"migrations/0001_init.txt": {}},
		"missing":   {},
	} {
		if _, err := Load(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
