package doccheck

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// How a shell block is checked, from the HTML comment on the line before
// its opening fence.
const (
	// RunHere blocks (no marker) are run by the docs' command test.
	RunHere = ""
	// NotRun blocks (<!-- not run: why -->) cannot run as pasted in a test.
	NotRun = "not run"
	// RunByCI blocks (<!-- run by .ci/run: what -->) are run by .ci/run.
	RunByCI = "run by .ci/run"
	// RunOnItsOwn blocks (<!-- run on its own: what it starts -->) start
	// their own ordersd and are run each in a directory of its own.
	RunOnItsOwn = "run on its own"
)

// A Block is one ```sh block of a document.
type Block struct {
	Line   int    // the line of its opening fence, from 1
	Text   string // its content, without the fences
	Marker string // RunHere, NotRun, RunByCI or RunOnItsOwn
	Why    string // the marker's reason
}

var markerRE = regexp.MustCompile(`^<!--\s*(not run|run by \.ci/run|run on its own):\s*(.*?)\s*-->$`)

// ShellBlocks returns the ```sh blocks of a Markdown document, in order,
// with their markers. A marker without a reason, or one that does not
// stand right before a ```sh fence, is an error: a typo must not turn a
// check off.
func ShellBlocks(md string) ([]Block, error) {
	var (
		blocks  []Block
		pending *Block // a marker waiting for its fence
		fence   string // the open fence, "" outside a code block
		cur     *Block
		body    strings.Builder
	)
	for i, line := range strings.Split(md, "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`~") == "" {
				if cur != nil {
					cur.Text = body.String()
					blocks = append(blocks, *cur)
					cur = nil
				}
				fence = ""
				continue
			}
			if cur != nil {
				body.WriteString(line)
				body.WriteByte('\n')
			}
			continue
		}
		if f, info, ok := openFence(trimmed); ok {
			fence = f
			if info == "sh" {
				cur = &Block{Line: n}
				if pending != nil {
					cur.Marker, cur.Why = pending.Marker, pending.Why
				}
				body.Reset()
			} else if pending != nil {
				return nil, fmt.Errorf("line %d: the marker %q stands before a ```%s block, not a ```sh one", pending.Line, pending.Marker, info)
			}
			pending = nil
			continue
		}
		if pending != nil {
			return nil, fmt.Errorf("line %d: the marker %q is not followed by a ```sh block", pending.Line, pending.Marker)
		}
		if m := markerRE.FindStringSubmatch(trimmed); m != nil {
			if m[2] == "" {
				return nil, fmt.Errorf("line %d: the marker %q gives no reason", n, m[1])
			}
			pending = &Block{Line: n, Marker: m[1], Why: m[2]}
		} else if strings.HasPrefix(trimmed, "<!--") && strings.Contains(strings.ToLower(trimmed), "run") {
			return nil, fmt.Errorf("line %d: %q is not a marker (<!-- not run: why -->, <!-- run by .ci/run: what --> or <!-- run on its own: what it starts -->)", n, trimmed)
		}
	}
	if fence != "" {
		return nil, fmt.Errorf("a code block is not closed")
	}
	if pending != nil {
		return nil, fmt.Errorf("line %d: the marker %q is not followed by a ```sh block", pending.Line, pending.Marker)
	}
	return blocks, nil
}

// openFence reports whether line opens a fenced code block, with the fence
// and the info string. As in CommonMark, the info string of a backtick
// fence holds no backtick: "```` ```sh ````" is a code span, not a fence.
func openFence(line string) (fence, info string, ok bool) {
	for _, c := range []string{"```", "~~~"} {
		if strings.HasPrefix(line, c) {
			f := line[:len(line)-len(strings.TrimLeft(line, c[:1]))]
			info := strings.TrimSpace(line[len(f):])
			if c == "```" && strings.Contains(info, "`") {
				return "", "", false
			}
			return f, info, true
		}
	}
	return "", "", false
}

// printsPrefix starts a line of a block that says what the commands above
// it print.
const printsPrefix = "# prints: "

// Prints returns the texts that a block's "# prints: " lines expect in its
// output, in order.
func Prints(block string) []string {
	var want []string
	for _, line := range strings.Split(block, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), printsPrefix); ok {
			want = append(want, rest)
		}
	}
	return want
}

// CheckPrints checks that out holds every text of want, in that order.
// Whitespace is ignored on both sides: JSON printers space their output
// differently (protojson at random).
func CheckPrints(out string, want []string) error {
	out = withoutSpace(out)
	rest := out
	for i, text := range want {
		w := withoutSpace(text)
		at := strings.Index(rest, w)
		if at < 0 {
			if strings.Contains(out, w) {
				return fmt.Errorf("the output holds %q, but not after %q", text, want[i-1])
			}
			return fmt.Errorf("the output does not hold %q", text)
		}
		rest = rest[at+len(w):]
	}
	return nil
}

// Holds reports whether out holds text, whitespace ignored.
func Holds(out, text string) bool {
	return strings.Contains(withoutSpace(out), withoutSpace(text))
}

func withoutSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}
