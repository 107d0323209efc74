package mongostore

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// CatalogueDeletionsCollection holds the deletion markers of theatres and movies being deleted
// (see core's catalogue_deletion.go). A deletion removes its marker when it is done, so the
// collection holds the deletions under way and the markers of deleters that died.
const CatalogueDeletionsCollection = "catalogue_deletions"

// Deletions is a catalogue.DeletionStore: one document per marker, its key the _id.
type Deletions struct{ c *mongo.Collection }

var _ catalogue.DeletionStore = (*Deletions)(nil)

type catDeletionDoc struct {
	ID        string    `bson:"_id"`
	CreatedAt time.Time `bson:"createdAt"`
}

// Mark inserts the marker key; the unique _id decides between two inserts of one key.
func (s *Deletions) Mark(ctx context.Context, key string, at time.Time) (bool, error) {
	_, err := s.c.InsertOne(ctx, catDeletionDoc{ID: key, CreatedAt: catStamp(at)})
	if mongox.IsDuplicateKey(err) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "could not mark the deletion")
	}
	return true, nil
}

// maxMarkReads bounds the keys Marks reads one by one (by exact _id, each an indexed read on
// every server); more are read in one query by _id $in, which the dev database answers by
// reading the (small) collection.
const maxMarkReads = 8

// Marks returns when each of the keys that exist was made.
func (s *Deletions) Marks(ctx context.Context, keys []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, 1)
	if len(keys) > maxMarkReads {
		docs, err := findAll(ctx, s.c, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}}, nil,
			"read the deletion markers", func(d *catDeletionDoc) catDeletionDoc { return *d })
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			out[d.ID] = d.CreatedAt.UTC()
		}
		return out, nil
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, k := range keys {
		wg.Go(func() {
			var d catDeletionDoc
			err := s.c.FindOne(ctx, bson.D{{Key: "_id", Value: k}}).Decode(&d)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				out[k] = d.CreatedAt.UTC()
			case !errors.Is(err, mongo.ErrNoDocuments) && firstErr == nil:
				firstErr = dbError(err, "could not read the deletion markers")
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// Unmark deletes the marker key.
func (s *Deletions) Unmark(ctx context.Context, key string) error {
	if _, err := s.c.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}}); err != nil {
		return dbError(err, "could not remove the deletion marker")
	}
	return nil
}
