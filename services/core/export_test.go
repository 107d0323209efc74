package core

// LogOp writes a seat log operation as the engine does (tests of the seat log).
func (b *Bookings) LogOp(showID string, op SeatOp) <-chan bool { return b.logOp(showID, op) }

// SetCompare replaces the bcrypt comparison of a (tests count the comparisons).
func SetCompare(a *Accounts, f func(hash, password []byte) error) { a.compare = f }
