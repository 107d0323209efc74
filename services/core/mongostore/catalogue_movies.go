package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// Movies is a catalogue.MovieStore on the movies collection.
type Movies struct{ c *mongo.Collection }

var _ catalogue.MovieStore = (*Movies)(nil)

type movieDoc struct {
	ID            bson.ObjectID `bson:"_id"`
	Name          string        `bson:"name"`
	Description   string        `bson:"description"`
	Casts         []string      `bson:"casts"`
	TrailerURL    string        `bson:"trailerUrl"`
	Language      []string      `bson:"language"`
	ReleaseDate   string        `bson:"releaseDate"`
	Director      string        `bson:"director"`
	ReleaseStatus string        `bson:"releaseStatus"`
	CreatedAt     time.Time     `bson:"createdAt"`
	UpdatedAt     time.Time     `bson:"updatedAt"`
}

func catNonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (d *movieDoc) movie() *core.Movie {
	return &core.Movie{ID: d.ID.Hex(), Name: d.Name, Description: d.Description, Casts: catNonNil(d.Casts),
		TrailerURL: d.TrailerURL, Language: catNonNil(d.Language), ReleaseDate: d.ReleaseDate, Director: d.Director,
		ReleaseStatus: d.ReleaseStatus, CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
}

// Create inserts m and sets its ID.
func (s *Movies) Create(ctx context.Context, m *core.Movie) error {
	oid := bson.NewObjectID()
	d := movieDoc{ID: oid, Name: m.Name, Description: m.Description, Casts: catNonNil(m.Casts), TrailerURL: m.TrailerURL,
		Language: catNonNil(m.Language), ReleaseDate: m.ReleaseDate, Director: m.Director, ReleaseStatus: m.ReleaseStatus,
		CreatedAt: catStamp(m.CreatedAt), UpdatedAt: catStamp(m.UpdatedAt)}
	if _, err := s.c.InsertOne(ctx, d); err != nil {
		return dbError(err, "could not create the movie")
	}
	m.ID = oid.Hex()
	return nil
}

// Get finds a movie by id.
func (s *Movies) Get(ctx context.Context, id string) (*core.Movie, error) {
	var d movieDoc
	if err := catGetByID(ctx, s.c, id, &d, "movie"); err != nil {
		return nil, err
	}
	return d.movie(), nil
}

// List returns a page of the movies matching f and their total.
func (s *Movies) List(ctx context.Context, f core.MovieFilter) ([]*core.Movie, int64, error) {
	filter := bson.D{}
	if f.Name != "" {
		filter = append(filter, bson.E{Key: "name", Value: f.Name})
	}
	docs, total, err := catFindPage[movieDoc](ctx, s.c, filter, f.Page, "movies")
	if err != nil {
		return nil, 0, err
	}
	out := make([]*core.Movie, len(docs))
	for i := range docs {
		out[i] = docs[i].movie()
	}
	return out, total, nil
}

// GetMany returns the movies among ids that exist.
func (s *Movies) GetMany(ctx context.Context, ids []string) ([]*core.Movie, error) {
	oids, err := catOIDs("movieIds", ids)
	if err != nil {
		return nil, err
	}
	if len(oids) == 0 {
		return []*core.Movie{}, nil
	}
	docs, _, err := catFindPage[movieDoc](ctx, s.c, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: oids}}}}, core.Page{}, "movies")
	if err != nil {
		return nil, err
	}
	out := make([]*core.Movie, len(docs))
	for i := range docs {
		out[i] = docs[i].movie()
	}
	return out, nil
}

// Update sets the given fields and returns the movie after the change.
func (s *Movies) Update(ctx context.Context, id string, p core.MoviePatch, at time.Time) (*core.Movie, error) {
	oid, err := catOID("id", id)
	if err != nil {
		return nil, err
	}
	set := bson.D{{Key: "updatedAt", Value: catStamp(at)}}
	add := func(k string, v any) { set = append(set, bson.E{Key: k, Value: v}) }
	if p.Name != nil {
		add("name", *p.Name)
	}
	if p.Description != nil {
		add("description", *p.Description)
	}
	if p.Casts != nil {
		add("casts", catNonNil(*p.Casts))
	}
	if p.TrailerURL != nil {
		add("trailerUrl", *p.TrailerURL)
	}
	if p.Language != nil {
		add("language", catNonNil(*p.Language))
	}
	if p.ReleaseDate != nil {
		add("releaseDate", *p.ReleaseDate)
	}
	if p.Director != nil {
		add("director", *p.Director)
	}
	if p.ReleaseStatus != nil {
		add("releaseStatus", *p.ReleaseStatus)
	}
	var d movieDoc
	if err := catFindOneAndSet(ctx, s.c, oid, bson.D{{Key: "$set", Value: set}}, &d, "movie"); err != nil {
		return nil, err
	}
	return d.movie(), nil
}

// Delete deletes a movie.
func (s *Movies) Delete(ctx context.Context, id string) error {
	return catDeleteByID(ctx, s.c, id, "movie")
}
