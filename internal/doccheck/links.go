package doccheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// A Link is a link target of a Markdown document, outside code.
type Link struct {
	Line   int
	Target string
}

var (
	inlineLinkRE = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refLinkRE    = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(\s|$)`)
	codeSpanRE   = regexp.MustCompile("`+[^`]*`+")
	headingRE    = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	htmlTagRE    = regexp.MustCompile(`<[^>]+>`)
	lineAnchorRE = regexp.MustCompile(`^L(\d+)(?:-L(\d+))?$`)
)

// proseLines calls f with every line of md outside fenced code blocks.
func proseLines(md string, f func(n int, line string)) {
	fence := ""
	for i, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, "`~") == "" {
				fence = ""
			}
			continue
		}
		if fc, _, ok := openFence(trimmed); ok {
			fence = fc
			continue
		}
		f(i+1, line)
	}
}

// Links returns the link targets of md: inline links and images, and
// reference definitions, outside code blocks and code spans.
func Links(md string) []Link {
	var links []Link
	proseLines(md, func(n int, line string) {
		if m := refLinkRE.FindStringSubmatch(line); m != nil {
			links = append(links, Link{n, m[1]})
			return
		}
		for _, m := range inlineLinkRE.FindAllStringSubmatch(codeSpanRE.ReplaceAllString(line, "``"), -1) {
			links = append(links, Link{n, m[1]})
		}
	})
	return links
}

// Anchors returns the anchors GitHub gives the headings of md: the text as
// rendered, lower-cased, without punctuation, spaces turned into hyphens,
// and -1, -2, … after a repeat.
func Anchors(md string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	proseLines(md, func(_ int, line string) {
		m := headingRE.FindStringSubmatch(line)
		if m == nil {
			return
		}
		slug := Slug(m[2])
		if n := seen[slug]; n > 0 {
			anchors[slug+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	})
	return anchors
}

// Slug is GitHub's anchor for a heading's Markdown text.
func Slug(heading string) string {
	text := inlineLinkRE.ReplaceAllStringFunc(heading, func(l string) string {
		return l[strings.Index(l, "[")+1 : strings.Index(l, "]")]
	})
	text = htmlTagRE.ReplaceAllString(text, "")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// CheckLinks checks every relative link of the Markdown files (paths
// relative to root): the file or directory it names exists, and its
// anchor, if any, is a heading of the Markdown file it names, or a line
// (#L12, #L12-L20) of another file. It returns one error per broken link.
func CheckLinks(root string, files []string) ([]error, error) {
	anchorsOf := map[string]map[string]bool{}
	var broken []error
	for _, file := range files {
		md, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			return nil, err
		}
		for _, l := range Links(string(md)) {
			if err := checkLink(root, file, l.Target, anchorsOf); err != nil {
				broken = append(broken, fmt.Errorf("%s:%d: %s: %w", file, l.Line, l.Target, err))
			}
		}
	}
	return broken, nil
}

func checkLink(root, file, target string, anchorsOf map[string]map[string]bool) error {
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return nil
	}
	path, anchor, _ := strings.Cut(target, "#")
	dest := file
	if path != "" {
		if filepath.IsAbs(path) {
			return fmt.Errorf("an absolute path does not work on GitHub")
		}
		dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
		if strings.HasPrefix(dest, "..") {
			return fmt.Errorf("points outside the repository")
		}
	}
	full := filepath.Join(root, dest)
	info, err := os.Stat(full)
	if err != nil {
		return fmt.Errorf("no such file or directory")
	}
	if anchor == "" {
		return nil
	}
	if info.IsDir() {
		return fmt.Errorf("an anchor on a directory")
	}
	content, err := os.ReadFile(full)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(dest, ".md") {
		m := lineAnchorRE.FindStringSubmatch(anchor)
		if m == nil {
			return fmt.Errorf("#%s: a file that is not Markdown has only line anchors (#L12)", anchor)
		}
		lines := strings.Count(string(content), "\n") + 1
		for _, s := range m[1:] {
			if n, _ := strconv.Atoi(s); s != "" && (n < 1 || n > lines) {
				return fmt.Errorf("#%s: the file has %d lines", anchor, lines)
			}
		}
		return nil
	}
	if anchorsOf[dest] == nil {
		anchorsOf[dest] = Anchors(string(content))
	}
	if !anchorsOf[dest][anchor] {
		return fmt.Errorf("#%s: no such heading in %s", anchor, filepath.ToSlash(dest))
	}
	return nil
}
