// Package migrate reads a database's numbered schema migrations, shared by
// the server's SQLite and PostgreSQL stores and the client's local store.
//
// Migrations are files migrations/NNNN_name.sql, numbered 1, 2, 3, …
// without gaps, so "schema version N" means the same everywhere. Applying
// them is the caller's job: each database runs them in its own way.
package migrate

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string // the file name
	SQL     string
}

// Load reads fsys's migrations directory and checks the naming and
// numbering.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var all []Migration
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		num, _, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || len(num) != 4 || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %q is not named NNNN_name.sql", name)
		}
		if v != len(all)+1 {
			return nil, fmt.Errorf("migration %q has version %d, want %d", name, v, len(all)+1)
		}
		body, err := fs.ReadFile(fsys, path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", name, err)
		}
		all = append(all, Migration{Version: v, Name: name, SQL: string(body)})
	}
	return all, nil
}
