// Package doccheck reads the repository's Markdown documents the way the
// tests that keep them true need: the shell blocks a reader pastes, with
// the markers that say how they are checked, and the relative links and
// anchors that must resolve. The conventions are described in
// docs/development.md.
package doccheck
