package mongostore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cineflow/cineflow/pkg/devdb"
	"github.com/cineflow/cineflow/services/notification"
)

// notification.ID replaced the driver's ObjectID in the records: it must be stored, read and
// written in JSON exactly as the ObjectID was, so that data stored before reads the same.
func TestIDIsEncodedAsAnObjectID(t *testing.T) {
	t.Parallel()
	id := notification.NewID()
	oid := bson.ObjectID(id)
	if age := time.Since(id.Timestamp()); age < -time.Second || age > time.Minute {
		t.Errorf("a new ID holds time %v", id.Timestamp())
	}
	if id.Hex() != oid.Hex() || id.String() != oid.String() || id.IsZero() || !(notification.ID{}).IsZero() {
		t.Errorf("ID %s / %s; ObjectID %s / %s", id.Hex(), id, oid.Hex(), oid)
	}

	type withID struct {
		ID   notification.ID  `bson:"_id"`
		Ptr  *notification.ID `bson:"ptr,omitempty"`
		Zero notification.ID  `bson:"zero,omitempty"`
	}
	type withOID struct {
		ID   bson.ObjectID  `bson:"_id"`
		Ptr  *bson.ObjectID `bson:"ptr,omitempty"`
		Zero bson.ObjectID  `bson:"zero,omitempty"`
	}
	got, err := bson.Marshal(withID{ID: id, Ptr: &id})
	if err != nil {
		t.Fatal(err)
	}
	want, err := bson.Marshal(withOID{ID: oid, Ptr: &oid})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("BSON of an ID %x, of an ObjectID %x", got, want)
	}
	for _, doc := range []bson.M{{"_id": oid}, {"_id": oid.Hex()}, {"_id": string(oid[:])}} {
		raw, _ := bson.Marshal(doc)
		var back withID
		if err := bson.Unmarshal(raw, &back); err != nil || back.ID != id {
			t.Errorf("%v decoded as %s, %v", doc, back.ID.Hex(), err)
		}
	}
	for _, doc := range []bson.M{{"_id": nil}, {"_id": 7}, {"_id": "not an id"}} {
		raw, _ := bson.Marshal(doc)
		var back withID
		var backOID withOID
		errID, errOID := bson.Unmarshal(raw, &back), bson.Unmarshal(raw, &backOID)
		if (errID == nil) != (errOID == nil) || !back.ID.IsZero() {
			t.Errorf("%v: ID %s, %v; ObjectID %v", doc, back.ID.Hex(), errID, errOID)
		}
	}

	j, _ := json.Marshal(map[string]any{"id": id, "keys": map[notification.ID]int{id: 1}})
	jo, _ := json.Marshal(map[string]any{"id": oid, "keys": map[bson.ObjectID]int{oid: 1}})
	if !bytes.Equal(j, jo) {
		t.Errorf("JSON of an ID %s, of an ObjectID %s", j, jo)
	}
	for _, in := range []string{`"` + id.Hex() + `"`, `{"$oid":"` + id.Hex() + `"}`, `""`, `null`, `"xyz"`, `{"a":1}`, `7`} {
		var a notification.ID
		var b bson.ObjectID
		errA, errB := json.Unmarshal([]byte(in), &a), json.Unmarshal([]byte(in), &b)
		if a != notification.ID(b) || (errA == nil) != (errB == nil) {
			t.Errorf("JSON %s: ID %s, %v; ObjectID %s, %v", in, a.Hex(), errA, b.Hex(), errB)
		}
	}
	for _, in := range []string{id.Hex(), id.Hex()[1:], id.Hex() + "0", "zz" + id.Hex()[2:], ""} {
		a, errA := notification.ParseID(in)
		b, errB := bson.ObjectIDFromHex(in)
		if a != notification.ID(b) || (errA == nil) != (errB == nil) {
			t.Errorf("ParseID(%q) = %s, %v; ObjectIDFromHex: %s, %v", in, a.Hex(), errA, b.Hex(), errB)
		}
	}
}

// A document stored with an ObjectID is found by, and read into, an ID, and the reverse.
func TestIDFindsObjectIDDocuments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	coll := devdb.TestDB(t).Collection("ids")
	oid := bson.NewObjectID()
	id := notification.NewID()
	if _, err := coll.InsertMany(ctx, []any{bson.M{"_id": oid, "ref": oid}, bson.M{"_id": id, "ref": id}}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ID  notification.ID `bson:"_id"`
		Ref notification.ID `bson:"ref"`
	}
	if err := coll.FindOne(ctx, bson.M{"_id": notification.ID(oid)}).Decode(&doc); err != nil || doc.ID != notification.ID(oid) || doc.Ref != doc.ID {
		t.Fatalf("by ID: %+v, %v", doc, err)
	}
	var raw bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": bson.ObjectID(id)}).Decode(&raw); err != nil || raw["ref"] != bson.ObjectID(id) {
		t.Fatalf("by ObjectID: %v, %v", raw, err)
	}
}
