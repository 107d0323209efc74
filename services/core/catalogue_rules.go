package core

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cineflow/cineflow/pkg/errs"
)

// Catalogue field bounds.
const (
	MaxTitleRunes       = 200  // names of movies and theatres
	MaxDescriptionRunes = 5000 // descriptions
	MaxShortRunes       = 100  // a cast member, director, city, language
	MaxAddressRunes     = 500
	MaxListItems        = 100 // casts, languages
	MaxURLBytes         = 2048
	MaxPinCode          = 999999 // up to 6 digits
	MaxSeats            = 5000
	MaxSeatsPerRow      = 100
	MaxPrice            = 10_000_000
	MaxFormatRunes      = 16
	MaxMovieIDsPerCall  = 500
	DefaultLanguage     = "English"
)

// Server-owned fields: a request body that names one is refused (see ServerOwnedFields).
var serverOwnedMsg = "is set by the server and cannot be given"

// ServerOwnedFields is the field error of a request that tries to set server-owned fields
// (owner, _id, createdAt, updatedAt, ...); names lists those it gave. Nil when none.
func ServerOwnedFields(names ...string) error {
	if len(names) == 0 {
		return nil
	}
	f := make(map[string]string, len(names))
	for _, n := range names {
		f[n] = serverOwnedMsg
	}
	return errs.Fields(f)
}

// IsID reports whether id looks like a document id (24 hex characters).
func IsID(id string) bool {
	if len(id) != 24 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// CheckID answers a field error naming field when id is not a document id.
func CheckID(field, id string) error {
	if !IsID(id) {
		return errs.Fields(map[string]string{field: "must be a 24-character hex id"})
	}
	return nil
}

// ParseTiming parses a show timing or release date as the original took them: RFC 3339
// (2030-06-01T18:30:00Z, fractional seconds allowed) or a date (2024-01-15).
func ParseTiming(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// FieldErrs collects the problems of a request's fields, by field name.
type FieldErrs map[string]string

// Err is nil without problems, else an errs.Invalid error carrying them.
func (f FieldErrs) Err() error {
	if len(f) == 0 {
		return nil
	}
	return errs.Fields(f)
}

// text trims *p and checks it: required (non-empty), at most max runes, no control
// characters (multi-line allows newlines and tabs).
func (f FieldErrs) text(name string, p *string, required bool, max int, multiline bool) {
	if p == nil {
		if required {
			f[name] = "is required"
		}
		return
	}
	*p = strings.TrimSpace(*p)
	if msg := textProblem(*p, required, max, multiline); msg != "" {
		f[name] = msg
	}
}

func textProblem(s string, required bool, max int, multiline bool) string {
	switch {
	case s == "" && required:
		return "is required"
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(s) > max:
		return fmt.Sprintf("must be at most %d characters", max)
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\r' || r == '\t')) {
			return "must not contain control characters"
		}
	}
	return ""
}

// list trims each item of *p and checks it: at least one item when required, each item
// non-empty and at most max runes.
func (f FieldErrs) list(name string, p *[]string, required bool, max int) {
	if p == nil {
		if required {
			f[name] = "is required"
		}
		return
	}
	if *p == nil {
		*p = []string{}
	}
	switch {
	case len(*p) == 0 && required:
		f[name] = "must hold at least one item"
		return
	case len(*p) > MaxListItems:
		f[name] = fmt.Sprintf("must hold at most %d items", MaxListItems)
		return
	}
	for i := range *p {
		(*p)[i] = strings.TrimSpace((*p)[i])
		if msg := textProblem((*p)[i], true, max, false); msg != "" {
			f[name] = fmt.Sprintf("item %d %s", i+1, msg)
			return
		}
	}
}

// Validate normalises the movie fields of p (trimmed strings) and checks them. full is a
// create or a replace: the required fields must be there (name, description, casts,
// trailerUrl, releaseDate, director) and the defaults fill the optional ones (language
// [English], releaseStatus RELEASED). Otherwise only the given fields are checked, and at
// least one must be given.
func (p *MoviePatch) Validate(full bool) error {
	f := FieldErrs{}
	if full {
		if p.Language == nil {
			p.Language = &[]string{DefaultLanguage}
		}
		if p.ReleaseStatus == nil || strings.TrimSpace(*p.ReleaseStatus) == "" {
			s := ReleaseReleased
			p.ReleaseStatus = &s
		}
	} else if *p == (MoviePatch{}) {
		return errs.E(errs.Invalid, "nothing to change: give at least one field")
	}
	f.text("name", p.Name, full, MaxTitleRunes, false)
	f.text("description", p.Description, full, MaxDescriptionRunes, true)
	f.list("casts", p.Casts, full, MaxShortRunes)
	f.list("language", p.Language, false, MaxShortRunes)
	f.text("director", p.Director, full, MaxShortRunes, false)
	if p.TrailerURL == nil {
		if full {
			f["trailerUrl"] = "is required"
		}
	} else {
		*p.TrailerURL = strings.TrimSpace(*p.TrailerURL)
		if msg := urlProblem(*p.TrailerURL); msg != "" {
			f["trailerUrl"] = msg
		}
	}
	if p.ReleaseDate == nil {
		if full {
			f["releaseDate"] = "is required"
		}
	} else if *p.ReleaseDate == "" {
		f["releaseDate"] = "is required"
	} else if _, ok := ParseTiming(*p.ReleaseDate); !ok {
		f["releaseDate"] = "must be a date (2024-01-15) or an RFC 3339 time (2024-01-15T18:30:00Z)"
	}
	if p.ReleaseStatus != nil {
		*p.ReleaseStatus = strings.ToUpper(strings.TrimSpace(*p.ReleaseStatus))
		switch *p.ReleaseStatus {
		case ReleaseReleased, ReleaseUnreleased, ReleaseBlocked:
		default:
			f["releaseStatus"] = "must be RELEASED, UNRELEASED or BLOCKED"
		}
	}
	return f.Err()
}

func urlProblem(s string) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > MaxURLBytes:
		return fmt.Sprintf("must be at most %d bytes", MaxURLBytes)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		strings.ContainsAny(s, " \t\r\n<>\"") {
		return "must be an http or https URL"
	}
	return ""
}

