package devdb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses ("sqlite"), for the index fix below
)

// FerretDB 1.24's SQLite backend keeps every document as JSON in one column and creates the
// collection's unique _id index on the expression  _ferretdb_sjson->"_id" , but filters its
// finds, updates and deletes by _id on  _ferretdb_sjson->'$._id' . SQLite uses an index only
// for the expression it was built on, so no query ever uses that index: a find by _id scans
// the table until it meets the document (to the end, for one that is not there), and every
// update and delete by _id scans it whole. A cost that grows with the stored data, on every
// request (measured: 50 ms per delete at 20,000 documents).
//
// idIndexer repairs it from outside: it watches the database files and gives every
// collection's table an index on the very expression FerretDB's queries use. The index is not
// unique (FerretDB's own index keeps _id unique) and FerretDB does not know about it; dropping
// a collection drops its table and the index with it. Until a new collection has its index,
// queries on it are merely slower, never wrong.
type idIndexer struct {
	dir     string
	every   time.Duration
	mu      sync.Mutex
	dbs     map[string]*indexedFile // file path -> state
	stop    chan struct{}
	stopped chan struct{}
}

type indexedFile struct {
	db  *sql.DB
	mod time.Time // the newest modification time of the file and its WAL when last checked
}

// idIndexName names the repair index of a table.
func idIndexName(table string) string { return table + "__cineflow_id" }

func startIDIndexer(dir string, every time.Duration) *idIndexer {
	x := &idIndexer{dir: dir, every: every, dbs: map[string]*indexedFile{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	go x.run()
	return x
}

func (x *idIndexer) run() {
	defer close(x.stopped)
	t := time.NewTicker(x.every)
	defer t.Stop()
	for {
		x.pass(context.Background())
		select {
		case <-x.stop:
			return
		case <-t.C:
		}
	}
}

// close stops the indexer and closes its connections.
func (x *idIndexer) close() {
	close(x.stop)
	<-x.stopped
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, f := range x.dbs {
		f.db.Close()
	}
	x.dbs = map[string]*indexedFile{}
}

// pass indexes the tables of every database file that changed since the last pass.
func (x *idIndexer) pass(ctx context.Context) {
	files, _ := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	x.mu.Lock()
	defer x.mu.Unlock()
	seen := map[string]bool{}
	for _, path := range files {
		seen[path] = true
		mod := newestMod(path)
		f := x.dbs[path]
		if f != nil && !mod.After(f.mod) {
			continue
		}
		if f == nil {
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
			if err != nil {
				continue
			}
			db.SetMaxOpenConns(1)
			f = &indexedFile{db: db}
			x.dbs[path] = f
		}
		if err := f.index(ctx); err == nil {
			f.mod = mod
		}
	}
	for path, f := range x.dbs {
		if !seen[path] {
			f.db.Close()
			delete(x.dbs, path)
		}
	}
}

func newestMod(path string) time.Time {
	var newest time.Time
	for _, p := range []string{path, path + "-wal"} {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	return newest
}

// index creates the missing repair indexes of one database file.
func (f *indexedFile) index(ctx context.Context) error {
	rows, err := f.db.QueryContext(ctx, `SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index')`)
	if err != nil {
		return err
	}
	var tables []string
	indexes := map[string]bool{}
	for rows.Next() {
		var typ, name string
		if rows.Scan(&typ, &name) != nil {
			continue
		}
		if typ == "index" {
			indexes[name] = true
		} else if !strings.HasPrefix(name, "_ferretdb_") && !strings.HasPrefix(name, "sqlite_") {
			tables = append(tables, name)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var first error
	for _, t := range tables {
		if indexes[idIndexName(t)] {
			continue
		}
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, idIndexName(t), t)
		if _, err := f.db.ExecContext(ctx, q); err != nil && first == nil {
			first = err
		}
	}
	return first
}
