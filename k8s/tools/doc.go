// Package tools pins the command-line tools of the release path, built with GOWORK=off so that
// their dependencies never mix with the services': ko (builds the images without Docker) and
// actionlint (checks the GitHub workflows). `make images` and `make lint` build them into ./bin.
package tools
