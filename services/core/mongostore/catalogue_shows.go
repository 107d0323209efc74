package mongostore

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/catalogue"
)

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
			return errs.E(errs.Conflict, msgShowTaken).Because(core.ReasonShowExists)
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
			return nil, errs.E(errs.Conflict, msgShowTaken).Because(core.ReasonShowExists)
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
