package cli

import (
	"os"
	"strings"
	"testing"
)

// Every flag, and its environment variable, is documented in
// docs/configuration.md.
func TestEveryFlagIsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	// The flags are those --help lists.
	var (
		names []string
		help  strings.Builder
	)
	_, _ = ParseConfig([]string{"--help"}, func(string) string { return "" }, &help)
	for _, line := range strings.Split(help.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "  --"); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d flags in --help", len(names))
	}
	for _, name := range names {
		if !strings.Contains(string(readme), "`--"+name+"`") {
			t.Errorf("--%s is not in docs/configuration.md", name)
		}
		if !strings.Contains(string(readme), envName(name)) {
			t.Errorf("$%s is not in docs/configuration.md", envName(name))
		}
	}
}
