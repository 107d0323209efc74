// Package catalogue keeps theatres, movies and shows: who may change them (admins, and a
// theatre's owner for its theatre and shows), their rules, and the email that tells a client
// their theatre was created.
//
// What decides a race, and what a caller may assume:
//
//   - No show outlives its theatre or movie. Deleting a theatre or a movie and creating a
//     show of it are decided both ways by inserts (deletion.go): the deleter inserts a marker
//     and then looks for shows; the creator inserts its show and then looks for a marker, and
//     undoes its show if it finds one. A second deleter in the same window gets errs.Conflict;
//     a deleter that cannot finish within half of core.DeletionMarkerStale gives up (503).
//   - FindShow never returns a show whose theatre or movie is gone.
//   - Deleting a show asks the booking engine first (SetShowDeletion): a show with bookings
//     that stand is not deleted.
//   - Shows are found by (theatre, movie, timing) through a short cache
//     (CatalogueOptions.ShowCacheTTL); a change made here forgets the cached show at once.
package catalogue
