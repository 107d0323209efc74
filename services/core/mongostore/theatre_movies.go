package mongostore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

// Collections of the theatres' movie lists.
const (
	TheatreMovieListsCollection    = "theatre_movie_lists"
	TheatreMovieVersionsCollection = "theatre_movie_versions"
)

// MaxMovieListAttempts bounds how often a change of a theatre's movies is redone after losing
// its version to a concurrent change of the same theatre; beyond it the change is
// errs.Conflict. Each lost attempt means another change was stored, so it takes as many
// changes at once to exhaust it.
const MaxMovieListAttempts = 64

// A theatre's movie list is versioned, because an update on the dev database is a read then a
// write of the whole document ($addToSet by two requests at once keeps one of the movies).
//
//   - Version 0 is the movies array of the theatre document, written once at creation.
//   - Version v is a write-once record in theatre_movie_versions keyed "<theatre id>:<v>"
//     holding the whole list. A change reads the latest version v, applies itself and inserts
//     v+1: the first insert wins; the loser reads the winner's list and redoes its change on it.
//   - theatre_movie_lists holds one projection per theatre (_id: the theatre id): the latest
//     list with its version, written by each winner after its insert (and then any newer version
//     it meets, so out-of-order writes end at the latest). It serves the ?movieId= filter and
//     the lists of theatres; a read of one theatre takes it and looks for newer versions by
//     exact _id (an indexed read each, usually one that finds nothing), repairing it when it
//     was behind (a writer that died before projecting).
//
// The theatre document itself is never written by a change of its movies, so a change of its
// name or city and a change of its movies never overwrite each other.

type movieListDoc struct {
	ID        bson.ObjectID   `bson:"_id"` // the theatre's id
	Version   int64           `bson:"version"`
	Movies    []bson.ObjectID `bson:"movies"`
	UpdatedAt time.Time       `bson:"updatedAt"`
}

type movieVersionDoc struct {
	ID        string          `bson:"_id"` // "<theatre id>:<version>"
	TheatreID bson.ObjectID   `bson:"theatreId"`
	Version   int64           `bson:"version"`
	Movies    []bson.ObjectID `bson:"movies"`
	UpdatedAt time.Time       `bson:"updatedAt"`
}

func movieVersionID(theatre bson.ObjectID, version int64) string {
	return theatre.Hex() + ":" + strconv.FormatInt(version, 10)
}

// advance moves l to the latest version after it, and reports whether it moved.
func (s *Theatres) advance(ctx context.Context, l *movieListDoc) (bool, error) {
	moved := false
	for {
		var v movieVersionDoc
		err := s.versions.FindOne(ctx, bson.D{{Key: "_id", Value: movieVersionID(l.ID, l.Version+1)}}).Decode(&v)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return moved, nil
		}
		if err != nil {
			return moved, dbError(err, "could not read the theatre's movies")
		}
		*l = movieListDoc{ID: l.ID, Version: v.Version, Movies: v.Movies, UpdatedAt: v.UpdatedAt}
		moved = true
	}
}

// movieList reads the latest movie list of the theatre d.
func (s *Theatres) movieList(ctx context.Context, d *theatreDoc) (movieListDoc, error) {
	l := movieListDoc{ID: d.ID, Movies: d.Movies, UpdatedAt: d.UpdatedAt}
	err := s.lists.FindOne(ctx, bson.D{{Key: "_id", Value: d.ID}}).Decode(&l)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return l, dbError(err, "could not read the theatre's movies")
	}
	moved, err := s.advance(ctx, &l)
	if err != nil {
		return l, err
	}
	if moved {
		s.project(context.WithoutCancel(ctx), l)
	}
	return l, nil
}

// project writes l as the theatre's projection, then any newer version it meets. A failure is
// left for the next change or read to repair.
func (s *Theatres) project(ctx context.Context, l movieListDoc) {
	for {
		_, err := s.lists.ReplaceOne(ctx, bson.D{{Key: "_id", Value: l.ID}}, l, options.Replace().SetUpsert(true))
		if mongox.IsDuplicateKey(err) { // two first projections upserted at once: it exists now
			_, err = s.lists.ReplaceOne(ctx, bson.D{{Key: "_id", Value: l.ID}}, l)
		}
		if err != nil {
			return
		}
		if moved, err := s.advance(ctx, &l); err != nil || !moved {
			return
		}
	}
}

