#!/usr/bin/env python3
"""Writes the benchmark pages: HTML of an exact size whose text varies like a
real page (seeded, so every run serves the same bytes and compresses ~4x,
close to real Craft pages), not a repeated paragraph that compresses 50x.

    pages.py OUTDIR            -> OUTDIR/p10k.html, OUTDIR/p100k.html, OUTDIR/p1k.html
"""
import os
import random
import sys

WORDS = ("craft entry section field matrix asset category global user element "
         "template twig query cache tag purge edge page blog product price cart "
         "order shipping customer review image gallery author date summary body "
         "link title heading navigation footer header menu search result filter "
         "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
         "tempor incididunt ut labore et dolore magna aliqua enim ad minim veniam").split()


def page(size, seed):
    rnd = random.Random(seed)
    head = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Bench page</title><link rel=\"stylesheet\" href=\"/css/site.css\"></head>\n<body>\n")
    tail = "</body></html>"  # no final newline: shells strip it
    parts = [head]
    n = len(head) + len(tail)
    i = 0
    while n < size:
        words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(8, 24)))
        href = "/blog/%s-%d" % (rnd.choice(WORDS), rnd.randint(1, 99999))
        p = "<article id=\"e%d\" class=\"entry\"><h2><a href=\"%s\">%s</a></h2><p>%s.</p></article>\n" % (
            i, href, rnd.choice(WORDS).title(), words.capitalize())
        parts.append(p)
        n += len(p)
        i += 1
    body = "".join(parts)
    body = body[: size - len(tail)]
    # Do not cut inside a tag: pad the cut with a comment-safe filler.
    cut = body.rfind("<")
    if cut > body.rfind(">"):
        body = body[:cut] + " " * (len(body) - cut)
    return body + tail


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, size in (("p1k.html", 1024), ("p10k.html", 10 * 1024), ("p100k.html", 100 * 1024)):
        data = page(size, size)
        assert len(data.encode()) == size, (name, len(data))
        with open(os.path.join(out, name), "w") as f:
            f.write(data)


if __name__ == "__main__":
    main()
