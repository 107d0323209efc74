package accounts

// SetCompare replaces the bcrypt comparison of a (tests count the comparisons).
func SetCompare(a *Accounts, f func(hash, password []byte) error) { a.compare = f }
