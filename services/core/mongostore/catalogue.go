package mongostore

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

// The catalogue's collections.
const (
	MoviesCollection   = "movies"
	TheatresCollection = "theatres"
	ShowsCollection    = "shows"
)

// Catalogue holds the catalogue stores on one database.
type Catalogue struct {
	Movies    *Movies
	Theatres  *Theatres
	Shows     *Shows
	Deletions *Deletions
}

// NewCatalogue returns the catalogue stores on db. Call EnsureIndexes once at start.
func NewCatalogue(db *mongo.Database) *Catalogue {
	return &Catalogue{Movies: &Movies{c: db.Collection(MoviesCollection)},
		Theatres: &Theatres{c: db.Collection(TheatresCollection), lists: db.Collection(TheatreMovieListsCollection),
			versions: db.Collection(TheatreMovieVersionsCollection)},
		Shows: &Shows{c: db.Collection(ShowsCollection)}, Deletions: &Deletions{c: db.Collection(CatalogueDeletionsCollection)}}
}

// Stores returns them as the domain's stores.
func (s *Catalogue) Stores() catalogue.CatalogueStores {
	return catalogue.CatalogueStores{Movies: s.Movies, Theatres: s.Theatres, Shows: s.Shows, Deletions: s.Deletions}
}

// EnsureIndexes creates the catalogue's indexes, one per call (the dev database fails when
// asked for several at once). The unique (theatreId, movieId, timing) index decides a show's
// identity; the others serve the list filters on MongoDB (the dev database scans anyway).
func (s *Catalogue) EnsureIndexes(ctx context.Context) error {
	for _, ix := range []struct {
		c *mongo.Collection
		m mongo.IndexModel
	}{
		{s.Shows.c, mongo.IndexModel{Keys: bson.D{{Key: "theatreId", Value: 1}, {Key: "movieId", Value: 1}, {Key: "timing", Value: 1}},
			Options: options.Index().SetUnique(true).SetName("show_identity_unique")}},
		{s.Shows.c, mongo.IndexModel{Keys: bson.D{{Key: "movieId", Value: 1}}, Options: options.Index().SetName("movieId")}},
		{s.Theatres.lists, mongo.IndexModel{Keys: bson.D{{Key: "movies", Value: 1}}, Options: options.Index().SetName("movies")}},
		{s.Theatres.c, mongo.IndexModel{Keys: bson.D{{Key: "city", Value: 1}}, Options: options.Index().SetName("city")}},
		{s.Movies.c, mongo.IndexModel{Keys: bson.D{{Key: "name", Value: 1}}, Options: options.Index().SetName("name")}},
	} {
		if err := mongox.EnsureIndexes(ctx, ix.c, ix.m); err != nil {
			return err
		}
	}
	return nil
}

func catOID(field, id string) (bson.ObjectID, error) {
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return oid, errs.Fields(map[string]string{field: "must be a 24-character hex id"})
	}
	return oid, nil
}

func catOIDs(field string, ids []string) ([]bson.ObjectID, error) {
	out := make([]bson.ObjectID, len(ids))
	for i, id := range ids {
		oid, err := catOID(field, id)
		if err != nil {
			return nil, err
		}
		out[i] = oid
	}
	return out, nil
}

func catHexes(oids []bson.ObjectID) []string {
	out := make([]string, len(oids))
	for i, o := range oids {
		out[i] = o.Hex()
	}
	return out
}

func catStamp(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func catPageOptions(p core.Page) *options.FindOptionsBuilder {
	o := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	if p.Skip > 0 {
		o.SetSkip(int64(p.Skip))
	}
	if p.Limit > 0 {
		o.SetLimit(int64(p.Limit))
	}
	return o
}

// catFindPage runs a find of one page and a count of all matches.
func catFindPage[D any](ctx context.Context, c *mongo.Collection, filter bson.D, p core.Page, what string) ([]D, int64, error) {
	cur, err := c.Find(ctx, filter, catPageOptions(p))
	if err != nil {
		return nil, 0, dbError(err, "could not list the "+what)
	}
	var docs []D
	if err := cur.All(ctx, &docs); err != nil {
		return nil, 0, dbError(err, "could not list the "+what)
	}
	total := int64(len(docs))
	if p.Skip > 0 || (p.Limit > 0 && len(docs) >= p.Limit) {
		total, err = c.CountDocuments(ctx, filter)
		if err != nil {
			return nil, 0, dbError(err, "could not count the "+what)
		}
	}
	return docs, total, nil
}

// catFindOneAndSet applies update to the document id and decodes it after the change.
func catFindOneAndSet(ctx context.Context, c *mongo.Collection, oid bson.ObjectID, update bson.D, dst any, what string) error {
	err := c.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: oid}}, update,
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(dst)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	if err != nil {
		return dbError(err, "could not update the "+what)
	}
	return nil
}

func catGetByID(ctx context.Context, c *mongo.Collection, id string, dst any, what string) error {
	oid, err := catOID("id", id)
	if err != nil {
		return err
	}
	err = c.FindOne(ctx, bson.D{{Key: "_id", Value: oid}}).Decode(dst)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	if err != nil {
		return dbError(err, "could not read the "+what)
	}
	return nil
}

func catDeleteByID(ctx context.Context, c *mongo.Collection, id, what string) error {
	oid, err := catOID("id", id)
	if err != nil {
		return err
	}
	res, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: oid}})
	if err != nil {
		return dbError(err, "could not delete the "+what)
	}
	if res.DeletedCount == 0 {
		return errs.E(errs.NotFound, "%s not found", what)
	}
	return nil
}