// withMovies is the theatre d with its latest movie list.
func (s *Theatres) withMovies(ctx context.Context, d *theatreDoc) (*core.Theatre, error) {
	l, err := s.movieList(ctx, d)
	if err != nil {
		return nil, err
	}
	return listed(d, l), nil
}

// listed is the theatre d with the movie list l.
func listed(d *theatreDoc, l movieListDoc) *core.Theatre {
	t := d.theatre()
	t.Movies = catHexes(l.Movies)
	if u := l.UpdatedAt.UTC(); u.After(t.UpdatedAt) {
		t.UpdatedAt = u
	}
	return t
}

// listedPage fills in the movies of a page of theatres from their projections: those in
// known (the ?movieId= filter read them), else one query for the page.
func (s *Theatres) listedPage(ctx context.Context, docs []theatreDoc, known map[bson.ObjectID]movieListDoc) ([]*core.Theatre, error) {
	out := make([]*core.Theatre, len(docs))
	if len(docs) == 0 {
		return out, nil
	}
	byID := known
	if byID == nil {
		ids := make([]bson.ObjectID, len(docs))
		for i := range docs {
			ids[i] = docs[i].ID
		}
		lists, err := findAll(ctx, s.lists, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, nil,
			"list the theatres' movies", func(l *movieListDoc) movieListDoc { return *l })
		if err != nil {
			return nil, err
		}
		byID = make(map[bson.ObjectID]movieListDoc, len(lists))
		for _, l := range lists {
			byID[l.ID] = l
		}
	}
	for i := range docs {
		l, ok := byID[docs[i].ID]
		if !ok {
			l = movieListDoc{ID: docs[i].ID, Movies: docs[i].Movies, UpdatedAt: docs[i].UpdatedAt}
		}
		out[i] = listed(&docs[i], l)
	}
	return out, nil
}

// running returns the projections of the theatres whose movie list holds the movie (one
// query).
func (s *Theatres) running(ctx context.Context, movie bson.ObjectID) (map[bson.ObjectID]movieListDoc, error) {
	lists, err := findAll(ctx, s.lists, bson.D{{Key: "movies", Value: movie}}, nil,
		"list the theatres running the movie", func(l *movieListDoc) movieListDoc { return *l })
	if err != nil {
		return nil, err
	}
	out := make(map[bson.ObjectID]movieListDoc, len(lists))
	for _, l := range lists {
		out[l.ID] = l
	}
	return out, nil
}

// changeMovies adds the movies to the theatre's list (insert) or removes them, as the next
// version of the list; a change that would change nothing stores nothing.
func (s *Theatres) changeMovies(ctx context.Context, id string, movieIDs []string, at time.Time, insert bool) (*core.Theatre, error) {
	oid, err := catOID("id", id)
	if err != nil {
		return nil, err
	}
	oids, err := catOIDs("movieIds", movieIDs)
	if err != nil {
		return nil, err
	}
	var d theatreDoc
	if err := catGetByID(ctx, s.c, id, &d, "theatre"); err != nil {
		return nil, err
	}
	l, err := s.movieList(ctx, &d)
	if err != nil {
		return nil, err
	}
	for range MaxMovieListAttempts {
		next := slices.Clone(l.Movies)
		if insert {
			for _, m := range oids {
				if !slices.Contains(next, m) {
					next = append(next, m)
				}
			}
		} else {
			next = slices.DeleteFunc(next, func(m bson.ObjectID) bool { return slices.Contains(oids, m) })
		}
		if slices.Equal(next, l.Movies) {
			return listed(&d, l), nil
		}
		if next == nil {
			next = []bson.ObjectID{}
		}
		v := movieVersionDoc{ID: movieVersionID(oid, l.Version+1), TheatreID: oid, Version: l.Version + 1, Movies: next, UpdatedAt: catStamp(at)}
		_, err := s.versions.InsertOne(ctx, v)
		if err == nil {
			l = movieListDoc{ID: oid, Version: v.Version, Movies: v.Movies, UpdatedAt: v.UpdatedAt}
			s.project(context.WithoutCancel(ctx), l)
			return listed(&d, l), nil
		}
		if !mongox.IsDuplicateKey(err) {
			return nil, dbError(err, "could not change the theatre's movies")
		}
		// Another change took this version: redo this one on the latest list.
		if _, err := s.advance(ctx, &l); err != nil {
			return nil, err
		}
	}
	e := errs.E(errs.Conflict, "the theatre's movies were changed by other requests at the same time; retry").Because(core.ReasonChangedMeanwhile)
	e.RetryAfter = time.Second
	return nil, e
}
