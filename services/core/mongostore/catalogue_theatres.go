package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// Theatres is a catalogue.TheatreStore on the theatres collection. Owner and movies are kept as
// ObjectIds (the original's references). The movies are versioned apart from the theatre
// document: see theatre_movies.go.
type Theatres struct {
	c        *mongo.Collection
	lists    *mongo.Collection // the latest movie list of each theatre (a projection)
	versions *mongo.Collection // every version of each theatre's movie list (write-once)
}

var _ catalogue.TheatreStore = (*Theatres)(nil)

type theatreDoc struct {
	ID          bson.ObjectID   `bson:"_id"`
	Name        string          `bson:"name"`
	Description string          `bson:"description"`
	City        string          `bson:"city"`
	PinCode     int             `bson:"pinCode"`
	Address     string          `bson:"address"`
	Owner       bson.ObjectID   `bson:"owner"`
	Movies      []bson.ObjectID `bson:"movies"`
	CreatedAt   time.Time       `bson:"createdAt"`
	UpdatedAt   time.Time       `bson:"updatedAt"`
}

func (d *theatreDoc) theatre() *core.Theatre {
	t := &core.Theatre{ID: d.ID.Hex(), Name: d.Name, Description: d.Description, City: d.City, PinCode: d.PinCode,
		Address: d.Address, Movies: catHexes(d.Movies), CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
	if !d.Owner.IsZero() {
		t.Owner = d.Owner.Hex()
	}
	return t
}

// Create inserts t and sets its ID.
func (s *Theatres) Create(ctx context.Context, t *core.Theatre) error {
	owner, err := catOID("owner", t.Owner)
	if err != nil {
		return err
	}
	movies, err := catOIDs("movies", t.Movies)
	if err != nil {
		return err
	}
	oid := bson.NewObjectID()
	d := theatreDoc{ID: oid, Name: t.Name, Description: t.Description, City: t.City, PinCode: t.PinCode,
		Address: t.Address, Owner: owner, Movies: movies, CreatedAt: catStamp(t.CreatedAt), UpdatedAt: catStamp(t.UpdatedAt)}
	if len(movies) > 0 { // the ?movieId= filter reads the projections: give version 0 one
		if _, err := s.lists.InsertOne(ctx, movieListDoc{ID: oid, Movies: movies, UpdatedAt: d.UpdatedAt}); err != nil {
			return dbError(err, "could not create the theatre")
		}
	}
	if _, err := s.c.InsertOne(ctx, d); err != nil {
		return dbError(err, "could not create the theatre")
	}
	t.ID = oid.Hex()
	if t.Movies == nil {
		t.Movies = []string{}
	}
	return nil
}

// Get finds a theatre by id.
func (s *Theatres) Get(ctx context.Context, id string) (*core.Theatre, error) {
	var d theatreDoc
	if err := catGetByID(ctx, s.c, id, &d, "theatre"); err != nil {
		return nil, err
	}
	return s.withMovies(ctx, &d)
}

// List returns a page of the theatres matching f and their total.
func (s *Theatres) List(ctx context.Context, f core.TheatreFilter) ([]*core.Theatre, int64, error) {
	filter := bson.D{}
	if f.City != "" {
		filter = append(filter, bson.E{Key: "city", Value: f.City})
	}
	if f.Name != "" {
		filter = append(filter, bson.E{Key: "name", Value: f.Name})
	}
	if f.PinCode != 0 {
		filter = append(filter, bson.E{Key: "pinCode", Value: f.PinCode})
	}
	var running map[bson.ObjectID]movieListDoc
	if f.MovieID != "" {
		oid, err := catOID("movieId", f.MovieID)
		if err != nil {
			return nil, 0, err
		}
		if running, err = s.running(ctx, oid); err != nil {
			return nil, 0, err
		}
		if len(running) == 0 {
			return []*core.Theatre{}, 0, nil
		}
		ids := make([]bson.ObjectID, 0, len(running))
		for id := range running {
			ids = append(ids, id)
		}
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}})
	}
	docs, total, err := catFindPage[theatreDoc](ctx, s.c, filter, f.Page, "theatres")
	if err != nil {
		return nil, 0, err
	}
	out, err := s.listedPage(ctx, docs, running)
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// Update sets the given fields and returns the theatre after the change.
func (s *Theatres) Update(ctx context.Context, id string, p core.TheatrePatch, at time.Time) (*core.Theatre, error) {
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
	if p.City != nil {
		add("city", *p.City)
	}
	if p.PinCode != nil {
		add("pinCode", *p.PinCode)
	}
	if p.Address != nil {
		add("address", *p.Address)
	}
	var d theatreDoc
	if err := catFindOneAndSet(ctx, s.c, oid, bson.D{{Key: "$set", Value: set}}, &d, "theatre"); err != nil {
		return nil, err
	}
	return s.withMovies(ctx, &d)
}

// Delete deletes a theatre (and the projection of its movies; their versions stay, unread).
func (s *Theatres) Delete(ctx context.Context, id string) error {
	if err := catDeleteByID(ctx, s.c, id, "theatre"); err != nil {
		return err
	}
	oid, _ := catOID("id", id)
	// best effort: a projection left behind only gives the ?movieId= filter an id that matches
	// no theatre
	_, _ = s.lists.DeleteOne(ctx, bson.D{{Key: "_id", Value: oid}})
	return nil
}

// AddMovies adds movie ids to the theatre's movies, as the next version of its list.
func (s *Theatres) AddMovies(ctx context.Context, id string, movieIDs []string, at time.Time) (*core.Theatre, error) {
	return s.changeMovies(ctx, id, movieIDs, at, true)
}

// RemoveMovies removes movie ids from the theatre's movies, as the next version of its list.
func (s *Theatres) RemoveMovies(ctx context.Context, id string, movieIDs []string, at time.Time) (*core.Theatre, error) {
	return s.changeMovies(ctx, id, movieIDs, at, false)
}

// RemoveMovieEverywhere takes the movie off every theatre that runs it.
func (s *Theatres) RemoveMovieEverywhere(ctx context.Context, movieID string, at time.Time) error {
	oid, err := catOID("movieId", movieID)
	if err != nil {
		return err
	}
	running, err := s.running(ctx, oid)
	if err != nil {
		return err
	}
	// and theatres created with it whose list never changed (version 0, in their document)
	ids, err := findAll(ctx, s.c, bson.D{{Key: "movies", Value: oid}}, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}),
		"take the movie off the theatres", func(d *theatreDoc) bson.ObjectID { return d.ID })
	if err != nil {
		return err
	}
	for id := range running {
		ids = append(ids, id)
	}
	for _, t := range ids {
		if _, err := s.changeMovies(ctx, t.Hex(), []string{movieID}, at, false); err != nil && !errs.Is(err, errs.NotFound) {
			return err
		}
	}
	return nil
}
