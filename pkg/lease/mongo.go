package lease

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// DefaultCollection is the collection MongoStore keeps the records in.
const DefaultCollection = "leases"

// MongoStore keeps the records in a MongoDB collection, one document per window keyed
// "<job>:<window>". It inserts, reads and deletes by that exact _id (the accesses the embedded
// database serves from an index), and Front reads the first documents with an empty filter
// and a limit (read in insertion order, without a scan): no cost grows with what is stored.
type MongoStore struct {
	c *mongo.Collection
}

var _ Store = (*MongoStore)(nil)

// NewMongoStore returns a store on the collection c (e.g. db.Collection(DefaultCollection)).
func NewMongoStore(c *mongo.Collection) *MongoStore { return &MongoStore{c: c} }

type recordDoc struct {
	ID     string    `bson:"_id"`
	Job    string    `bson:"job"`
	Window int64     `bson:"window"`
	Holder string    `bson:"holder"`
	Ends   time.Time `bson:"ends"`
}

func recordID(job string, w int64) string { return job + ":" + strconv.FormatInt(w, 10) }

// Claim inserts the record; a duplicate key is false.
func (s *MongoStore) Claim(ctx context.Context, r Record) (bool, error) {
	_, err := s.c.InsertOne(ctx, recordDoc{ID: recordID(r.Job, r.Window), Job: r.Job, Window: r.Window, Holder: r.Holder, Ends: r.Ends})
	if mongo.IsDuplicateKeyError(err) {
		return false, nil
	}
	return err == nil, err
}

// Holder reads the record by its exact _id.
func (s *MongoStore) Holder(ctx context.Context, job string, w int64) (string, error) {
	var d recordDoc
	err := s.c.FindOne(ctx, bson.D{{Key: "_id", Value: recordID(job, w)}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", nil
	}
	return d.Holder, err
}

// Delete deletes the record by its exact _id.
func (s *MongoStore) Delete(ctx context.Context, job string, w int64) error {
	_, err := s.c.DeleteOne(ctx, bson.D{{Key: "_id", Value: recordID(job, w)}})
	return err
}

// Front reads up to n documents with an empty filter.
func (s *MongoStore) Front(ctx context.Context, n int) ([]Record, error) {
	cur, err := s.c.Find(ctx, bson.D{}, options.Find().SetLimit(int64(n)))
	if err != nil {
		return nil, err
	}
	var docs []recordDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	out := make([]Record, len(docs))
	for i, d := range docs {
		out[i] = Record{Job: d.Job, Window: d.Window, Holder: d.Holder, Ends: d.Ends.UTC()}
	}
	return out, nil
}
