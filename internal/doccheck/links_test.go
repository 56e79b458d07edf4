package doccheck

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// repoRoot is the root of the repository, from this package's directory.
const repoRoot = "../.."

// documents returns README.md, CHANGELOG.md and docs/*.md, relative to the
// root of the repository.
func documents(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "CHANGELOG.md"}
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md")
	}
	sort.Strings(docs)
	for _, d := range docs {
		rel, _ := filepath.Rel(repoRoot, d)
		files = append(files, filepath.ToSlash(rel))
	}
	return files
}

// Every relative link and anchor of the README, the changelog and docs/
// resolves: files, directories, headings (by GitHub's anchors) and lines
// of code files.
func TestDocLinksResolve(t *testing.T) {
	files := documents(t)
	broken, err := CheckLinks(repoRoot, files)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range broken {
		t.Error(err)
	}
	links := 0
	for _, f := range files {
		md, _ := os.ReadFile(filepath.Join(repoRoot, f))
		links += len(Links(string(md)))
	}
	if links < 30 {
		t.Fatalf("found only %d links in %d documents; the link parser is broken", links, len(files))
	}
}

// Every shell block of the documents carries a well-formed marker or none
// (the docs' command test runs those without one).
func TestDocShellBlocksAreWellFormed(t *testing.T) {
	for _, f := range documents(t) {
		md, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ShellBlocks(string(md)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestSlugFollowsGitHub(t *testing.T) {
	for heading, want := range map[string]string{
		"A walk through with grpcurl and curl":          "a-walk-through-with-grpcurl-and-curl",
		"Consuming over one stream: StreamOrders":       "consuming-over-one-stream-streamorders",
		"Go: package `client`":                          "go-package-client",
		"TLS for `--nats-listen`":                       "tls-for---nats-listen",
		"An existing NATS deployment, with credentials": "an-existing-nats-deployment-with-credentials",
		"The [fault run](scaling.md) & *more*":          "the-fault-run--more",
		"ListOrders_v2 (über)":                          "listorders_v2-über",
	} {
		if got := Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

func TestAnchorsNumberRepeatedHeadings(t *testing.T) {
	got := Anchors("# Setup\n\n```sh\n# not a heading\n```\n\n## Setup\n### Setup\n")
	for _, want := range []string{"setup", "setup-1", "setup-2"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a comment in a code block was taken for a heading")
	}
}

// A broken link of each kind is found.
func TestCheckLinksFindsBrokenLinks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("code/main.go", "package main\n\nfunc main() {}\n")
	write("docs/a.md", "# A\n\n## Known heading\n")
	write("README.md", strings.Join([]string{
		"# Readme",
		"[ok](docs/a.md) [ok](docs/a.md#known-heading) [ok](#readme) [ok](code/main.go#L2) [ok](code/) [ok](https://example.com/x#y)",
		"`[in code](missing.md)`",
		"```",
		"[in a block](missing.md)",
		"```",
		"[missing file](docs/b.md)",
		"[missing anchor](docs/a.md#unknown-heading)",
		"[missing local anchor](#nowhere)",
		"[line past the end](code/main.go#L9)",
		"[not a line anchor](code/main.go#main)",
		"[outside](../elsewhere.md)",
		"[ref]: docs/c.md",
	}, "\n"))
	broken, err := CheckLinks(dir, []string{"README.md", "docs/a.md"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, err := range broken {
		got = append(got, err.Error())
	}
	want := []string{"docs/b.md", "docs/a.md#unknown-heading", "#nowhere", "code/main.go#L9", "code/main.go#main", "../elsewhere.md", "docs/c.md"}
	if len(got) != len(want) {
		t.Fatalf("found %d broken links, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], ": "+w+": ") {
			t.Errorf("broken link %d: %s, want %s", i, got[i], w)
		}
	}
}
