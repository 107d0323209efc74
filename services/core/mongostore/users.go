package mongostore

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/time/rate"

	"github.com/cineflow/cineflow/pkg/errs"
	"github.com/cineflow/cineflow/pkg/mongox"
	"github.com/cineflow/cineflow/services/core"
	"github.com/cineflow/cineflow/services/core/accounts"
)

// Collections of the user store.
const (
	UsersCollection       = "users"
	UserChangesCollection = "user_changes"
	UserEmailsCollection  = "user_emails"
)

// Users is a accounts.UserStore on MongoDB. A duplicate email is refused by the unique index on
// email (never by a read before the insert).
//
// Sign-in finds a user by email through user_emails, one document per email keyed by it
// (_id = email, userId), because the embedded database serves only {_id: v} from an index:
// a find by email scans every user. See Create, GetByEmail and Backfill.
//
// Changes are versioned, because an update on the dev database is a read then a write of the
// whole document (two concurrent updates of a user keep only one). Each change is an insert
// into user_changes keyed "<user id>:<version>" carrying the user's whole mutable state (role,
// status, password hash and its date, session generation): so the change that ends the user's
// sessions (a password reset) stores the next generation in the same insert that decides it.
// The first insert of a version wins, the loser gets a
// duplicate key and redoes its change on the winner's version. The user document is a
// projection of the latest change (with its version), written by the winner after its insert;
// readers take the document and look for newer changes by exact _id (version+1, +2, ...: an
// indexed read each, usually one that finds nothing), so a projection written late or out of
// order never shows an older state.
type Users struct {
	db      *mongo.Database
	users   *mongo.Collection
	changes *mongo.Collection
	emails  *mongo.Collection
	now     func() time.Time

	// backfilled is set once user_emails is known to list every user an earlier version
	// created (its marker document exists).
	backfilled atomic.Bool
	// scans bounds the finds by email (scans on the embedded database) made after the
	// backfill, when the email's document is missing: for a user an earlier version created
	// during a rolling upgrade, or an unknown email. Unknown emails cost no more than that.
	scans *rate.Limiter
}

var _ accounts.UserStore = (*Users)(nil)

// backfilledMarker is the _id of user_emails' marker document: not an email (no '@').
const backfilledMarker = "!backfilled"

// Finds by email after the backfill, per replica: a few a second.
const (
	emailScanRate  = 2
	emailScanBurst = 10
)

// New returns a user store on db. Call EnsureIndexes once at start, and Backfill.
func New(db *mongo.Database) *Users {
	return &Users{db: db, users: db.Collection(UsersCollection), changes: db.Collection(UserChangesCollection),
		emails: db.Collection(UserEmailsCollection), now: time.Now, scans: rate.NewLimiter(emailScanRate, emailScanBurst)}
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
	// SessionGen is the generation of the change SessionGenOf (the version it was projected
	// from). An earlier version's projection sets version but neither of them (absent: 0).
	SessionGen   int64 `bson:"sessionGen,omitempty"`
	SessionGenOf int64 `bson:"sessionGenVersion,omitempty"`
}

func (d *userDoc) user() *core.User {
	return &core.User{ID: d.ID.Hex(), Name: d.Name, Email: d.Email, PasswordHash: d.PasswordHash, PasswordChangedAt: d.PasswordAt.UTC(),
		Role: core.Role(d.Role), Status: core.Status(d.Status), CreatedAt: d.CreatedAt.UTC(), UpdatedAt: d.UpdatedAt.UTC(), Version: d.Version,
		SessionGen: d.SessionGen}
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
	// SessionGen is absent (0) in changes an earlier version wrote: a user it changed is back
	// at generation 0, where tokens of a later generation are refused.
	SessionGen int64 `bson:"sessionGen,omitempty"`
}

func userChangeID(user bson.ObjectID, version int64) string {
	return user.Hex() + ":" + strconv.FormatInt(version, 10)
}

