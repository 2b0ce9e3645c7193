#!/usr/bin/env python3
"""Every relative link in README.md and docs/*.md must name a file of the repository.

Checks inline links and images ([text](target), ![alt](target)) and reference definitions
([id]: target). Absolute URLs (scheme:), mail links and pure #anchors are skipped; a
#fragment or ?query after a path is ignored. Fenced code is not looked at.
A page named in the text without a link ("see interface.md", `../shared/x.md`) must exist
too, relative to the page or to the repository root (README names docs/x.md), and no
relative path may lead outside the repository: the docs must stand alone.
Exit 0 when all resolve, 1 listing FILE:LINE: target for each one that does not.
Usage: check_links.py REPO_ROOT
"""
import os
import re
import sys

INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


MENTION = re.compile(r"(?<![\w/.:-])((?:\.\./|\./)*[\w.-]+(?:/[\w.-]+)*\.md)\b")
OUTSIDE = re.compile(r"(?<![\w/.:-])(\.\./[^\s`'\")\]]*)")


def prose_lines(text):
    """(line number, line) of every line outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(r"^\s*(```|~~~)", line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def mentions(text):
    """Unlinked page names (*.md) and ../ paths, in text or inline code."""
    for number, line in prose_lines(text):
        no_links = INLINE.sub("", line)
        for m in MENTION.finditer(no_links):
            yield number, m.group(1)
        for m in OUTSIDE.finditer(no_links):
            if not m.group(1).endswith(".md"):
                yield number, m.group(1)


def links(text):
    for number, line in prose_lines(text):
        code_free = re.sub(r"`[^`]*`", "", line)
        for m in INLINE.finditer(code_free):
            yield number, m.group(1)
        m = REFERENCE.match(code_free)
        if m:
            yield number, m.group(1)


def broken(root):
    files = [os.path.join(root, "README.md")]
    docs = os.path.join(root, "docs")
    files += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    for path in files:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for number, target in links(text):
            if SCHEME.match(target) or target.startswith("#"):
                continue
            target_path = re.split(r"[#?]", target, 1)[0]
            if not target_path:
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), target_path))
            inside = os.path.commonpath([os.path.abspath(root), os.path.abspath(resolved)]) == os.path.abspath(root)
            if not inside or not os.path.exists(resolved):
                why = "outside the repository" if not inside else "no such file"
                yield f"{os.path.relpath(path, root)}:{number}: {target} ({why})"
        for number, name in mentions(text):
            here = os.path.normpath(os.path.join(os.path.dirname(path), name))
            from_root = os.path.normpath(os.path.join(root, name))
            inside = os.path.commonpath([os.path.abspath(root), os.path.abspath(here)]) == os.path.abspath(root)
            if not inside:
                yield f"{os.path.relpath(path, root)}:{number}: {name} (outside the repository)"
            elif not os.path.exists(here) and (name.startswith(".") or not os.path.exists(from_root)):
                yield f"{os.path.relpath(path, root)}:{number}: {name} (no such file)"


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    bad = list(broken(sys.argv[1]))
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} broken relative link(s)")
        return 1
    print("every relative link and page named in README.md and docs/*.md resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