// Validate normalises the theatre fields of p and checks them. full is a create or a
// replace: name, city and pinCode are required. Otherwise at least one field must be given.
func (p *TheatrePatch) Validate(full bool) error {
	if !full && *p == (TheatrePatch{}) {
		return errs.E(errs.Invalid, "nothing to change: give at least one field")
	}
	f := FieldErrs{}
	f.text("name", p.Name, full, MaxTitleRunes, false)
	f.text("description", p.Description, false, MaxDescriptionRunes, true)
	f.text("city", p.City, full, MaxShortRunes, false)
	f.text("address", p.Address, false, MaxAddressRunes, true)
	if p.PinCode == nil {
		if full {
			f["pinCode"] = "is required"
		}
	} else if *p.PinCode < 1 || *p.PinCode > MaxPinCode {
		f["pinCode"] = "must be a positive number of up to 6 digits"
	}
	return f.Err()
}

// NewShow is a request to create a show.
type NewShow struct {
	TheatreID string
	MovieID   string
	ShowPatch
}

// Validate checks a new show: theatreId and movieId are ids; timing, noOfSeats and price
// are required; seatsPerRow defaults to DefaultSeatsPerRow.
func (s *NewShow) Validate() error {
	f := FieldErrs{}
	s.TheatreID = strings.TrimSpace(s.TheatreID)
	s.MovieID = strings.TrimSpace(s.MovieID)
	if s.TheatreID == "" {
		f["theatreId"] = "is required"
	} else if !IsID(s.TheatreID) {
		f["theatreId"] = "must be a 24-character hex id"
	}
	if s.MovieID == "" {
		f["movieId"] = "is required"
	} else if !IsID(s.MovieID) {
		f["movieId"] = "must be a 24-character hex id"
	}
	if s.SeatsPerRow == nil {
		n := DefaultSeatsPerRow
		s.SeatsPerRow = &n
	}
	for _, k := range []struct {
		name string
		nil  bool
	}{{"timing", s.Timing == nil}, {"noOfSeats", s.NoOfSeats == nil}, {"price", s.Price == nil}} {
		if k.nil {
			f[k.name] = "is required"
		}
	}
	s.ShowPatch.check(f)
	return f.Err()
}

// Validate checks the given fields of a show change (at least one).
func (p *ShowPatch) Validate() error {
	if *p == (ShowPatch{}) {
		return errs.E(errs.Invalid, "nothing to change: give at least one field")
	}
	f := FieldErrs{}
	p.check(f)
	return f.Err()
}

func (p *ShowPatch) check(f FieldErrs) {
	if p.Timing != nil {
		if *p.Timing == "" {
			f["timing"] = "is required"
		} else if _, ok := ParseTiming(*p.Timing); !ok {
			f["timing"] = "must be an RFC 3339 time (2030-06-01T18:30:00Z) or a date (2030-06-01)"
		}
	}
	if p.NoOfSeats != nil && (*p.NoOfSeats < 1 || *p.NoOfSeats > MaxSeats) {
		f["noOfSeats"] = fmt.Sprintf("must be from 1 to %d", MaxSeats)
	}
	if p.SeatsPerRow != nil && (*p.SeatsPerRow < 1 || *p.SeatsPerRow > MaxSeatsPerRow) {
		f["seatsPerRow"] = fmt.Sprintf("must be from 1 to %d", MaxSeatsPerRow)
	}
	if p.Price != nil {
		v := *p.Price
		cents := v * 100
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v > MaxPrice:
			f["price"] = fmt.Sprintf("must be from 0 to %d", MaxPrice)
		case math.Abs(cents-math.Round(cents)) > 1e-6:
			f["price"] = "must have at most 2 decimals"
		}
	}
	if p.Format != nil {
		*p.Format = strings.TrimSpace(*p.Format)
		if msg := formatProblem(*p.Format); msg != "" {
			f["format"] = msg
		}
	}
}

func formatProblem(s string) string {
	if utf8.RuneCountInString(s) > MaxFormatRunes {
		return fmt.Sprintf("must be at most %d characters (e.g. 2D, 3D, IMAX)", MaxFormatRunes)
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(" .+-", r))) {
			return "must be letters, digits, spaces, '.', '+' or '-' (e.g. 2D, 3D, IMAX)"
		}
	}
	return ""
}
