package mongostore

import (
	"context"
	"errors"
	"strings"
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

// ---- movies ----

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

// ---- theatres ----

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

// ---- shows ----

// Shows is a catalogue.ShowStore on the shows collection.
type Shows struct{ c *mongo.Collection }

var _ catalogue.ShowStore = (*Shows)(nil)

type showDoc struct {
	ID          bson.ObjectID `bson:"_id"`
	TheatreID   bson.ObjectID `bson:"theatreId"`
	MovieID     bson.ObjectID `bson:"movieId"`
	Timing      string        `bson:"timing"`
	NoOfSeats   int           `bson:"noOfSeats"`
	SeatsPerRow int           `bson:"seatsPerRow"`
	Price       float64       `bson:"price"`
	Format      string        `bson:"format,omitempty"`
	CreatedAt   time.Time     `bson:"createdAt"`
	UpdatedAt   time.Time     `bson:"updatedAt"`
}

func (d *showDoc) show() *core.Show {
	return &core.Show{ID: d.ID.Hex(), TheatreID: d.TheatreID.Hex(), MovieID: d.MovieID.Hex(), Timing: d.Timing,
		NoOfSeats: d.NoOfSeats, SeatsPerRow: d.SeatsPerRow, Price: d.Price, Format: d.Format,
		CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
}

const msgShowTaken = "a show of this movie at this timing already exists in the theatre"

// Create inserts sh and sets its ID; a show of the same theatre, movie and timing is
// errs.Conflict (the unique index decides).
func (s *Shows) Create(ctx context.Context, sh *core.Show) error {
	t, err := catOID("theatreId", sh.TheatreID)
	if err != nil {
		return err
	}
	m, err := catOID("movieId", sh.MovieID)
	if err != nil {
		return err
	}
	oid := bson.NewObjectID()
	d := showDoc{ID: oid, TheatreID: t, MovieID: m, Timing: sh.Timing, NoOfSeats: sh.NoOfSeats, SeatsPerRow: sh.SeatsPerRow,
		Price: sh.Price, Format: sh.Format, CreatedAt: catStamp(sh.CreatedAt), UpdatedAt: catStamp(sh.UpdatedAt)}
	if _, err := s.c.InsertOne(ctx, d); err != nil {
		if mongox.IsDuplicateKey(err) {
			return errs.E(errs.Conflict, msgShowTaken)
		}
		return dbError(err, "could not create the show")
	}
	sh.ID = oid.Hex()
	return nil
}

// Get finds a show by id.
func (s *Shows) Get(ctx context.Context, id string) (*core.Show, error) {
	var d showDoc
	if err := catGetByID(ctx, s.c, id, &d, "show"); err != nil {
		return nil, err
	}
	return d.show(), nil
}

// Find finds the show of a theatre and movie at timing.
func (s *Shows) Find(ctx context.Context, theatreID, movieID, timing string) (*core.Show, error) {
	t, err := catOID("theatreId", theatreID)
	if err != nil {
		return nil, err
	}
	m, err := catOID("movieId", movieID)
	if err != nil {
		return nil, err
	}
	var d showDoc
	err = s.c.FindOne(ctx, bson.D{{Key: "theatreId", Value: t}, {Key: "movieId", Value: m}, {Key: "timing", Value: timing}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, errs.E(errs.NotFound, "show not found")
	}
	if err != nil {
		return nil, dbError(err, "could not read the show")
	}
	return d.show(), nil
}

func catShowFilter(f core.ShowFilter) (bson.D, error) {
	filter := bson.D{}
	if f.TheatreID != "" {
		oid, err := catOID("theatreId", f.TheatreID)
		if err != nil {
			return nil, err
		}
		filter = append(filter, bson.E{Key: "theatreId", Value: oid})
	}
	if f.MovieID != "" {
		oid, err := catOID("movieId", f.MovieID)
		if err != nil {
			return nil, err
		}
		filter = append(filter, bson.E{Key: "movieId", Value: oid})
	}
	return filter, nil
}

// List returns a page of the shows matching f and their total.
func (s *Shows) List(ctx context.Context, f core.ShowFilter) ([]*core.Show, int64, error) {
	filter, err := catShowFilter(f)
	if err != nil {
		return nil, 0, err
	}
	docs, total, err := catFindPage[showDoc](ctx, s.c, filter, f.Page, "shows")
	if err != nil {
		return nil, 0, err
	}
	out := make([]*core.Show, len(docs))
	for i := range docs {
		out[i] = docs[i].show()
	}
	return out, total, nil
}

// Count counts the shows matching f.
func (s *Shows) Count(ctx context.Context, f core.ShowFilter) (int64, error) {
	filter, err := catShowFilter(f)
	if err != nil {
		return 0, err
	}
	n, err := s.c.CountDocuments(ctx, filter)
	if err != nil {
		return 0, dbError(err, "could not count the shows")
	}
	return n, nil
}

// Update sets the given fields and returns the show after the change; a timing that another
// show of the same theatre and movie has is errs.Conflict.
func (s *Shows) Update(ctx context.Context, id string, p core.ShowPatch, at time.Time) (*core.Show, error) {
	oid, err := catOID("id", id)
	if err != nil {
		return nil, err
	}
	set := bson.D{{Key: "updatedAt", Value: catStamp(at)}}
	add := func(k string, v any) { set = append(set, bson.E{Key: k, Value: v}) }
	if p.Timing != nil {
		add("timing", *p.Timing)
	}
	if p.NoOfSeats != nil {
		add("noOfSeats", *p.NoOfSeats)
	}
	if p.SeatsPerRow != nil {
		add("seatsPerRow", *p.SeatsPerRow)
	}
	if p.Price != nil {
		add("price", *p.Price)
	}
	if p.Format != nil {
		add("format", *p.Format)
	}
	var d showDoc
	err = catFindOneAndSet(ctx, s.c, oid, bson.D{{Key: "$set", Value: set}}, &d, "show")
	if err != nil {
		var ce *errs.Error
		if errors.As(err, &ce) && catDuplicate(ce.Err) {
			return nil, errs.E(errs.Conflict, msgShowTaken)
		}
		return nil, err
	}
	return d.show(), nil
}

// catDuplicate reports a unique-index violation. The dev database answers one met by an
// update (findAndModify) with an InternalError naming the SQLite constraint, not E11000.
func catDuplicate(err error) bool {
	return mongox.IsDuplicateKey(err) || (err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed"))
}

// Delete deletes a show.
func (s *Shows) Delete(ctx context.Context, id string) error {
	return catDeleteByID(ctx, s.c, id, "show")
}
