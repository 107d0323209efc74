// Package mongostore keeps the core service's users in MongoDB (or the FerretDB dev database).
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
)

// UsersCollection holds the users.
const UsersCollection = "users"

// Users is a core.UserStore on MongoDB. A duplicate email is refused by the unique index on
// email (never by a read before the insert). Lookups by email scan on the dev database, which
// only serves {_id: v} from an index; there are few users.
type Users struct {
	db    *mongo.Database
	users *mongo.Collection
	now   func() time.Time
}

var _ core.UserStore = (*Users)(nil)

// New returns a user store on db. Call EnsureIndexes once at start.
func New(db *mongo.Database) *Users {
	return &Users{db: db, users: db.Collection(UsersCollection), now: time.Now}
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
}

func (d *userDoc) user() *core.User {
	return &core.User{ID: d.ID.Hex(), Name: d.Name, Email: d.Email, PasswordHash: d.PasswordHash, PasswordChangedAt: d.PasswordAt.UTC(),
		Role: core.Role(d.Role), Status: core.Status(d.Status), CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC()}
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
		return nil, errs.E(errs.NotFound, "user not found")
	}
	if err != nil {
		return nil, dbError(err, "could not read the user")
	}
	return d.user(), nil
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

// Update sets the given fields and returns the user after the change.
func (s *Users) Update(ctx context.Context, id string, upd core.UserUpdate) (*core.User, error) {
	oid, err := parseID(id)
	if err != nil {
		return nil, err
	}
	set := bson.D{{Key: "updatedAt", Value: s.now().UTC().Truncate(time.Millisecond)}}
	if upd.Role != nil {
		set = append(set, bson.E{Key: "userRole", Value: string(*upd.Role)})
	}
	if upd.Status != nil {
		set = append(set, bson.E{Key: "userStatus", Value: string(*upd.Status)})
	}
	if upd.PasswordHash != nil {
		set = append(set, bson.E{Key: "passwordHash", Value: *upd.PasswordHash},
			bson.E{Key: "passwordChangedAt", Value: s.now().UTC().Truncate(time.Millisecond)})
	}
	var d userDoc
	err = s.users.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: oid}}, bson.D{{Key: "$set", Value: set}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, errs.E(errs.NotFound, "user not found")
	}
	if err != nil {
		return nil, dbError(err, "could not update the user")
	}
	return d.user(), nil
}

// Ping checks that the database answers.
func (s *Users) Ping(ctx context.Context) error {
	return s.db.Client().Ping(ctx, nil)
}