func (c *userChangeDoc) applyTo(u *core.User) {
	u.PasswordHash, u.PasswordChangedAt = c.PasswordHash, c.PasswordAt.UTC()
	u.Role, u.Status, u.UpdatedAt, u.Version = core.Role(c.Role), core.Status(c.Status), c.UpdatedAt.UTC(), c.Version
	u.SessionGen = c.SessionGen
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

// emailDoc is user_emails' document of one email: the user who has it.
type emailDoc struct {
	Email  string        `bson:"_id"`
	UserID bson.ObjectID `bson:"userId"`
}

// Create inserts u; a taken email is errs.Conflict.
//
// The email's document is inserted first, naming the user's new id, then the user. When the
// email has a document already, its user decides: one that exists has the email (Conflict);
// one that does not (a sign-up whose user insert failed, or is still in flight) is taken over,
// by inserting the user under that id, so the unique _id decides between the two sign-ups.
// Every user has its email's document from before it exists, so sign-in never misses one.
func (s *Users) Create(ctx context.Context, u *core.User) error {
	now := s.now().UTC().Truncate(time.Millisecond)
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
	}
	if u.UpdatedAt.IsZero() {
		u.UpdatedAt = u.CreatedAt
	}
	oid, err := s.claimEmail(ctx, u.Email, bson.NewObjectID())
	if err != nil {
		return err
	}
	d := userDoc{ID: oid, Name: u.Name, Email: u.Email, PasswordHash: u.PasswordHash, Role: string(u.Role),
		Status: string(u.Status), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
	if _, err := s.users.InsertOne(ctx, d); err != nil {
		if mongox.IsDuplicateKey(err) {
			return errs.E(errs.Conflict, "an account with this email already exists").Because(core.ReasonEmailTaken)
		}
		return dbError(err, "could not create the user")
	}
	u.ID = oid.Hex()
	return nil
}

// claimEmail inserts email's document naming oid and returns the id the user must take: oid,
// or the id of an earlier claim whose user does not exist.
func (s *Users) claimEmail(ctx context.Context, email string, oid bson.ObjectID) (bson.ObjectID, error) {
	_, err := s.emails.InsertOne(ctx, emailDoc{Email: email, UserID: oid})
	if err == nil {
		return oid, nil
	}
	if !mongox.IsDuplicateKey(err) {
		return bson.NilObjectID, dbError(err, "could not create the user")
	}
	var cur emailDoc
	if err := s.emails.FindOne(ctx, bson.D{{Key: "_id", Value: email}}).Decode(&cur); err != nil {
		return bson.NilObjectID, dbError(err, "could not create the user")
	}
	switch _, err := s.findOne(ctx, bson.D{{Key: "_id", Value: cur.UserID}}); {
	case err == nil:
		return bson.NilObjectID, errs.E(errs.Conflict, "an account with this email already exists").Because(core.ReasonEmailTaken)
	case errs.Is(err, errs.NotFound):
		return cur.UserID, nil
	default:
		return bson.NilObjectID, err
	}
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
	if d.Version > 0 && d.SessionGenOf != d.Version {
		// Projected by an earlier version, which copies no generation (and leaves a later
		// version's in place): take the state of the change itself.
		u.Version = d.Version - 1
	}
	if err := s.latest(ctx, d.ID, u); err != nil {
		return nil, err
	}
	if u.Version < d.Version { // no change of the document's version: it has no generation
		u.Version, u.SessionGen = d.Version, 0
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

// GetByEmail finds a user by lowercased email: the email's document, then the user by _id.
// Without a document naming an existing user, it finds by email (a scan on the embedded
// database) and writes the document for next time: always until Backfill is done, then at
// most emailScanRate a second (a user an earlier version created during a rolling upgrade);
// beyond that an unknown email is simply not found.
func (s *Users) GetByEmail(ctx context.Context, email string) (*core.User, error) {
	var l emailDoc
	err := s.emails.FindOne(ctx, bson.D{{Key: "_id", Value: email}}).Decode(&l)
	switch {
	case err == nil:
		u, err := s.findOne(ctx, bson.D{{Key: "_id", Value: l.UserID}})
		if err == nil && u.Email == email {
			return u, nil
		}
		if err != nil && !errs.Is(err, errs.NotFound) {
			return nil, err
		}
	case !errors.Is(err, mongo.ErrNoDocuments):
		return nil, dbError(err, "could not read the user")
	}
	done, err := s.isBackfilled(ctx)
	if err != nil {
		return nil, err
	}
	if done && !s.scans.Allow() {
		_, _ = s.newerChange(ctx, bson.NilObjectID, 0) // the reads of a found user, as findOne
		return nil, errs.E(errs.NotFound, "user not found")
	}
	u, err := s.findOne(ctx, bson.D{{Key: "email", Value: email}})
	if err != nil {
		return nil, err
	}
	oid, _ := bson.ObjectIDFromHex(u.ID)
	if err := s.setEmail(ctx, email, oid); err != nil {
		return nil, err
	}
	return u, nil
}

// setEmail makes email's document name user oid, which has that email: the unique index on
// users' email makes it the only one, so a document naming another id names a user that
// does not exist (a claim whose insert failed, refused by this user's email).
func (s *Users) setEmail(ctx context.Context, email string, oid bson.ObjectID) error {
	_, err := s.emails.InsertOne(ctx, emailDoc{Email: email, UserID: oid})
	if mongox.IsDuplicateKey(err) {
		var cur emailDoc
		err = s.emails.FindOne(ctx, bson.D{{Key: "_id", Value: email}}).Decode(&cur)
		if err == nil && cur.UserID != oid {
			_, err = s.emails.UpdateOne(ctx, bson.D{{Key: "_id", Value: email}}, bson.D{{Key: "$set", Value: bson.D{{Key: "userId", Value: oid}}}})
		}
	}
	if err != nil {
		return dbError(err, "could not index the user's email")
	}
	return nil
}

func (s *Users) isBackfilled(ctx context.Context) (bool, error) {
	if s.backfilled.Load() {
		return true, nil
	}
	err := s.emails.FindOne(ctx, bson.D{{Key: "_id", Value: backfilledMarker}}).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, dbError(err, "could not read the user")
	}
	s.backfilled.Store(true)
	return true, nil
}

// Backfilled reports whether Backfill is done (by any replica): one read by exact _id.
func (s *Users) Backfilled(ctx context.Context) (bool, error) { return s.isBackfilled(ctx) }

// Backfill gives every user an earlier version created (without user_emails) its email's
// document, then writes the marker that makes those documents authoritative. It reads the
// users once, as a cursor, and returns at once when the marker exists; replicas running it
// at the same time write the same documents. Run it in the background at start.
func (s *Users) Backfill(ctx context.Context) (indexed int, err error) {
	if done, err := s.isBackfilled(ctx); done || err != nil {
		return 0, err
	}
	cur, err := s.users.Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "email", Value: 1}}).SetBatchSize(1000))
	if err != nil {
		return 0, dbError(err, "could not list the users")
	}
	defer cur.Close(ctx)
	ins := mongox.NewInserter(s.emails)
	page := make([]emailDoc, 0, maxBatchDocs)
	flush := func() error {
		docs := make([]any, len(page))
		for i := range page {
			docs[i] = page[i]
		}
		dup, err := ins.Insert(ctx, docs...)
		if err != nil {
			return dbError(err, "could not index the users' emails")
		}
		for i := range dup { // a document already there: a sign-in or another replica wrote it, or a stale claim
			if err := s.setEmail(ctx, page[i].Email, page[i].UserID); err != nil {
				return err
			}
		}
		indexed += len(page)
		page = page[:0]
		return nil
	}
	for cur.Next(ctx) {
		var d struct {
			ID    bson.ObjectID `bson:"_id"`
			Email string        `bson:"email"`
		}
		if err := cur.Decode(&d); err != nil {
			return indexed, dbError(err, "could not list the users")
		}
		if page = append(page, emailDoc{Email: d.Email, UserID: d.ID}); len(page) == maxBatchDocs {
			if err := flush(); err != nil {
				return indexed, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return indexed, dbError(err, "could not list the users")
	}
	if err := flush(); err != nil {
		return indexed, err
	}
	if _, err := s.emails.InsertOne(ctx, emailDoc{Email: backfilledMarker}); err != nil && !mongox.IsDuplicateKey(err) {
		return indexed, dbError(err, "could not mark the users' emails indexed")
	}
	s.backfilled.Store(true)
	return indexed, nil
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
		UpdatedAt: u.UpdatedAt.UTC().Truncate(time.Millisecond), SessionGen: u.SessionGen}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	}
	if _, err := s.changes.InsertOne(ctx, c); err != nil {
		if mongox.IsDuplicateKey(err) {
			return errs.E(errs.Conflict, "the user was changed by another request at the same time").Because(core.ReasonChangedMeanwhile)
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
			{Key: "updatedAt", Value: c.UpdatedAt}, {Key: "version", Value: c.Version},
			{Key: "sessionGen", Value: c.SessionGen}, {Key: "sessionGenVersion", Value: c.Version}}}})
		if err != nil {
			return
		}
		if c, err = s.newerChange(ctx, oid, c.Version); err != nil {
			return
		}
	}
}

// Refresh returns u, or its user's latest version when a change newer than u.Version exists:
// a read of user_changes by exact _id ("<id>:<version+1>", usually absent), then one per newer
// version. A change is acknowledged only after its insert, so one acknowledged before Refresh
// began is always met. The user document is not read: name, email and creation never change.
func (s *Users) Refresh(ctx context.Context, u *core.User) (*core.User, error) {
	oid, err := parseID(u.ID)
	if err != nil {
		return nil, err
	}
	cur := *u
	if err := s.latest(ctx, oid, &cur); err != nil {
		return nil, err
	}
	return &cur, nil
}

// Ping checks that the database answers.
func (s *Users) Ping(ctx context.Context) error {
	return s.db.Client().Ping(ctx, nil)
}
