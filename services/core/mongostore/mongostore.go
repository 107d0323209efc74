// Package mongostore is the core service's MongoDB adapter (also on the embedded FerretDB
// database): the stores of accounts, the catalogue, the booking engine and the outbox, one
// file per subdomain.
package mongostore

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
)

// dbError codes a driver error: errs.Unavailable when the database cannot be reached, else
// errs.Internal (what says what failed).
func dbError(err error, what string) error {
	if mongox.IsUnavailable(err) {
		return errs.Wrap(errs.Unavailable, err, "database unavailable")
	}
	return errs.Wrap(errs.Internal, err, what)
}

// parseID parses a document id (24 hex characters): errs.Invalid otherwise.
func parseID(id string) (bson.ObjectID, error) {
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return oid, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	return oid, nil
}
