// Package mongostore keeps the core service's users in MongoDB (or the FerretDB dev database).
package mongostore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
)

// Collections of the user store.
const (
	UsersCollection       = "users"
	UserChangesCollection = "user_changes"
)

// Users is a core.UserStore on MongoDB. A duplicate email is refused by the unique index on
// email (never by a read before the insert). Lookups by email scan on the dev database, which
// only serves {_id: v} from an index; there are few users.
//
// Changes are versioned, because an update on the dev database is a read then a write of the
// whole document (two concurrent updates of a user keep only one). Each change is an insert
// into user_changes keyed "<user id>:<version>" carrying the user's whole mutable state (role,
// status, password hash and its date): the first insert of a version wins, the loser gets a
// duplicate key and redoes its change on the winner's version. The user document is a
// projection of the latest change (with its version), written by the winner after its insert;
// readers take the document and look for newer changes by exact _id (version+1, +2, ...: an
// indexed read each, usually one that finds nothing), so a projection written late or out of
// order never shows an older state.
type Users struct {
	db      *mongo.Database
	users   *mongo.Collection
	changes *mongo.Collection
	now     func() time.Time
}

var _ core.UserStore = (*Users)(nil)

// New returns a user store on db. Call EnsureIndexes once at start.
func New(db *mongo.Database) *Users {
	return &Users{db: db, users: db.Collection(UsersCollection), changes: db.Collection(UserChangesCollection), now: time.Now}
}

// EnsureIndexes creates the unique index on email.
func (s *Users) EnsureIndexes(ctx context.Context) error {
	return mongox.EnsureIndexes(ctx, s.users, mongo.IndexModel{
		Keys:    bson.D{{Key: "email", Value: 1}},
		Options: options.Index().SetUnique(true).SetName("email_unique"),
	})
}

type userDoc struct {
	ID           bson.ObjectID `bson:"_id"`
	Name         string        `bson:"name"`
	Email        string        `bson:"email"`
	PasswordHash string        `bson:"passwordHash"`
	PasswordAt   time.Time     `bson:"passwordChangedAt,omitempty"`
	Role         string        `bson:"userRole"`
	Status       string        `bson:"userStatus"`
	CreatedAt    time.Time     `bson:"createdAt"`
	UpdatedAt    time.Time     `bson:"updatedAt"`
	Version      int64         `bson:"version,omitempty"`
}

func (d *userDoc) user() *core.User {
	return &core.User{ID: d.ID.Hex(), Name: d.Name, Email: d.Email, PasswordHash: d.PasswordHash, PasswordChangedAt: d.PasswordAt.UTC(),
		Role: core.Role(d.Role), Status: core.Status(d.Status), CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(), Version: d.Version}
}

// userChangeDoc is one version of a user's mutable state, written once.
type userChangeDoc struct {
	ID           string        `bson:"_id"` // "<user id>:<version>"
	UserID       bson.ObjectID `bson:"userId"`
	Version      int64         `bson:"version"`
	PasswordHash string        `bson:"passwordHash"`
	PasswordAt   time.Time     `bson:"passwordChangedAt,omitempty"`
	Role         string        `bson:"userRole"`
	Status       string        `bson:"userStatus"`
	UpdatedAt    time.Time     `bson:"updatedAt"`
}

func userChangeID(user bson.ObjectID, version int64) string {
	return user.Hex() + ":" + strconv.FormatInt(version, 10)
}

func (c *userChangeDoc) applyTo(u *core.User) {
	u.PasswordHash, u.PasswordChangedAt = c.PasswordHash, c.PasswordAt.UTC()
	u.Role, u.Status, u.UpdatedAt, u.Version = core.Role(c.Role), core.Status(c.Status), c.UpdatedAt.UTC(), c.Version
}

// newerChange reads the change after version (nil when there is none).
func (s *Users) newerChange(ctx context.Context, user bson.ObjectID, version int64) (*userChangeDoc, error) {
	var c userChangeDoc
	err := s.changes.FindOne(ctx, bson.D{{Key: "_id", Value: userChangeID(user, version+1)}}).Decode(&c)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, dbError(err, "could not read the user")
	}
	return &c, nil
}

// latest brings u (read from its document) up to its latest change.
func (s *Users) latest(ctx context.Context, oid bson.ObjectID, u *core.User) error {
	for {
		c, err := s.newerChange(ctx, oid, u.Version)
		if err != nil || c == nil {
			return err
		}
		c.applyTo(u)
	}
}

