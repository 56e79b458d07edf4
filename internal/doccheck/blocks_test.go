package doccheck

import (
	"strings"
	"testing"
)

func TestShellBlocksReadMarkers(t *testing.T) {
	md := strings.Join([]string{
		"```sh", "echo run", "# prints: run", "```",
		"<!-- not run: starts a node -->", "```sh", "go run ./cmd/ordersd", "```",
		"<!-- run by .ci/run: needs python -->", "```sh", "python3 x.py", "```",
		"<!-- run on its own: starts its own ordersd -->", "```sh", "./ordersd &", "```",
		"```json", "{}", "```",
		"```` ```sh ```` in a sentence is not a fence",
		"```sh", "echo last", "```",
	}, "\n")
	blocks, err := ShellBlocks(md)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 5 || blocks[4].Text != "echo last\n" {
		t.Fatalf("got %d blocks, want 5: %+v", len(blocks), blocks)
	}
	if b := blocks[3]; b.Marker != RunOnItsOwn || b.Why != "starts its own ordersd" {
		t.Errorf("block 3: %+v", b)
	}
	if b := blocks[0]; b.Marker != RunHere || b.Text != "echo run\n# prints: run\n" || b.Line != 1 {
		t.Errorf("block 0: %+v", b)
	}
	if b := blocks[1]; b.Marker != NotRun || b.Why != "starts a node" {
		t.Errorf("block 1: %+v", b)
	}
	if b := blocks[2]; b.Marker != RunByCI || b.Why != "needs python" {
		t.Errorf("block 2: %+v", b)
	}
}

func TestShellBlocksRefuseBadMarkers(t *testing.T) {
	for name, md := range map[string]string{
		"no reason":       "<!-- not run: -->\n```sh\nx\n```\n",
		"not before sh":   "<!-- not run: why -->\n```json\n{}\n```\n",
		"text in between": "<!-- not run: why -->\nsome text\n```sh\nx\n```\n",
		"at the end":      "```sh\nx\n```\n<!-- not run: why -->\n",
		"misspelt":        "<!-- not-run why -->\n```sh\nx\n```\n",
		"unclosed block":  "```sh\nx\n",
	} {
		if _, err := ShellBlocks(md); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCheckPrintsInOrder(t *testing.T) {
	out := "a: CREATED\nb: APPROVED\n"
	if err := CheckPrints(out, []string{"CREATED", "APPROVED"}); err != nil {
		t.Error(err)
	}
	if err := CheckPrints(out, []string{"APPROVED", "CREATED"}); err == nil {
		t.Error("texts out of order passed")
	}
	if err := CheckPrints(`{"a":1, "b": 2}`, []string{`"a": 1,"b":2`}); err != nil {
		t.Errorf("whitespace counted: %v", err)
	}
	if err := CheckPrints(out, []string{"SHIPPED"}); err == nil {
		t.Error("a missing text passed")
	}
	if got := Prints("x\n  # prints: \"confirmed\": true\n# printsnot\n"); len(got) != 1 || got[0] != `"confirmed": true` {
		t.Errorf("Prints = %q", got)
	}
}
