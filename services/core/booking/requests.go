package booking

// BookingRequest is a customer's booking: a show named by theatre, movie and timing, and
// either a number of seats (the best free ones are picked) or the seats by label.
type BookingRequest struct {
	TheatreID string
	MovieID   string
	Timing    string
	NoOfSeats int
	Seats     []string
}

// PaymentRequest pays a booking.
type PaymentRequest struct {
	BookingID string
	Amount    float64
}
