// Command devdb runs the embedded development database until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cineflow/cineflow/pkg/devdb"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:27017", "listen address")
	dir := flag.String("dir", ".data/devdb", "data directory (SQLite files)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := devdb.Start(ctx, devdb.Options{Addr: *addr, Dir: *dir,
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("devdb: MongoDB-compatible database at %s (data in %s)\n", srv.URI(), *dir)
	<-ctx.Done()
	srv.Close()
}
