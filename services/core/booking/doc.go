// Package booking is the booking engine: it holds seats for a customer, takes the payment
// once, ends unpaid holds, and tells the outbox which confirmation emails may go.
//
// What decides a race, and what a caller may assume:
//
//   - A seat is sold at most once. A booking takes its seats by inserting one hold per seat
//     into a unique key (show, seat) (hold.go): the insert that lands first owns the seat,
//     the others do not get it (too few left: errs.Conflict, "no seats"). Nothing else
//     decides; the per-process seat view (seatview.go) only chooses which seats to try, so a
//     stale view costs a retry, never a wrong sale.
//   - A booking is paid at most once, and never after its hold ended. Its fate (PAID,
//     EXPIRED, CANCELLED) is an outcome inserted under the booking's id (Bookings.Pay in
//     pay.go, BookingStore.Decide): the first insert is the fate, a payment that finds
//     another outcome in force is refused (errs.Conflict, or errs.Gone for an expired hold).
//     Holds end by the database's clock, and another booking takes an expired hold only
//     HOLD_TAKEOVER_MARGIN after its end.
//   - A customer holds at most MaxOpenSeatsPerUser unpaid seats: fair-use slots, claimed by
//     insert (slots.go, lapses.go).
//   - Expiry (expiry.go) runs on one replica at a time (a lease): it reads the expiry queue's
//     buckets in order, decides each booking once and releases its seats. A booking is never
//     left holding seats after its outcome: its intent, written before its holds, stays until
//     it is settled (settle.go).
//   - A show being deleted takes no new booking: the deleter inserts a marker, then checks
//     the show's bookings; a booking checks the marker after holding (showdeletion.go).
//   - A confirmation email is written to the outbox before the payment is decided and sent
//     only once the booking is PAID (Bookings.PaidGuard).
//   - Free shows (price 0) are confirmed at once with a payment of 0 (free.go); the seat log
//     is compacted behind its snapshots (seatlog_compact.go).
//
// Every method on the booking path costs the same however much is stored (BookingStore).
package booking
