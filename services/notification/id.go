package notification

import "go.mongodb.org/mongo-driver/v2/bson"

// ID identifies a ticket: 12 bytes laid out as a MongoDB ObjectID (4 bytes of creation time
// in seconds, 5 random bytes per process, a 3-byte counter), stored as an ObjectID and written
// in JSON and URLs as 24 hex digits. The hex of a new ID also names batches and sweeps.
//
// For now ID is the driver's bson.ObjectID under another name: httpapi and
// mongostore/idempotency.go still name that type. Once they name ID, it becomes a type of
// this package and the root package no longer imports the driver.
type ID = bson.ObjectID

// NewID returns a new ID, ordered by its creation time (in seconds).
func NewID() ID { return bson.NewObjectID() }

// ParseID reads an ID written as 24 hex digits.
func ParseID(s string) (ID, error) { return bson.ObjectIDFromHex(s) }
