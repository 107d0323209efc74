// Package logcheck holds a test that keeps the log lines of every binary in one key style:
// snake_case keys (request_id, user_id, trace_id …), so that queries over the logs of all
// services use one name per field.
package logcheck
