// Package abs is the root of the abs backup system. It holds no code of its
// own: see README.md for the commands and docs/ARCHITECTURE.md for the
// packages. Its test (layering_test.go) enforces the import rules of
// DESIGN.md §11.
package abs
