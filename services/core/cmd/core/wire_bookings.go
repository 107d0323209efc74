package main

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// BookingConfig is the booking engine's part of the environment.
type BookingConfig struct{}

// wireBookings builds m.Bookings on db and starts the hold expirer (stopped by Close).
func (m *Main) wireBookings(ctx context.Context, db *mongo.Database) error { return nil }
