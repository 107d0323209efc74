package mongostore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/mongox"
)

type deletionDoc struct {
	ID        string    `bson:"_id"`
	CreatedAt time.Time `bson:"createdAt"`
}

// MarkShowDeleting inserts the show's deletion marker.
func (s *Bookings) MarkShowDeleting(ctx context.Context, showID string) (bool, error) {
	_, err := s.deletions.InsertOne(ctx, deletionDoc{ID: showID, CreatedAt: s.now().UTC()})
	if mongox.IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "could not mark the show deleted")
	}
	return true, nil
}

// ShowDeleting reads the show's deletion marker.
func (s *Bookings) ShowDeleting(ctx context.Context, showID string) (time.Time, bool, error) {
	var d deletionDoc
	err := s.deletions.FindOne(ctx, bson.D{{Key: "_id", Value: showID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, dbError(err, "could not read the show")
	}
	return d.CreatedAt.UTC(), true, nil
}

// UnmarkShowDeleting deletes the show's deletion marker.
func (s *Bookings) UnmarkShowDeleting(ctx context.Context, showID string) error {
	if _, err := s.deletions.DeleteOne(ctx, bson.D{{Key: "_id", Value: showID}}); err != nil {
		return dbError(err, "could not unmark the show")
	}
	return nil
}
