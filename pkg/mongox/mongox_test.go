package mongox

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestRedactAndDatabaseName(t *testing.T) {
	if got := Redact("mongodb://app:s3cret@db:27017/noti?authSource=admin"); strings.Contains(got, "s3cret") || !strings.Contains(got, "app") {
		t.Fatalf("Redact: %s", got)
	}
	for uri, want := range map[string]string{"mongodb://h/": "noti", "mongodb://h/mba?x=1": "mba", "mongodb://h": "noti", "::bad": "noti"} {
		if got := DatabaseName(uri, "noti"); got != want {
			t.Errorf("DatabaseName(%q) = %q, want %q", uri, got, want)
		}
	}
}

func TestConnectToNothingFailsFastWithoutThePassword(t *testing.T) {
	start := time.Now()
	_, err := Connect(context.Background(), "mongodb://app:s3cret@127.0.0.1:1/noti", 300*time.Millisecond)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

// TestUnavailableLabels: a connection lost mid-command comes back as a CommandError, a server
// error type, labelled NetworkError: it is the database being unreachable (503), not a bug.
func TestUnavailableLabels(t *testing.T) {
	lost := mongo.CommandError{Message: "connection(127.0.0.1:1[-3]) incomplete read of message header", Labels: []string{"NetworkError"}}
	if !IsUnavailable(lost) {
		t.Fatal("a network-labelled command error must be unavailable")
	}
	if IsUnavailable(mongo.CommandError{Code: 2, Message: "bad value"}) {
		t.Fatal("a plain server error is not unavailability")
	}
	if !IsUnavailable(fmt.Errorf("connection pool for 127.0.0.1:1 was cleared because another operation failed with: EOF")) {
		t.Fatal("a cleared pool is unavailability")
	}
	if !IsUnavailable(mongo.BulkWriteException{WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{Message: "connection pool for 127.0.0.1:1 was cleared because another operation failed with: EOF"}}}}) {
		t.Fatal("a cleared pool inside a write exception is unavailability")
	}
	if !IsUnavailable(fmt.Errorf("wrapped: %w", context.DeadlineExceeded)) {
		t.Fatal("a deadline is unavailability")
	}
}
