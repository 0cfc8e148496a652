#!/usr/bin/env python3
# usage: normalize-patches.py <format-patch output dir> <series dir> <cover text file>
# (first line of the cover text: its Subject: line; the rest replaces the blurb)
# Normalises git format-patch output so that regenerating the series does not
# change bytes that mean nothing (commit ids, dates, the committer): the
# cache key of the built kernel hashes the patch files.
import sys, re, pathlib
src, dst, cover = sys.argv[1], sys.argv[2], sys.argv[3]
for p in sorted(pathlib.Path(src).glob('*.patch')):
    s = p.read_text()
    s = re.sub(r'^From [0-9a-f]{40} ', 'From 0000000000000000000000000000000000000000 ', s, count=1, flags=re.M)
    s = re.sub(r'^Date: .*$', 'Date: Wed, 2 Dec 2026 00:00:00 +0000', s, count=1, flags=re.M)
    s = re.sub(r'^From: .*\n(?: .*\n)?', 'From: memhp <memhp@example.invalid>\n', s, count=1, flags=re.M)
    if p.name.startswith('0000-'):
        c = pathlib.Path(cover).read_text()
        subj, body = c.split('\n', 1)
        s = re.sub(r'^Subject: .*$', subj, s, count=1, flags=re.M)
        s = s.replace('*** BLURB HERE ***\n', body.lstrip('\n'))
    (pathlib.Path(dst) / p.name).write_text(s)
