package notification

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ID identifies a ticket: 12 bytes laid out as a MongoDB ObjectID (4 bytes of creation time
// in seconds, 5 random bytes per process, a 3-byte counter), stored as an ObjectID and written
// in JSON and URLs as 24 hex digits. The hex of a new ID also names batches and sweeps.
//
// The root package imports no driver: ID encodes itself for the BSON codec through the
// codec's ValueMarshaler and ValueUnmarshaler interfaces, which need only Go types.
type ID [12]byte

// bsonObjectID is the BSON type number of an ObjectID; bsonString, bsonNull and
// bsonUndefined are the others an ObjectID field accepts when decoded, as the driver's own
// ObjectID does.
const (
	bsonString    byte = 0x02
	bsonUndefined byte = 0x06
	bsonObjectID  byte = 0x07
	bsonNull      byte = 0x0A
)

// ErrInvalidID is the error of ParseID for text that is not 24 hex digits.
var ErrInvalidID = errors.New("the provided hex string is not a valid ObjectID")

var (
	idCounter = func() uint32 {
		var b [4]byte
		mustRandom(b[:])
		return binary.LittleEndian.Uint32(b[:])
	}()
	idProcess = func() (b [5]byte) {
		mustRandom(b[:])
		return b
	}()
)

func mustRandom(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Errorf("cannot initialise the id generator: %w", err))
	}
}

// NewID returns a new ID, ordered by its creation time (in seconds).
func NewID() ID {
	var id ID
	binary.BigEndian.PutUint32(id[0:4], uint32(time.Now().Unix()))
	copy(id[4:9], idProcess[:])
	c := atomic.AddUint32(&idCounter, 1)
	id[9], id[10], id[11] = byte(c>>16), byte(c>>8), byte(c)
	return id
}

// ParseID reads an ID written as 24 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 24 {
		return id, ErrInvalidID
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, err
	}
	return id, nil
}

// Hex returns the ID as 24 hex digits.
func (id ID) Hex() string { return hex.EncodeToString(id[:]) }

// String returns the ID as the driver's ObjectID prints itself.
func (id ID) String() string { return `ObjectID("` + id.Hex() + `")` }

// IsZero reports whether id is the zero ID (no ticket).
func (id ID) IsZero() bool { return id == ID{} }

// Timestamp is the creation time the ID holds (in seconds).
func (id ID) Timestamp() time.Time {
	return time.Unix(int64(binary.BigEndian.Uint32(id[0:4])), 0).UTC()
}

// MarshalText writes the ID as 24 hex digits (so that it can key a JSON object).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.Hex()), nil }

// UnmarshalText reads 24 hex digits; empty text is the zero ID.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// MarshalJSON writes the ID as a string of 24 hex digits.
func (id ID) MarshalJSON() ([]byte, error) { return []byte(`"` + id.Hex() + `"`), nil }

// UnmarshalJSON reads what the driver's ObjectID reads: null (no change), a string of 24 hex
// digits (or empty: the zero ID), 12 raw bytes, or extended JSON {"$oid": "<24 hex digits>"}.
func (id *ID) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) >= 2 && b[0] == '"' {
		return id.UnmarshalText(b[1 : len(b)-1])
	}
	if len(b) == 12 {
		copy(id[:], b)
		return nil
	}
	var v struct {
		OID *string `json:"$oid"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("failed to parse extended JSON ObjectID: %w", err)
	}
	if v.OID == nil {
		return errors.New("not an extended JSON ObjectID")
	}
	parsed, err := ParseID(*v.OID)
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}

// MarshalBSONValue stores the ID as a BSON ObjectID.
func (id ID) MarshalBSONValue() (byte, []byte, error) {
	b := id
	return bsonObjectID, b[:], nil
}

// UnmarshalBSONValue reads what the driver's ObjectID reads: an ObjectID, a string of 24 hex
// digits or of 12 bytes, or null or undefined (the zero ID).
func (id *ID) UnmarshalBSONValue(typ byte, data []byte) error {
	switch typ {
	case bsonObjectID:
		if len(data) != 12 {
			return fmt.Errorf("an ObjectID must be 12 bytes long (got %d)", len(data))
		}
		copy(id[:], data)
	case bsonString:
		// int32 length (the bytes and a NUL), the bytes, the NUL.
		if len(data) < 5 || int(binary.LittleEndian.Uint32(data)) != len(data)-4 {
			return errors.New("a malformed BSON string")
		}
		s := string(data[4 : len(data)-1])
		if v, err := ParseID(s); err == nil {
			*id = v
			break
		}
		if len(s) != 12 {
			return fmt.Errorf("an ObjectID string must be exactly 12 bytes long (got %v)", len(s))
		}
		copy(id[:], s)
	case bsonNull, bsonUndefined:
		*id = ID{}
	default:
		return fmt.Errorf("cannot decode BSON type %#x into an ObjectID", typ)
	}
	return nil
}
