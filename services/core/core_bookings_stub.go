package core

// Bookings is the booking engine. (Being built.)
type Bookings struct{}