func dbError(err error, what string) error {
	if mongox.IsUnavailable(err) {
		return errs.Wrap(errs.Unavailable, err, "database unavailable")
	}
	return errs.Wrap(errs.Internal, err, what)
}

func parseID(id string) (bson.ObjectID, error) {
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return oid, errs.Fields(map[string]string{"id": "must be a 24-character hex id"})
	}
	return oid, nil
}

// Create inserts u; a taken email is errs.Conflict.
func (s *Users) Create(ctx context.Context, u *core.User) error {
	now := s.now().UTC().Truncate(time.Millisecond)
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.CreatedAt
	}
	oid := bson.NewObjectID()
	d := userDoc{ID: oid, Name: u.Name, Email: u.Email, PasswordHash: u.PasswordHash, Role: string(u.Role),
		Status: string(u.Status), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
	if _, err := s.users.InsertOne(ctx, d); err != nil {
		if mongox.IsDuplicateKey(err) {
			return errs.E(errs.Conflict, "an account with this email already exists")
		}
		return dbError(err, "could not create the user")
	}
	u.ID = oid.Hex()
	return nil
}

func (s *Users) findOne(ctx context.Context, filter bson.D) (*core.User, error) {
	var d userDoc
	err := s.users.FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		// the same reads as for a user, so that sign-in takes as long for an unknown email
		_, _ = s.newerChange(ctx, bson.NilObjectID, 0)
		return nil, errs.E(errs.NotFound, "user not found")
	}
	if err != nil {
		return nil, dbError(err, "could not read the user")
	}
	u := d.user()
	if err := s.latest(ctx, d.ID, u); err != nil {
		return nil, err
	}
	return u, nil
}

// Get finds a user by id.
func (s *Users) Get(ctx context.Context, id string) (*core.User, error) {
	oid, err := parseID(id)
	if err != nil {
		return nil, err
	}
	return s.findOne(ctx, bson.D{{Key: "_id", Value: oid}})
}

// GetByEmail finds a user by lowercased email.
func (s *Users) GetByEmail(ctx context.Context, email string) (*core.User, error) {
	return s.findOne(ctx, bson.D{{Key: "email", Value: email}})
}

// Change stores u's mutable state as version u.Version+1: the insert of that version decides
// (a duplicate key is errs.Conflict), then the user document is brought up to date.
func (s *Users) Change(ctx context.Context, u *core.User) error {
	oid, err := parseID(u.ID)
	if err != nil {
		return err
	}
	c := userChangeDoc{ID: userChangeID(oid, u.Version+1), UserID: oid, Version: u.Version + 1, PasswordHash: u.PasswordHash,
		PasswordAt: u.PasswordChangedAt.UTC().Truncate(time.Millisecond), Role: string(u.Role), Status: string(u.Status),
		UpdatedAt: u.UpdatedAt.UTC().Truncate(time.Millisecond)}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	}
	if _, err := s.changes.InsertOne(ctx, c); err != nil {
		if mongox.IsDuplicateKey(err) {
			return errs.E(errs.Conflict, "the user was changed by another request at the same time")
		}
		return dbError(err, "could not change the user")
	}
	c.applyTo(u)
	s.project(context.WithoutCancel(ctx), oid, &c)
	return nil
}

// project copies change c onto the user document, then any newer change it meets, so the
// document ends at the latest version even when the winners of two versions write it out of
// order (the later winner always writes after its insert, which the earlier one then meets).
// A failure is left for the next change: readers never depend on the document's version.
func (s *Users) project(ctx context.Context, oid bson.ObjectID, c *userChangeDoc) {
	for c != nil {
		_, err := s.users.UpdateOne(ctx, bson.D{{Key: "_id", Value: oid}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "passwordHash", Value: c.PasswordHash}, {Key: "passwordChangedAt", Value: c.PasswordAt},
			{Key: "userRole", Value: c.Role}, {Key: "userStatus", Value: c.Status},
			{Key: "updatedAt", Value: c.UpdatedAt}, {Key: "version", Value: c.Version}}}})
		if err != nil {
			return
		}
		if c, err = s.newerChange(ctx, oid, c.Version); err != nil {
			return
		}
	}
}

// Ping checks that the database answers.
func (s *Users) Ping(ctx context.Context) error {
	return s.db.Client().Ping(ctx, nil)
}
