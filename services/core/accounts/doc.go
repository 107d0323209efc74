// Package accounts signs users up and in, issues and checks their JSON Web Tokens, and
// changes passwords, roles and statuses.
//
// What decides a race, and what a caller may assume:
//
//   - An email has one account: the store's unique index decides two sign-ups (the loser
//     gets errs.Conflict).
//   - A user's changes are versions inserted into a unique key (UserStore.Change): of two
//     changes made at once, one lands and the other is redone on the new version (up to
//     MaxUserChangeAttempts, then errs.Conflict with MsgUserChangedMeanwhile).
//   - A password reset, or an admin's change of a user's role or status, ends every session
//     begun before it, on every replica, whatever the timing: tokens carry the user's session
//     generation (sgen), and every authenticated request compares it exactly with the user's
//     latest version.
//   - Wrong passwords cost the same whether or not the email exists (a bcrypt comparison
//     either way), and no answer tells which part was wrong.
package accounts
