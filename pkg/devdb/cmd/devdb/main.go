// Command devdb runs the embedded development database (FerretDB on SQLite, MongoDB wire
// protocol) until interrupted: `make run` embeds the same database, and the chart runs this
// binary when devDatabase.enabled is set. It is for development and trials, never production.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cineflow/cineflow/pkg/config"
	"github.com/cineflow/cineflow/pkg/devdb"
)

// version is stamped at build time (-ldflags "-X main.version=...").
var version = "dev"

var program = config.Program{Name: "devdb", Version: version, Summary: `
The CineFlow development database: a MongoDB-compatible server (FerretDB on SQLite, pure Go)
that keeps its data in --dir. It serves make run's stack and the chart's devDatabase option, so
that CineFlow can be tried without a MongoDB. It has no authentication, no replication and no
backups: never use it in production.`}

func main() {
	fs := flag.NewFlagSet("devdb", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:27017", "listen address (0.0.0.0:27017 to serve other hosts)")
	dir := fs.String("dir", ".data/devdb", "data directory (SQLite files)")
	if done, code := config.ParseArgs(program, fs, os.Args[1:], os.Stdout, os.Stderr); done {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := devdb.Start(ctx, devdb.Options{Addr: *addr, Dir: *dir,
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("devdb %s: MongoDB-compatible database at %s (data in %s)\n", version, srv.URI(), *dir)
	<-ctx.Done()
	srv.Close()
}
