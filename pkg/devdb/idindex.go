package devdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB's SQLite backend uses, for the _id indexes
)

// FerretDB v1.24's SQLite backend stores each collection as a table of JSON documents with a
// unique index on the expression _ferretdb_sjson->"_id", but it filters every query, update
// and delete that names exactly one _id with the expression _ferretdb_sjson->'$._id'. SQLite
// matches an index to a query by the expression's text, so it never uses that index: a find,
// update or delete by _id reads the whole table (measured on 100,000 ticket-sized documents:
// ~0.7 s for a find of a recent document, ~1.5 s for an update, ~0.9 s for a delete).
//
// The indexer adds, to every collection table, an index on the very expression the backend
// filters by; SQLite then serves those statements from it (0.4 ms, 1 ms and 0.8 ms on the
// same table). It watches the data directory because FerretDB creates a table on the first
// write to a collection: a new table goes without the index for at most idIndexInterval,
// while it is still small. The index is SQLite's alone: FerretDB neither lists nor drops it
// (dropping the collection drops the table and its indexes), and uniqueness stays enforced
// by FerretDB's own index.

// idIndexInterval is how often the data directory is checked for new tables.
const idIndexInterval = 100 * time.Millisecond

// idIndexSuffix names the added index: <table>_cineflow_id.
const idIndexSuffix = "_cineflow_id"

type idIndexer struct {
	dir    string
	log    *slog.Logger
	mu     sync.Mutex
	dbs    map[string]*sql.DB   // open handle per database file
	mtimes map[string]time.Time // newest modification time seen per database file
	stop   context.CancelFunc
	done   chan struct{}
}

func newIDIndexer(dir string, log *slog.Logger) *idIndexer {
	return &idIndexer{dir: dir, log: log, dbs: map[string]*sql.DB{}, mtimes: map[string]time.Time{}}
}

// start indexes what exists now, then keeps watching until close.
func (x *idIndexer) start() {
	x.scan()
	ctx, cancel := context.WithCancel(context.Background())
	x.stop, x.done = cancel, make(chan struct{})
	go func() {
		defer close(x.done)
		t := time.NewTicker(idIndexInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				x.scan()
			}
		}
	}()
}

func (x *idIndexer) close() {
	if x.stop != nil {
		x.stop()
		<-x.done
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, db := range x.dbs {
		db.Close()
	}
	x.dbs = map[string]*sql.DB{}
}

// scan checks every database file changed since the last scan (its -wal file changes on
// every write, so a new table shows there).
func (x *idIndexer) scan() {
	x.mu.Lock()
	defer x.mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(x.dir, "*.sqlite"))
	for _, f := range files {
		m := modTime(f)
		if w := modTime(f + "-wal"); w.After(m) {
			m = w
		}
		if m.IsZero() || m.Equal(x.mtimes[f]) {
			continue
		}
		if err := x.ensure(f); err != nil {
			if x.log != nil {
				x.log.Debug("devdb: _id index not created yet; retrying", "file", filepath.Base(f), "error", err.Error())
			}
			continue // retried on the next scan
		}
		x.mtimes[f] = m
	}
}

func modTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// ensure creates the missing _id indexes of one database file.
func (x *idIndexer) ensure(file string) error {
	db := x.dbs[file]
	if db == nil {
		var err error
		if db, err = sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(5000)"); err != nil {
			return err
		}
		db.SetMaxOpenConns(1)
		x.dbs[file] = db
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT t.name FROM sqlite_master t
		WHERE t.type = 'table' AND t.name NOT LIKE '\_ferretdb\_%' ESCAPE '\' AND t.name NOT LIKE 'sqlite\_%' ESCAPE '\'
		AND NOT EXISTS (SELECT 1 FROM sqlite_master i WHERE i.type = 'index' AND i.name = t.name || ?)`, idIndexSuffix)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var errs []error
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+idIndexSuffix, t)
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
